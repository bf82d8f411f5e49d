//! The embedding space an endpoint's settings make vectors in (the record
//! a target keeps, `crate::space`).

use std::collections::BTreeMap;

use super::settings::EmbedSettings;
use crate::settings::Distance;
use crate::space::Space;

impl EmbedSettings {
    /// The space of this endpoint's document vectors, stored for `distance`.
    /// Only what changes a text's vector besides the model is an option:
    /// a task, a document prefix. URLs, deployments and API versions are
    /// where the model is served, not what it is.
    pub fn space(&self, distance: Distance, unit_length: Option<bool>) -> Space {
        let mut options = BTreeMap::new();
        if let Some(t) = &self.options.task {
            options.insert("task".to_string(), t.clone());
        }
        if self.asymmetric {
            options.insert(
                "document_prefix".to_string(),
                self.document_prefix.clone().unwrap_or_default(),
            );
        }
        Space {
            binding: self.provider.name().to_string(),
            model: self.model.clone(),
            dim: self.dim,
            distance: distance.name().to_string(),
            options,
            unit_length,
            recorded_by: String::new(),
            recorded_at: String::new(),
            how: String::new(),
        }
    }
}
