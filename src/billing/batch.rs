//! The billing batch: what a closed cycle hands to the billing core, one record per account.
//!
//! A batch version is written once, at close, and never changes: its canonical body (one JSON object
//! per line, records by account id, then the held accounts) is stored with its SHA-256, so every
//! export of a version gives the same bytes, and [`open_batch`] verifies the body before handing it
//! out. The header carries the schema version, the cycle, the batch version, counts, totals and the
//! checksum; the close time is part of the batch, the export time is not.

use super::BillingError;
use crate::store::billing as sql;
use crate::store::Store;
use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;

/// Version of the batch layout (header, record and line fields). A billing core refuses a schema it
/// does not know; fields are only ever added with a new version.
pub const BATCH_SCHEMA_VERSION: u32 = 1;

/// How the current reading of a meter line came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineReadType {
    /// Read at the meter and validated.
    Actual,
    /// Out of range, re-keyed and confirmed by the reader at the meter.
    Confirmed,
    /// Corrected by a clerk (the reading replaced an earlier one).
    Edited,
    /// Estimated (missing at close, or by a clerk).
    Estimated,
    /// The last reading of a meter pulled during the period (meter change, closed account).
    Final,
}

impl LineReadType {
    pub fn as_str(self) -> &'static str {
        match self {
            LineReadType::Actual => "actual",
            LineReadType::Confirmed => "confirmed",
            LineReadType::Edited => "edited",
            LineReadType::Estimated => "estimated",
            LineReadType::Final => "final",
        }
    }
}

/// One meter's movement over the account's period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterLine {
    pub meter_id: String,
    pub dials: u8,
    pub multiplier: u32,
    /// The billing unit of `consumption` (`hcf`, `cf`, `gal`, `kgal`, `m3`).
    pub unit: String,
    pub previous_reading: u64,
    pub previous_read_on: NaiveDate,
    /// `actual`, `estimated`, `initial` (a newly set meter) or `final`.
    pub previous_kind: String,
    pub current_reading: u64,
    pub current_read_on: NaiveDate,
    pub read_type: LineReadType,
    /// The field read the current reading comes from (`None` for a history `final`).
    pub read_id: Option<i64>,
    /// The register wrapped through zero between the two readings.
    pub rollover: bool,
    /// Register units × multiplier, in `unit`.
    pub consumption: u64,
    /// `consumption` in HCF: exact for hcf and cf, rounded to 0.01 HCF for the other units.
    pub consumption_hcf: Decimal,
    /// IEC 61968-9 reading qualities of the current reading.
    pub quality: Vec<String>,
}

/// An adjustment as the batch carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentLine {
    pub adjustment_id: i64,
    /// `leak_credit` or `other`.
    pub kind: String,
    /// Money; negative is a credit.
    pub amount: Decimal,
    pub units: Option<Decimal>,
    pub read_id: Option<i64>,
    pub note: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

/// One account's billing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRecord {
    pub account_id: String,
    pub account_status: String,
    pub rate_class: String,
    pub route_id: String,
    /// The last billed reading's date (or the new service's initial reading).
    pub period_from: NaiveDate,
    /// The latest current reading's date.
    pub period_to: NaiveDate,
    pub days: i64,
    /// The weakest read type among the account's current readings: `estimated` over `edited` over
    /// `confirmed` over `actual`.
    pub read_type: LineReadType,
    /// Pulled meters first (by date), then the meters in service (by id).
    pub meters: Vec<MeterLine>,
    /// Σ `meters[].consumption_hcf`.
    pub consumption_hcf: Decimal,
    pub adjustments: Vec<AdjustmentLine>,
    /// Σ `adjustments[].amount`.
    pub adjustments_total: Decimal,
    /// Always `false` in a record: held accounts are listed apart ([`HeldAccount`]), never billed.
    pub held: bool,
}

/// Why an account was held out of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldSource {
    /// A clerk held a read of the account in review.
    Clerk,
    /// Named with `cycle close --hold`.
    Close,
}

/// An account held out of this batch version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAccount {
    pub account_id: String,
    pub source: HoldSource,
    /// The held or still-flagged reads of the account.
    pub read_ids: Vec<i64>,
    /// Exception flags on those reads.
    pub flags: Vec<String>,
    /// The account's adjustments this cycle (leak credits...), not billed in this version: they
    /// come with the version that releases the hold.
    pub pending_adjustment_ids: Vec<i64>,
    pub pending_adjustments_total: Decimal,
}

