//! The reads CSV: `meter_id, read_at, reading, reader, codes, verified`, validated like a handheld
//! upload. A malformed row refuses the whole file (`FILE:LINE: column NAME: reason`); a reading that is
//! not a number is not malformed: it is a read, flagged `invalid_reading`.

use super::CycleSettings;
use super::{ingest, CycleError, Disposition, ReadOutcome, ReadTimeBounds, Result};
use crate::domain::{FieldRead, FlagKind, ReadMethod, ReadStatus, ReadType};
use crate::store::Store;
use chrono::{NaiveDate, NaiveDateTime};
use std::io::Read;
use std::path::Path;

const COLUMNS: [&str; 6] = [
    "meter_id", "read_at", "reading", "reader", "codes", "verified",
];

/// A parsed row with its line in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedRead {
    pub line: u64,
    pub read: FieldRead,
}

fn malformed(file: &str, line: u64, column: &str, reason: impl Into<String>) -> CycleError {
    CycleError::Malformed {
        file: file.to_string(),
        line,
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// Accepts `2026-11-05T10:32:00`, `2026-11-05 10:32:00`, the same without seconds, or a date alone
/// (taken as noon: a reads file from a CIS often carries only the read date).
fn parse_read_at(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(v) = NaiveDateTime::parse_from_str(t, f) {
            return Some(v);
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(12, 0, 0))
}

/// Parses a reads CSV (header row required, columns in any order). `file` names it in errors.
pub fn parse_reads_csv(file: &str, input: impl Read) -> Result<Vec<NumberedRead>> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(input);
    let headers = rdr
        .headers()
        .map_err(|e| malformed(file, 1, "(header)", e.to_string()))?
        .clone();
    let mut index = [usize::MAX; COLUMNS.len()];
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim_start_matches('\u{feff}').to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(c) if index[c] == usize::MAX => index[c] = i,
            Some(_) => return Err(malformed(file, 1, &name, "appears twice in the header")),
            None => {
                return Err(malformed(
                    file,
                    1,
                    &name,
                    format!("unknown column (expected: {})", COLUMNS.join(", ")),
                ))
            }
        }
    }
    if let Some(c) = index.iter().position(|i| *i == usize::MAX) {
        return Err(malformed(file, 1, COLUMNS[c], "missing from the header"));
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = rdr.read_record(&mut record).map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            malformed(file, line, "(row)", e.to_string())
        })?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() < headers.len() {
            let name = headers
                .get(record.len())
                .unwrap_or("(row)")
                .to_ascii_lowercase();
            return Err(malformed(
                file,
                line,
                &name,
                format!(
                    "missing (row has {} fields, the header {})",
                    record.len(),
                    headers.len()
                ),
            ));
        }
        let field = |c: usize| -> Result<&str> {
            record.get(index[c]).map(str::trim).ok_or_else(|| {
                malformed(file, line, COLUMNS[c], "missing (row has too few fields)")
            })
        };
        let meter_id = field(0)?;
        if meter_id.is_empty() {
            return Err(malformed(file, line, "meter_id", "empty"));
        }
        let read_at = parse_read_at(field(1)?).ok_or_else(|| {
            malformed(
                file,
                line,
                "read_at",
                format!(
                    "`{}` is not a date-time (expected YYYY-MM-DDTHH:MM:SS)",
                    field(1).unwrap_or_default()
                ),
            )
        })?;
        let verified = match field(5)?.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" | "" => false,
            other => {
                return Err(malformed(
                    file,
                    line,
                    "verified",
                    format!("`{other}` is not true or false"),
                ))
            }
        };
        let codes: Vec<String> = field(4)?
            .split(';')
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .collect();
        out.push(NumberedRead {
            line,
            read: FieldRead {
                meter_id: meter_id.to_string(),
                read_at,
                raw_reading: field(2)?.to_string(),
                // The file says only that the reader confirmed; ingest records which way.
                read_type: if verified {
                    ReadType::HighConfirmed
                } else {
                    ReadType::Regular
                },
                method: ReadMethod::Keyed,
                reader: field(3)?.to_string(),
                codes,
                skip_code: None,
                note: None,
                device: None,
            },
        });
    }
    Ok(out)
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportReport {
    pub rows: usize,
    pub accepted: usize,
    pub flagged: usize,
    /// Same value already in the cycle for that meter (a file imported twice).
    pub already_in: usize,
    /// `FILE:LINE: ...` notes for reads a clerk should look at first (unknown meters...).
    pub notes: Vec<String>,
    pub outcomes: Vec<ReadOutcome>,
}

impl ImportReport {
    pub fn summary(&self) -> String {
        format!(
            "{} read(s): {} accepted, {} flagged, {} already in the cycle",
            self.rows, self.accepted, self.flagged, self.already_in
        )
    }
}

/// Imports a reads CSV into `cycle_id`: parses all of it first (a malformed row writes nothing), then
/// one [`ingest`] of every row.
pub fn import_reads(
    store: &mut Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    path: &Path,
    now: NaiveDateTime,
) -> Result<ImportReport> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| CycleError::Io {
        file: name.clone(),
        source,
    })?;
    let rows = parse_reads_csv(&name, std::io::BufReader::new(file))?;
    // Read times the cycle takes (`[reads]`): one outside refuses the file, before anything is written.
    let cycle = crate::store::cycles::load_cycle(store.conn(), cycle_id)?
        .ok_or_else(|| CycleError::UnknownCycle(cycle_id.to_string()))?;
    let bounds = ReadTimeBounds::new(config.reads(), cycle.window_from, now);
    for r in &rows {
        if let Some(refused) = bounds.check(r.read.read_at, &r.read.meter_id) {
            return Err(malformed(&name, r.line, "read_at", refused.detail));
        }
    }
    let reads: Vec<FieldRead> = rows.iter().map(|r| r.read.clone()).collect();
    let outcomes = ingest(store, config, cycle_id, &reads, now)?;
    let mut report = ImportReport {
        rows: rows.len(),
        ..ImportReport::default()
    };
    for o in &outcomes {
        let line = rows.get(o.index).map(|r| r.line).unwrap_or(0);
        match &o.disposition {
            Disposition::Stored { status, flags } => {
                if *status == ReadStatus::Flagged {
                    report.flagged += 1;
                } else {
                    report.accepted += 1;
                }
                for f in flags.iter().filter(|f| f.kind == FlagKind::MeterMismatch) {
                    report.notes.push(format!(
                        "{name}:{line}: meter {}: {} (stored, flagged meter_mismatch)",
                        o.meter_id, f.explanation
                    ));
                }
            }
            Disposition::AlreadyReceived | Disposition::SameAsEarlier => report.already_in += 1,
            // Only a handheld's read repeats an earlier one (a file's reads carry no device).
            Disposition::Repeat { .. } => report.accepted += 1,
            // `ingest` refuses a batch with a refused read whole; the bounds above catch them first.
            Disposition::Refused(r) => {
                return Err(malformed(&name, line, "read_at", r.detail.clone()));
            }
        }
    }
    report.outcomes = outcomes;
    Ok(report)
}
