//! The district's reference data: routes, accounts, meters, read history and message codes.
//!
//! Writes come in two shapes: the bulk `Store::upsert_*` calls (one transaction per call, used by the demo
//! builder and by anything holding domain values), and [`DistrictTx`], a handle on an open transaction
//! that the CIS importer drives row by row so it can validate against the database *and* the rows of the
//! same file already written in that transaction.

use super::{Result, Store, StoreError};
use crate::domain::{
    Account, AccountStatus, HistoryRead, MessageCode, Meter, MeterStatus, ReadKind, Register,
    Route, Unit,
};
use chrono::NaiveDate;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use std::str::FromStr;

/// How many rows of each kind the district holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DistrictCounts {
    pub routes: u64,
    pub accounts_active: u64,
    pub accounts_inactive: u64,
    pub accounts_closed: u64,
    pub meters_active: u64,
    pub meters_inventory: u64,
    pub meters_retired: u64,
    pub history: u64,
    pub codes: u64,
}

impl DistrictCounts {
    pub fn accounts(&self) -> u64 {
        self.accounts_active + self.accounts_inactive + self.accounts_closed
    }

    pub fn meters(&self) -> u64 {
        self.meters_active + self.meters_inventory + self.meters_retired
    }
}

/// What an upsert did to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Inserted,
    Updated,
    Unchanged,
}

/// What the importer needs to know about a meter to check a history row against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterFacts {
    pub account_id: Option<String>,
    pub register: Register,
    pub installed_on: Option<NaiveDate>,
    pub removed_on: Option<NaiveDate>,
}

// ---- row mapping -------------------------------------------------------------------------------
// Columns are fetched by name so that other store modules can reuse these with their own SELECTs
// (joins, extra columns) as long as the column names match the tables'.

fn conversion_error(
    row: &Row<'_>,
    name: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    let idx = row.as_ref().column_index(name).unwrap_or(0);
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(err))
}

fn parse_col<T>(row: &Row<'_>, name: &str) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(name)?;
    text.parse().map_err(|e| conversion_error(row, name, e))
}

fn date_col(row: &Row<'_>, name: &str) -> rusqlite::Result<Option<NaiveDate>> {
    let text: Option<String> = row.get(name)?;
    text.map(|t| parse_date(&t).map_err(|e| conversion_error(row, name, e)))
        .transpose()
}

fn int_col<T: TryFrom<i64>>(row: &Row<'_>, name: &str) -> rusqlite::Result<T> {
    let v: i64 = row.get(name)?;
    T::try_from(v).map_err(|_| {
        let idx = row.as_ref().column_index(name).unwrap_or(0);
        rusqlite::Error::IntegralValueOutOfRange(idx, v)
    })
}

/// A date that is not in the one form the store and the CIS files use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a YYYY-MM-DD date")]
pub struct InvalidDate(pub String);

/// Parses an ISO 8601 calendar date in its extended, zero-padded form (`2026-11-03`) and nothing else:
/// `24-01-05` or `2024-1-5` are typing slips in a CIS file, not dates to guess at.
pub(crate) fn parse_date(text: &str) -> Result<NaiveDate, InvalidDate> {
    // Hand-rolled: history imports parse millions of these, and chrono's format-string parser costs
    // more than the rest of the row.
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) {
            if let Some(date) = i32::try_from(y)
                .ok()
                .and_then(|y| NaiveDate::from_ymd_opt(y, m, d))
            {
                return Ok(date);
            }
        }
    }
    Err(InvalidDate(text.to_string()))
}

/// A date as the store spells it (`YYYY-MM-DD`), built without a heap allocation: bulk paths bind
/// millions of them.
pub(crate) struct DateText([u8; 10]);

