//! The judging basis (migration 6): per meter in service, the meter, its account and the account's
//! history built into periods, in one row, so that judging an upload seeks one row per read.
//!
//! Rows are a cache kept true by triggers (any change to the meter, the account or its history deletes
//! them); a meter without a row is judged from the tables. The encoding is private to this file:
//! little-endian, strings as a u16 length then UTF-8, dates as days from the common era, and a
//! leading version byte (a row of another version is ignored, then rewritten).

use super::cycles::{AccountRow, MeterRow};
use super::{Result, StoreError};
use crate::domain::{AccountStatus, MeterStatus, ReadKind, Register, Unit};
use crate::vee::{AccountHistory, MeterBase, Period};
use chrono::{Datelike, NaiveDate};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::str::FromStr;

const VERSION: u8 = 1;

/// What judging needs about a meter in service.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterBasis {
    pub meter: MeterRow,
    pub history: AccountHistory,
}

/// Writes (or replaces) the basis of each meter; meters not set at an account are skipped (and the
/// odd history the encoding cannot hold: such a meter is judged from the tables).
pub(crate) fn write_bases<'a>(
    conn: &Connection,
    bases: impl IntoIterator<Item = (&'a MeterRow, &'a AccountHistory)>,
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO judging_basis (route_id, meter_id, account_id, basis) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut buf = Vec::with_capacity(1024);
    let mut n = 0;
    for (meter, history) in bases {
        let Some(account) = &meter.account else {
            continue;
        };
        buf.clear();
        if encode(meter, history, &mut buf).is_none() {
            continue;
        }
        stmt.execute(params![
            account.route_id,
            meter.meter_id,
            account.account_id,
            buf
        ])?;
        n += 1;
    }
    Ok(n)
}

/// The basis of one meter, if it has a current row.
pub(crate) fn basis_of(conn: &Connection, meter_id: &str) -> Result<Option<MeterBasis>> {
    let mut stmt = conn.prepare_cached("SELECT basis FROM judging_basis WHERE meter_id = ?1")?;
    let found = stmt
        .query_row([meter_id], |r| {
            let bytes = r.get_ref(0)?.as_blob()?;
            Ok(decode(meter_id, bytes))
        })
        .optional()?;
    found.transpose().map(Option::flatten)
}

/// The bases of route `route_id` for the meters `wanted` names (meter id → the caller's slot), read as
/// one range; returns them with their slots.
pub(crate) fn bases_on_route(
    conn: &Connection,
    route_id: &str,
    wanted: &HashMap<&str, usize>,
) -> Result<Vec<(usize, MeterBasis)>> {
    let mut stmt =
        conn.prepare_cached("SELECT meter_id, basis FROM judging_basis WHERE route_id = ?1")?;
    let mut rows = stmt.query([route_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let meter_id = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        if let Some(&slot) = wanted.get(meter_id) {
            let bytes = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            if let Some(b) = decode(meter_id, bytes)? {
                out.push((slot, b));
            }
        }
    }
    Ok(out)
}

// ---- encoding ------------------------------------------------------------------------------------

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_day(out: &mut Vec<u8>, d: NaiveDate) {
    out.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
}

/// `None` when the history does not fit the encoding (overlapping periods, or a period of more than
/// 65,535 days).
fn encode(meter: &MeterRow, h: &AccountHistory, out: &mut Vec<u8>) -> Option<()> {
    out.push(VERSION);
    put_str(out, meter.status.as_str());
    out.push(meter.register.dials);
    out.extend_from_slice(&meter.register.multiplier.to_le_bytes());
    put_str(out, meter.register.unit.as_str());
    let a = meter.account.as_ref();
    put_str(out, a.map_or("", |a| a.account_id.as_str()));
    put_str(out, a.map_or("", |a| a.status.as_str()));
    put_str(out, a.map_or("", |a| a.rate_class.as_str()));
    put_str(out, a.map_or("", |a| a.route_id.as_str()));
    out.extend_from_slice(&a.map_or(0, |a| a.sequence).to_le_bytes());
    // Periods mostly follow one another: each is its gap after the previous one and its length, in
    // days (u16), after the first one's start.
    out.extend_from_slice(&(h.periods.len() as u32).to_le_bytes());
    let mut previous_end = h.periods.first().map(|p| p.from);
    if let Some(start) = previous_end {
        put_day(out, start);
    }
    for p in &h.periods {
        let gap = u16::try_from((p.from - previous_end?).num_days()).ok()?;
        let days = u16::try_from((p.to - p.from).num_days()).ok()?;
        out.extend_from_slice(&gap.to_le_bytes());
        out.extend_from_slice(&days.to_le_bytes());
        out.extend_from_slice(&p.usage.to_le_bytes());
        out.push(u8::from(p.estimated));
        previous_end = Some(p.to);
    }
    out.extend_from_slice(&(h.bases.len() as u32).to_le_bytes());
    for b in &h.bases {
        put_str(out, &b.meter_id);
        out.extend_from_slice(&b.reading.to_le_bytes());
        put_day(out, b.read_on);
        put_str(out, b.kind.as_str());
        out.extend_from_slice(&b.firm_reading.to_le_bytes());
        put_day(out, b.firm_on);
    }
    match h.period_start {
        Some(d) => {
            out.push(1);
            put_day(out, d);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&h.carry.to_le_bytes());
    Some(())
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.array()?))
    }

    fn day(&mut self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.array()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }

    fn parse<T: FromStr>(&mut self) -> Option<T> {
        self.str()?.parse().ok()
    }
}

