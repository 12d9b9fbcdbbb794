//! The import engine: streams a CSV file through validation into one write transaction.
//!
//! Valid rows are written as they are read, inside the transaction, so that later rows of the same file
//! are checked against them exactly as against rows of earlier imports. The first bad row turns the
//! outcome into a rollback, but reading goes on to the end so the clerk gets every bad row at once.

use super::rows::{self, FieldError, Fields, Layout, Table};
use super::{ImportError, ImportReport, RowError};
use crate::domain::{HistoryRead, Meter, Route};
use crate::store::{DistrictTx, MeterFacts, Store, StoreError, Upserted};
use csv::ByteRecord;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Row errors kept for the report; the rest are only counted.
pub const MAX_SHOWN_ERRORS: usize = 50;
/// Suspected duplicates kept for confirmation. Past this many, the file is certainly bad and the
/// count is reported unconfirmed.
const MAX_SUSPECTS: usize = 10_000;
/// Rows between two progress callbacks.
const PROGRESS_EVERY: u64 = 8_192;

pub(crate) fn run(
    store: &mut Store,
    table: Table,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let open = || {
        File::open(path).map_err(|source| ImportError::Io {
            file: path.to_path_buf(),
            source,
        })
    };
    let file = open()?;
    let mut reader = csv_reader(file);
    let header = reader
        .byte_headers()
        .map_err(|e| csv_error(path, e))?
        .clone();
    let layout = Layout::from_header(table, &header).map_err(|errs| {
        let mut e = Errors::new(path);
        for fe in errs {
            e.push(1, fe);
        }
        e.into_error(Vec::new())
    })?;

    let mut report = ImportReport {
        table,
        file: path.to_path_buf(),
        rows: 0,
        inserted: 0,
        updated: 0,
        unchanged: 0,
        routes_created: 0,
    };
    let mut errors = Errors::new(path);
    let mut keys = KeySet::default();
    // Reading the file happens inside the write closure, so a rejected file rolls back with `Err`.
    let outcome = store.write(|tx| -> Result<(), ImportError> {
        let d = DistrictTx::new(tx);
        let mut checker = Checker::new(&d);
        let mut record = ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // A malformed record (broken quoting) or an IO failure: the reader cannot resync.
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    if e.is_io_error() {
                        return Err(csv_error(path, e));
                    }
                    errors.push(
                        line,
                        FieldError {
                            column: "*",
                            reason: format!("unreadable CSV record: {e}"),
                        },
                    );
                    break;
                }
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                continue; // blank line (trailing newline, spreadsheet padding)
            }
            report.rows += 1;
            if report.rows.is_multiple_of(PROGRESS_EVERY) {
                progress(record.position().map(|p| p.byte()).unwrap_or(0));
            }
            let result = checker.row(table, &layout, &record, line, &mut keys, &mut report);
            match result {
                Ok(Upserted::Inserted) => report.inserted += 1,
                Ok(Upserted::Updated) => report.updated += 1,
                Ok(Upserted::Unchanged) => report.unchanged += 1,
                Err(RowFailure::Fields(fes)) => {
                    for fe in fes {
                        errors.push(line, fe);
                    }
                }
                Err(RowFailure::Store(e)) => return Err(ImportError::Store(e)),
            }
        }
        let duplicates = keys.confirm(table, &layout, open()?, path)?;
        // Suspects past the cap were not kept; a file with that many repeats is rejected unconfirmed.
        errors.total += keys.unconfirmed;
        if errors.total > 0 || !duplicates.is_empty() {
            return Err(errors.into_error(duplicates));
        }
        // Rows the import changed lost their judging basis (triggers): written again for the open
        // cycles, in the same transaction.
        crate::cycles::prepare_judging_for_open_cycles(tx)?;
        Ok(())
    });
    outcome?;
    if let Ok(meta) = std::fs::metadata(path) {
        progress(meta.len());
    }
    Ok(report)
}

fn csv_reader(file: File) -> csv::Reader<BufReader<File>> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        // A short record is reported column by column ("is empty") rather than as one CSV error.
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, file))
}

fn csv_error(path: &Path, e: csv::Error) -> ImportError {
    ImportError::Csv {
        file: path.to_path_buf(),
        line: e.position().map(|p| p.line()).unwrap_or(0),
        message: e.to_string(),
    }
}

