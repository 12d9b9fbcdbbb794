//! SQL for the clerk's desk: the exception queue, a read's detail, review actions and the audit log,
//! message codes, field orders, meter changes, leak credits and the reports' aggregates.

use super::cycles::{
    codes_at, conversion, flag_at, flags_by_read, opt_date_at, opt_time_at, opt_u64_at, parse_at,
    time_at, time_text,
};
use super::{date_text, Result};
use crate::domain::{Flag, FlagKind, MessageCode, ReadMethod, ReadStatus, Unit};
use chrono::{NaiveDate, NaiveDateTime};
use rusqlite::{params, Connection, OptionalExtension, Row};

// ---- reads -------------------------------------------------------------------------------------------

/// A field read as the review pages show it: the read, its account and meter, its flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRead {
    pub read_id: i64,
    pub cycle_id: String,
    pub cycle_open: bool,
    pub meter_id: String,
    pub account_id: Option<String>,
    pub customer_name: Option<String>,
    pub service_address: Option<String>,
    pub rate_class: Option<String>,
    pub route_id: Option<String>,
    pub read_at: NaiveDateTime,
    pub raw_reading: String,
    pub reading: Option<u64>,
    pub read_type: String,
    pub method: String,
    pub reader: String,
    pub codes: Vec<String>,
    pub skip_code: Option<String>,
    pub note: Option<String>,
    pub device_id: Option<String>,
    pub status: ReadStatus,
    pub previous_reading: Option<u64>,
    pub previous_read_on: Option<NaiveDate>,
    pub consumption: Option<i64>,
    pub expected_use: Option<f64>,
    pub expected_basis: Option<String>,
    pub low_limit: Option<u64>,
    pub high_limit: Option<u64>,
    pub unit: Option<Unit>,
    pub dials: Option<u8>,
    pub multiplier: Option<u32>,
    pub superseded_by: Option<i64>,
    pub flags: Vec<Flag>,
    /// The reading validation thinks the reader meant (a recognised mis-key), if any.
    pub intended_reading: Option<u64>,
}

const READ_COLUMNS: &str = "r.read_id, r.cycle_id, c.status, r.meter_id, r.account_id, a.name, a.service_address, \
     a.rate_class, a.route_id, r.read_at, r.raw_reading, r.reading, r.read_type, r.method, r.reader, r.codes, \
     r.skip_code, r.note, r.device_id, r.status, r.previous_reading, r.previous_read_on, r.consumption, \
     r.expected_use, r.expected_basis, r.low_limit, r.high_limit, m.unit, m.dials, m.multiplier, r.superseded_by, \
     r.intended_reading FROM field_reads r JOIN cycles c ON c.cycle_id = r.cycle_id \
     LEFT JOIN accounts a ON a.account_id = r.account_id LEFT JOIN meters m ON m.meter_id = r.meter_id";

fn review_read(r: &Row<'_>) -> rusqlite::Result<ReviewRead> {
    let unit: Option<String> = r.get(27)?;
    let dials: Option<i64> = r.get(28)?;
    let multiplier: Option<i64> = r.get(29)?;
    let cycle_status: String = r.get(2)?;
    Ok(ReviewRead {
        read_id: r.get(0)?,
        cycle_id: r.get(1)?,
        cycle_open: cycle_status == "open",
        meter_id: r.get(3)?,
        account_id: r.get(4)?,
        customer_name: r.get(5)?,
        service_address: r.get(6)?,
        rate_class: r.get(7)?,
        route_id: r.get(8)?,
        read_at: time_at(r, 9)?,
        raw_reading: r.get(10)?,
        reading: opt_u64_at(r, 11)?,
        read_type: r.get(12)?,
        method: r.get(13)?,
        reader: r.get(14)?,
        codes: codes_at(r, 15)?,
        skip_code: r.get(16)?,
        note: r.get(17)?,
        device_id: r.get(18)?,
        status: parse_at(r, 19)?,
        previous_reading: opt_u64_at(r, 20)?,
        previous_read_on: opt_date_at(r, 21)?,
        consumption: r.get(22)?,
        expected_use: r.get(23)?,
        expected_basis: r.get(24)?,
        low_limit: opt_u64_at(r, 25)?,
        high_limit: opt_u64_at(r, 26)?,
        unit: unit.and_then(|u| u.parse().ok()),
        dials: dials.and_then(|d| u8::try_from(d).ok()),
        multiplier: multiplier.and_then(|m| u32::try_from(m).ok()),
        superseded_by: r.get(30)?,
        flags: Vec::new(),
        intended_reading: opt_u64_at(r, 31)?,
    })
}