impl DateText {
    /// `None` for years outside 0000..=9999, which have no `YYYY` spelling.
    pub(crate) fn new(d: NaiveDate) -> Option<DateText> {
        use chrono::Datelike;
        let y = u32::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
        let mut b = *b"0000-00-00";
        let put = |b: &mut [u8; 10], at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                // `v % 10` is a single decimal digit, so the cast cannot truncate.
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(&mut b, 0, 4, y);
        put(&mut b, 5, 2, d.month());
        put(&mut b, 8, 2, d.day());
        Some(DateText(b))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and dashes are ever written into the buffer.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The store's spelling of a date.
pub(crate) fn date_text(d: NaiveDate) -> String {
    match DateText::new(d) {
        Some(t) => t.as_str().to_string(),
        // Unreachable through parse_date (four-digit years only); kept total for the bulk API.
        None => d.format("%Y-%m-%d").to_string(),
    }
}

pub(crate) fn route_from_row(row: &Row<'_>) -> rusqlite::Result<Route> {
    Ok(Route {
        id: row.get("route_id")?,
        name: row.get("name")?,
    })
}

pub(crate) fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get("account_id")?,
        name: row.get("name")?,
        service_address: row.get("service_address")?,
        status: parse_col::<AccountStatus>(row, "status")?,
        rate_class: row.get("rate_class")?,
        route_id: row.get("route_id")?,
        sequence: int_col(row, "sequence")?,
        apn: row.get("apn")?,
        phone: row.get("phone")?,
    })
}

pub(crate) fn register_from_row(row: &Row<'_>) -> rusqlite::Result<Register> {
    Ok(Register {
        dials: int_col(row, "dials")?,
        multiplier: int_col(row, "multiplier")?,
        unit: parse_col::<Unit>(row, "unit")?,
    })
}

pub(crate) fn meter_from_row(row: &Row<'_>) -> rusqlite::Result<Meter> {
    Ok(Meter {
        id: row.get("meter_id")?,
        account_id: row.get("account_id")?,
        status: parse_col::<MeterStatus>(row, "status")?,
        register: register_from_row(row)?,
        installed_on: date_col(row, "installed_on")?,
        removed_on: date_col(row, "removed_on")?,
    })
}

pub(crate) fn history_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryRead> {
    let read_on = date_col(row, "read_on")?.ok_or_else(|| {
        let idx = row.as_ref().column_index("read_on").unwrap_or(0);
        rusqlite::Error::InvalidColumnType(idx, "read_on".into(), Type::Null)
    })?;
    Ok(HistoryRead {
        account_id: row.get("account_id")?,
        meter_id: row.get("meter_id")?,
        read_on,
        reading: int_col(row, "reading")?,
        kind: parse_col::<ReadKind>(row, "kind")?,
    })
}

pub(crate) fn code_from_row(row: &Row<'_>) -> rusqlite::Result<MessageCode> {
    Ok(MessageCode {
        code: row.get("code")?,
        category: row.get("category")?,
        description: row.get("description")?,
        requires_follow_up: row.get("requires_follow_up")?,
        retired: row.get("retired")?,
    })
}

// Macros rather than consts so that statements are `concat!`-ed at compile time: the bulk paths
// look statements up in the cache by their text on every row, and must not format it each time.
macro_rules! account_columns {
    () => {
        "account_id, name, service_address, status, rate_class, route_id, sequence, apn, phone"
    };
}
macro_rules! meter_columns {
    () => {
        "meter_id, account_id, status, dials, multiplier, unit, installed_on, removed_on"
    };
}
macro_rules! history_columns {
    () => {
        "account_id, meter_id, read_on, reading, kind"
    };
}
macro_rules! code_columns {
    () => {
        "code, category, description, requires_follow_up, retired"
    };
}

fn reading_param(reading: u64) -> Result<i64> {
    i64::try_from(reading)
        .map_err(|_| StoreError::Invalid(format!("reading {reading} is too large to store")))
}

// ---- writes inside one transaction ---------------------------------------------------------------

/// The district's writes and the lookups an importer validates with, on one open transaction.
/// Statements are cached on the connection, so a loop over millions of rows prepares each once.
pub(crate) struct DistrictTx<'a> {
    tx: &'a Transaction<'a>,
}

/// Turns the change counts of "insert if absent" then "update if different" into an outcome.
fn outcome(inserted: usize, updated: usize) -> Upserted {
    if inserted > 0 {
        Upserted::Inserted
    } else if updated > 0 {
        Upserted::Updated
    } else {
        Upserted::Unchanged
    }
}

impl<'a> DistrictTx<'a> {
    pub(crate) fn new(tx: &'a Transaction<'a>) -> Self {
        DistrictTx { tx }
    }

    // Each upsert is "INSERT OR IGNORE" then, only if the row existed, an UPDATE guarded by
    // `IS NOT` on every column: an identical row is left untouched (no page write), and the change
    // counts tell inserted / updated / unchanged apart without a separate lookup on the insert path.

