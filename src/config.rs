//! Settings file (TOML). Every setting has a default, so the gateway runs with no file at all.

use serde::Deserialize;
use std::path::Path;

pub use crate::vee::{Tolerance, ValidationConfig};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The district's time zone (owned by `clock`).
    pub district: crate::clock::DistrictConfig,
    pub validation: ValidationConfig,
    /// Which reads are taken at all: read-time bounds, off-route policy (owned by `cycles`).
    pub reads: crate::cycles::ReadsConfig,
    /// The daemon: HTTP limits, sessions (owned by `serve`).
    pub serve: crate::serve::settings::ServeConfig,
    /// Serial docks: cradles found by USB VID/PID, timings (owned by `sync`).
    pub docks: crate::sync::DockConfig,
    /// Water tariff used to show a read's likely bill impact (owned by `review`).
    pub tariff: crate::review::tariff::TariffConfig,
    /// The District's leak (high-bill) adjustment policy (owned by `review`).
    pub leak_policy: crate::review::leak::LeakPolicy,
    /// Guardrails on the clerk's decisions (owned by `review`).
    pub review: crate::review::settings::ReviewConfig,
    /// The District's wording on door hangers, notices and tags (owned by `review`).
    pub paperwork: crate::review::settings::PaperworkConfig,
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

impl crate::cycles::CycleSettings for Config {
    fn validation(&self) -> &ValidationConfig {
        &self.validation
    }
    fn reads(&self) -> &crate::cycles::ReadsConfig {
        &self.reads
    }
}

impl crate::sync::SyncSettings for Config {
    fn docks(&self) -> &crate::sync::DockConfig {
        &self.docks
    }
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
    fn a_partial_class_override_keeps_the_other_fields_and_classes() {
        let c = Config::parse("[validation.tolerance.Irrigation]\npercent = 0.4\n").unwrap();
        let v = &c.validation;
        assert_eq!(v.tolerance_for("irrigation").percent, 0.4);
        assert_eq!(v.tolerance_for("irrigation").absolute, 2.5);
        assert_eq!(v.tolerance_for("industrial").percent, 0.05);
        assert_eq!(v.spread_factor, ValidationConfig::default().spread_factor);
    }

    #[test]
    fn a_new_class_starts_from_the_overridden_default() {
        let c = Config::parse(
            "[validation]\nspread_factor = 2.5\n[validation.default]\nabsolute = 7\n\
             [validation.tolerance.hydrant]\npercent = 0.5\n",
        )
        .unwrap();
        let h = c.validation.tolerance_for("hydrant");
        assert_eq!((h.percent, h.absolute), (0.5, 7.0));
        assert_eq!(c.validation.spread_factor, 2.5);
    }

    #[test]
    fn a_misspelt_setting_is_refused() {
        assert!(Config::parse("[validation]\ntolerence = 1\n").is_err());
        assert!(Config::parse("[validation.tolerance.residential]\npercnt = 1\n").is_err());
    }

    #[test]
    fn the_district_time_zone_is_an_iana_name_and_an_unknown_one_is_refused_with_its_key() {
        use crate::clock::DistrictZone;
        assert_eq!(
            Config::default().district.time_zone,
            DistrictZone::HostLocal
        );
        let c = Config::parse("[district]\ntime_zone = \"America/Los_Angeles\"\n").unwrap();
        assert_eq!(
            c.district.time_zone,
            DistrictZone::Named(chrono_tz::Tz::America__Los_Angeles)
        );
        let err = Config::parse("[district]\ntime_zone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(err.to_string().contains("time_zone"), "{err}");
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }

    #[test]
    fn an_impossible_setting_is_refused_with_its_name() {
        let err = Config::parse("[validation]\ngrowth_min = 3.0\ngrowth_max = 2.0\n").unwrap_err();
        assert!(err.to_string().contains("growth_max"), "{err}");
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    #[test]
    fn the_documented_example_file_spells_out_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
        let parsed = Config::load(Some(&path)).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
