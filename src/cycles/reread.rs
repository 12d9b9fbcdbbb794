//! A completed re-read order folded back into the read it was ordered for, where the order
//! completes: a handheld's upload (`sync`), the office marking it done (`review`), and once at the
//! daemon's start for orders completed before folding happened there.

use crate::domain::{FlagKind, ReadStatus};
use crate::store::review::{self as sql, AuditEntry};
use crate::store::{ReviewRead, Store, StoreError};
use chrono::NaiveDateTime;
use rusqlite::Connection;
use serde_json::json;

/// Folds every completed re-read back into the read it was ordered for (see [`fold_reread`]): for a
/// database whose orders were completed before folding happened where they complete (the daemon runs
/// it once at start). Idempotent. Returns how many orders were folded.
pub fn apply_completed_rereads(store: &mut Store, now: NaiveDateTime) -> Result<usize, StoreError> {
    store.write(|tx| {
        let mut n = 0;
        for o in sql::unapplied_rereads(tx)? {
            if fold_order(tx, &o, now)? {
                n += 1;
            }
        }
        Ok(n)
    })
}

/// Folds a completed re-read order back into the read it was ordered for, where the order completes
/// (a handheld's upload, the office marking it done): the result read (named by the order's result
/// JSON as `read_id`, else the meter's latest read after the original) supersedes the original, and
/// loses the `duplicate` flag the original's presence gave it. Runs inside the caller's transaction;
/// an order that is not a completed, unfolded re-read is left alone. Returns whether it folded.
pub fn fold_reread(
    conn: &Connection,
    order_id: i64,
    now: NaiveDateTime,
) -> Result<bool, StoreError> {
    let Some(o) = sql::order_by_id(conn, order_id)? else {
        return Ok(false);
    };
    if o.kind != "reread" || o.status != "completed" || sql::reread_folded(conn, order_id)? {
        return Ok(false);
    }
    fold_order(conn, &o, now)
}

fn fold_order(
    tx: &Connection,
    o: &sql::FieldOrder,
    now: NaiveDateTime,
) -> Result<bool, StoreError> {
    let Some(original) = o.read_id else {
        return Ok(false);
    };
    let named = o
        .result
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v.get("read_id").and_then(|x| x.as_i64()));
    let orig = sql::review_read_by_id(tx, original)?.ok_or_else(|| {
        StoreError::Invalid(format!(
            "re-read order {} is for read {original}, which does not exist",
            o.order_id
        ))
    })?;
    let result = match named {
        Some(id) => Some(id),
        None => sql::later_read_of_meter(tx, &orig.cycle_id, &orig.meter_id, original)?,
    };
    let Some(result) = result else {
        return Ok(false);
    };
    if result == original {
        // The reader found the same reading: it stands, confirmed; the clerk still decides.
        sql::insert_reread_result(tx, o.order_id, original, original, now)?;
        record(
            tx,
            &orig,
            "reread_confirmed",
            "field",
            now,
            "",
            json!({ "order_id": o.order_id }),
            snapshot(&orig),
        )?;
        return Ok(true);
    }
    let Some(res) = sql::review_read_by_id(tx, result)? else {
        return Ok(false);
    };
    if res.meter_id != orig.meter_id || res.cycle_id != orig.cycle_id {
        tracing::warn!(
            order = o.order_id,
            result,
            "re-read result is not a read of the same meter and cycle; not folded"
        );
        return Ok(false);
    }
    // A read the clerk already replaced (corrected, estimated) stays replaced: the result is
    // then judged against that replacement, duplicate flag and all.
    let status = if orig.superseded_by.is_none() {
        sql::set_superseded(tx, original, result)?;
        sql::set_read_status(tx, original, ReadStatus::Resolved)?;
        sql::drop_flag(tx, result, FlagKind::Duplicate)?
    } else {
        res.status
    };
    sql::insert_reread_result(tx, o.order_id, original, result, now)?;
    record(
        tx,
        &orig,
        "reread_result",
        "field",
        now,
        "",
        json!({ "order_id": o.order_id, "result_read_id": result, "result_status": status.as_str() }),
        json!({ "superseded_by": result, "result": snapshot(&res) }),
    )?;
    Ok(true)
}

pub(crate) fn snapshot(r: &ReviewRead) -> serde_json::Value {
    json!({
        "read_id": r.read_id,
        "raw_reading": r.raw_reading,
        "reading": r.reading,
        "consumption": r.consumption,
        "status": r.status.as_str(),
        "flags": r.flags.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        "superseded_by": r.superseded_by,
    })
}

/// Records one decision on a read: a `review_actions` row and its audit record (as the clerk's
/// actions do, `review::actions`).
pub(crate) fn record(
    conn: &Connection,
    read: &ReviewRead,
    action: &str,
    actor: &str,
    now: NaiveDateTime,
    reason: &str,
    detail: serde_json::Value,
    after: serde_json::Value,
) -> Result<(), StoreError> {
    sql::insert_review_action(conn, read.read_id, action, actor, now, reason, &detail)?;
    sql::insert_audit(
        conn,
        &AuditEntry {
            at: now,
            actor,
            entity: "read",
            entity_id: &read.read_id.to_string(),
            action,
            before: Some(snapshot(read)),
            after: Some(after),
            reason,
        },
    )?;
    Ok(())
}
