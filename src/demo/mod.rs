//! The demo district: a deterministic, realistic district with planted problems.

use crate::cli::DemoArgs;
use std::path::Path;

pub fn cli_demo(_db: &Path, _args: &DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("demo: not yet built")
}