/// The batch's header: identity, counts, totals and the body's checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub schema_version: u32,
    pub cycle_id: String,
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    pub batch_version: u32,
    pub closed_at: NaiveDateTime,
    pub closed_by: String,
    pub record_count: u64,
    pub meter_line_count: u64,
    pub held_count: u64,
    /// Σ meter-line consumption per billing unit (exact integers).
    pub consumption_by_unit: BTreeMap<String, u64>,
    /// Σ records' `consumption_hcf`.
    pub consumption_hcf: Decimal,
    /// Σ records' `adjustments_total`.
    pub adjustments_total: Decimal,
    /// Lowercase hex SHA-256 of the canonical body (the record and held lines, not the header).
    pub checksum: String,
}

/// One line of the canonical body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BodyLine {
    Record(BillingRecord),
    Held(HeldAccount),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HeaderLine {
    Header(BatchHeader),
}

/// A batch version, verified against its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    header: BatchHeader,
    records: Vec<BillingRecord>,
    held: Vec<HeldAccount>,
    body: String,
}

impl Batch {
    /// Builds a batch from its parts: sorts them into canonical order, computes totals and checksum.
    pub(crate) fn build(
        cycle_id: &str,
        window: (NaiveDate, NaiveDate),
        batch_version: u32,
        closed_at: NaiveDateTime,
        closed_by: &str,
        mut records: Vec<BillingRecord>,
        mut held: Vec<HeldAccount>,
    ) -> Result<Batch, BillingError> {
        records.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        held.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        let body = canonical_body(&records, &held)?;
        let mut by_unit: BTreeMap<String, u64> = BTreeMap::new();
        let mut lines = 0u64;
        for l in records.iter().flat_map(|r| &r.meters) {
            *by_unit.entry(l.unit.clone()).or_default() += l.consumption;
            lines += 1;
        }
        let header = BatchHeader {
            schema_version: BATCH_SCHEMA_VERSION,
            cycle_id: cycle_id.to_string(),
            window_from: window.0,
            window_to: window.1,
            batch_version,
            closed_at,
            closed_by: closed_by.to_string(),
            record_count: records.len() as u64,
            meter_line_count: lines,
            held_count: held.len() as u64,
            consumption_by_unit: by_unit,
            consumption_hcf: records.iter().map(|r| r.consumption_hcf).sum(),
            adjustments_total: records.iter().map(|r| r.adjustments_total).sum(),
            checksum: crate::auth::sha256_hex(body.as_bytes()),
        };
        Ok(Batch {
            header,
            records,
            held,
            body,
        })
    }

