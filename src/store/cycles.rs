//! SQL for read cycles: cycles and their routes, field reads with their validation decision, flags and
//! follow-ups, and the bulk reads that validation and route files need (one streaming pass over
//! `history` in primary-key order, grouped per account; never one query per account).

use super::{date_text, parse_date, Result, Store, StoreError};
use crate::domain::{
    AccountStatus, Cycle, CycleStatus, DeviceRef, Flag, HistoryRead, MeterStatus, ReadKind,
    ReadMethod, ReadStatus, ReadType, Register, Unit,
};
use chrono::{NaiveDate, NaiveDateTime};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// The store's spelling of a district-local time (`2026-11-05T10:32:00`), without chrono's format
/// interpreter: ingest writes two per read.
pub(crate) fn time_text(t: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether the store can keep `t` and give it back: `YYYY-MM-DDTHH:MM:SS` with a four-digit year.
/// Read times are bounded where reads enter (`cycles::ReadTimeBounds`) well inside this; the store
/// still refuses anything else rather than write a value it could not read back.
pub fn time_is_storable(t: NaiveDateTime) -> bool {
    use chrono::Datelike;
    (1..=9999).contains(&t.year())
}

/// [`time_text`] in a buffer on the stack: the insert path binds two per read without allocating.
/// `None` for a time the store cannot keep ([`time_is_storable`]).
struct TimeText([u8; 19]);

impl TimeText {
    fn new(t: NaiveDateTime) -> Option<TimeText> {
        use chrono::{Datelike, Timelike};
        if !time_is_storable(t) {
            return None;
        }
        let mut b = *b"0000-00-00T00:00:00";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, t.year().unsigned_abs());
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        Some(TimeText(b))
    }

    fn checked(t: NaiveDateTime, what: &str) -> Result<TimeText> {
        TimeText::new(t).ok_or_else(|| {
            StoreError::Invalid(format!(
                "{what} {t} cannot be stored (years 1 to 9999 only)"
            ))
        })
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn parse_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok()
}

/// A column value that does not convert, with what is wrong with it.
pub(crate) fn conversion(idx: usize, what: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        format!("{what}").into(),
    )
}

pub(crate) fn time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<NaiveDateTime> {
    let text = text_at(row, idx)?;
    parse_time(text).ok_or_else(|| conversion(idx, format!("bad time `{text}`")))
}

pub(crate) fn opt_time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<NaiveDateTime>> {
    match row.get_ref(idx)?.as_str_or_null()? {
        None => Ok(None),
        Some(_) => time_at(row, idx).map(Some),
    }
}

pub(crate) fn opt_date_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<NaiveDate>> {
    row.get_ref(idx)?
        .as_str_or_null()?
        .map(|t| parse_date(t).map_err(|e| conversion(idx, e)))
        .transpose()
}

/// Message codes stored `;`-separated.
pub(crate) fn codes_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    Ok(text_at(row, idx)?
        .split(';')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect())
}

/// A flag from three columns from `idx` on: flag, quality, explanation.
pub(crate) fn flag_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Flag> {
    Ok(Flag {
        kind: parse_at(row, idx)?,
        quality: row.get(idx + 1)?,
        explanation: row.get(idx + 2)?,
    })
}

/// Flags by read id, from `sql` run with `cycle_id` (columns: read_id, flag, quality, explanation).
pub(crate) fn flags_by_read(
    conn: &Connection,
    sql: &str,
    cycle_id: &str,
) -> Result<HashMap<i64, Vec<Flag>>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([cycle_id])?;
    let mut out: HashMap<i64, Vec<Flag>> = HashMap::new();
    while let Some(row) = rows.next()? {
        out.entry(row.get(0)?).or_default().push(flag_at(row, 1)?);
    }
    Ok(out)
}

pub(crate) fn parse_at<T: FromStr>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    let r = row.get_ref(idx)?;
    let text = r.as_str()?;
    text.parse().map_err(|e| conversion(idx, e))
}

fn text_at<'r>(row: &'r Row<'_>, idx: usize) -> rusqlite::Result<&'r str> {
    Ok(row.get_ref(idx)?.as_str()?)
}

fn u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

pub(crate) fn opt_u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)))
        .transpose()
}

fn register_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Register> {
    let dials: i64 = row.get(idx)?;
    let multiplier: i64 = row.get(idx + 1)?;
    Ok(Register {
        dials: u8::try_from(dials)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, dials))?,
        multiplier: u32::try_from(multiplier)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx + 1, multiplier))?,
        unit: parse_at::<Unit>(row, idx + 2)?,
    })
}

/// A reading or count as SQLite's signed integer, refused (not wrapped) above `i64::MAX`.
pub(crate) fn store_int(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is too large to store")))
}

