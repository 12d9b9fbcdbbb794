//! A small district with one open cycle and a few reads, shared by the review tests (HTTP and browser).
//! Dates are relative to today, so reads are never "in the future" for the handlers' clock.

use chrono::{Local, Months, NaiveDate, NaiveDateTime};
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::domain::{
    Account, AccountStatus, FieldRead, HistoryRead, Meter, MeterStatus, ReadKind, ReadMethod,
    ReadType, Route,
};
use meter_gateway::serve::{self, AppState};
use meter_gateway::store::{Db, Store};
use std::path::PathBuf;

use crate::support::{self, day, message_codes};

pub const CYCLE: &str = "C-1";
/// Signs in on the login page in the browser test.
pub const CLERK_PASSWORD: &str = "correct horse battery";

pub struct District {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub state: AppState,
    pub read_day: NaiveDate,
    /// A1/M1: a reader-confirmed high read (60 HCF against about 12).
    pub high: i64,
    /// A2/M2: a normal read.
    pub normal: i64,
    /// A3/M3: a mis-keyed reading below the previous one (negative).
    pub miskey: i64,
    /// Last history readings of M1, M2, M3.
    pub last: [u64; 3],
}

fn account(id: &str, name: &str, route: &str, seq: u32) -> Account {
    Account {
        name: name.into(),
        ..support::account(id, route, seq, AccountStatus::Active)
    }
}

fn meter(id: &str, account: Option<&str>, status: MeterStatus) -> Meter {
    Meter {
        installed_on: Some(day(2015, 1, 1)),
        ..support::meter(id, account, status, 5)
    }
}

/// 25 monthly actual reads ending a month before `read_day`, `per_month` HCF a month (±1 jitter).
fn history(
    account: &str,
    meter: &str,
    last: u64,
    per_month: u64,
    read_day: NaiveDate,
) -> Vec<HistoryRead> {
    let end = read_day - Months::new(1);
    (0..=24u32)
        .map(|i| {
            let back = 24 - i;
            HistoryRead {
                account_id: account.into(),
                meter_id: meter.into(),
                read_on: end - Months::new(back),
                reading: last - per_month * u64::from(back) + u64::from(i % 2),
                kind: ReadKind::Actual,
            }
        })
        .collect()
}

pub fn now() -> NaiveDateTime {
    Local::now().naive_local()
}

pub fn field_read(
    meter: &str,
    at: NaiveDateTime,
    raw: &str,
    t: ReadType,
    reader: &str,
) -> FieldRead {
    FieldRead {
        meter_id: meter.into(),
        read_at: at,
        raw_reading: raw.into(),
        read_type: t,
        method: ReadMethod::Keyed,
        reader: reader.into(),
        codes: Vec::new(),
        skip_code: None,
        note: None,
        device: None,
    }
}

pub fn district() -> District {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("district.db");
    let mut s = Store::open(&path).unwrap();
    let read_day = Local::now().date_naive() - chrono::Duration::days(3);
    s.upsert_routes(&[
        Route {
            id: "R01".into(),
            name: "Harbor".into(),
        },
        Route {
            id: "R02".into(),
            name: "Hills".into(),
        },
    ])
    .unwrap();
    s.upsert_accounts(&[
        account("A1", "O'Brien <script>alert(1)</script>", "R01", 10),
        account("A2", "Nguyen", "R01", 20),
        account("A3", "Silva", "R02", 5),
    ])
    .unwrap();
    s.upsert_meters(&[
        meter("M1", Some("A1"), MeterStatus::Active),
        meter("M2", Some("A2"), MeterStatus::Active),
        meter("M3", Some("A3"), MeterStatus::Active),
        meter("M9", None, MeterStatus::Inventory),
    ])
    .unwrap();
    let last = [5_000u64, 3_000, 7_000];
    let mut h = history("A1", "M1", last[0], 12, read_day);
    h.extend(history("A2", "M2", last[1], 10, read_day));
    h.extend(history("A3", "M3", last[2], 8, read_day));
    s.upsert_history(&h).unwrap();
    s.upsert_codes(&message_codes()).unwrap();
    let now = now();
    cycles::open_cycle(
        &mut s,
        CYCLE,
        read_day - chrono::Duration::days(10),
        read_day + chrono::Duration::days(10),
        &[],
        now,
    )
    .unwrap();
    let at = |h: u32, m: u32| read_day.and_hms_opt(h, m, 0).unwrap();
    let mut high = field_read(
        "M1",
        at(9, 0),
        &(last[0] + 60).to_string(),
        ReadType::HighConfirmed,
        "pat",
    );
    high.codes = vec!["LK".into()];
    high.note = Some("water running in yard".into());
    let reads = [
        high,
        field_read(
            "M2",
            at(10, 30),
            &(last[1] + 10).to_string(),
            ReadType::Regular,
            "pat",
        ),
        field_read(
            "M3",
            at(11, 0),
            &(last[2] - 500).to_string(),
            ReadType::Regular,
            "lee",
        ),
    ];
    let out = cycles::ingest(&mut s, &Config::default(), CYCLE, &reads, now).unwrap();
    let ids: Vec<i64> = out.iter().map(|o| o.read_id).collect();
    drop(s);
    let state = serve::test_state(Db::open(&path).unwrap());
    District {
        _dir: dir,
        path,
        state,
        read_day,
        high: ids[0],
        normal: ids[1],
        miskey: ids[2],
        last,
    }
}

/// A second connection on the district file, for test set-up the library does not offer (what sync
/// would write) and for checking rows.
pub fn sql(d: &District) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(&d.path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}