/// `None` for a row of another encoding version (judged from the tables instead).
fn decode(meter_id: &str, bytes: &[u8]) -> Result<Option<MeterBasis>> {
    if bytes.first() != Some(&VERSION) {
        return Ok(None);
    }
    let mut r = Reader { bytes: &bytes[1..] };
    decode_v1(meter_id, &mut r)
        .map(Some)
        .ok_or_else(|| StoreError::Invalid(format!("judging basis of meter {meter_id} is corrupt")))
}

fn decode_v1(meter_id: &str, r: &mut Reader<'_>) -> Option<MeterBasis> {
    let status: MeterStatus = r.parse()?;
    let register = Register {
        dials: r.u8()?,
        multiplier: r.u32()?,
        unit: r.parse::<Unit>()?,
    };
    let account_id = r.str()?.to_string();
    let account = AccountRow {
        account_id: account_id.clone(),
        name: String::new(),
        service_address: String::new(),
        status: r.parse::<AccountStatus>()?,
        rate_class: r.str()?.to_string(),
        route_id: r.str()?.to_string(),
        sequence: r.u32()?,
    };
    let periods = r.u32()? as usize;
    let mut h = AccountHistory {
        periods: Vec::with_capacity(periods.min(1024)),
        ..AccountHistory::default()
    };
    let mut previous_end = if periods > 0 { Some(r.day()?) } else { None };
    for _ in 0..periods {
        let from = previous_end? + chrono::Days::new(u64::from(r.u16()?));
        let to = from + chrono::Days::new(u64::from(r.u16()?));
        let (usage, estimated) = (r.f64()?, r.u8()? != 0);
        h.periods.push(Period::new(from, to, usage, estimated));
        previous_end = Some(to);
    }
    for _ in 0..r.u32()? {
        h.bases.push(MeterBase {
            meter_id: r.str()?.to_string(),
            reading: r.u64()?,
            read_on: r.day()?,
            kind: r.parse::<ReadKind>()?,
            firm_reading: r.u64()?,
            firm_on: r.day()?,
        });
    }
    h.period_start = match r.u8()? {
        0 => None,
        _ => Some(r.day()?),
    };
    h.carry = r.f64()?;
    if !r.bytes.is_empty() {
        return None;
    }
    Some(MeterBasis {
        meter: MeterRow {
            meter_id: meter_id.to_string(),
            status,
            register,
            account_id: Some(account_id),
            account: Some(account),
        },
        history: h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AccountStatus;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn sample() -> (MeterRow, AccountHistory) {
        let meter = MeterRow {
            meter_id: "M-7".into(),
            status: MeterStatus::Active,
            register: Register {
                dials: 6,
                multiplier: 10,
                unit: Unit::Gal,
            },
            account_id: Some("A-1".into()),
            account: Some(AccountRow {
                account_id: "A-1".into(),
                name: String::new(),
                service_address: String::new(),
                status: AccountStatus::Inactive,
                rate_class: "irrigation".into(),
                route_id: "R07".into(),
                sequence: 41,
            }),
        };
        let history = AccountHistory {
            periods: vec![
                Period::new(d("2026-01-02"), d("2026-02-01"), 12.5, false),
                Period::new(d("2026-02-05"), d("2026-03-03"), 0.0133689839, true),
            ],
            bases: vec![MeterBase {
                meter_id: "M-7".into(),
                reading: 999_981,
                read_on: d("2026-03-03"),
                kind: ReadKind::Estimated,
                firm_reading: 999_900,
                firm_on: d("2026-02-01"),
            }],
            period_start: Some(d("2026-03-03")),
            carry: 1.25,
        };
        (meter, history)
    }

    #[test]
    fn a_basis_reads_back_exactly_as_written() {
        let (meter, history) = sample();
        let mut buf = Vec::new();
        encode(&meter, &history, &mut buf).unwrap();
        let back = decode("M-7", &buf).unwrap().unwrap();
        assert_eq!(back.meter, meter);
        assert_eq!(back.history, history);
    }

    #[test]
    fn a_history_the_encoding_cannot_hold_gets_no_basis() {
        let (meter, mut history) = sample();
        history.periods.swap(0, 1); // overlapping: the second starts before the first ends
        assert!(encode(&meter, &history, &mut Vec::new()).is_none());
    }

    use crate::config::Config;
    use crate::cycles::{self, ReadMeters};
    use crate::demo::{self, DemoParams};
    use crate::store::Store;

    fn demo_store() -> (Store, demo::District) {
        let district = demo::generate(&DemoParams {
            accounts: 400,
            seed: 11,
            as_of: d("2026-10-20"),
        });
        let mut store = Store::open_in_memory().unwrap();
        demo::load(&mut store, &district).unwrap();
        district
            .open_cycle(&mut store, d("2026-10-01").and_hms_opt(7, 0, 0).unwrap())
            .unwrap();
        (store, district)
    }

    fn rows(store: &Store, account: Option<&str>) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT count(*) FROM judging_basis WHERE ?1 IS NULL OR account_id = ?1",
                [account],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Every demo read (planted problems and traps: meter changes, rollovers, thin history, inactive
    /// accounts, unknown meters...) judged in handheld-sized batches.
    fn judged(
        store: &Store,
        district: &demo::District,
        routes: &[String],
    ) -> (Vec<crate::vee::Decision>, usize) {
        let (cfg, now) = (
            Config::default(),
            d("2026-10-25").and_hms_opt(9, 0, 0).unwrap(),
        );
        let mut decisions = Vec::new();
        let mut from_basis = 0;
        for batch in district.field_reads.chunks(300) {
            let ReadMeters { meters, histories } =
                cycles::meters_of(store.conn(), batch, routes).unwrap();
            from_basis += histories.len();
            let j = cycles::judge_with_meters(
                store.conn(),
                &cfg,
                &district.cycle.id,
                batch.to_vec(),
                meters,
                &histories,
                now,
            )
            .unwrap();
            decisions.extend_from_slice(j.decisions());
        }
        (decisions, from_basis)
    }

    #[test]
    fn reads_judged_from_the_basis_are_judged_exactly_as_from_the_tables() {
        let (store, d) = demo_store();
        let in_service = store
            .conn()
            .query_row(
                "SELECT count(*) FROM meters m JOIN accounts a ON a.account_id = m.account_id WHERE m.status = 'active'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        assert_eq!(rows(&store, None), in_service, "a row per meter in service");
        let (by_route, hits) = judged(&store, &d, &d.cycle.routes);
        assert!(
            hits * 10 > d.field_reads.len() * 9,
            "{hits} of {}",
            d.field_reads.len()
        );
        let (by_meter, _) = judged(&store, &d, &[]);
        store
            .conn()
            .execute("DELETE FROM judging_basis", [])
            .unwrap();
        let (from_tables, none) = judged(&store, &d, &d.cycle.routes);
        assert_eq!(none, 0);
        assert_eq!(by_route, from_tables);
        assert_eq!(by_meter, from_tables);
    }

    #[test]
    fn a_route_file_built_from_the_basis_is_the_one_built_from_the_tables() {
        let (store, d) = demo_store();
        let cfg = Config::default();
        let files = |store: &Store| -> Vec<cycles::RouteFile> {
            d.cycle
                .routes
                .iter()
                .map(|r| cycles::route_file(store, &cfg, &d.cycle.id, r).unwrap())
                .collect()
        };
        let from_basis = files(&store);
        let with_limits: usize = from_basis
            .iter()
            .map(|f| f.stops.iter().filter(|s| s.limits.is_some()).count())
            .sum();
        assert!(with_limits > 300, "{with_limits}");
        store
            .conn()
            .execute("DELETE FROM judging_basis", [])
            .unwrap();
        assert_eq!(from_basis, files(&store));
    }

    #[test]
    fn a_change_to_an_accounts_history_account_or_meters_takes_its_rows_away() {
        let (mut store, d) = demo_store();
        let all = rows(&store, None);
        let account_with = |i: usize| d.accounts[i].id.clone();
        // History: a late reading imported for one account.
        let a = account_with(0);
        let last = d
            .history
            .iter()
            .rfind(|h| h.account_id == a)
            .unwrap()
            .clone();
        let before = rows(&store, Some(&a));
        assert!(before > 0);
        store
            .upsert_history(&[crate::domain::HistoryRead {
                read_on: last.read_on + chrono::Days::new(3),
                ..last.clone()
            }])
            .unwrap();
        assert_eq!(rows(&store, Some(&a)), 0);
        assert_eq!(rows(&store, None), all - before);
        // Preparing again writes exactly the missing rows.
        let prepare = |store: &mut Store| {
            store
                .write(|tx| cycles::prepare_judging(tx, &d.cycle.routes))
                .unwrap() as i64
        };
        assert_eq!(prepare(&mut store), before);
        assert_eq!(rows(&store, None), all);
        // The account: a new phone number keeps its rows; closed by the CIS, they go.
        let b = account_with(1);
        let mut acc = d.accounts[1].clone();
        acc.phone = "555-0100".into();
        store.upsert_accounts(std::slice::from_ref(&acc)).unwrap();
        assert_eq!(rows(&store, None), all);
        acc.status = AccountStatus::Closed;
        store.upsert_accounts(&[acc]).unwrap();
        assert_eq!(rows(&store, Some(&b)), 0);
        // A meter's register corrected: any history may read through it, every row goes.
        let mut m = d
            .meters
            .iter()
            .find(|m| m.account_id.is_some() && m.status == MeterStatus::Active)
            .unwrap()
            .clone();
        m.register.dials = if m.register.dials == 6 { 7 } else { 6 };
        store.upsert_meters(&[m]).unwrap();
        assert_eq!(rows(&store, None), 0);
        assert!(prepare(&mut store) > 0);
    }

    #[test]
    fn a_cis_import_writes_again_the_rows_it_took_away() {
        let (mut store, d) = demo_store();
        let all = rows(&store, None);
        let a = d.accounts[2].id.clone();
        let last = d.history.iter().rfind(|h| h.account_id == a).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("history.csv");
        let newer = last.read_on + chrono::Days::new(4);
        std::fs::write(
            &file,
            format!(
                "account_id,meter_id,read_on,reading,kind\n{a},{},{newer},{},actual\n",
                last.meter_id,
                last.reading + 3
            ),
        )
        .unwrap();
        crate::cis::import_history(&mut store, &file).unwrap();
        assert_eq!(rows(&store, None), all);
        let basis = basis_of(store.conn(), &last.meter_id).unwrap().unwrap();
        let base = basis.history.base_of(&last.meter_id).unwrap();
        assert_eq!((base.reading, base.read_on), (last.reading + 3, newer));
    }

    #[test]
    fn a_truncated_basis_is_an_error_and_another_version_is_ignored() {
        let (meter, history) = sample();
        let mut buf = Vec::new();
        encode(&meter, &history, &mut buf).unwrap();
        assert!(decode("M-7", &buf[..buf.len() - 3]).is_err());
        buf[0] = VERSION + 1;
        assert!(decode("M-7", &buf).unwrap().is_none());
    }
}