fn flags_of(conn: &Connection, read_id: i64) -> Result<Vec<Flag>> {
    let mut stmt = conn.prepare_cached(
        "SELECT flag, quality, explanation FROM flags WHERE read_id = ?1 ORDER BY flag",
    )?;
    let rows = stmt.query_map([read_id], |r| flag_at(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One read with its flags.
pub fn review_read_by_id(conn: &Connection, read_id: i64) -> Result<Option<ReviewRead>> {
    let read = conn
        .prepare_cached(&format!("SELECT {READ_COLUMNS} WHERE r.read_id = ?1"))?
        .query_row([read_id], review_read)
        .optional()?;
    let Some(mut read) = read else {
        return Ok(None);
    };
    read.flags = flags_of(conn, read_id)?;
    Ok(Some(read))
}

/// The cycle's current reads (not superseded) that carry an exception or a clerk's decision: flagged,
/// held, resolved or estimated by a clerk, and accepted reads with flags. Plain accepted reads are not
/// exceptions and are left out.
pub fn cycle_review_reads(conn: &Connection, cycle_id: &str) -> Result<Vec<ReviewRead>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {READ_COLUMNS} WHERE r.cycle_id = ?1 AND r.superseded_by IS NULL \
         AND (r.status IN ('flagged', 'held', 'resolved', 'estimated') \
              OR EXISTS (SELECT 1 FROM flags f WHERE f.read_id = r.read_id)) ORDER BY r.read_id"
    ))?;
    let mut reads = stmt
        .query_map([cycle_id], review_read)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut flags = flags_by_read(
        conn,
        "SELECT f.read_id, f.flag, f.quality, f.explanation FROM flags f \
         JOIN field_reads r ON r.read_id = f.read_id WHERE r.cycle_id = ?1 AND r.superseded_by IS NULL \
         ORDER BY f.read_id, f.flag",
        cycle_id,
    )?;
    for r in &mut reads {
        r.flags = flags.remove(&r.read_id).unwrap_or_default();
    }
    Ok(reads)
}

/// Cycles, newest first: `(cycle_id, status)`.
pub fn cycles_list(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT cycle_id, status FROM cycles ORDER BY opened_at DESC, cycle_id DESC",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_read_status(conn: &Connection, read_id: i64, status: ReadStatus) -> Result<()> {
    conn.execute(
        "UPDATE field_reads SET status = ?2 WHERE read_id = ?1",
        params![read_id, status.as_str()],
    )?;
    Ok(())
}

/// Marks `old` as replaced by `new` (a correction, an estimate, a re-read's result).
pub fn set_superseded(conn: &Connection, old: i64, new: i64) -> Result<()> {
    conn.execute(
        "UPDATE field_reads SET superseded_by = ?2 WHERE read_id = ?1",
        params![old, new],
    )?;
    Ok(())
}

/// Drops one flag of a read (a re-read's `duplicate` flag once it replaces the read it duplicated) and
/// sets the status the remaining flags call for.
pub fn drop_flag(conn: &Connection, read_id: i64, flag: FlagKind) -> Result<ReadStatus> {
    conn.execute(
        "DELETE FROM flags WHERE read_id = ?1 AND flag = ?2",
        params![read_id, flag.as_str()],
    )?;
    let exceptions = flags_of(conn, read_id)?
        .iter()
        .any(|f| f.kind.is_exception());
    let status = if exceptions {
        ReadStatus::Flagged
    } else {
        ReadStatus::Accepted
    };
    set_read_status(conn, read_id, status)?;
    Ok(status)
}

/// An estimated read a clerk put in place of a field read.
#[derive(Debug, Clone)]
pub struct EstimatedRead<'a> {
    pub replaces: &'a ReviewRead,
    pub reading: u64,
    pub consumption: i64,
    pub basis: &'a str,
    pub clerk: &'a str,
    pub now: NaiveDateTime,
}

/// Inserts the estimate as a new read of the same meter and cycle (status `estimated`) and marks the
/// field read superseded by it. Returns the new read id.
pub fn insert_estimated_read(conn: &Connection, e: &EstimatedRead<'_>) -> Result<i64> {
    let r = e.replaces;
    let int = super::cycles::store_int;
    conn.execute(
        "INSERT INTO field_reads (cycle_id, meter_id, account_id, read_at, raw_reading, reading, read_type, method, \
         reader, codes, note, received_at, status, previous_reading, previous_read_on, consumption, expected_use, \
         expected_basis, low_limit, high_limit) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'regular', ?7, ?8, '', ?9, ?10, 'estimated', ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            r.cycle_id,
            r.meter_id,
            r.account_id,
            time_text(r.read_at),
            e.reading.to_string(),
            int(e.reading)?,
            ReadMethod::Estimated.as_str(),
            e.clerk,
            format!("estimated by {}: {}", e.clerk, e.basis),
            time_text(e.now),
            r.previous_reading.map(int).transpose()?,
            r.previous_read_on.map(date_text),
            e.consumption,
            r.expected_use,
            r.expected_basis,
            r.low_limit.map(int).transpose()?,
            r.high_limit.map(int).transpose()?,
        ],
    )?;
    let id = conn.last_insert_rowid();
    set_superseded(conn, r.read_id, id)?;
    Ok(id)
}

// ---- review actions and the audit log ----------------------------------------------------------------

/// One clerk decision on a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewAction {
    pub action_id: i64,
    pub read_id: i64,
    pub action: String,
    pub actor: String,
    pub at: NaiveDateTime,
    pub reason: String,
    pub detail: String,
}

