//! Read cycles over the store: open a cycle, ingest field reads through validation, route files.

use crate::cli::{CycleAction, ReadsArgs, RouteArgs};
use crate::config::Config;
use std::path::Path;

pub fn cli_cycle(_db: &Path, _config: &Config, _action: &CycleAction) -> anyhow::Result<()> {
    anyhow::bail!("cycle: not yet built")
}

pub fn cli_import_reads(
    _db: &Path,
    _config: &Config,
    _cycle: &str,
    _file: &Path,
) -> anyhow::Result<()> {
    anyhow::bail!("import reads: not yet built")
}

pub fn cli_reads(_db: &Path, _args: &ReadsArgs) -> anyhow::Result<()> {
    anyhow::bail!("reads: not yet built")
}

pub fn cli_route(_db: &Path, _config: &Config, _args: &RouteArgs) -> anyhow::Result<()> {
    anyhow::bail!("route: not yet built")
}
