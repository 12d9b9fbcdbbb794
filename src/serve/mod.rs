//! `meter-gateway serve`: the daemon. One process: the HTTP API (device API, billing export), the clerk
//! pages, and one listener per serial dock, over one database writer ([`crate::store::Db`]).

use crate::cli::{DeviceAction, ServeArgs, UserAction};
use crate::config::Config;
use crate::store::Db;
use std::path::Path;
use std::sync::Arc;

/// Everything a request handler or a dock needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
}

pub fn cli_serve(_db: &Path, _config: Config, _args: &ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve: not yet built")
}

pub fn cli_device(_db: &Path, _action: &DeviceAction) -> anyhow::Result<()> {
    anyhow::bail!("device: not yet built")
}

pub fn cli_assign(_db: &Path, _cycle: &str, _route: &str, _device: &str) -> anyhow::Result<()> {
    anyhow::bail!("assign: not yet built")
}

pub fn cli_user(_db: &Path, _action: &UserAction) -> anyhow::Result<()> {
    anyhow::bail!("user: not yet built")
}

/// `[serve]` settings.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {}