    pub(crate) fn upsert_route(&self, route: &Route) -> Result<Upserted> {
        let ins = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO routes (route_id, name) VALUES (?1, ?2)")?
            .execute(params![route.id, route.name])?;
        if ins > 0 {
            return Ok(Upserted::Inserted);
        }
        let upd = self
            .tx
            .prepare_cached("UPDATE routes SET name = ?2 WHERE route_id = ?1 AND name IS NOT ?2")?
            .execute(params![route.id, route.name])?;
        Ok(outcome(0, upd))
    }

    /// Creates the route (named after its id) if it does not exist yet.
    pub(crate) fn ensure_route(&self, route_id: &str) -> Result<bool> {
        let ins = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO routes (route_id, name) VALUES (?1, ?1)")?
            .execute([route_id])?;
        Ok(ins > 0)
    }

    pub(crate) fn upsert_account(&self, a: &Account) -> Result<Upserted> {
        self.ensure_route(&a.route_id)?;
        let p = params![
            a.id,
            a.name,
            a.service_address,
            a.status.as_str(),
            a.rate_class,
            a.route_id,
            a.sequence,
            a.apn,
            a.phone
        ];
        let ins = self
            .tx
            .prepare_cached(concat!(
                "INSERT OR IGNORE INTO accounts (",
                account_columns!(),
                ") \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(p)?;
        if ins > 0 {
            return Ok(Upserted::Inserted);
        }
        let upd = self
            .tx
            .prepare_cached(
                "UPDATE accounts SET name = ?2, service_address = ?3, status = ?4, rate_class = ?5, \
                 route_id = ?6, sequence = ?7, apn = ?8, phone = ?9 \
                 WHERE account_id = ?1 AND (name IS NOT ?2 OR service_address IS NOT ?3 \
                 OR status IS NOT ?4 OR rate_class IS NOT ?5 OR route_id IS NOT ?6 \
                 OR sequence IS NOT ?7 OR apn IS NOT ?8 OR phone IS NOT ?9)",
            )?
            .execute(p)?;
        Ok(outcome(0, upd))
    }

    pub(crate) fn upsert_meter(&self, m: &Meter) -> Result<Upserted> {
        let p = params![
            m.id,
            m.account_id,
            m.status.as_str(),
            m.register.dials,
            m.register.multiplier,
            m.register.unit.as_str(),
            m.installed_on.map(date_text),
            m.removed_on.map(date_text)
        ];
        let ins = self
            .tx
            .prepare_cached(concat!(
                "INSERT OR IGNORE INTO meters (",
                meter_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(p)?;
        if ins > 0 {
            return Ok(Upserted::Inserted);
        }
        let upd = self
            .tx
            .prepare_cached(
                "UPDATE meters SET account_id = ?2, status = ?3, dials = ?4, multiplier = ?5, unit = ?6, \
                 installed_on = ?7, removed_on = ?8 \
                 WHERE meter_id = ?1 AND (account_id IS NOT ?2 OR status IS NOT ?3 OR dials IS NOT ?4 \
                 OR multiplier IS NOT ?5 OR unit IS NOT ?6 OR installed_on IS NOT ?7 \
                 OR removed_on IS NOT ?8)",
            )?
            .execute(p)?;
        Ok(outcome(0, upd))
    }

    pub(crate) fn upsert_history(&self, h: &HistoryRead) -> Result<Upserted> {
        let read_on = DateText::new(h.read_on).ok_or_else(|| {
            StoreError::Invalid(format!(
                "read date {} is outside years 0000-9999",
                h.read_on
            ))
        })?;
        let p = params![
            h.account_id,
            h.meter_id,
            read_on.as_str(),
            reading_param(h.reading)?,
            h.kind.as_str()
        ];
        let ins = self
            .tx
            .prepare_cached(concat!(
                "INSERT OR IGNORE INTO history (",
                history_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(p)?;
        if ins > 0 {
            return Ok(Upserted::Inserted);
        }
        let upd = self
            .tx
            .prepare_cached(
                "UPDATE history SET reading = ?4 WHERE account_id = ?1 AND meter_id = ?2 \
                 AND read_on = ?3 AND kind = ?5 AND reading IS NOT ?4",
            )?
            .execute(p)?;
        Ok(outcome(0, upd))
    }

    pub(crate) fn upsert_code(&self, c: &MessageCode) -> Result<Upserted> {
        let p = params![
            c.code,
            c.category,
            c.description,
            c.requires_follow_up,
            c.retired
        ];
        let ins = self
            .tx
            .prepare_cached(concat!(
                "INSERT OR IGNORE INTO message_codes (",
                code_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(p)?;
        if ins > 0 {
            return Ok(Upserted::Inserted);
        }
        let upd = self
            .tx
            .prepare_cached(
                "UPDATE message_codes SET category = ?2, description = ?3, requires_follow_up = ?4, \
                 retired = ?5 WHERE code = ?1 AND (category IS NOT ?2 OR description IS NOT ?3 \
                 OR requires_follow_up IS NOT ?4 OR retired IS NOT ?5)",
            )?
            .execute(p)?;
        Ok(outcome(0, upd))
    }

    // ---- lookups for validation ----

    pub(crate) fn account_exists(&self, account_id: &str) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM accounts WHERE account_id = ?1")?
            .exists([account_id])?)
    }

    pub(crate) fn meter_facts(&self, meter_id: &str) -> Result<Option<MeterFacts>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT account_id, dials, multiplier, unit, installed_on, removed_on \
                 FROM meters WHERE meter_id = ?1",
            )?
            .query_row([meter_id], |row| {
                Ok(MeterFacts {
                    account_id: row.get("account_id")?,
                    register: register_from_row(row)?,
                    installed_on: date_col(row, "installed_on")?,
                    removed_on: date_col(row, "removed_on")?,
                })
            })
            .optional()?)
    }

    /// Whether the history already links this meter to this account: the evidence that a meter now
    /// elsewhere (or in inventory) once served the account.
    pub(crate) fn history_links(&self, account_id: &str, meter_id: &str) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT 1 FROM history WHERE account_id = ?1 AND meter_id = ?2 LIMIT 1",
            )?
            .exists([account_id, meter_id])?)
    }
}