enum RowFailure {
    Fields(Vec<FieldError>),
    Store(StoreError),
}

impl From<StoreError> for RowFailure {
    fn from(e: StoreError) -> Self {
        // A constraint the checks above did not foresee still belongs to this row: SQLite rolls back
        // just the failed statement, so the import can go on collecting errors.
        if let StoreError::Sql(rusqlite::Error::SqliteFailure(f, msg)) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation {
                let detail = msg.clone().unwrap_or_else(|| f.to_string());
                return RowFailure::Fields(vec![FieldError {
                    column: "*",
                    reason: format!("rejected by the database: {detail}"),
                }]);
            }
        }
        RowFailure::Store(e)
    }
}

fn bad(column: &'static str, reason: String) -> RowFailure {
    RowFailure::Fields(vec![FieldError { column, reason }])
}

/// Validates rows against the database (including rows of this file already written) and writes them.
struct Checker<'d, 'tx> {
    d: &'d DistrictTx<'tx>,
    // History files come grouped by account, so remembering the last lookup saves most queries
    // while keeping memory constant.
    last_account: Option<(String, bool)>,
    last_meter: Option<(String, Option<MeterFacts>)>,
    /// Route names given by this accounts file, with the line that first gave each (routes are few).
    route_names: HashMap<String, (String, u64)>,
}

impl<'d, 'tx> Checker<'d, 'tx> {
    fn new(d: &'d DistrictTx<'tx>) -> Self {
        Checker {
            d,
            last_account: None,
            last_meter: None,
            route_names: HashMap::new(),
        }
    }

    fn account_exists(&mut self, id: &str) -> Result<bool, StoreError> {
        if let Some((last, exists)) = &self.last_account {
            if last == id {
                return Ok(*exists);
            }
        }
        let exists = self.d.account_exists(id)?;
        self.last_account = Some((id.to_string(), exists));
        Ok(exists)
    }

    fn meter(&mut self, id: &str) -> Result<Option<&MeterFacts>, StoreError> {
        let hit = matches!(&self.last_meter, Some((last, _)) if last == id);
        if !hit {
            let facts = self.d.meter_facts(id)?;
            self.last_meter = Some((id.to_string(), facts));
        }
        Ok(self.last_meter.as_ref().and_then(|(_, f)| f.as_ref()))
    }

    fn row(
        &mut self,
        table: Table,
        layout: &Layout,
        record: &ByteRecord,
        line: u64,
        keys: &mut KeySet,
        report: &mut ImportReport,
    ) -> Result<Upserted, RowFailure> {
        let fields = Fields::new(layout, record);
        match table {
            Table::Accounts => {
                let row = rows::parse_account(fields).map_err(RowFailure::Fields)?;
                let a = &row.account;
                keys.check(line, &a.id, || a.id.clone(), "account_id");
                let created = match &row.route_name {
                    Some(name) => {
                        self.check_route_name(&a.route_id, name, line)?;
                        let route = Route {
                            id: a.route_id.clone(),
                            name: name.clone(),
                        };
                        self.d.upsert_route(&route)? == Upserted::Inserted
                    }
                    None => self.d.ensure_route(&a.route_id)?,
                };
                if created {
                    report.routes_created += 1;
                }
                let out = self.d.upsert_account(a)?;
                if self
                    .last_account
                    .as_ref()
                    .is_some_and(|(id, _)| *id == a.id)
                {
                    self.last_account = None;
                }
                Ok(out)
            }
            Table::Meters => {
                let m = rows::parse_meter(fields).map_err(RowFailure::Fields)?;
                keys.check(line, &m.id, || m.id.clone(), "meter_id");
                self.check_meter(&m)?;
                let out = self.d.upsert_meter(&m)?;
                if self.last_meter.as_ref().is_some_and(|(id, _)| *id == m.id) {
                    self.last_meter = None;
                }
                Ok(out)
            }
            Table::History => {
                let h = rows::parse_history(fields).map_err(RowFailure::Fields)?;
                keys.check(
                    line,
                    &(&h.account_id, &h.meter_id, h.read_on, h.kind),
                    || history_key(&h),
                    "read_on",
                );
                self.check_history(&h)?;
                Ok(self.d.upsert_history(&h)?)
            }
            Table::Codes => {
                let c = rows::parse_code(fields).map_err(RowFailure::Fields)?;
                keys.check(line, &c.code, || c.code.clone(), "code");
                Ok(self.d.upsert_code(&c)?)
            }
        }
    }

