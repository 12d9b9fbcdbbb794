//! Exports: the same CSV formats the import reads, rows in primary-key order so that exporting the same
//! database twice gives the same bytes.

use super::rows::{self, Table};
use super::{ExportError, ExportReport};
use crate::store::Store;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub(crate) fn run(store: &Store, table: Table, path: &Path) -> Result<ExportReport, ExportError> {
    // Written beside the target and renamed into place, so a failed export never leaves half a file
    // where the CIS will look for a whole one.
    let partial = partial_path(path);
    let result = write(store, table, &partial);
    match result {
        Ok(rows) => {
            std::fs::rename(&partial, path).map_err(|source| ExportError::Io {
                file: path.to_path_buf(),
                source,
            })?;
            Ok(ExportReport {
                table,
                file: path.to_path_buf(),
                rows,
            })
        }
        Err(e) => {
            // Best effort: the export already failed, and the error says why.
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

fn write(store: &Store, table: Table, partial: &Path) -> Result<u64, ExportError> {
    let io = |source| ExportError::Io {
        file: partial.to_path_buf(),
        source,
    };
    let csv_err = |e: csv::Error| ExportError::Csv {
        file: partial.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::create(partial).map_err(io)?;
    // Cells that a spreadsheet would take for a formula are marked (`crate::csv_out`); the import
    // takes the mark away again.
    let mut w = crate::csv_out::Writer::from_writer(BufWriter::with_capacity(1 << 16, file));
    w.write_record(rows::header(table)).map_err(csv_err)?;
    let mut n = 0u64;
    let mut put =
        |w: &mut crate::csv_out::Writer<_>, record: Vec<String>| -> Result<(), ExportError> {
            n += 1;
            w.write_record(&record).map_err(csv_err)
        };
    match table {
        Table::Accounts => {
            let names: HashMap<String, String> = store
                .routes()?
                .into_iter()
                .map(|r| (r.id, r.name))
                .collect();
            store.for_each_account(|a| {
                let name = names.get(&a.route_id).map(String::as_str).unwrap_or("");
                put(&mut w, rows::account_record(&a, name))
            })?
        }
        Table::Meters => store.for_each_meter(|m| put(&mut w, rows::meter_record(&m)))?,
        Table::History => store.for_each_history(|h| put(&mut w, rows::history_record(&h)))?,
        Table::Codes => {
            for c in store.codes(true)? {
                put(&mut w, rows::code_record(&c))?;
            }
        }
    }
    w.flush().map_err(io)?;
    let buf = w
        .into_inner()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(n)
}

impl From<crate::store::StoreError> for ExportError {
    fn from(e: crate::store::StoreError) -> Self {
        ExportError::Store(e)
    }
}
