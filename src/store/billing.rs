//! SQL for cycle close and the billing handoff: adjustments (leak credits and others), batch versions,
//! the history rows a close writes, and the closing/reopening of a cycle.

use super::cycles::{conversion, time_at, time_text};
use super::Result;
use crate::domain::{Adjustment, AdjustmentKind};
use rusqlite::{params, Connection, OptionalExtension, Row};
use rust_decimal::Decimal;
use std::str::FromStr;

fn decimal_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Decimal> {
    let text: String = row.get(idx)?;
    Decimal::from_str(&text).map_err(|e| conversion(idx, format!("bad amount `{text}`: {e}")))
}

fn adjustment_row(row: &Row<'_>) -> rusqlite::Result<(i64, Adjustment)> {
    let kind: String = row.get(4)?;
    let units: Option<String> = row.get(6)?;
    Ok((
        row.get(0)?,
        Adjustment {
            account_id: row.get(1)?,
            cycle_id: row.get(2)?,
            read_id: row.get(3)?,
            kind: kind
                .parse::<AdjustmentKind>()
                .map_err(|e| conversion(4, e.to_string()))?,
            amount: decimal_at(row, 5)?,
            units: units
                .map(|u| {
                    Decimal::from_str(&u)
                        .map_err(|e| conversion(6, format!("bad units `{u}`: {e}")))
                })
                .transpose()?,
            note: row.get(7)?,
            created_by: row.get(8)?,
            created_at: time_at(row, 9)?,
        },
    ))
}

const ADJUSTMENT_COLUMNS: &str =
    "adjustment_id, account_id, cycle_id, read_id, kind, amount, units, \
     note, created_by, created_at";

pub(crate) fn insert_adjustment(conn: &Connection, a: &Adjustment) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO adjustments (account_id, cycle_id, read_id, kind, amount, units, note, created_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        a.account_id,
        a.cycle_id,
        a.read_id,
        a.kind.as_str(),
        a.amount.to_string(),
        a.units.map(|u| u.to_string()),
        a.note,
        a.created_by,
        time_text(a.created_at),
    ])?;
    Ok(conn.last_insert_rowid())
}

