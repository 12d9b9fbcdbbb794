//! A cycle's reads as listing rows (CSV or JSON).

use super::*;

/// One row of `meter-gateway reads`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReadRow {
    pub account_id: String,
    pub meter_id: String,
    pub read_at: String,
    pub reading: String,
    pub consumption: Option<i64>,
    pub status: String,
    pub flags: String,
    pub quality: String,
    pub explanation: String,
}

impl ReadRow {
    pub fn from_stored(r: &StoredRead) -> ReadRow {
        let kinds: Vec<FlagKind> = r.flags.iter().map(|f| f.kind).collect();
        let explanation = if r.flags.is_empty() {
            match (&r.expected_use, &r.expected_basis) {
                (Some(e), Some(b)) => {
                    let unit = r.unit.map(|u| format!(" {u}")).unwrap_or_default();
                    format!(
                        "within expected range: expected {}{unit} ({b})",
                        vee::amount(*e)
                    )
                }
                _ => String::new(),
            }
        } else {
            r.flags
                .iter()
                .map(|f| format!("{}: {}", f.kind, f.explanation))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        ReadRow {
            account_id: r.account_id.clone().unwrap_or_default(),
            meter_id: r.meter_id.clone(),
            read_at: crate::store::cycles::time_text(r.read_at),
            reading: r.raw_reading.clone(),
            consumption: r.consumption,
            status: r.status.to_string(),
            flags: kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            quality: vee::read_quality(r.method, r.status, &kinds).join(";"),
            explanation,
        }
    }
}

/// The cycle's reads as listing rows, in arrival order.
pub fn list_reads(store: &Store, cycle_id: &str) -> Result<Vec<ReadRow>> {
    if store.cycle(cycle_id)?.is_none() {
        return Err(CycleError::UnknownCycle(cycle_id.to_string()));
    }
    Ok(store
        .cycle_reads(cycle_id)?
        .iter()
        .map(ReadRow::from_stored)
        .collect())
}

/// How [`write_reads`] writes a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadsFormat {
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Writes listing rows as CSV (with a header) or as a JSON array.
pub fn write_reads(rows: &[ReadRow], format: ReadsFormat, out: impl Write) -> anyhow::Result<()> {
    match format {
        ReadsFormat::Csv => {
            let mut w = crate::csv_out::Writer::from_writer(out);
            for r in rows {
                w.serialize(r)?;
            }
            if rows.is_empty() {
                w.write_record([
                    "account_id",
                    "meter_id",
                    "read_at",
                    "reading",
                    "consumption",
                    "status",
                    "flags",
                    "quality",
                    "explanation",
                ])?;
            }
            w.flush()?;
        }
        ReadsFormat::Json => {
            let mut out = out;
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
