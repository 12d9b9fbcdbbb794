//! Cycle close and the billing handoff: the batch a billing core consumes.

use crate::cli::BillingFormat;
use crate::config::Config;
use std::path::Path;

pub fn cli_close(_db: &Path, _config: &Config, _id: &str, _hold: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("cycle close: not yet built")
}

pub fn cli_reopen(_db: &Path, _id: &str, _reason: &str) -> anyhow::Result<()> {
    anyhow::bail!("cycle reopen: not yet built")
}

pub fn cli_export_billing(
    _db: &Path,
    _cycle: &str,
    _format: BillingFormat,
    _file: Option<&Path>,
) -> anyhow::Result<()> {
    anyhow::bail!("export billing: not yet built")
}

/// `GET /api/v1/cycles/{id}/billing` (billing role), merged into the daemon's router by `serve`.
pub fn router() -> axum::Router<crate::serve::AppState> {
    axum::Router::new()
}
