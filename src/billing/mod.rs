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
#[cfg(test)]
mod tests;

pub use adjustments::{
    add_adjustment, adjustments_of_account, record_adjustment, Adjustment, AdjustmentKind,
};
pub use batch::{
    open_batch, open_batch_in, read_csv, AdjustmentLine, Batch, BatchCsvRow, BatchHeader,
    BillingRecord, HeldAccount, HoldSource, LineReadType, MeterLine, BATCH_SCHEMA_VERSION,
};
pub use close::{
    close_cycle, close_cycle_by, reopen_cycle, CloseReport, OpenException, ReopenReport,
};

use crate::cycles::CycleError;
use crate::store::{Store, StoreError};
use std::io::Write;

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
    #[error("billing batch CSV refused: {0}")]
    BadCsv(String),
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

/// How a batch is written: the same bytes for `export billing` and the HTTP export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// JSON lines: a header, then one record per account.
    Jsonl,
    /// CSV with a header row, one row per account and meter.
    Csv,
}

/// Writes `batch` in `format`.
pub fn write_batch(
    batch: &Batch,
    format: BatchFormat,
    out: impl Write,
) -> Result<(), BillingError> {
    match format {
        BatchFormat::Jsonl => batch.write_jsonl(out),
        BatchFormat::Csv => batch.write_csv(out),
    }
}
