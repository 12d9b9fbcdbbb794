//! The sync engine: what happens when a handheld docks, shared by the serial and HTTP transports.

/// `[docks]` settings.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DockConfig {}