/// An account's adjustments, oldest first.
pub(crate) fn adjustments_of_account(
    conn: &Connection,
    account_id: &str,
) -> Result<Vec<(i64, Adjustment)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ADJUSTMENT_COLUMNS} FROM adjustments WHERE account_id = ?1 ORDER BY adjustment_id"
    ))?;
    let rows = stmt.query_map([account_id], adjustment_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A cycle's adjustments, by account then in the order they were recorded.
pub(crate) fn adjustments_of_cycle(
    conn: &Connection,
    cycle_id: &str,
) -> Result<Vec<(i64, Adjustment)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ADJUSTMENT_COLUMNS} FROM adjustments WHERE cycle_id = ?1 ORDER BY account_id, adjustment_id"
    ))?;
    let rows = stmt.query_map([cycle_id], adjustment_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The status of a cycle (`open`/`closed`), `None` when there is no such cycle.
pub(crate) fn cycle_status(conn: &Connection, cycle_id: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT status FROM cycles WHERE cycle_id = ?1",
            [cycle_id],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) fn account_exists(conn: &Connection, account_id: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM accounts WHERE account_id = ?1",
            [account_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The account and cycle of a read, `None` when there is no such read.
pub(crate) fn read_owner(
    conn: &Connection,
    read_id: i64,
) -> Result<Option<(Option<String>, String)>> {
    Ok(conn
        .query_row(
            "SELECT account_id, cycle_id FROM field_reads WHERE read_id = ?1",
            [read_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

// ---- batches -------------------------------------------------------------------------------------

/// A stored batch version's header and body; the latest version when `version` is `None`.
pub(crate) fn load_batch(
    conn: &Connection,
    cycle_id: &str,
    version: Option<u32>,
) -> Result<Option<(String, String)>> {
    let row = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?));
    Ok(match version {
        Some(v) => conn
            .query_row(
                "SELECT header, body FROM billing_batches WHERE cycle_id = ?1 AND version = ?2",
                params![cycle_id, v],
                row,
            )
            .optional()?,
        None => conn
            .query_row(
                "SELECT header, body FROM billing_batches WHERE cycle_id = ?1 ORDER BY version DESC LIMIT 1",
                [cycle_id],
                row,
            )
            .optional()?,
    })
}

/// The versions a cycle's batches have, oldest first.
pub(crate) fn batch_versions(conn: &Connection, cycle_id: &str) -> Result<Vec<u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version FROM billing_batches WHERE cycle_id = ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map([cycle_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What a close stores about a batch version.
pub(crate) struct NewBatch<'a> {
    pub cycle_id: &'a str,
    pub version: u32,
    pub schema_version: u32,
    pub closed_at: chrono::NaiveDateTime,
    pub closed_by: &'a str,
    pub record_count: u64,
    pub held_count: u64,
    pub header: &'a str,
    pub body: &'a str,
    pub checksum: &'a str,
}

pub(crate) fn insert_batch(conn: &Connection, b: &NewBatch<'_>) -> Result<()> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO billing_batches (cycle_id, version, schema_version, closed_at, closed_by, record_count, \
         held_count, header, body, checksum) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            b.cycle_id,
            b.version,
            b.schema_version,
            time_text(b.closed_at),
            b.closed_by,
            count(b.record_count),
            count(b.held_count),
            b.header,
            b.body,
            b.checksum
        ],
    )?;
    Ok(())
}

/// The cycle's batch version counter (0 before the first close).
pub(crate) fn batch_version(conn: &Connection, cycle_id: &str) -> Result<u32> {
    let v: i64 = conn.query_row(
        "SELECT batch_version FROM cycles WHERE cycle_id = ?1",
        [cycle_id],
        |r| r.get(0),
    )?;
    Ok(u32::try_from(v).unwrap_or(0))
}

pub(crate) fn mark_closed(
    conn: &Connection,
    cycle_id: &str,
    closed_at: chrono::NaiveDateTime,
    version: u32,
) -> Result<()> {
    conn.execute(
        "UPDATE cycles SET status = 'closed', closed_at = ?2, batch_version = ?3 WHERE cycle_id = ?1",
        params![cycle_id, time_text(closed_at), version],
    )?;
    Ok(())
}

pub(crate) fn mark_open(conn: &Connection, cycle_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE cycles SET status = 'open', closed_at = NULL WHERE cycle_id = ?1",
        [cycle_id],
    )?;
    Ok(())
}

// ---- what a close reads and writes -----------------------------------------------------------------

/// An account on one of the cycle's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CycleAccount {
    pub account_id: String,
    pub status: crate::domain::AccountStatus,
    pub rate_class: String,
    pub route_id: String,
}

/// Every account on the cycle's routes, by account id.
pub(crate) fn cycle_accounts(conn: &Connection, cycle_id: &str) -> Result<Vec<CycleAccount>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.account_id, a.status, a.rate_class, a.route_id FROM cycle_routes cr \
         JOIN accounts a ON a.route_id = cr.route_id WHERE cr.cycle_id = ?1 ORDER BY a.account_id",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        let status: String = r.get(1)?;
        Ok(CycleAccount {
            account_id: r.get(0)?,
            status: status
                .parse()
                .map_err(|e: crate::domain::UnknownValue| conversion(1, e.to_string()))?,
            rate_class: r.get(2)?,
            route_id: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Skipped reads of `meter_id` this cycle are replaced by the estimate made at close.
pub(crate) fn supersede_skipped(
    conn: &Connection,
    cycle_id: &str,
    meter_id: &str,
    by: i64,
) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE field_reads SET superseded_by = ?1 WHERE cycle_id = ?2 AND meter_id = ?3 \
         AND superseded_by IS NULL AND read_type = 'skipped' AND read_id <> ?1",
        params![by, cycle_id, meter_id],
    )?)
}

/// Writes a billed reading into the account's history (unless the same row is already there) and
/// remembers that this close wrote it.
pub(crate) fn write_closing_history(
    conn: &Connection,
    cycle_id: &str,
    account_id: &str,
    meter_id: &str,
    read_on: chrono::NaiveDate,
    reading: u64,
    kind: crate::domain::ReadKind,
) -> Result<bool> {
    let reading = super::cycles::store_int(reading)?;
    let day = super::date_text(read_on);
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO history (account_id, meter_id, read_on, reading, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![account_id, meter_id, day, reading, kind.as_str()])?;
    if inserted == 1 {
        conn.prepare_cached(
            "INSERT INTO close_history (cycle_id, account_id, meter_id, read_on, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![cycle_id, account_id, meter_id, day, kind.as_str()])?;
    }
    Ok(inserted == 1)
}

/// Takes back the history rows the cycle's close wrote; returns how many.
pub(crate) fn remove_closing_history(conn: &Connection, cycle_id: &str) -> Result<usize> {
    let removed = conn.execute(
        "DELETE FROM history WHERE (account_id, meter_id, read_on, kind) IN \
         (SELECT account_id, meter_id, read_on, kind FROM close_history WHERE cycle_id = ?1)",
        [cycle_id],
    )?;
    conn.execute("DELETE FROM close_history WHERE cycle_id = ?1", [cycle_id])?;
    Ok(removed)
}