/// `YYYY-MM-DD` without chrono's format machinery: the history scan parses millions of these.
fn fast_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return parse_date(std::str::from_utf8(b).ok()?).ok();
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)
}

fn kind_of(text: &[u8]) -> Option<ReadKind> {
    match text {
        b"actual" => Some(ReadKind::Actual),
        b"estimated" => Some(ReadKind::Estimated),
        b"initial" => Some(ReadKind::Initial),
        b"final" => Some(ReadKind::Final),
        _ => None,
    }
}

/// A text column's bytes: the history scan compares and parses bytes, and validates UTF-8 only for
/// the strings it keeps (an account or meter id when it changes).
fn bytes_at<'r>(row: &'r Row<'_>, idx: usize) -> rusqlite::Result<&'r [u8]> {
    Ok(row.get_ref(idx)?.as_bytes()?)
}

// ---- cycles ------------------------------------------------------------------------------------

pub(crate) fn insert_cycle(conn: &Connection, c: &Cycle, opened_at: NaiveDateTime) -> Result<()> {
    conn.execute(
        "INSERT INTO cycles (cycle_id, window_from, window_to, status, opened_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            c.id,
            date_text(c.window_from),
            date_text(c.window_to),
            c.status.as_str(),
            time_text(opened_at)
        ],
    )?;
    let mut stmt =
        conn.prepare_cached("INSERT INTO cycle_routes (cycle_id, route_id) VALUES (?1, ?2)")?;
    for r in &c.routes {
        stmt.execute(params![c.id, r])?;
    }
    Ok(())
}

pub(crate) fn load_cycle(conn: &Connection, id: &str) -> Result<Option<Cycle>> {
    let head = conn
        .query_row(
            "SELECT window_from, window_to, status FROM cycles WHERE cycle_id = ?1",
            [id],
            |r| {
                let from: String = r.get(0)?;
                let to: String = r.get(1)?;
                Ok((from, to, parse_at::<CycleStatus>(r, 2)?))
            },
        )
        .optional()?;
    let Some((from, to, status)) = head else {
        return Ok(None);
    };
    let date = |t: &str| {
        parse_date(t).map_err(|e| StoreError::Invalid(format!("cycle {id}: bad date `{t}`: {e}")))
    };
    let mut stmt = conn.prepare_cached(
        "SELECT route_id FROM cycle_routes WHERE cycle_id = ?1 ORDER BY route_id",
    )?;
    let routes = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(Cycle {
        id: id.to_string(),
        window_from: date(&from)?,
        window_to: date(&to)?,
        routes,
        status,
    }))
}

pub(crate) fn route_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT route_id FROM routes ORDER BY route_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

/// `(route_id, cycle_id)` of every route already in an open cycle.
pub(crate) fn routes_in_open_cycles(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT cr.route_id, cr.cycle_id FROM cycle_routes cr JOIN cycles c ON c.cycle_id = cr.cycle_id \
         WHERE c.status = 'open' ORDER BY cr.route_id",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The open cycle that reads `route_id`, if any (a route is in one open cycle at most).
pub(crate) fn open_cycle_of_route(conn: &Connection, route_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT c.cycle_id FROM cycles c JOIN cycle_routes cr ON cr.cycle_id = c.cycle_id \
             WHERE c.status = 'open' AND cr.route_id = ?1",
        )?
        .query_row([route_id], |r| r.get(0))
        .optional()?)
}

// ---- scopes: which accounts a bulk read covers ------------------------------------------------------

/// Meter registers by meter id, looked up in `meters` once each.
pub(crate) struct Registers<'c> {
    conn: &'c Connection,
    /// `None`: not in the district.
    known: RefCell<HashMap<String, Option<Register>>>,
}

impl Registers<'_> {
    /// The register of `meter_id`; `None` for a meter the district does not know.
    pub(crate) fn get(&self, meter_id: &str) -> Result<Option<Register>> {
        if let Some(r) = self.known.borrow().get(meter_id) {
            return Ok(*r);
        }
        let found = self
            .conn
            .prepare_cached("SELECT dials, multiplier, unit FROM meters WHERE meter_id = ?1")?
            .query_row([meter_id], |row| register_at(row, 0))
            .optional()?;
        self.known.borrow_mut().insert(meter_id.to_string(), found);
        Ok(found)
    }

    /// The register of a meter [`Registers::get`] has already answered for.
    pub(crate) fn cached(&self, meter_id: &str) -> Option<Register> {
        self.known.borrow().get(meter_id).copied().flatten()
    }
}

/// Below this many rows a bulk read always seeks them one by one, whatever the table's size.
pub(crate) const ALWAYS_SEEK: usize = 2_000;

