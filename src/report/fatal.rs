//! The run-wide abort latch: the first error that ends the run is kept (it
//! is the report's `error`) and cancels every stage; later ones are only
//! logged by whoever hit them.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Set once by whichever stage hits an error that ends the run.
#[derive(Default, Clone)]
pub struct Fatal(Arc<Mutex<Option<String>>>);

impl Fatal {
    pub fn set(&self, msg: String, cancel: &CancellationToken) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            tracing::error!("{msg}");
            *g = Some(msg);
        }
        cancel.cancel();
    }
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
