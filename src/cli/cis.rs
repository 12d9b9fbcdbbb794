//! `meter-gateway import accounts|meters|history|codes` and `export` of the same tables.

use super::{bad_input, say, ImportWhat};
use crate::cis::{export as export_table, import_file, Table};
use crate::store::Store;
use anyhow::Context;
use std::io::IsTerminal;
use std::path::Path;

/// `meter-gateway import accounts|meters|history|codes FILE`.
pub fn import(db: &Path, what: &ImportWhat) -> anyhow::Result<()> {
    let (table, file) = match what {
        ImportWhat::Accounts { file } => (Table::Accounts, file),
        ImportWhat::Meters { file } => (Table::Meters, file),
        ImportWhat::History { file } => (Table::History, file),
        ImportWhat::Codes { file } => (Table::Codes, file),
        ImportWhat::Reads { .. } => anyhow::bail!(
            "import reads is handled by the cycles module, not the CIS importer (internal routing error)"
        ),
    };
    let mut store = Store::open(db)?;
    let bar = progress_bar(file);
    let mut progress = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.set_position(bytes);
        }
    };
    let result = import_file(&mut store, table, file, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    say!("{report}");
    Ok(())
}

/// A byte-based progress bar on stderr, only when a person is watching it.
fn progress_bar(file: &Path) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(file).ok()?.len();
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .ok()?
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(format!("importing {}", file.display()));
    Some(bar)
}

/// `meter-gateway export accounts|meters|history|codes FILE`.
pub fn export(db: &Path, table: Table, file: &Path) -> anyhow::Result<()> {
    // Opening would create an empty database and export only a header: almost surely a wrong --db.
    if !db.exists() {
        return Err(bad_input(anyhow::anyhow!(
            "database {} does not exist (check --db or METER_GATEWAY_DB)",
            db.display()
        )));
    }
    let store = Store::open(db)?;
    let report = export_table(&store, table, file).with_context(|| format!("exporting {table}"))?;
    say!(
        "{}: {} rows written to {}",
        report.table,
        report.rows,
        report.file.display()
    );
    Ok(())
}