/// Whether `n` rows are at least half of `table` (`accounts` or `meters`): then one pass over the table
/// beats a seek per row. Small scopes (a handheld's upload) are answered without counting, since a
/// count walks a whole index: hundreds of pages per batch.
fn most_of(conn: &Connection, table: &str, n: usize) -> Result<bool> {
    if n < ALWAYS_SEEK {
        return Ok(false);
    }
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM {table}"))?
        .query_row([], |r| r.get(0))?;
    Ok(total > 0 && n as i64 * 2 >= total)
}

/// Receives one account's history reads at a time.
type HistorySink<'a, E> = dyn FnMut(&str, &[HistoryRead]) -> Result<(), E> + 'a;

/// The accounts a bulk read covers, in a temp table, and whether a full scan of `history` (filtered)
/// is cheaper than seeking each account: true when the scope is most of the district.
pub(crate) struct Scope {
    /// Sorted by bytes, as SQLite's BINARY collation orders `history`: the full scan walks this list
    /// alongside the history instead of hashing every account id.
    accounts: Vec<String>,
    full_scan: bool,
}

impl Scope {
    pub(crate) fn new(
        conn: &Connection,
        accounts: impl IntoIterator<Item = String>,
    ) -> Result<Scope> {
        let mut accounts: Vec<String> = accounts.into_iter().collect();
        accounts.sort_unstable();
        accounts.dedup();
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS scope_accounts (account_id TEXT PRIMARY KEY) WITHOUT ROWID;
             DELETE FROM temp.scope_accounts;",
        )?;
        let full_scan = most_of(conn, "accounts", accounts.len())?;
        if !full_scan {
            let mut stmt =
                conn.prepare_cached("INSERT INTO temp.scope_accounts (account_id) VALUES (?1)")?;
            for a in &accounts {
                stmt.execute([a])?;
            }
        }
        Ok(Scope {
            accounts,
            full_scan,
        })
    }

    /// Registers of the meters the scope's history mentions: every meter of the district for a full
    /// scan, else the meters set at the scope's accounts, with any other (a meter a meter change took
    /// away) looked up when first asked for.
    pub(crate) fn registers<'c>(&self, conn: &'c Connection) -> Result<Registers<'c>> {
        let sql = if self.full_scan {
            "SELECT meter_id, dials, multiplier, unit FROM meters"
        } else {
            "SELECT m.meter_id, m.dials, m.multiplier, m.unit \
             FROM temp.scope_accounts s CROSS JOIN meters m ON m.account_id = s.account_id"
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([])?;
        let mut known = HashMap::new();
        while let Some(row) = rows.next()? {
            known.insert(row.get(0)?, Some(register_at(row, 1)?));
        }
        Ok(Registers {
            conn,
            known: RefCell::new(known),
        })
    }

    /// Calls `f(account_id, reads)` once per account of the scope that has history, streaming
    /// `history` in primary-key order: only one account's reads are in memory at a time.
    pub(crate) fn for_each_history<E: From<StoreError>>(
        &self,
        conn: &Connection,
        mut f: impl FnMut(&str, &[HistoryRead]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scan_history(conn, &mut f)
    }

    fn scan_history<E: From<StoreError>>(
        &self,
        conn: &Connection,
        f: &mut HistorySink<'_, E>,
    ) -> Result<(), E> {
        // rusqlite errors become store errors, then the caller's.
        let sql_err = |e: rusqlite::Error| E::from(StoreError::Sql(e));
        let sql = if self.full_scan {
            // From the scope's first account to its last: all of `history` for a whole district, half
            // of it for each of two threads judging half a cycle each.
            "SELECT account_id, meter_id, read_on, reading, kind FROM history \
             WHERE account_id BETWEEN ?1 AND ?2 ORDER BY account_id, meter_id, read_on, kind"
        } else {
            // CROSS JOIN keeps the few scope accounts as the outer loop: with a plain JOIN SQLite may
            // pick a scan of all of `history` per batch (seen in the query plan under HTTP load).
            // Ordering by `s.account_id` (the temp table's key, walked in order) lets SQLite see the
            // rows already come out sorted; `h.account_id` made it sort them in a temp B-tree.
            "SELECT h.account_id, h.meter_id, h.read_on, h.reading, h.kind \
             FROM temp.scope_accounts s CROSS JOIN history h ON h.account_id = s.account_id \
             ORDER BY s.account_id, h.meter_id, h.read_on, h.kind"
        };
        let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
        let mut rows = if self.full_scan {
            let (Some(first), Some(last)) = (self.accounts.first(), self.accounts.last()) else {
                return Ok(());
            };
            stmt.query([first, last])
        } else {
            stmt.query([])
        }
        .map_err(sql_err)?;
        let mut current = String::new();
        let mut wanted = false;
        // The next account of the scope not yet passed (full scan).
        let mut next = 0;
        // Reused across accounts (strings included): the scan allocates only when an account has
        // more reads, or longer meter ids, than any before it.
        let mut reads: Vec<HistoryRead> = Vec::with_capacity(64);
        let mut len = 0;
        while let Some(row) = rows.next().map_err(sql_err)? {
            let account = bytes_at(row, 0).map_err(sql_err)?;
            if account != current.as_bytes() {
                if wanted && len > 0 {
                    f(&current, &reads[..len])?;
                }
                len = 0;
                current.clear();
                current.push_str(text_at(row, 0).map_err(sql_err)?);
                wanted = !self.full_scan || {
                    let accounts = &self.accounts;
                    while next < accounts.len() && accounts[next].as_bytes() < current.as_bytes() {
                        next += 1;
                    }
                    next < accounts.len() && accounts[next] == current
                };
            }
            if !wanted {
                continue;
            }
            let day = bytes_at(row, 2).map_err(sql_err)?;
            let kind = bytes_at(row, 4).map_err(sql_err)?;
            let (Some(read_on), Some(kind)) = (fast_date(day), kind_of(kind)) else {
                return Err(E::from(StoreError::Invalid(format!(
                    "history of account {current}: bad date `{}` or kind `{}`",
                    String::from_utf8_lossy(day),
                    String::from_utf8_lossy(kind)
                ))));
            };
            let meter = bytes_at(row, 1).map_err(sql_err)?;
            let reading = u64_at(row, 3).map_err(sql_err)?;
            if len == reads.len() {
                reads.push(HistoryRead {
                    // The account id is the group's key; not repeated per read.
                    account_id: String::new(),
                    meter_id: String::new(),
                    read_on,
                    reading,
                    kind,
                });
            }
            let r = &mut reads[len];
            if r.meter_id.as_bytes() != meter {
                r.meter_id.clear();
                r.meter_id.push_str(text_at(row, 1).map_err(sql_err)?);
            }
            (r.read_on, r.reading, r.kind) = (read_on, reading, kind);
            len += 1;
        }
        if wanted && len > 0 {
            f(&current, &reads[..len])?;
        }
        Ok(())
    }
}

