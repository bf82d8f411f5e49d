//! The AWS shared config files, as every AWS tool reads them:
//! `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config`
//! (`AWS_CONFIG_FILE`), INI-style, sections `[name]` in the first and
//! `[profile name]` (or `[default]`) in the second, the credentials file's
//! values winning over the config file's for the same key.

use std::collections::HashMap;
use std::path::PathBuf;

/// One profile's settings, keys lower-cased.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub name: String,
    values: HashMap<String, String>,
}

impl Profile {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Every profile of the two files.
#[derive(Debug, Default)]
pub struct Profiles {
    by_name: HashMap<String, Profile>,
}

impl Profiles {
    /// Reads both files (a missing file is an empty one).
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Profiles {
        let home = env("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(default)))
        };
        let mut out = Profiles::default();
        // The config file first: the credentials file overrides it.
        if let Some(text) =
            file("AWS_CONFIG_FILE", ".aws/config").and_then(|p| std::fs::read_to_string(p).ok())
        {
            out.merge(&text, true);
        }
        if let Some(text) = file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            out.merge(&text, false);
        }
        out
    }

    pub fn parse(config: &str, credentials: &str) -> Profiles {
        let mut out = Profiles::default();
        out.merge(config, true);
        out.merge(credentials, false);
        out
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    fn merge(&mut self, text: &str, config_file: bool) {
        let mut current: Option<String> = None;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let section = section.trim();
                // In the config file a profile is `[profile name]`, except
                // `[default]`; other sections (sso-session, services) are not profiles.
                current = if config_file {
                    match section.strip_prefix("profile") {
                        Some(rest) if rest.starts_with(char::is_whitespace) => {
                            Some(rest.trim().to_string())
                        }
                        _ if section == "default" => Some("default".into()),
                        _ => None,
                    }
                } else {
                    Some(section.to_string())
                };
                continue;
            }
            let (Some(name), Some((k, v))) = (&current, line.split_once('=')) else {
                continue;
            };
            // A value on the next, indented lines (nested `s3 =` settings) is
            // not something vecload reads; it is skipped as a key without value.
            let p = self.by_name.entry(name.clone()).or_insert_with(|| Profile {
                name: name.clone(),
                values: HashMap::new(),
            });
            p.values
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_merge_and_the_credentials_file_wins() {
        let config = "[default]\nregion = eu-west-1\n\n[profile ops]\nregion=us-east-2\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n[sso-session corp]\nsso_region = us-east-1\n";
        let creds = "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n# comment\n[ops]\nregion = ap-south-1\n";
        let p = Profiles::parse(config, creds);
        let d = p.get("default").unwrap();
        assert_eq!(d.get("region"), Some("eu-west-1"));
        assert_eq!(d.get("aws_access_key_id"), Some("AKIA1"));
        let ops = p.get("ops").unwrap();
        assert_eq!(ops.get("region"), Some("ap-south-1"));
        assert_eq!(ops.get("role_arn"), Some("arn:aws:iam::1:role/x"));
        assert!(p.get("corp").is_none() && p.get("sso-session corp").is_none());
    }
}