    /// Rebuilds a stored batch and checks the body against the header's checksum and counts.
    pub(crate) fn from_stored(header_json: &str, body: String) -> Result<Batch, BillingError> {
        let HeaderLine::Header(header) =
            serde_json::from_str(header_json).map_err(|e| BillingError::Corrupt {
                what: "header".into(),
                reason: e.to_string(),
            })?;
        let corrupt = |reason: String| BillingError::Corrupt {
            what: format!("cycle {} batch {}", header.cycle_id, header.batch_version),
            reason,
        };
        let found = crate::auth::sha256_hex(body.as_bytes());
        if found != header.checksum {
            return Err(corrupt(format!(
                "body checksum {found} differs from the header's {}",
                header.checksum
            )));
        }
        if header.schema_version != BATCH_SCHEMA_VERSION {
            return Err(BillingError::Schema {
                found: header.schema_version,
                supported: BATCH_SCHEMA_VERSION,
            });
        }
        let mut records = Vec::with_capacity(header.record_count as usize);
        let mut held = Vec::new();
        for (i, line) in body.lines().enumerate() {
            match serde_json::from_str(line)
                .map_err(|e| corrupt(format!("body line {}: {e}", i + 1)))?
            {
                BodyLine::Record(r) => records.push(r),
                BodyLine::Held(h) => held.push(h),
            }
        }
        if records.len() as u64 != header.record_count || held.len() as u64 != header.held_count {
            return Err(corrupt(format!(
                "{} records and {} held accounts, header says {} and {}",
                records.len(),
                held.len(),
                header.record_count,
                header.held_count
            )));
        }
        Ok(Batch {
            header,
            records,
            held,
            body,
        })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The billable records, by account id.
    pub fn records(&self) -> impl Iterator<Item = &BillingRecord> {
        self.records.iter()
    }

    /// Accounts held out of this version, by account id.
    pub fn held(&self) -> &[HeldAccount] {
        &self.held
    }

    /// The canonical body the checksum covers.
    pub fn canonical_body(&self) -> &str {
        &self.body
    }

    pub(crate) fn header_json(&self) -> Result<String, BillingError> {
        serde_json::to_string(&HeaderLine::Header(self.header.clone())).map_err(BillingError::from)
    }

    /// JSON lines: the header (`"type":"header"`), then one line per record (`"type":"record"`), then
    /// one per held account (`"type":"held"`).
    pub fn write_jsonl(&self, mut out: impl Write) -> Result<(), BillingError> {
        out.write_all(self.header_json()?.as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(self.body.as_bytes())?;
        Ok(())
    }

    /// CSV with a header row; one row per line of the batch, its kind in `record_type`: one `batch` row
    /// (totals; `note` holds the schema, close time and checksum), a `meter` row per meter line (the
    /// account's fields repeated), an `adjustment` row per adjustment, a `held` row per held account.
    pub fn write_csv(&self, out: impl Write) -> Result<(), BillingError> {
        // For people: cells a spreadsheet would take for a formula are marked (`crate::csv_out`).
        let mut w = crate::csv_out::Writer::from_writer(out);
        let h = &self.header;
        // The header row is the first row's field names (`BatchCsvRow`).
        w.serialize(BatchCsvRow {
            period_from: h.window_from.to_string(),
            period_to: h.window_to.to_string(),
            consumption_hcf: h.consumption_hcf.to_string(),
            amount: h.adjustments_total.to_string(),
            note: format!(
                "schema_version={} closed_at={} closed_by={} records={} meter_lines={} held={} consumption_by_unit={} checksum={}",
                h.schema_version,
                h.closed_at.format("%Y-%m-%dT%H:%M:%S"),
                h.closed_by,
                h.record_count,
                h.meter_line_count,
                h.held_count,
                h.consumption_by_unit
                    .iter()
                    .map(|(u, n)| format!("{u}:{n}"))
                    .collect::<Vec<_>>()
                    .join(";"),
                h.checksum
            ),
            ..BatchCsvRow::new("batch", h)
        })?;
        for r in &self.records {
            let account = |kind: &'static str| BatchCsvRow {
                account_id: r.account_id.clone(),
                account_status: r.account_status.clone(),
                rate_class: r.rate_class.clone(),
                route_id: r.route_id.clone(),
                period_from: r.period_from.to_string(),
                period_to: r.period_to.to_string(),
                days: r.days.to_string(),
                ..BatchCsvRow::new(kind, h)
            };
            for l in &r.meters {
                w.serialize(BatchCsvRow {
                    meter_id: l.meter_id.clone(),
                    dials: l.dials.to_string(),
                    multiplier: l.multiplier.to_string(),
                    unit: l.unit.clone(),
                    previous_reading: l.previous_reading.to_string(),
                    previous_read_on: l.previous_read_on.to_string(),
                    previous_kind: l.previous_kind.clone(),
                    current_reading: l.current_reading.to_string(),
                    current_read_on: l.current_read_on.to_string(),
                    read_type: l.read_type.as_str().to_string(),
                    read_id: l.read_id.map(|i| i.to_string()).unwrap_or_default(),
                    rollover: if l.rollover { "1" } else { "0" }.to_string(),
                    consumption: l.consumption.to_string(),
                    consumption_hcf: l.consumption_hcf.to_string(),
                    quality: l.quality.join(";"),
                    ..account("meter")
                })?;
            }
            for a in &r.adjustments {
                w.serialize(BatchCsvRow {
                    adjustment_id: a.adjustment_id.to_string(),
                    adjustment_kind: a.kind.clone(),
                    amount: a.amount.to_string(),
                    units: a.units.map(|u| u.to_string()).unwrap_or_default(),
                    read_id: a.read_id.map(|i| i.to_string()).unwrap_or_default(),
                    note: a.note.clone(),
                    ..account("adjustment")
                })?;
            }
        }
        for held in &self.held {
            w.serialize(BatchCsvRow {
                account_id: held.account_id.clone(),
                note: format!(
                    "source={} reads={} flags={} pending_adjustments={}",
                    match held.source {
                        HoldSource::Clerk => "clerk",
                        HoldSource::Close => "close",
                    },
                    held.read_ids
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(";"),
                    held.flags.join(";"),
                    held.pending_adjustments_total
                ),
                ..BatchCsvRow::new("held", h)
            })?;
        }
        w.flush()?;
        Ok(())
    }
}

/// One row of the batch CSV ([`Batch::write_csv`]), its fields the columns in order: the header row
/// is their names, so the writer and [`read_csv`] cannot disagree on a column's name. Cells as
/// written (before `csv_out`'s marking of formula-like cells); a field a row's kind does not use is
/// empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchCsvRow {
    /// `batch`, `meter`, `adjustment` or `held`.
    pub record_type: String,
    pub cycle_id: String,
    pub batch_version: String,
    pub account_id: String,
    pub account_status: String,
    pub rate_class: String,
    pub route_id: String,
    pub period_from: String,
    pub period_to: String,
    pub days: String,
    pub meter_id: String,
    pub dials: String,
    pub multiplier: String,
    pub unit: String,
    pub previous_reading: String,
    pub previous_read_on: String,
    pub previous_kind: String,
    pub current_reading: String,
    pub current_read_on: String,
    pub read_type: String,
    pub read_id: String,
    pub rollover: String,
    pub consumption: String,
    pub consumption_hcf: String,
    pub quality: String,
    pub adjustment_id: String,
    pub adjustment_kind: String,
    pub amount: String,
    pub units: String,
    pub note: String,
}