// ---- meters and accounts -------------------------------------------------------------------------

/// An account as validation and route files see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub account_id: String,
    pub name: String,
    pub service_address: String,
    pub status: AccountStatus,
    pub rate_class: String,
    pub route_id: String,
    pub sequence: u32,
}

/// A meter and the account it is set at (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterRow {
    pub meter_id: String,
    pub status: MeterStatus,
    pub register: Register,
    pub account_id: Option<String>,
    pub account: Option<AccountRow>,
}

const METER_ACCOUNT_COLUMNS: &str =
    "m.meter_id, m.status, m.dials, m.multiplier, m.unit, m.account_id, \
     a.account_id, a.name, a.service_address, a.status, a.rate_class, a.route_id, a.sequence";
/// The same without the customer's name and address, which validation does not use.
const METER_ACCOUNT_COLUMNS_LEAN: &str =
    "m.meter_id, m.status, m.dials, m.multiplier, m.unit, m.account_id, \
     a.account_id, '', '', a.status, a.rate_class, a.route_id, a.sequence";

fn meter_row(row: &Row<'_>) -> rusqlite::Result<MeterRow> {
    let account = match row.get::<_, Option<String>>(6)? {
        None => None,
        Some(account_id) => Some(AccountRow {
            account_id,
            name: row.get(7)?,
            service_address: row.get(8)?,
            status: parse_at(row, 9)?,
            rate_class: row.get(10)?,
            route_id: row.get(11)?,
            sequence: u32::try_from(row.get::<_, i64>(12)?).unwrap_or(u32::MAX),
        }),
    };
    Ok(MeterRow {
        meter_id: row.get(0)?,
        status: parse_at(row, 1)?,
        register: register_at(row, 2)?,
        account_id: row.get(5)?,
        account,
    })
}

