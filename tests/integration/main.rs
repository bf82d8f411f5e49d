//! vecload's integration tests, one binary (as ripgrep's `tests/`): each
//! file is a module for one area, all driving the real `vecload` binary
//! against real stores and the embedding test server. One binary links the
//! crate once instead of once per file (27 links of a release build, and
//! their disk).
//!
//! Run one area with a filter: `scripts/test.sh batch_api::`.

mod common;

mod aws_credentials;
mod bad_input;
mod batch_api;
mod bedrock;
mod bindings;
mod cache;
mod check;
mod container;
mod copy;
mod dimension_limits;
mod endpoint_faults;
mod formats;
mod index_settings;
mod interrupt;
mod lightrag_layout;
mod load;
mod local_model;
mod outages;
mod plan;
mod providers;
mod qdrant;
mod quality;
mod reembed;
mod resume;
mod s3;
mod search;
mod secrets;
mod shards;
mod space;
mod tls;
