//! Settings file (TOML). Every setting has a default, so the gateway runs with no file at all.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub validation: ValidationConfig,
}

/// How far a read may stray from expected use before it is flagged `high` or `low`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Tolerance per rate class; classes not listed use `default`.
    pub tolerance: BTreeMap<String, Tolerance>,
    pub default: Tolerance,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Relative band around expected use, e.g. 0.20 for ±20% (Oracle MDM's residential example).
    pub percent: f64,
    /// Absolute margin in billing units added to the band, so small users are not flagged for 2 units.
    pub absolute: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            validation: ValidationConfig::default(),
        }
    }
}

impl Default for ValidationConfig {
    fn default() -> Self {
        let t = |percent, absolute| Tolerance { percent, absolute };
        let tolerance = [
            ("residential", t(0.20, 3.0)),
            ("multi_family", t(0.15, 5.0)),
            ("commercial", t(0.10, 5.0)),
            ("industrial", t(0.05, 10.0)),
            ("irrigation", t(0.25, 5.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ValidationConfig {
            tolerance,
            default: t(0.20, 3.0),
        }
    }
}

impl ValidationConfig {
    pub fn tolerance_for(&self, rate_class: &str) -> Tolerance {
        self.tolerance
            .get(&rate_class.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.default)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("settings file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
}

impl Config {
    /// Loads `path`, or the defaults when no file is given.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: shown,
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn a_class_tolerance_can_be_overridden_and_unknown_classes_use_the_default() {
        let c = Config::parse("[validation.tolerance.residential]\npercent = 0.3\nabsolute = 4\n")
            .unwrap();
        assert_eq!(c.validation.tolerance_for("Residential").percent, 0.3);
        assert_eq!(c.validation.tolerance_for("hydrant").percent, 0.20);
    }

    #[test]
    fn a_misspelt_setting_is_refused() {
        assert!(Config::parse("[validation]\ntolerence = 1\n").is_err());
    }
}