/// The meters named by `meter_ids`, each id mapped to its slot (`0..meter_ids.len()`, each once): the
/// meter with its account at that slot, `None` for an id the district does not know (name and address
/// left empty: validation does not use them).
pub(crate) fn meters_by_id(
    conn: &Connection,
    meter_ids: &HashMap<&str, usize>,
) -> Result<Vec<Option<MeterRow>>> {
    let mut out: Vec<Option<MeterRow>> = Vec::new();
    out.resize_with(meter_ids.len(), || None);
    let mut put = |m: MeterRow| {
        if let Some(slot) = meter_ids
            .get(m.meter_id.as_str())
            .and_then(|&i| out.get_mut(i))
        {
            *slot = Some(m);
        }
    };
    if most_of(conn, "meters", meter_ids.len())? {
        // Most of the district (a full cycle's upload): one pass over meters beats a seek per id.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {METER_ACCOUNT_COLUMNS_LEAN} FROM meters m LEFT JOIN accounts a ON a.account_id = m.account_id"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if let Some(&i) = meter_ids.get(text_at(r, 0)?) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(meter_row(r)?);
                }
            }
        }
        return Ok(out);
    }
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS scope_meters (meter_id TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.scope_meters;",
    )?;
    {
        let mut ins =
            conn.prepare_cached("INSERT INTO temp.scope_meters (meter_id) VALUES (?1)")?;
        for id in meter_ids.keys() {
            ins.execute([id])?;
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {METER_ACCOUNT_COLUMNS_LEAN} FROM temp.scope_meters s JOIN meters m ON m.meter_id = s.meter_id \
         LEFT JOIN accounts a ON a.account_id = m.account_id"
    ))?;
    for r in stmt.query_map([], meter_row)? {
        put(r?);
    }
    conn.execute_batch("DELETE FROM temp.scope_meters;")?;
    Ok(out)
}

/// Meters in service (active, set at an account) on `routes` that have no judging basis, with their
/// accounts, in account order (name and address left empty).
pub(crate) fn meters_without_basis(
    conn: &Connection,
    routes: &HashSet<&str>,
) -> Result<Vec<MeterRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {METER_ACCOUNT_COLUMNS_LEAN} FROM accounts a CROSS JOIN meters m ON m.account_id = a.account_id \
         WHERE m.status = 'active' \
           AND NOT EXISTS (SELECT 1 FROM judging_basis b WHERE b.meter_id = m.meter_id) \
         ORDER BY a.account_id"
    ))?;
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if routes.contains(text_at(r, 11)?) {
            out.push(meter_row(r)?);
        }
    }
    Ok(out)
}

/// The stops of a cycle's routes (or of one route): active meters of the routes' accounts, in route
/// then walk order.
pub(crate) fn route_stops(
    conn: &Connection,
    cycle_id: &str,
    route_id: Option<&str>,
) -> Result<Vec<MeterRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {METER_ACCOUNT_COLUMNS} FROM cycle_routes cr \
         JOIN accounts a ON a.route_id = cr.route_id \
         JOIN meters m ON m.account_id = a.account_id AND m.status = 'active' \
         WHERE cr.cycle_id = ?1 AND (?2 IS NULL OR cr.route_id = ?2) \
         ORDER BY a.route_id, a.sequence, a.account_id, m.meter_id"
    ))?;
    let rows = stmt.query_map(params![cycle_id, route_id], meter_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An open (or sent) field order for a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub order_id: i64,
    pub kind: String,
    pub account_id: String,
    pub meter_id: Option<String>,
    pub instructions: String,
}