    /// One file names a route one way: two names for one route id is a mistake, not a rename.
    fn check_route_name(
        &mut self,
        route_id: &str,
        name: &str,
        line: u64,
    ) -> Result<(), RowFailure> {
        match self.route_names.get(route_id) {
            Some((first, at)) if first != name => Err(bad(
                "route_name",
                format!("route {route_id} is named `{first}` on line {at}, `{name}` here"),
            )),
            Some(_) => Ok(()),
            None => {
                self.route_names
                    .insert(route_id.to_string(), (name.to_string(), line));
                Ok(())
            }
        }
    }

    fn check_meter(&mut self, m: &Meter) -> Result<(), RowFailure> {
        if let Some(account) = &m.account_id {
            if !self.account_exists(account)? {
                return Err(bad("account_id", format!("unknown account `{account}`")));
            }
        }
        Ok(())
    }

    fn check_history(&mut self, h: &HistoryRead) -> Result<(), RowFailure> {
        let mut errs = Vec::new();
        if !self.account_exists(&h.account_id)? {
            errs.push(FieldError {
                column: "account_id",
                reason: format!("unknown account `{}`", h.account_id),
            });
        }
        let d = self.d;
        let Some(meter) = self.meter(&h.meter_id)? else {
            errs.push(FieldError {
                column: "meter_id",
                reason: format!("unknown meter `{}`", h.meter_id),
            });
            return Err(RowFailure::Fields(errs));
        };
        if !meter.register.fits(h.reading) {
            errs.push(FieldError {
                column: "reading",
                reason: format!(
                    "{} has more digits than meter {}'s {} dials",
                    h.reading, h.meter_id, meter.register.dials
                ),
            });
        }
        if errs.is_empty() {
            if let Some(reason) = never_served(d, h, meter)? {
                errs.push(FieldError {
                    column: "meter_id",
                    reason,
                });
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(RowFailure::Fields(errs))
        }
    }
}

/// Why the meter cannot have served the account on the read date, if the records say so.
///
/// The meters table holds only a meter's current placement (or, for a meter removed from service,
/// possibly the account it was last installed at), so the evidence is: the meter is at this account
/// now, or was until its removal on or after the read; or the history (earlier imports, or earlier
/// rows of this file) already links the two; or the read predates the meter's current installation
/// elsewhere, or is no later than its removal into inventory. A meter never installed anywhere served
/// no account.
fn never_served(
    d: &DistrictTx<'_>,
    h: &HistoryRead,
    meter: &MeterFacts,
) -> Result<Option<String>, StoreError> {
    if meter.account_id.as_deref() == Some(h.account_id.as_str()) {
        return Ok(match meter.removed_on {
            Some(on) if h.read_on > on => Some(format!(
                "meter {} was removed from account {} on {on}, before this read",
                h.meter_id, h.account_id
            )),
            _ => None,
        });
    }
    let before_current_placement = match (&meter.account_id, meter.installed_on, meter.removed_on) {
        (Some(_), Some(installed), _) => h.read_on <= installed,
        (None, _, Some(removed)) => h.read_on <= removed,
        _ => false,
    };
    if before_current_placement || d.history_links(&h.account_id, &h.meter_id)? {
        return Ok(None);
    }
    let (m, a) = (&h.meter_id, &h.account_id);
    Ok(Some(
        match (&meter.account_id, meter.installed_on, meter.removed_on) {
            (Some(other), Some(on), _) => format!(
                "meter {m} is at account {other} since {on}, and no history puts it at account {a}"
            ),
            (Some(other), None, _) => {
                format!("meter {m} is at account {other}, and no history puts it at account {a}")
            }
            (None, _, Some(on)) => format!(
            "meter {m} was removed on {on}, before this read, and no history puts it at account {a}"
        ),
            (None, _, None) => {
                format!("meter {m} has never been installed (no account, no removal date)")
            }
        },
    ))
}

/// Detects a key repeated within one file in constant memory per row: a set of 64-bit hashes.
/// A hash seen twice makes the row a suspect; suspects are confirmed (and their first line found)
/// by a second pass over the file, so a hash collision never rejects a good file.
#[derive(Default)]
struct KeySet {
    seen: HashSet<u64>,
    suspects: Vec<Suspect>,
    unconfirmed: u64,
}

struct Suspect {
    line: u64,
    key: String,
    column: &'static str,
}

/// The text a suspected duplicate history row is confirmed by (dates and kinds normalised).
fn history_key(h: &HistoryRead) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        h.account_id, h.meter_id, h.read_on, h.kind
    )
}