pub fn insert_review_action(
    conn: &Connection,
    read_id: i64,
    action: &str,
    actor: &str,
    at: NaiveDateTime,
    reason: &str,
    detail: &serde_json::Value,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO review_actions (read_id, action, actor, at, reason, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![read_id, action, actor, time_text(at), reason, detail.to_string()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The decisions on a read and on the reads it replaced or that replaced it, oldest first.
pub fn review_actions_of(conn: &Connection, read_ids: &[i64]) -> Result<Vec<ReviewAction>> {
    let mut stmt = conn.prepare_cached(
        "SELECT action_id, read_id, action, actor, at, reason, detail FROM review_actions \
         WHERE read_id = ?1 ORDER BY action_id",
    )?;
    let mut out = Vec::new();
    for id in read_ids {
        let rows = stmt.query_map([id], |r| {
            Ok(ReviewAction {
                action_id: r.get(0)?,
                read_id: r.get(1)?,
                action: r.get(2)?,
                actor: r.get(3)?,
                at: time_at(r, 4)?,
                reason: r.get(5)?,
                detail: r.get(6)?,
            })
        })?;
        out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    out.sort_by_key(|a| a.action_id);
    Ok(out)
}

/// One append-only audit record: who changed what, when, before and after (JSON), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry<'a> {
    pub at: NaiveDateTime,
    pub actor: &'a str,
    pub entity: &'a str,
    pub entity_id: &'a str,
    pub action: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: &'a str,
}

pub fn insert_audit(conn: &Connection, e: &AuditEntry<'_>) -> Result<i64> {
    conn.execute(
        "INSERT INTO audit_log (at, actor, entity, entity_id, action, before, after, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            time_text(e.at),
            e.actor,
            e.entity,
            e.entity_id,
            e.action,
            e.before.as_ref().map(|v| v.to_string()),
            e.after.as_ref().map(|v| v.to_string()),
            e.reason
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub audit_id: i64,
    pub at: NaiveDateTime,
    pub actor: String,
    pub entity: String,
    pub entity_id: String,
    pub action: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: String,
}

/// The audit trail of one entity, oldest first.
pub fn audit_of(conn: &Connection, entity: &str, entity_id: &str) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT audit_id, at, actor, entity, entity_id, action, before, after, reason FROM audit_log \
         WHERE entity = ?1 AND entity_id = ?2 ORDER BY audit_id",
    )?;
    let rows = stmt.query_map([entity, entity_id], |r| {
        Ok(AuditRecord {
            audit_id: r.get(0)?,
            at: time_at(r, 1)?,
            actor: r.get(2)?,
            entity: r.get(3)?,
            entity_id: r.get(4)?,
            action: r.get(5)?,
            before: r.get(6)?,
            after: r.get(7)?,
            reason: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- message codes -----------------------------------------------------------------------------------

pub fn code_by_id(conn: &Connection, code: &str) -> Result<Option<MessageCode>> {
    Ok(conn
        .prepare_cached(
            "SELECT code, category, description, requires_follow_up, retired FROM message_codes WHERE code = ?1",
        )?
        .query_row([code], |r| {
            Ok(MessageCode {
                code: r.get(0)?,
                category: r.get(1)?,
                description: r.get(2)?,
                requires_follow_up: r.get(3)?,
                retired: r.get(4)?,
            })
        })
        .optional()?)
}

/// Inserts or replaces a code (create and edit).
pub fn put_code(conn: &Connection, c: &MessageCode) -> Result<()> {
    conn.execute(
        "INSERT INTO message_codes (code, category, description, requires_follow_up, retired) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (code) DO UPDATE SET category = excluded.category, \
         description = excluded.description, requires_follow_up = excluded.requires_follow_up, retired = excluded.retired",
        params![c.code, c.category, c.description, c.requires_follow_up, c.retired],
    )?;
    Ok(())
}

// ---- field orders --------------------------------------------------------------------------------------

/// A field order as the orders page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOrder {
    pub order_id: i64,
    pub kind: String,
    pub account_id: String,
    pub route_id: Option<String>,
    pub service_address: Option<String>,
    pub meter_id: Option<String>,
    pub cycle_id: Option<String>,
    pub read_id: Option<i64>,
    pub status: String,
    pub instructions: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub result: Option<String>,
}

const ORDER_COLUMNS: &str =
    "o.order_id, o.kind, o.account_id, a.route_id, a.service_address, o.meter_id, o.cycle_id, \
     o.read_id, o.status, o.instructions, o.created_by, o.created_at, o.completed_at, o.result \
     FROM field_orders o LEFT JOIN accounts a ON a.account_id = o.account_id";

fn order_row(r: &Row<'_>) -> rusqlite::Result<FieldOrder> {
    Ok(FieldOrder {
        order_id: r.get(0)?,
        kind: r.get(1)?,
        account_id: r.get(2)?,
        route_id: r.get(3)?,
        service_address: r.get(4)?,
        meter_id: r.get(5)?,
        cycle_id: r.get(6)?,
        read_id: r.get(7)?,
        status: r.get(8)?,
        instructions: r.get(9)?,
        created_by: r.get(10)?,
        created_at: time_at(r, 11)?,
        completed_at: opt_time_at(r, 12)?,
        result: r.get(13)?,
    })
}

/// A new field order.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub kind: &'a str,
    pub account_id: &'a str,
    pub meter_id: Option<&'a str>,
    pub cycle_id: Option<&'a str>,
    pub read_id: Option<i64>,
    pub instructions: &'a str,
    pub created_by: &'a str,
    pub created_at: NaiveDateTime,
}

pub fn insert_order(conn: &Connection, o: &NewOrder<'_>) -> Result<i64> {
    conn.execute(
        "INSERT INTO field_orders (kind, account_id, meter_id, cycle_id, read_id, status, instructions, created_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?8)",
        params![
            o.kind,
            o.account_id,
            o.meter_id,
            o.cycle_id,
            o.read_id,
            o.instructions,
            o.created_by,
            time_text(o.created_at)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn order_by_id(conn: &Connection, order_id: i64) -> Result<Option<FieldOrder>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} WHERE o.order_id = ?1"))?
        .query_row([order_id], order_row)
        .optional()?)
}

/// Orders, newest first, optionally only those of one status, one account or one read.
pub fn orders(
    conn: &Connection,
    status: Option<&str>,
    account_id: Option<&str>,
    read_id: Option<i64>,
    limit: u32,
) -> Result<Vec<FieldOrder>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} WHERE (?1 IS NULL OR o.status = ?1) AND (?2 IS NULL OR o.account_id = ?2) \
         AND (?3 IS NULL OR o.read_id = ?3) ORDER BY o.order_id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![status, account_id, read_id, limit], order_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Reads that `read_id` replaced (superseded by it).
pub fn reads_superseded_by(conn: &Connection, read_id: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT read_id FROM field_reads WHERE superseded_by = ?1 AND read_id <> ?1",
    )?;
    let ids = stmt
        .query_map([read_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// Sets an account's status (a shut-off or turn-on order); returns the status it had.
pub fn set_account_status(conn: &Connection, account_id: &str, status: &str) -> Result<String> {
    let before: String = conn.query_row(
        "SELECT status FROM accounts WHERE account_id = ?1",
        [account_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "UPDATE accounts SET status = ?2 WHERE account_id = ?1",
        [account_id, status],
    )?;
    Ok(before)
}

pub fn set_order_status(
    conn: &Connection,
    order_id: i64,
    status: &str,
    completed_at: Option<NaiveDateTime>,
    result: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE field_orders SET status = ?2, completed_at = COALESCE(?3, completed_at), \
         result = COALESCE(?4, result) WHERE order_id = ?1",
        params![order_id, status, completed_at.map(time_text), result],
    )?;
    Ok(())
}

/// Completed re-read orders whose result has not been folded back into their read yet.
pub fn unapplied_rereads(conn: &Connection) -> Result<Vec<FieldOrder>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} WHERE o.kind = 'reread' AND o.status = 'completed' AND o.read_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM reread_results x WHERE x.order_id = o.order_id) ORDER BY o.order_id"
    ))?;
    let rows = stmt.query_map([], order_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether a re-read order's result has been folded back into its read.
pub fn reread_folded(conn: &Connection, order_id: i64) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM reread_results WHERE order_id = ?1)",
        [order_id],
        |r| r.get(0),
    )?)
}