/// Open field orders of the cycle's routes' accounts (one query).
pub(crate) fn open_orders(
    conn: &Connection,
    cycle_id: &str,
    route_id: Option<&str>,
) -> Result<Vec<OpenOrder>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.order_id, o.kind, o.account_id, o.meter_id, o.instructions FROM cycle_routes cr \
         JOIN accounts a ON a.route_id = cr.route_id \
         JOIN field_orders o ON o.account_id = a.account_id AND o.status IN ('open', 'sent') \
         WHERE cr.cycle_id = ?1 AND (?2 IS NULL OR cr.route_id = ?2) ORDER BY o.order_id",
    )?;
    let rows = stmt.query_map(params![cycle_id, route_id], |r| {
        Ok(OpenOrder {
            order_id: r.get(0)?,
            kind: r.get(1)?,
            account_id: r.get(2)?,
            meter_id: r.get(3)?,
            instructions: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Codes whose use opens a follow-up item.
pub(crate) fn follow_up_codes(conn: &Connection) -> Result<HashSet<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT code FROM message_codes WHERE requires_follow_up = 1")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- field reads -----------------------------------------------------------------------------------

/// A read stored earlier in the cycle, for duplicate detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierRead {
    pub read_id: i64,
    pub raw_reading: String,
    /// Flagged `off_route` and still waiting for a clerk: the assigned handheld's read replaces it.
    pub off_route_pending: bool,
}

/// `off_route_pending` of [`EarlierRead`] for the `field_reads` row aliased `f`.
const OFF_ROUTE_PENDING: &str = "(f.status = 'flagged' AND EXISTS (SELECT 1 FROM flags g \
     WHERE g.read_id = f.read_id AND g.flag = 'off_route'))";

/// Reads already in the cycle for the given meters (not superseded), oldest first.
pub(crate) fn earlier_reads(
    conn: &Connection,
    cycle_id: &str,
    meter_ids: &HashSet<&str>,
) -> Result<HashMap<String, Vec<EarlierRead>>> {
    let mut out: HashMap<String, Vec<EarlierRead>> = HashMap::new();
    if meter_ids.len() > ALWAYS_SEEK {
        // A big batch (a whole route file, a CSV import): one pass over the cycle's reads.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT f.meter_id, f.read_id, f.raw_reading, {OFF_ROUTE_PENDING} FROM field_reads f \
             WHERE f.cycle_id = ?1 AND f.superseded_by IS NULL ORDER BY f.read_id"
        ))?;
        let mut rows = stmt.query([cycle_id])?;
        while let Some(r) = rows.next()? {
            let meter = text_at(r, 0)?;
            if meter_ids.contains(meter) {
                out.entry(meter.to_string()).or_default().push(EarlierRead {
                    read_id: r.get(1)?,
                    raw_reading: r.get(2)?,
                    off_route_pending: r.get(3)?,
                });
            }
        }
        return Ok(out);
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT f.read_id, f.raw_reading, {OFF_ROUTE_PENDING} FROM field_reads f \
         WHERE f.cycle_id = ?1 AND f.meter_id = ?2 AND f.superseded_by IS NULL ORDER BY f.read_id"
    ))?;
    for m in meter_ids {
        // An index seek per meter of the batch on (cycle_id, meter_id): cheap, and most find nothing.
        let rows = stmt.query_map(params![cycle_id, m], |r| {
            Ok(EarlierRead {
                read_id: r.get(0)?,
                raw_reading: r.get(1)?,
                off_route_pending: r.get(2)?,
            })
        })?;
        let found = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if !found.is_empty() {
            out.insert((*m).to_string(), found);
        }
    }
    Ok(out)
}

/// A read stored from a handheld: its id and the digest of its content as the handheld sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRead {
    pub read_id: i64,
    pub content: Option<[u8; 32]>,
    pub meter_id: String,
    pub raw_reading: String,
}

/// Reads already stored from `device` under state `state_id`, by device sequence number (one index
/// range per handheld state).
pub(crate) fn reads_by_device(
    conn: &Connection,
    device: &str,
    state_id: u64,
) -> Result<HashMap<u64, HeldRead>> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_seq, read_id, device_content, meter_id, raw_reading FROM field_reads
          WHERE device_id = ?1 AND device_state = ?2 AND device_seq IS NOT NULL",
    )?;
    let mut rows = stmt.query(params![device, state_int(state_id)])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        let content: Option<Vec<u8>> = r.get(2)?;
        out.insert(
            u64_at(r, 0)?,
            HeldRead {
                read_id: r.get(1)?,
                content: content.and_then(|c| c.try_into().ok()),
                meter_id: r.get(3)?,
                raw_reading: r.get(4)?,
            },
        );
    }
    Ok(out)
}

/// A handheld's state id as stored: its 64 bits read as a signed integer.
pub(crate) fn state_int(state_id: u64) -> i64 {
    i64::from_ne_bytes(state_id.to_ne_bytes())
}

/// A field read with its validation decision, as inserted.
#[derive(Debug, Clone)]
pub struct NewRead<'a> {
    pub cycle_id: &'a str,
    pub meter_id: &'a str,
    pub account_id: Option<&'a str>,
    pub read_at: NaiveDateTime,
    pub raw_reading: &'a str,
    pub reading: Option<u64>,
    pub read_type: ReadType,
    pub method: ReadMethod,
    pub reader: &'a str,
    pub codes: &'a [String],
    pub skip_code: Option<&'a str>,
    pub note: Option<&'a str>,
    pub device: Option<&'a DeviceRef>,
    pub received_at: NaiveDateTime,
    pub status: ReadStatus,
    pub previous_reading: Option<u64>,
    pub previous_read_on: Option<NaiveDate>,
    pub consumption: Option<i64>,
    pub expected_use: Option<f64>,
    pub expected_basis: Option<&'a str>,
    pub low_limit: Option<u64>,
    pub high_limit: Option<u64>,
    pub flags: &'a [Flag],
    /// The reading the reader likely meant (a mis-key validation recognised).
    pub intended_reading: Option<u64>,
}