fn key_hash(key: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl KeySet {
    /// Records `key`; `text` (its exact, normalised spelling) is only built when the hash was seen.
    fn check(
        &mut self,
        line: u64,
        key: &impl Hash,
        text: impl FnOnce() -> String,
        column: &'static str,
    ) {
        if self.seen.insert(key_hash(key)) {
            return;
        }
        if self.suspects.len() < MAX_SUSPECTS {
            self.suspects.push(Suspect {
                line,
                key: text(),
                column,
            });
        } else {
            self.unconfirmed += 1;
        }
    }

    /// Re-reads the file and returns the confirmed duplicates as row errors, in line order.
    fn confirm(
        &mut self,
        table: Table,
        layout: &Layout,
        file: File,
        path: &Path,
    ) -> Result<Vec<RowError>, ImportError> {
        if self.suspects.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, s) in self.suspects.iter().enumerate() {
            by_key.entry(s.key.as_str()).or_default().push(i);
        }
        let mut first: Vec<Option<u64>> = vec![None; self.suspects.len()];
        let mut reader = csv_reader(file);
        let mut record = ByteRecord::new();
        while reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(path, e))?
        {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let Some(key) = record_key(table, layout, &record) else {
                continue;
            };
            if let Some(idxs) = by_key.get(key.as_str()) {
                for &i in idxs {
                    if first[i].is_none() && line < self.suspects[i].line {
                        first[i] = Some(line);
                    }
                }
            }
        }
        let out: Vec<RowError> = self
            .suspects
            .iter()
            .zip(first)
            .filter_map(|(s, first)| {
                first.map(|f| RowError {
                    file: path.to_path_buf(),
                    line: s.line,
                    column: s.column.to_string(),
                    reason: format!("duplicate key: the same row key is on line {f}"),
                })
            })
            .collect();
        Ok(out)
    }
}

/// The normalised key of a record, as [`Checker::row`] hashed it.
fn record_key(table: Table, layout: &Layout, record: &ByteRecord) -> Option<String> {
    let f = Fields::new(layout, record);
    Some(match table {
        Table::Accounts => rows::parse_account(f).ok()?.account.id,
        Table::Meters => rows::parse_meter(f).ok()?.id,
        Table::History => history_key(&rows::parse_history(f).ok()?),
        Table::Codes => rows::parse_code(f).ok()?.code,
    })
}

/// Row errors of one file: the first [`MAX_SHOWN_ERRORS`] kept, all counted.
struct Errors {
    file: PathBuf,
    shown: Vec<RowError>,
    total: u64,
}

impl Errors {
    fn new(path: &Path) -> Self {
        Errors {
            file: path.to_path_buf(),
            shown: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, line: u64, e: FieldError) {
        self.total += 1;
        if self.shown.len() < MAX_SHOWN_ERRORS {
            self.shown.push(RowError {
                file: self.file.clone(),
                line,
                column: e.column.to_string(),
                reason: e.reason,
            });
        }
    }

    fn into_error(self, duplicates: Vec<RowError>) -> ImportError {
        let total = self.total + duplicates.len() as u64;
        let mut all = self.shown;
        all.extend(duplicates);
        // Stable: errors of one line keep their column order.
        all.sort_by_key(|e| e.line);
        all.truncate(MAX_SHOWN_ERRORS);
        let more = total - all.len() as u64;
        ImportError::Rejected {
            file: self.file,
            errors: all,
            more,
        }
    }
}