pub fn insert_reread_result(
    conn: &Connection,
    order_id: i64,
    original: i64,
    result: i64,
    at: NaiveDateTime,
) -> Result<()> {
    conn.execute(
        "INSERT INTO reread_results (order_id, original_read_id, result_read_id, applied_at) VALUES (?1, ?2, ?3, ?4)",
        params![order_id, original, result, time_text(at)],
    )?;
    Ok(())
}

/// The latest read of `meter_id` in `cycle_id` after `after_read` (a re-read's result when the upload
/// did not name it).
pub fn later_read_of_meter(
    conn: &Connection,
    cycle_id: &str,
    meter_id: &str,
    after_read: i64,
) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT max(read_id) FROM field_reads WHERE cycle_id = ?1 AND meter_id = ?2 AND read_id > ?3",
            params![cycle_id, meter_id, after_read],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

// ---- meter changes ---------------------------------------------------------------------------------------

/// Pulls `old` (to inventory, removed on `on`) and sets `new` at `account_id` (active, installed on `on`),
/// writing the old meter's final and the new meter's initial reading to the account's history.
pub fn change_meter(
    conn: &Connection,
    account_id: &str,
    old: &str,
    final_reading: u64,
    new: &str,
    initial_reading: u64,
    on: NaiveDate,
) -> Result<()> {
    let day = date_text(on);
    let int = super::cycles::store_int;
    conn.execute(
        "UPDATE meters SET status = 'inventory', account_id = NULL, removed_on = ?2 WHERE meter_id = ?1",
        params![old, day],
    )?;
    conn.execute(
        "UPDATE meters SET status = 'active', account_id = ?2, installed_on = ?3, removed_on = NULL WHERE meter_id = ?1",
        params![new, account_id, day],
    )?;
    let mut h = conn.prepare_cached(
        "INSERT INTO history (account_id, meter_id, read_on, reading, kind) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT DO UPDATE SET reading = excluded.reading",
    )?;
    h.execute(params![account_id, old, day, int(final_reading)?, "final"])?;
    h.execute(params![
        account_id,
        new,
        day,
        int(initial_reading)?,
        "initial"
    ])?;
    Ok(())
}

// ---- leak credits ------------------------------------------------------------------------------------------

/// A leak credit granted earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakCredit {
    pub credit_id: i64,
    pub account_id: String,
    pub read_id: i64,
    pub cycle_id: String,
    pub read_on: NaiveDate,
    pub granted_at: NaiveDateTime,
    pub granted_by: String,
    pub excess_hcf: String,
    pub credit: String,
    pub repair_proof: String,
    pub computation: String,
}