/// Inserts a read, its flags and the follow-ups its codes open; returns the read id.
pub(crate) fn insert_read(
    conn: &Connection,
    r: &NewRead<'_>,
    follow_up_codes: &HashSet<String>,
) -> Result<i64> {
    let opt = |v: Option<u64>| v.map(store_int).transpose();
    // Most reads carry no code (or one): joined only when there is something to join.
    let codes: std::borrow::Cow<'_, str> = match r.codes {
        [] => "".into(),
        [one] => one.as_str().into(),
        many => many.join(";").into(),
    };
    conn.prepare_cached(
        "INSERT INTO field_reads (cycle_id, meter_id, account_id, read_at, raw_reading, reading, read_type, \
         method, reader, codes, skip_code, note, device_id, device_seq, received_at, status, previous_reading, \
         previous_read_on, consumption, expected_use, expected_basis, low_limit, high_limit, device_state, \
         device_content, intended_reading) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, \
         ?23, ?24, ?25, ?26)",
    )?
    .execute(params![
        r.cycle_id,
        r.meter_id,
        r.account_id,
        TimeText::checked(r.read_at, "read time")?.as_str(),
        r.raw_reading,
        opt(r.reading)?,
        r.read_type.as_str(),
        r.method.as_str(),
        r.reader,
        codes.as_ref(),
        r.skip_code,
        r.note,
        r.device.map(|d| d.device_id.as_str()),
        r.device.map(|d| store_int(d.seq)).transpose()?,
        TimeText::checked(r.received_at, "receipt time")?.as_str(),
        r.status.as_str(),
        opt(r.previous_reading)?,
        r.previous_read_on.map(date_text),
        r.consumption,
        r.expected_use,
        r.expected_basis,
        opt(r.low_limit)?,
        opt(r.high_limit)?,
        r.device.map(|d| state_int(d.state_id)),
        r.device.map(|d| d.content.as_slice()),
        opt(r.intended_reading)?,
    ])?;
    let read_id = conn.last_insert_rowid();
    // Most reads carry no flag and no code: no statement is looked up for them.
    if !r.flags.is_empty() {
        let mut flag = conn.prepare_cached(
            "INSERT OR REPLACE INTO flags (read_id, flag, quality, explanation) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for f in r.flags {
            flag.execute(params![read_id, f.kind.as_str(), f.quality, f.explanation])?;
        }
    }
    let mut follow_codes = r
        .codes
        .iter()
        .filter(|c| follow_up_codes.contains(c.as_str()))
        .peekable();
    if follow_codes.peek().is_some() {
        let mut follow = conn.prepare_cached(
            "INSERT OR IGNORE INTO follow_ups (read_id, code, status, opened_at) VALUES (?1, ?2, 'open', ?3)",
        )?;
        for c in follow_codes {
            follow.execute(params![read_id, c, time_text(r.received_at)])?;
        }
    }
    Ok(read_id)
}

/// One stored read with its flags, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRead {
    pub read_id: i64,
    pub account_id: Option<String>,
    pub route_id: Option<String>,
    pub meter_id: String,
    pub read_at: NaiveDateTime,
    pub raw_reading: String,
    pub reading: Option<u64>,
    pub read_type: ReadType,
    pub method: ReadMethod,
    pub reader: String,
    pub codes: Vec<String>,
    pub device: Option<(String, u64)>,
    pub status: ReadStatus,
    pub previous_reading: Option<u64>,
    pub consumption: Option<i64>,
    pub expected_use: Option<f64>,
    pub expected_basis: Option<String>,
    pub low_limit: Option<u64>,
    pub high_limit: Option<u64>,
    pub unit: Option<Unit>,
    pub superseded_by: Option<i64>,
    pub flags: Vec<Flag>,
    pub intended_reading: Option<u64>,
}