impl BatchCsvRow {
    fn new(kind: &str, h: &BatchHeader) -> BatchCsvRow {
        BatchCsvRow {
            record_type: kind.to_string(),
            cycle_id: h.cycle_id.clone(),
            batch_version: h.batch_version.to_string(),
            ..BatchCsvRow::default()
        }
    }

    /// The columns, in order: the fields' names as the CSV header row writes them.
    pub fn columns() -> Vec<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        // A row of plain strings always serializes.
        let _ = w.serialize(BatchCsvRow::default());
        let bytes = w.into_inner().unwrap_or_default();
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        r.headers()
            .map(|h| h.iter().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// Reads a batch CSV as [`Batch::write_csv`] wrote it, each cell restored (`csv_out::restore`). A
/// header row that is not exactly the batch's columns (one unknown, misspelt or missing, or out of
/// order) is refused, naming the column.
pub fn read_csv(input: impl std::io::Read) -> Result<Vec<BatchCsvRow>, BillingError> {
    let mut r = csv::Reader::from_reader(input);
    let bad = |reason: String| BillingError::BadCsv(reason);
    let headers = r.headers().map_err(|e| bad(e.to_string()))?.clone();
    let expected = BatchCsvRow::columns();
    if let Some(unknown) = headers.iter().find(|h| !expected.iter().any(|e| e == h)) {
        return Err(bad(format!("unknown column `{unknown}`")));
    }
    if let Some(missing) = expected.iter().find(|e| !headers.iter().any(|h| h == *e)) {
        return Err(bad(format!("missing column `{missing}`")));
    }
    if !headers.iter().eq(expected.iter().map(String::as_str)) {
        return Err(bad(format!(
            "columns out of order: `{}` (expected `{}`)",
            headers.iter().collect::<Vec<_>>().join(","),
            expected.join(",")
        )));
    }
    let mut rows = Vec::new();
    for record in r.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let restored: csv::StringRecord = record.iter().map(crate::csv_out::restore).collect();
        rows.push(
            restored
                .deserialize(Some(&headers))
                .map_err(|e| bad(e.to_string()))?,
        );
    }
    Ok(rows)
}

fn canonical_body(records: &[BillingRecord], held: &[HeldAccount]) -> Result<String, BillingError> {
    let mut body = String::new();
    for r in records {
        body.push_str(&serde_json::to_string(&BodyLine::Record(r.clone()))?);
        body.push('\n');
    }
    for h in held {
        body.push_str(&serde_json::to_string(&BodyLine::Held(h.clone()))?);
        body.push('\n');
    }
    Ok(body)
}

/// Opens a closed cycle's batch: `version` (1, 2...) or the latest. Verifies the checksum.
pub fn open_batch(
    store: &Store,
    cycle_id: &str,
    version: Option<u32>,
) -> Result<Batch, BillingError> {
    open_batch_in(store.conn(), cycle_id, version)
}

/// [`open_batch`] on a connection (the daemon's writer thread, a transaction).
pub fn open_batch_in(
    conn: &rusqlite::Connection,
    cycle_id: &str,
    version: Option<u32>,
) -> Result<Batch, BillingError> {
    if sql::cycle_status(conn, cycle_id)?.is_none() {
        return Err(BillingError::UnknownCycle(cycle_id.to_string()));
    }
    let Some((header, body)) = sql::load_batch(conn, cycle_id, version)? else {
        return Err(match version {
            Some(v) => BillingError::NoSuchBatch {
                cycle_id: cycle_id.to_string(),
                version: v,
            },
            None => BillingError::NeverClosed(cycle_id.to_string()),
        });
    };
    Batch::from_stored(&header, body)
}
