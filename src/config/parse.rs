//! Parsing and validation of the JSON config file: every error found, each naming worker and key.
use super::Config;
use std::path::Path;

#[derive(Debug)]
pub struct ConfigError(String);
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub fn load_config(_path: &Path) -> Result<Config, Vec<ConfigError>> {
    Err(vec![ConfigError("not yet".into())])
}
pub fn check_config_report(_path: &Path) -> (i32, String) {
    (2, "not yet".into())
}