/// Every read of a cycle in arrival order, with its flags (two queries, merged).
pub(crate) fn cycle_reads(conn: &Connection, cycle_id: &str) -> Result<Vec<StoredRead>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.read_id, r.account_id, a.route_id, r.meter_id, r.read_at, r.raw_reading, r.reading, r.read_type, \
         r.method, r.reader, r.codes, r.device_id, r.device_seq, r.status, r.previous_reading, r.consumption, \
         r.expected_use, r.expected_basis, r.low_limit, r.high_limit, m.unit, r.superseded_by, \
         r.intended_reading FROM field_reads r LEFT JOIN accounts a ON a.account_id = r.account_id \
         LEFT JOIN meters m ON m.meter_id = r.meter_id WHERE r.cycle_id = ?1 ORDER BY r.read_id",
    )?;
    let rows = stmt.query_map([cycle_id], |r| {
        let device_id: Option<String> = r.get(11)?;
        let unit: Option<String> = r.get(20)?;
        Ok(StoredRead {
            read_id: r.get(0)?,
            account_id: r.get(1)?,
            route_id: r.get(2)?,
            meter_id: r.get(3)?,
            read_at: time_at(r, 4)?,
            raw_reading: r.get(5)?,
            reading: opt_u64_at(r, 6)?,
            read_type: parse_at(r, 7)?,
            method: parse_at(r, 8)?,
            reader: r.get(9)?,
            codes: codes_at(r, 10)?,
            device: match (device_id, opt_u64_at(r, 12)?) {
                (Some(d), Some(s)) => Some((d, s)),
                _ => None,
            },
            status: parse_at(r, 13)?,
            previous_reading: opt_u64_at(r, 14)?,
            consumption: r.get(15)?,
            expected_use: r.get(16)?,
            expected_basis: r.get(17)?,
            low_limit: opt_u64_at(r, 18)?,
            high_limit: opt_u64_at(r, 19)?,
            unit: unit.and_then(|u| u.parse().ok()),
            superseded_by: r.get(21)?,
            flags: Vec::new(),
            intended_reading: opt_u64_at(r, 22)?,
        })
    })?;
    let mut reads = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut flags = flags_by_read(
        conn,
        "SELECT f.read_id, f.flag, f.quality, f.explanation FROM flags f \
         JOIN field_reads r ON r.read_id = f.read_id WHERE r.cycle_id = ?1 ORDER BY f.read_id, f.flag",
        cycle_id,
    )?;
    for r in &mut reads {
        r.flags = flags.remove(&r.read_id).unwrap_or_default();
    }
    Ok(reads)
}

/// Per route of a cycle: stops expected (active meters of the route's accounts).
pub(crate) fn expected_stops(conn: &Connection, cycle_id: &str) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT cr.route_id, count(m.meter_id) FROM cycle_routes cr \
         LEFT JOIN accounts a ON a.route_id = cr.route_id \
         LEFT JOIN meters m ON m.account_id = a.account_id AND m.status = 'active' \
         WHERE cr.cycle_id = ?1 GROUP BY cr.route_id ORDER BY cr.route_id",
    )?;
    let rows = stmt.query_map([cycle_id], |r| Ok((r.get(0)?, u64_at(r, 1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An open follow-up item (a leak seen, a broken lid) raised by a read's message code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub follow_up_id: i64,
    pub read_id: i64,
    pub meter_id: String,
    pub account_id: Option<String>,
    pub code: String,
    pub opened_at: NaiveDateTime,
}

impl Store {
    /// Open follow-ups raised by the cycle's reads, oldest first.
    pub fn open_follow_ups(&self, cycle_id: &str) -> Result<Vec<FollowUp>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT f.follow_up_id, f.read_id, r.meter_id, r.account_id, f.code, f.opened_at \
             FROM follow_ups f JOIN field_reads r ON r.read_id = f.read_id \
             WHERE r.cycle_id = ?1 AND f.status = 'open' ORDER BY f.follow_up_id",
        )?;
        let rows = stmt.query_map([cycle_id], |r| {
            Ok(FollowUp {
                follow_up_id: r.get(0)?,
                read_id: r.get(1)?,
                meter_id: r.get(2)?,
                account_id: r.get(3)?,
                code: r.get(4)?,
                opened_at: time_at(r, 5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A cycle with its routes.
    pub fn cycle(&self, id: &str) -> Result<Option<Cycle>> {
        load_cycle(self.conn(), id)
    }

    /// Every read of a cycle in arrival order, with its flags.
    pub fn cycle_reads(&self, cycle_id: &str) -> Result<Vec<StoredRead>> {
        cycle_reads(self.conn(), cycle_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every time the store accepts reads back exactly; every other one it refuses to write.
        #[test]
        fn a_stored_time_reads_back_as_written(secs in -70_000_000_000i64..300_000_000_000i64) {
            let t = chrono::DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
            match TimeText::new(t) {
                Some(text) => {
                    prop_assert!(time_is_storable(t));
                    prop_assert_eq!(parse_time(text.as_str()), Some(t));
                    prop_assert_eq!(time_text(t), text.as_str());
                }
                None => {
                    prop_assert!(!time_is_storable(t));
                    prop_assert!(TimeText::checked(t, "read time").is_err());
                }
            }
        }
    }

    #[test]
    fn the_edges_of_the_storable_years() {
        let at = |y: i32| {
            NaiveDate::from_ymd_opt(y, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
        };
        assert!(time_is_storable(at(1)) && time_is_storable(at(9999)));
        assert!(!time_is_storable(at(0)) && !time_is_storable(at(10_000)));
        let end = NaiveDate::from_ymd_opt(9999, 12, 31)
            .unwrap()
            .and_hms_opt(23, 59, 59)
            .unwrap();
        assert_eq!(parse_time(TimeText::new(end).unwrap().as_str()), Some(end));
    }
}