pub fn leak_credits_of(conn: &Connection, account_id: &str) -> Result<Vec<LeakCredit>> {
    let mut stmt = conn.prepare_cached(
        "SELECT credit_id, account_id, read_id, cycle_id, read_on, granted_at, granted_by, excess_hcf, credit, \
         repair_proof, computation FROM leak_credits WHERE account_id = ?1 ORDER BY read_on, credit_id",
    )?;
    let rows = stmt.query_map([account_id], |r| {
        Ok(LeakCredit {
            credit_id: r.get(0)?,
            account_id: r.get(1)?,
            read_id: r.get(2)?,
            cycle_id: r.get(3)?,
            read_on: opt_date_at(r, 4)?.ok_or_else(|| conversion(4, "missing date"))?,
            granted_at: time_at(r, 5)?,
            granted_by: r.get(6)?,
            excess_hcf: r.get(7)?,
            credit: r.get(8)?,
            repair_proof: r.get(9)?,
            computation: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn insert_leak_credit(conn: &Connection, c: &LeakCredit) -> Result<i64> {
    conn.execute(
        "INSERT INTO leak_credits (account_id, read_id, cycle_id, read_on, granted_at, granted_by, excess_hcf, credit, \
         repair_proof, computation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            c.account_id,
            c.read_id,
            c.cycle_id,
            date_text(c.read_on),
            time_text(c.granted_at),
            c.granted_by,
            c.excess_hcf,
            c.credit,
            c.repair_proof,
            c.computation
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

// ---- reports -----------------------------------------------------------------------------------------------

/// One read a reader took in a cycle: every field read, superseded ones included (the reader did take
/// them); clerks' corrections and estimates are not the reader's work and are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderRead {
    pub reader: String,
    pub read_at: NaiveDateTime,
    pub skipped: bool,
    pub exception: bool,
}

pub fn reader_reads(conn: &Connection, cycle_id: &str) -> Result<Vec<ReaderRead>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.reader, r.read_at, r.read_type = 'skipped', \
         EXISTS (SELECT 1 FROM flags f WHERE f.read_id = r.read_id AND f.flag <> 'rollover') \
         FROM field_reads r WHERE r.cycle_id = ?1 AND r.status <> 'estimated' AND r.reader <> '' \
         AND (r.note IS NULL OR r.note NOT LIKE 'corrected by %') ORDER BY r.reader, r.read_at",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        Ok(ReaderRead {
            reader: r.get(0)?,
            read_at: time_at(r, 1)?,
            skipped: r.get(2)?,
            exception: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many of a cycle's reads carry one flag, and where they stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagCount {
    pub flag: String,
    pub reads: u64,
    pub flagged: u64,
    pub held: u64,
    pub resolved: u64,
}

/// Per flag kind, over the cycle's field reads as validation flagged them (superseded ones included:
/// a corrected mis-key was still an exception).
pub fn exceptions_by_flag(conn: &Connection, cycle_id: &str) -> Result<Vec<FlagCount>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.flag, count(*), \
         sum(r.status = 'flagged' AND r.superseded_by IS NULL), sum(r.status = 'held' AND r.superseded_by IS NULL), \
         sum(r.status IN ('resolved', 'accepted', 'estimated') OR r.superseded_by IS NOT NULL) \
         FROM flags f JOIN field_reads r ON r.read_id = f.read_id WHERE r.cycle_id = ?1 \
         GROUP BY f.flag ORDER BY count(*) DESC, f.flag",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        let n = |i: usize| -> rusqlite::Result<u64> {
            let v: Option<i64> = r.get(i)?;
            Ok(v.unwrap_or(0).max(0) as u64)
        };
        Ok(FlagCount {
            flag: r.get(0)?,
            reads: n(1)?,
            flagged: n(2)?,
            held: n(3)?,
            resolved: n(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One account starting or stopping service within a date range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEvent {
    pub route_id: String,
    pub account_id: String,
    pub on: NaiveDate,
    /// `start` or `stop`.
    pub event: &'static str,
    /// What shows it: `first_read`, `turn_on`, `final_read`, `shut_off`.
    pub source: &'static str,
}

/// Accounts that started or stopped service in `[from, to)`: a start is the account's first history
/// reading or a completed turn-on order; a stop is a final reading not followed by a new meter's initial
/// reading (a meter change is not a stop) or a completed shut-off order.
pub fn service_events(
    conn: &Connection,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ServiceEvent>> {
    let (f, t) = (date_text(from), date_text(to));
    let mut out = Vec::new();
    let mut first = conn.prepare_cached(
        "SELECT a.route_id, h.account_id, min(h.read_on) FROM history h JOIN accounts a ON a.account_id = h.account_id \
         GROUP BY h.account_id HAVING min(h.read_on) >= ?1 AND min(h.read_on) < ?2",
    )?;
    let mut stops = conn.prepare_cached(
        "SELECT a.route_id, h.account_id, h.read_on FROM history h JOIN accounts a ON a.account_id = h.account_id \
         WHERE h.kind = 'final' AND h.read_on >= ?1 AND h.read_on < ?2 AND NOT EXISTS \
         (SELECT 1 FROM history n WHERE n.account_id = h.account_id AND n.kind = 'initial' AND n.read_on = h.read_on)",
    )?;
    let mut orders = conn.prepare_cached(
        "SELECT a.route_id, o.account_id, substr(o.completed_at, 1, 10), o.kind FROM field_orders o \
         JOIN accounts a ON a.account_id = o.account_id WHERE o.status = 'completed' \
         AND o.kind IN ('turn_on', 'shut_off') AND o.completed_at >= ?1 AND o.completed_at < ?2",
    )?;
    let date = |r: &Row<'_>, i: usize| -> rusqlite::Result<NaiveDate> {
        opt_date_at(r, i)?.ok_or_else(|| conversion(i, "missing date"))
    };
    for row in first.query_map([&f, &t], |r| Ok((r.get(0)?, r.get(1)?, date(r, 2)?)))? {
        let (route_id, account_id, on) = row?;
        out.push(ServiceEvent {
            route_id,
            account_id,
            on,
            event: "start",
            source: "first_read",
        });
    }
    for row in stops.query_map([&f, &t], |r| Ok((r.get(0)?, r.get(1)?, date(r, 2)?)))? {
        let (route_id, account_id, on) = row?;
        out.push(ServiceEvent {
            route_id,
            account_id,
            on,
            event: "stop",
            source: "final_read",
        });
    }
    let rows = orders.query_map([&f, &t], |r| {
        Ok((r.get(0)?, r.get(1)?, date(r, 2)?, r.get::<_, String>(3)?))
    })?;
    for row in rows {
        let (route_id, account_id, on, kind) = row?;
        let turn_on = kind == "turn_on";
        out.push(ServiceEvent {
            route_id,
            account_id,
            on,
            event: if turn_on { "start" } else { "stop" },
            source: if turn_on { "turn_on" } else { "shut_off" },
        });
    }
    out.sort_by(|a, b| (&a.route_id, a.on, &a.account_id).cmp(&(&b.route_id, b.on, &b.account_id)));
    Ok(out)
}

/// Follow-up items (a leak seen, a broken lid) the read's codes opened: `(code, status, opened_at)`.
pub fn follow_ups_of(
    conn: &Connection,
    read_ids: &[i64],
) -> Result<Vec<(String, String, NaiveDateTime)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT code, status, opened_at FROM follow_ups WHERE read_id = ?1 ORDER BY follow_up_id",
    )?;
    let mut out = Vec::new();
    for id in read_ids {
        let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, time_at(r, 2)?)))?;
        out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    Ok(out)
}

// ---- the worklist ----------------------------------------------------------------------------------------

/// Reads by id, with their flags, in the order asked for (ids that do not exist are left out).
pub fn review_reads_by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<ReviewRead>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = review_read_by_id(conn, *id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The cycle's current reads (accepted ones too) matching what a clerk typed: a read id, an account or
/// meter id exactly, or part of a customer's name or service address. At most `limit`, by read id.
pub fn search_reads(
    conn: &Connection,
    cycle_id: &str,
    text: &str,
    limit: u32,
) -> Result<Vec<ReviewRead>> {
    let like = format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let id: Option<i64> = text.parse().ok();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {READ_COLUMNS} WHERE r.cycle_id = ?1 AND r.superseded_by IS NULL AND (r.read_id = ?2 \
         OR r.meter_id = ?3 COLLATE NOCASE OR r.account_id = ?3 COLLATE NOCASE OR r.account_id IN \
         (SELECT account_id FROM accounts WHERE name LIKE ?4 ESCAPE '\\' OR service_address LIKE ?4 ESCAPE '\\')) \
         ORDER BY r.read_id LIMIT ?5"
    ))?;
    let mut reads = stmt
        .query_map(params![cycle_id, id, text, like, limit], review_read)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for r in &mut reads {
        r.flags = flags_of(conn, r.read_id)?;
    }
    Ok(reads)
}

/// The other current reads of the same meter in the cycle (a duplicate's pair).
pub fn other_current_reads_of_meter(
    conn: &Connection,
    cycle_id: &str,
    meter_id: &str,
    except: i64,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT read_id FROM field_reads WHERE cycle_id = ?1 AND meter_id = ?2 AND read_id <> ?3 \
         AND superseded_by IS NULL ORDER BY read_id",
    )?;
    let ids = stmt
        .query_map(params![cycle_id, meter_id, except], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// The latest actual reading of a meter: from its history (actual, initial or final reads) or a
/// current field read with a usable reading (not estimated), whichever is later: `(date, reading)`.
pub fn last_actual_reading(conn: &Connection, meter_id: &str) -> Result<Option<(NaiveDate, u64)>> {
    let hist: Option<(String, i64)> = conn
        .query_row(
            "SELECT read_on, reading FROM history WHERE meter_id = ?1 AND kind <> 'estimated' \
             ORDER BY read_on DESC, CASE kind WHEN 'final' THEN 2 WHEN 'initial' THEN 0 ELSE 1 END DESC LIMIT 1",
            [meter_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let field: Option<(String, i64)> = conn
        .query_row(
            "SELECT substr(read_at, 1, 10), reading FROM field_reads WHERE meter_id = ?1 \
             AND superseded_by IS NULL AND reading IS NOT NULL AND status <> 'estimated' \
             ORDER BY read_at DESC LIMIT 1",
            [meter_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let parse = |(d, v): (String, i64)| -> Option<(NaiveDate, u64)> {
        Some((super::parse_date(&d).ok()?, u64::try_from(v).ok()?))
    };
    let (h, f) = (hist.and_then(parse), field.and_then(parse));
    Ok(match (h, f) {
        (Some(a), Some(b)) => Some(if b.0 >= a.0 { b } else { a }),
        (a, b) => a.or(b),
    })
}

/// The reader's codes of an account's earlier field reads, by read day (for the last reads' table).
pub fn codes_by_day(
    conn: &Connection,
    account_id: &str,
) -> Result<std::collections::HashMap<NaiveDate, Vec<String>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT substr(read_at, 1, 10), codes, skip_code FROM field_reads WHERE account_id = ?1 \
         AND superseded_by IS NULL AND (codes <> '' OR skip_code IS NOT NULL)",
    )?;
    let mut out: std::collections::HashMap<NaiveDate, Vec<String>> = Default::default();
    let rows = stmt.query_map([account_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            codes_at(r, 1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (day, codes, skip) = row?;
        if let Ok(d) = super::parse_date(&day) {
            let e = out.entry(d).or_default();
            e.extend(codes);
            e.extend(skip);
        }
    }
    Ok(out)
}

/// Meters in service on `route_id` with no current read in `cycle_id`: `(meter, account, last reading)`
/// (an unowned read's likely swapped meter is among them).
pub fn unread_meters_of_route(
    conn: &Connection,
    cycle_id: &str,
    route_id: &str,
) -> Result<Vec<(String, String, Option<u64>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.meter_id, a.account_id, (SELECT h.reading FROM history h WHERE h.meter_id = m.meter_id \
         ORDER BY h.read_on DESC LIMIT 1) FROM meters m JOIN accounts a ON a.account_id = m.account_id \
         WHERE a.route_id = ?2 AND m.status = 'active' AND NOT EXISTS (SELECT 1 FROM field_reads r \
         WHERE r.cycle_id = ?1 AND r.meter_id = m.meter_id AND r.superseded_by IS NULL) ORDER BY a.sequence",
    )?;
    let rows = stmt.query_map(params![cycle_id, route_id], |r| {
        Ok((r.get(0)?, r.get(1)?, opt_u64_at(r, 2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The route the reader of a read walked that day (the route most of that reader's reads that day
/// belong to), for an unowned read.
pub fn route_walked(
    conn: &Connection,
    cycle_id: &str,
    reader: &str,
    day: NaiveDate,
) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT a.route_id FROM field_reads r JOIN accounts a ON a.account_id = r.account_id \
             WHERE r.cycle_id = ?1 AND r.reader = ?2 AND substr(r.read_at, 1, 10) = ?3 \
             GROUP BY a.route_id ORDER BY count(*) DESC LIMIT 1",
            params![cycle_id, reader, date_text(day)],
            |r| r.get(0),
        )
        .optional()?)
}

/// Clears a read's `superseded_by` (a decision reopened: the read is current again).
pub fn clear_superseded(conn: &Connection, read_id: i64) -> Result<()> {
    conn.execute(
        "UPDATE field_reads SET superseded_by = NULL WHERE read_id = ?1",
        [read_id],
    )?;
    Ok(())
}

/// Whether a leak credit was granted on the read.
pub fn leak_credit_of_read(conn: &Connection, read_id: i64) -> Result<Option<LeakCredit>> {
    let account: Option<String> = conn
        .query_row(
            "SELECT account_id FROM leak_credits WHERE read_id = ?1",
            [read_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(account) = account else {
        return Ok(None);
    };
    Ok(leak_credits_of(conn, &account)?
        .into_iter()
        .find(|c| c.read_id == read_id))
}

/// One account on a printed notice or list: who, where, and the walk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeAccount {
    pub account_id: String,
    pub name: String,
    pub service_address: String,
    pub route_id: String,
    pub sequence: u32,
    pub status: String,
    pub meter_id: Option<String>,
}

/// Accounts (active meter, if any) in walk order: those named, or every account with an open or sent
/// order of `kind` (on `route_id` when given).
pub fn notice_accounts(
    conn: &Connection,
    ids: &[String],
    order_kind: Option<&str>,
    route_id: Option<&str>,
) -> Result<Vec<NoticeAccount>> {
    let base = "SELECT a.account_id, a.name, a.service_address, a.route_id, a.sequence, a.status, \
         (SELECT m.meter_id FROM meters m WHERE m.account_id = a.account_id AND m.status = 'active' ORDER BY m.installed_on DESC LIMIT 1) \
         FROM accounts a";
    let map = |r: &Row<'_>| -> rusqlite::Result<NoticeAccount> {
        Ok(NoticeAccount {
            account_id: r.get(0)?,
            name: r.get(1)?,
            service_address: r.get(2)?,
            route_id: r.get(3)?,
            sequence: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            status: r.get(5)?,
            meter_id: r.get(6)?,
        })
    };
    let mut out = Vec::new();
    if let Some(kind) = order_kind {
        let mut stmt = conn.prepare_cached(&format!(
            "{base} WHERE a.account_id IN (SELECT account_id FROM field_orders WHERE kind = ?1 \
             AND status IN ('open', 'sent')) AND (?2 IS NULL OR a.route_id = ?2) ORDER BY a.route_id, a.sequence, a.account_id"
        ))?;
        let rows = stmt.query_map(params![kind, route_id], map)?;
        out = rows.collect::<rusqlite::Result<_>>()?;
    } else {
        let mut stmt = conn.prepare_cached(&format!("{base} WHERE a.account_id = ?1"))?;
        for id in ids {
            if let Some(a) = stmt.query_row([id], map).optional()? {
                out.push(a);
            }
        }
        out.sort_by(|a, b| (&a.route_id, a.sequence).cmp(&(&b.route_id, b.sequence)));
    }
    Ok(out)
}

/// Writes a start- or stop-of-service reading to the account's history (an in/out tag returned from
/// the field) and sets the account's status; returns the status it had.
pub fn record_service_tag(
    conn: &Connection,
    account_id: &str,
    meter_id: &str,
    on: NaiveDate,
    reading: u64,
    start: bool,
) -> Result<String> {
    conn.execute(
        "INSERT INTO history (account_id, meter_id, read_on, reading, kind) VALUES (?1, ?2, ?3, ?4, 'actual') \
         ON CONFLICT DO UPDATE SET reading = excluded.reading",
        params![account_id, meter_id, date_text(on), super::cycles::store_int(reading)?],
    )?;
    set_account_status(conn, account_id, if start { "active" } else { "inactive" })
}

/// What the worklist needs of a read to filter and sort it (the rows of the page shown are then loaded
/// whole, by id).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueKey {
    pub read_id: i64,
    pub route_id: Option<String>,
    pub account_id: Option<String>,
    pub meter_id: String,
    pub status: ReadStatus,
    pub read_type: String,
    pub reading: Option<u64>,
    pub consumption: Option<i64>,
    pub expected_use: Option<f64>,
    pub unit: Option<Unit>,
    pub rate_class: Option<String>,
    pub reader: String,
    pub flags: Vec<FlagKind>,
}

/// Which of a cycle's current reads the worklist lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    /// Flagged, awaiting a clerk.
    Open,
    Held,
    /// Resolved or estimated by a clerk, and accepted reads with flags.
    Resolved,
    /// Every read with an exception or a decision.
    All,
}

/// The worklist's keys of a cycle: its current reads in `status` (one query: the status filter, the
/// joins and each read's flags; no read's full row).
pub fn queue_keys(conn: &Connection, cycle_id: &str, status: QueueStatus) -> Result<Vec<QueueKey>> {
    let has_flags = "EXISTS (SELECT 1 FROM flags f WHERE f.read_id = r.read_id)";
    let filter = match status {
        QueueStatus::Open => "r.status = 'flagged'".to_string(),
        QueueStatus::Held => "r.status = 'held'".to_string(),
        QueueStatus::Resolved => format!(
            "(r.status IN ('resolved', 'estimated') OR (r.status = 'accepted' AND {has_flags}))"
        ),
        QueueStatus::All => {
            format!("(r.status IN ('flagged', 'held', 'resolved', 'estimated') OR {has_flags})")
        }
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.read_id, a.route_id, r.account_id, r.meter_id, r.status, r.read_type, r.reading, r.consumption, \
         r.expected_use, m.unit, a.rate_class, r.reader, \
         (SELECT group_concat(f.flag, ',') FROM flags f WHERE f.read_id = r.read_id) \
         FROM field_reads r LEFT JOIN accounts a ON a.account_id = r.account_id \
         LEFT JOIN meters m ON m.meter_id = r.meter_id \
         WHERE r.cycle_id = ?1 AND r.superseded_by IS NULL AND {filter}"
    ))?;
    let rows = stmt.query_map([cycle_id], |r| {
        let unit: Option<String> = r.get(9)?;
        let flags: Option<String> = r.get(12)?;
        let mut flags: Vec<FlagKind> = flags
            .unwrap_or_default()
            .split(',')
            .filter_map(|f| f.parse().ok())
            .collect();
        flags.sort();
        Ok(QueueKey {
            read_id: r.get(0)?,
            route_id: r.get(1)?,
            account_id: r.get(2)?,
            meter_id: r.get(3)?,
            status: parse_at(r, 4)?,
            read_type: r.get(5)?,
            reading: opt_u64_at(r, 6)?,
            consumption: r.get(7)?,
            expected_use: r.get(8)?,
            unit: unit.and_then(|u| u.parse().ok()),
            rate_class: r.get(10)?,
            reader: r.get(11)?,
            flags,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl QueueKey {
    /// The key of a read already loaded whole (a search's results).
    pub fn of(r: &ReviewRead) -> QueueKey {
        QueueKey {
            read_id: r.read_id,
            route_id: r.route_id.clone(),
            account_id: r.account_id.clone(),
            meter_id: r.meter_id.clone(),
            status: r.status,
            read_type: r.read_type.clone(),
            reading: r.reading,
            consumption: r.consumption,
            expected_use: r.expected_use,
            unit: r.unit,
            rate_class: r.rate_class.clone(),
            reader: r.reader.clone(),
            flags: r.flags.iter().map(|f| f.kind).collect(),
        }
    }
}
