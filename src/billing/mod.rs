//! Cycle close and the billing handoff: the batch a billing core consumes.
//!
//! - [`close_cycle`] estimates the missing reads, refuses while exceptions are open (listing them),
//!   and writes batch version 1, 2... of the cycle; [`reopen_cycle`] reopens it for corrections
//!   (audited). A closed cycle is frozen for every writer (triggers in migration 0005; new reads are refused
//!   where they are inserted, see migration 0006).
//! - [`open_batch`] hands a billing core a verified batch: [`Batch::header`] (schema version, cycle,
//!   batch version, counts, totals, checksum) and [`Batch::records`] (one per account).
//! - [`record_adjustment`] records a leak credit or another adjustment for the batch, in exact money.
//! - `meter-gateway export billing` and `GET /api/v1/cycles/{id}/billing` write the same bytes.

mod adjustments;
mod batch;
mod close;
mod http;
#[cfg(test)]
mod tests;

pub use adjustments::{
    add_adjustment, adjustments_of_account, record_adjustment, Adjustment, AdjustmentKind,
};
pub use batch::{
    open_batch, open_batch_in, AdjustmentLine, Batch, BatchHeader, BillingRecord, HeldAccount,
    HoldSource, LineReadType, MeterLine, BATCH_SCHEMA_VERSION,
};
pub use close::{
    close_cycle, close_cycle_by, reopen_cycle, CloseReport, OpenException, ReopenReport,
};
pub use http::router;

use crate::cli::BillingFormat;
use crate::config::Config;
use crate::cycles::CycleError;
use crate::store::{Store, StoreError};
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cycle(#[from] CycleError),
    #[error("no cycle `{0}`")]
    UnknownCycle(String),
    #[error("no account `{0}`")]
    UnknownAccount(String),
    #[error("cycle `{0}` is closed: reopen it first")]
    Closed(String),
    #[error("cycle `{0}` is not closed")]
    NotClosed(String),
    #[error("cycle `{0}` has never been closed: it has no billing batch")]
    NeverClosed(String),
    #[error("cycle `{cycle_id}` has no batch version {version}")]
    NoSuchBatch { cycle_id: String, version: u32 },
    #[error("reopening cycle `{0}` needs a reason")]
    NoReason(String),
    #[error("cannot reopen cycle `{cycle_id}`: route `{route}` is in open cycle `{other}`; close it first")]
    RouteBusy {
        cycle_id: String,
        route: String,
        other: String,
    },
    #[error("{}", unresolved_message(cycle_id, exceptions))]
    Unresolved {
        cycle_id: String,
        exceptions: Vec<OpenException>,
    },
    #[error("adjustment for account `{account_id}` refused: {reason}")]
    BadAdjustment { account_id: String, reason: String },
    #[error("stored billing batch {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("billing batch schema version {found} is not the one this meter-gateway writes ({supported})")]
    Schema { found: u32, supported: u32 },
    #[error("encoding the batch: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing the batch: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the batch as CSV: {0}")]
    Csv(#[from] csv::Error),
}

fn unresolved_message(cycle_id: &str, exceptions: &[OpenException]) -> String {
    let unowned = exceptions.iter().filter(|e| e.account_id.is_none()).count();
    let mut s = if unowned == exceptions.len() {
        format!(
            "cycle `{cycle_id}` cannot close: {} read(s) no account owns (meters in inventory or unknown); \
             resolve each on its page at /review/reads/ID: assign it to the right meter, or void it with a reason:",
            exceptions.len()
        )
    } else {
        format!(
            "cycle `{cycle_id}` cannot close: {} unresolved exception(s); resolve them, or hold the accounts \
             (`cycle close {cycle_id} --hold ACCOUNT...`){}:",
            exceptions.len(),
            if unowned > 0 {
                "; a read no account owns cannot be held: on its page (/review/reads/ID) assign it to the \
                 right meter or void it with a reason"
            } else {
                ""
            }
        )
    };
    for e in exceptions {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
        if e.account_id.is_none() {
            s.push_str(" — no account: assign or void it at /review/reads/");
            s.push_str(
                &e.read_id
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "ID".into()),
            );
        }
    }
    s
}

impl From<rusqlite::Error> for BillingError {
    fn from(e: rusqlite::Error) -> Self {
        BillingError::Store(StoreError::Sql(e))
    }
}

/// The batch versions a cycle has, oldest first (empty before its first close).
pub fn batch_versions(store: &Store, cycle_id: &str) -> Result<Vec<u32>, BillingError> {
    Ok(crate::store::billing::batch_versions(
        store.conn(),
        cycle_id,
    )?)
}

/// Writes `batch` in `format`.
pub fn write_batch(
    batch: &Batch,
    format: BillingFormat,
    out: impl Write,
) -> Result<(), BillingError> {
    match format {
        BillingFormat::Jsonl => batch.write_jsonl(out),
        BillingFormat::Csv => batch.write_csv(out),
    }
}

/// The CLI's one reading of the clock, as district local time.
fn now() -> chrono::NaiveDateTime {
    chrono::Local::now().naive_local()
}

/// Who runs the command, for the audit log.
/// Who the audit log names for a command run at the CLI: `cli:$USER`.
pub(crate) fn cli_actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|| "cli".to_string())
}

pub fn cli_close(db: &Path, config: &Config, id: &str, hold: &[String]) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    let r = close_cycle_by(&mut store, config, id, hold, &cli_actor(), now())?;
    crate::cli::say!(
        "closed cycle {}: batch version {}, {} account record(s), {} meter line(s), {} HCF, \
         adjustments {}; {} missing read(s) estimated",
        r.cycle_id,
        r.batch_version,
        r.records,
        r.meter_lines,
        r.consumption_hcf,
        r.adjustments_total,
        r.estimated
    );
    if !r.held.is_empty() {
        crate::cli::say!("held out of the batch: {}", r.held.join(", "));
    }
    crate::cli::say!("checksum (SHA-256): {}", r.checksum);
    Ok(())
}

pub fn cli_reopen(db: &Path, id: &str, reason: &str) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    let r = reopen_cycle(&mut store, id, reason, &cli_actor(), now())?;
    crate::cli::say!(
        "reopened cycle {} (batch version {} stays the latest until the cycle closes again; {} history \
         row(s) taken back)",
        r.cycle_id, r.batch_version, r.history_removed
    );
    Ok(())
}

pub fn cli_export_billing(
    db: &Path,
    cycle: &str,
    format: BillingFormat,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let store = Store::open(db)?;
    let batch = open_batch(&store, cycle, None)?;
    if crate::store::billing::cycle_status(store.conn(), cycle)?.as_deref() == Some("open") {
        eprintln!(
            "note: cycle {cycle} was reopened after batch version {} was written; a new version comes \
             when it closes again",
            batch.header().batch_version
        );
    }
    match file {
        Some(p) => {
            // Written next to the target and renamed: a billing run never picks up half a file.
            let tmp = p.with_extension("partial");
            let f = std::fs::File::create(&tmp)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(f);
            write_batch(&batch, format, &mut w)?;
            w.flush()?;
            w.get_ref().sync_all()?;
            drop(w);
            std::fs::rename(&tmp, p)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
            let h = batch.header();
            eprintln!(
                "wrote cycle {} batch version {} ({} records, {} held) to {}; checksum {}",
                h.cycle_id,
                h.batch_version,
                h.record_count,
                h.held_count,
                p.display(),
                h.checksum
            );
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            write_batch(&batch, format, &mut w)?;
            w.flush()?;
        }
    }
    Ok(())
}
