//! What settings are made of and how a bad one is reported. Each stage
//! owns the settings of its own (`source::settings`, `chunk::settings`,
//! `embed::settings`, each store's `settings`), validated where it is used;
//! this module holds what they share: the value types flags parse into, the
//! error every check returns, and the secret type that never prints itself.

mod values;

pub use values::{Distance, IndexKind, LayoutName, PgType, ProgressMode, TokenizerName};

/// A setting that cannot work; the message names the setting and the way out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// A string that never prints itself, so a key or password cannot reach a
/// log line, an error or the report by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-very-secret".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}
