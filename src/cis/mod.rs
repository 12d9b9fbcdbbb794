//! CIS files in and out: CSV imports (one transaction per file) and exports in the same formats.
//!
//! | file     | columns                                                                                    |
//! |----------|--------------------------------------------------------------------------------------------|
//! | accounts | account_id, name, service_address, status, rate_class, route_id, sequence, apn?, phone?  |
//! | meters   | meter_id, account_id (empty in inventory, or the last account with removed_on), status, dials, multiplier, unit, installed_on?, removed_on? |
//! | history  | account_id, meter_id, read_on, reading, kind                                               |
//! | codes    | code, category, description, requires_follow_up?, retired?                               |
//!
//! Columns are found by name (`?` marks optional ones); extra columns are ignored. A file is imported
//! whole or not at all: any bad row rejects it with `FILE:LINE: column NAME: reason` for every bad row.

mod export;
mod import;
mod rows;

pub use import::MAX_SHOWN_ERRORS;
pub use rows::Table;

use crate::store::{Store, StoreError};
use std::fmt;
use std::path::{Path, PathBuf};

/// What an import did. `rows` = `inserted + updated + unchanged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub table: Table,
    pub file: PathBuf,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Routes an accounts file named that did not exist yet (created, named after their id).
    pub routes_created: u64,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} rows from {}: {} inserted, {} updated, {} unchanged",
            self.table,
            self.rows,
            self.file.display(),
            self.inserted,
            self.updated,
            self.unchanged
        )?;
        if self.routes_created > 0 {
            write!(f, " ({} new routes)", self.routes_created)?;
        }
        Ok(())
    }
}

/// One bad row (or header column): `FILE:LINE: column NAME: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub file: PathBuf,
    /// 1-based line where the record starts (the header is line 1).
    pub line: u64,
    pub column: String,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: column {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", file.display())]
    Csv {
        file: PathBuf,
        line: u64,
        message: String,
    },
    /// The file has bad rows; nothing was written. `errors` holds the first [`MAX_SHOWN_ERRORS`] in
    /// line order, `more` counts the rest.
    #[error("{}", rejected_message(file, errors, *more))]
    Rejected {
        file: PathBuf,
        errors: Vec<RowError>,
        more: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        ImportError::Store(StoreError::Sql(e))
    }
}

impl ImportError {
    /// The row errors of a rejected file (empty for other failures).
    pub fn row_errors(&self) -> &[RowError] {
        match self {
            ImportError::Rejected { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn rejected_message(file: &Path, errors: &[RowError], more: u64) -> String {
    let total = errors.len() as u64 + more;
    let mut s = format!(
        "{} rejected, nothing was imported: {total} error{}",
        file.display(),
        if total == 1 { "" } else { "s" }
    );
    for e in errors {
        s.push('\n');
        s.push_str(&e.to_string());
    }
    if more > 0 {
        s.push_str(&format!("\nand {more} more"));
    }
    s
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub table: Table,
    pub file: PathBuf,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {message}", file.display())]
    Csv { file: PathBuf, message: String },
    #[error(transparent)]
    Store(StoreError),
}

/// Imports one CIS file of `table` in one transaction; `progress` is called now and then with the
/// number of bytes of the file read so far.
pub fn import_file(
    store: &mut Store,
    table: Table,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, ImportError> {
    import::run(store, table, path, progress)
}

pub fn import_accounts(store: &mut Store, path: &Path) -> Result<ImportReport, ImportError> {
    import_file(store, Table::Accounts, path, &mut |_| {})
}

pub fn import_meters(store: &mut Store, path: &Path) -> Result<ImportReport, ImportError> {
    import_file(store, Table::Meters, path, &mut |_| {})
}

pub fn import_history(store: &mut Store, path: &Path) -> Result<ImportReport, ImportError> {
    import_file(store, Table::History, path, &mut |_| {})
}

pub fn import_codes(store: &mut Store, path: &Path) -> Result<ImportReport, ImportError> {
    import_file(store, Table::Codes, path, &mut |_| {})
}

/// Writes `table` to `path` in the import format (replacing the file once it is complete).
pub fn export(store: &Store, table: Table, path: &Path) -> Result<ExportReport, ExportError> {
    export::run(store, table, path)
}
