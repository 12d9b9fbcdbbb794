//! CIS files in and out: CSV imports (one transaction per file) and exports in the same formats.

use crate::cli::{ExportWhat, ImportWhat};
use std::path::Path;

pub fn cli_import(_db: &Path, _what: &ImportWhat) -> anyhow::Result<()> {
    anyhow::bail!("import: not yet built")
}

pub fn cli_export(_db: &Path, _what: ExportWhat, _file: &Path) -> anyhow::Result<()> {
    anyhow::bail!("export: not yet built")
}