// ---- reads on any connection (the writer's, or a read-only one for the clerk pages) --------------

pub(crate) fn routes_in(conn: &Connection) -> Result<Vec<Route>> {
    let mut stmt = conn.prepare_cached("SELECT route_id, name FROM routes ORDER BY route_id")?;
    let rows = stmt.query_map([], route_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn account_in(conn: &Connection, id: &str) -> Result<Option<Account>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE account_id = ?1"
        ))?
        .query_row([id], account_from_row)
        .optional()?)
}

pub(crate) fn accounts_on_route_in(conn: &Connection, route_id: &str) -> Result<Vec<Account>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        account_columns!(),
        " FROM accounts WHERE route_id = ?1 ORDER BY sequence, account_id"
    ))?;
    let rows = stmt.query_map([route_id], account_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn meter_in(conn: &Connection, id: &str) -> Result<Option<Meter>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            meter_columns!(),
            " FROM meters WHERE meter_id = ?1"
        ))?
        .query_row([id], meter_from_row)
        .optional()?)
}

pub(crate) fn meters_of_account_in(conn: &Connection, account_id: &str) -> Result<Vec<Meter>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        meter_columns!(),
        " FROM meters WHERE account_id = ?1 ORDER BY installed_on, meter_id"
    ))?;
    let rows = stmt.query_map([account_id], meter_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn history_of_account_in(
    conn: &Connection,
    account_id: &str,
) -> Result<Vec<HistoryRead>> {
    let mut stmt = conn.prepare_cached(concat!("SELECT ", history_columns!(), " FROM history WHERE account_id = ?1 \
         ORDER BY read_on, CASE kind WHEN 'final' THEN 0 WHEN 'initial' THEN 2 ELSE 1 END, meter_id"))?;
    let rows = stmt.query_map([account_id], history_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn codes_in(conn: &Connection, include_retired: bool) -> Result<Vec<MessageCode>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        code_columns!(),
        " FROM message_codes WHERE ?1 OR retired = 0 ORDER BY code"
    ))?;
    let rows = stmt.query_map([include_retired], code_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- the Store API -------------------------------------------------------------------------------

fn count_changed(outcomes: impl IntoIterator<Item = Result<Upserted>>) -> Result<usize> {
    let mut changed = 0;
    for o in outcomes {
        if o? != Upserted::Unchanged {
            changed += 1;
        }
    }
    Ok(changed)
}

impl Store {
    /// Upserts routes in one transaction; returns how many rows were inserted or changed.
    pub fn upsert_routes(&mut self, routes: &[Route]) -> Result<usize> {
        self.write(|tx| {
            let d = DistrictTx::new(tx);
            count_changed(routes.iter().map(|r| d.upsert_route(r)))
        })
    }

    /// Upserts accounts in one transaction, creating any route they name that does not exist yet
    /// (named after its id). Returns how many accounts were inserted or changed.
    pub fn upsert_accounts(&mut self, accounts: &[Account]) -> Result<usize> {
        self.write(|tx| {
            let d = DistrictTx::new(tx);
            count_changed(accounts.iter().map(|a| d.upsert_account(a)))
        })
    }

    /// Upserts meters in one transaction; each meter's account must exist.
    pub fn upsert_meters(&mut self, meters: &[Meter]) -> Result<usize> {
        self.write(|tx| {
            let d = DistrictTx::new(tx);
            count_changed(meters.iter().map(|m| d.upsert_meter(m)))
        })
    }

    /// Upserts history reads in one transaction; account and meter must exist. Only database
    /// constraints are checked here: the CIS importer is where file rows get validated.
    pub fn upsert_history(&mut self, reads: &[HistoryRead]) -> Result<usize> {
        self.write(|tx| {
            let d = DistrictTx::new(tx);
            count_changed(reads.iter().map(|h| d.upsert_history(h)))
        })
    }

    pub fn upsert_codes(&mut self, codes: &[MessageCode]) -> Result<usize> {
        self.write(|tx| {
            let d = DistrictTx::new(tx);
            count_changed(codes.iter().map(|c| d.upsert_code(c)))
        })
    }

    pub fn routes(&self) -> Result<Vec<Route>> {
        routes_in(self.conn())
    }

    pub fn account(&self, id: &str) -> Result<Option<Account>> {
        account_in(self.conn(), id)
    }

    /// The route's accounts in walk order.
    pub fn accounts_on_route(&self, route_id: &str) -> Result<Vec<Account>> {
        accounts_on_route_in(self.conn(), route_id)
    }

    pub fn meter(&self, id: &str) -> Result<Option<Meter>> {
        meter_in(self.conn(), id)
    }

    /// The account's meters, oldest installation first (a meter never installed sorts first).
    pub fn meters_of_account(&self, account_id: &str) -> Result<Vec<Meter>> {
        meters_of_account_in(self.conn(), account_id)
    }

    /// The account's read history, oldest first. Reads on the same day come in a stable order:
    /// by meter, then `final` of the old meter before `initial` of the new one.
    pub fn history_of_account(&self, account_id: &str) -> Result<Vec<HistoryRead>> {
        history_of_account_in(self.conn(), account_id)
    }

    pub fn codes(&self, include_retired: bool) -> Result<Vec<MessageCode>> {
        codes_in(self.conn(), include_retired)
    }

    pub fn counts(&self) -> Result<DistrictCounts> {
        let conn = self.conn();
        let one = |sql: &str| -> Result<u64> {
            let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let mut c = DistrictCounts {
            routes: one("SELECT count(*) FROM routes")?,
            history: one("SELECT count(*) FROM history")?,
            codes: one("SELECT count(*) FROM message_codes")?,
            ..DistrictCounts::default()
        };
        let mut stmt = conn.prepare("SELECT status, count(*) FROM accounts GROUP BY status")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let n = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
            match parse_col::<AccountStatus>(row, "status")? {
                AccountStatus::Active => c.accounts_active = n,
                AccountStatus::Inactive => c.accounts_inactive = n,
                AccountStatus::Closed => c.accounts_closed = n,
            }
        }
        let mut stmt = conn.prepare("SELECT status, count(*) FROM meters GROUP BY status")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let n = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
            match parse_col::<MeterStatus>(row, "status")? {
                MeterStatus::Active => c.meters_active = n,
                MeterStatus::Inventory => c.meters_inventory = n,
                MeterStatus::Retired => c.meters_retired = n,
            }
        }
        Ok(c)
    }

    // ---- streaming reads for exports (millions of history rows never sit in memory) ----

    /// Calls `f` for every account, in account id order.
    pub fn for_each_account<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(Account) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_each(
            concat!(
                "SELECT ",
                account_columns!(),
                " FROM accounts ORDER BY account_id"
            ),
            account_from_row,
            &mut f,
        )
    }

    /// Calls `f` for every meter, in meter id order.
    pub fn for_each_meter<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(Meter) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_each(
            concat!(
                "SELECT ",
                meter_columns!(),
                " FROM meters ORDER BY meter_id"
            ),
            meter_from_row,
            &mut f,
        )
    }

    /// Calls `f` for every history read, in primary key order (account, meter, date, kind).
    pub fn for_each_history<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(HistoryRead) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_each(
            concat!(
                "SELECT ",
                history_columns!(),
                " FROM history ORDER BY account_id, meter_id, read_on, kind"
            ),
            history_from_row,
            &mut f,
        )
    }

    fn for_each<T, E: From<StoreError>>(
        &self,
        sql: &str,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
        f: &mut dyn FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self.conn().prepare(sql).map_err(StoreError::from)?;
        let mut rows = stmt.query([]).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            f(map(row).map_err(StoreError::from)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, route: &str, seq: u32) -> Account {
        Account {
            id: id.into(),
            name: format!("Customer {id}"),
            service_address: format!("{seq} Main St, Springfield"),
            status: AccountStatus::Active,
            rate_class: "residential".into(),
            route_id: route.into(),
            sequence: seq,
            apn: String::new(),
            phone: String::new(),
        }
    }

    fn meter(id: &str, account: Option<&str>) -> Meter {
        Meter {
            id: id.into(),
            account_id: account.map(str::to_string),
            status: if account.is_some() {
                MeterStatus::Active
            } else {
                MeterStatus::Inventory
            },
            register: Register {
                dials: 4,
                multiplier: 1,
                unit: Unit::Hcf,
            },
            installed_on: NaiveDate::from_ymd_opt(2020, 1, 15),
            removed_on: None,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn dates_parse_and_print_in_iso_form_only() {
        assert_eq!(parse_date("2024-02-29").unwrap(), day(2024, 2, 29));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-5",
            "24-01-05",
            "2024/01/05",
            "2024-01-05T00:00",
            "",
            "２０２４-01-05",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(date_text(day(987, 3, 4)), "0987-03-04");
        assert!(DateText::new(day(10_000, 1, 1)).is_none());
        assert_eq!(
            parse_date(&date_text(day(2026, 11, 3))).unwrap(),
            day(2026, 11, 3)
        );
    }

    #[test]
    fn upserting_the_same_rows_twice_changes_nothing_the_second_time() {
        let mut s = Store::open_in_memory().unwrap();
        let accts = [account("A1", "R1", 2), account("A2", "R1", 1)];
        assert_eq!(s.upsert_accounts(&accts).unwrap(), 2);
        assert_eq!(s.upsert_accounts(&accts).unwrap(), 0);
        let mut changed = accts[0].clone();
        changed.phone = "555-0100".into();
        assert_eq!(s.upsert_accounts(&[changed.clone()]).unwrap(), 1);
        assert_eq!(s.account("A1").unwrap(), Some(changed));
    }

    #[test]
    fn accounts_create_their_missing_routes_named_after_the_id() {
        let mut s = Store::open_in_memory().unwrap();
        s.upsert_routes(&[Route {
            id: "R2".into(),
            name: "North hills".into(),
        }])
        .unwrap();
        s.upsert_accounts(&[account("A1", "R1", 1), account("A2", "R2", 1)])
            .unwrap();
        let routes = s.routes().unwrap();
        assert_eq!(
            routes,
            vec![
                Route {
                    id: "R1".into(),
                    name: "R1".into()
                },
                Route {
                    id: "R2".into(),
                    name: "North hills".into()
                }
            ]
        );
    }

    #[test]
    fn a_route_lists_its_accounts_in_walk_order() {
        let mut s = Store::open_in_memory().unwrap();
        s.upsert_accounts(&[
            account("A1", "R1", 30),
            account("A2", "R1", 10),
            account("A3", "R2", 5),
            account("A4", "R1", 20),
        ])
        .unwrap();
        let ids: Vec<_> = s
            .accounts_on_route("R1")
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["A2", "A4", "A1"]);
    }

    #[test]
    fn a_meter_of_an_unknown_account_fails_the_whole_call() {
        let mut s = Store::open_in_memory().unwrap();
        s.upsert_accounts(&[account("A1", "R1", 1)]).unwrap();
        let err = s
            .upsert_meters(&[meter("M1", Some("A1")), meter("M2", Some("NOPE"))])
            .unwrap_err();
        assert!(matches!(err, StoreError::Sql(_)), "{err}");
        assert_eq!(s.meter("M1").unwrap(), None);
    }

    #[test]
    fn meters_and_history_read_back_in_date_order() {
        let mut s = Store::open_in_memory().unwrap();
        s.upsert_accounts(&[account("A1", "R1", 1)]).unwrap();
        let mut old = meter("M0", None);
        old.status = MeterStatus::Retired;
        old.installed_on = Some(day(2010, 3, 1));
        old.removed_on = Some(day(2024, 6, 1));
        let mut new = meter("M1", Some("A1"));
        new.installed_on = Some(day(2024, 6, 1));
        let mut older_spare = meter("M2", Some("A1"));
        older_spare.installed_on = Some(day(2019, 1, 1));
        s.upsert_meters(&[old.clone(), new.clone(), older_spare.clone()])
            .unwrap();
        assert_eq!(s.meter("M0").unwrap(), Some(old));
        assert_eq!(s.meters_of_account("A1").unwrap(), vec![older_spare, new]);

        let h = |m: &str, d: NaiveDate, reading, kind| HistoryRead {
            account_id: "A1".into(),
            meter_id: m.into(),
            read_on: d,
            reading,
            kind,
        };
        let reads = [
            h("M1", day(2024, 7, 1), 12, ReadKind::Actual),
            h("M1", day(2024, 6, 1), 0, ReadKind::Initial),
            h("M0", day(2024, 6, 1), 8_812, ReadKind::Final),
            h("M0", day(2024, 5, 1), 8_790, ReadKind::Estimated),
        ];
        assert_eq!(s.upsert_history(&reads).unwrap(), 4);
        let got = s.history_of_account("A1").unwrap();
        assert_eq!(
            got,
            vec![
                reads[3].clone(),
                reads[2].clone(),
                reads[1].clone(),
                reads[0].clone()
            ]
        );
    }

    #[test]
    fn retired_codes_are_listed_only_on_request() {
        let mut s = Store::open_in_memory().unwrap();
        let code = |c: &str, retired| MessageCode {
            code: c.into(),
            category: "trouble".into(),
            description: format!("code {c}"),
            requires_follow_up: c == "LK",
            retired,
        };
        s.upsert_codes(&[code("LK", false), code("OLD", true), code("DG", false)])
            .unwrap();
        let live: Vec<_> = s
            .codes(false)
            .unwrap()
            .into_iter()
            .map(|c| c.code)
            .collect();
        assert_eq!(live, ["DG", "LK"]);
        assert_eq!(s.codes(true).unwrap().len(), 3);
        assert!(s.codes(true).unwrap()[1].requires_follow_up);
    }

    #[test]
    fn counts_split_accounts_and_meters_by_status() {
        let mut s = Store::open_in_memory().unwrap();
        let mut closed = account("A3", "R2", 1);
        closed.status = AccountStatus::Closed;
        s.upsert_accounts(&[account("A1", "R1", 1), account("A2", "R1", 2), closed])
            .unwrap();
        s.upsert_meters(&[meter("M1", Some("A1")), meter("M9", None)])
            .unwrap();
        let c = s.counts().unwrap();
        assert_eq!(
            c,
            DistrictCounts {
                routes: 2,
                accounts_active: 2,
                accounts_inactive: 0,
                accounts_closed: 1,
                meters_active: 1,
                meters_inventory: 1,
                meters_retired: 0,
                history: 0,
                codes: 0,
            }
        );
        assert_eq!((c.accounts(), c.meters()), (3, 2));
    }

    #[test]
    fn a_reading_too_large_for_sqlite_is_refused_not_wrapped() {
        let mut s = Store::open_in_memory().unwrap();
        s.upsert_accounts(&[account("A1", "R1", 1)]).unwrap();
        s.upsert_meters(&[meter("M1", Some("A1"))]).unwrap();
        let err = s
            .upsert_history(&[HistoryRead {
                account_id: "A1".into(),
                meter_id: "M1".into(),
                read_on: day(2024, 1, 1),
                reading: u64::MAX,
                kind: ReadKind::Actual,
            }])
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
}
