//! Integration tests: store (schema versions, reopening, online backups) through the library and CLI.

use crate::support::gateway;
use meter_gateway::domain::{
    Account, AccountStatus, HistoryRead, Meter, MeterStatus, ReadKind, Register, Unit,
};
use meter_gateway::store::{Store, MIGRATIONS, SCHEMA_VERSION};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Builds a database file exactly as schema version 1 left it, from the rows in the fixture.
fn v1_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    let rows = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/district_v1.sql"),
    )
    .unwrap();
    conn.execute_batch(&rows).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
}

#[test]
fn a_database_written_at_schema_version_1_opens_with_its_rows_intact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v1.db");
    v1_database(&db);
    let s = Store::open(&db).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let kathleen = s.account("100001").unwrap().unwrap();
    assert_eq!(kathleen.name, "O'Brien, Kathleen");
    assert_eq!(
        s.account("100002").unwrap().unwrap().status,
        AccountStatus::Inactive
    );
    let history = s.history_of_account("100001").unwrap();
    let kinds: Vec<_> = history
        .iter()
        .map(|h| (h.meter_id.as_str(), h.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("M-0999", ReadKind::Final),
            ("M-1001", ReadKind::Initial),
            ("M-1001", ReadKind::Actual)
        ]
    );
    let c = s.counts().unwrap();
    assert_eq!(
        (c.routes, c.accounts(), c.meters_retired, c.history, c.codes),
        (1, 2, 1, 3, 2)
    );
    assert_eq!(s.codes(false).unwrap().len(), 1);
}

fn account(id: &str) -> Account {
    Account {
        id: id.into(),
        name: "Writer test".into(),
        service_address: "1 Test St".into(),
        status: AccountStatus::Active,
        rate_class: "residential".into(),
        route_id: "R1".into(),
        sequence: 1,
        apn: String::new(),
        phone: String::new(),
    }
}

fn meter(id: &str, account: &str) -> Meter {
    Meter {
        id: id.into(),
        account_id: Some(account.into()),
        status: MeterStatus::Active,
        register: Register {
            dials: 9,
            multiplier: 1,
            unit: Unit::Gal,
        },
        installed_on: None,
        removed_on: None,
    }
}

#[test]
fn a_store_closed_and_reopened_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    {
        let mut s = Store::open(&db).unwrap();
        s.upsert_accounts(&[account("A1")]).unwrap();
        s.upsert_meters(&[meter("M1", "A1")]).unwrap();
    }
    let s = Store::open(&db).unwrap();
    assert_eq!(s.account("A1").unwrap(), Some(account("A1")));
    assert_eq!(s.meters_of_account("A1").unwrap(), vec![meter("M1", "A1")]);
}

const BATCH: u64 = 25;

#[test]
fn a_backup_taken_while_a_writer_commits_is_a_consistent_openable_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    {
        let mut s = Store::open(&db).unwrap();
        s.upsert_accounts(&[account("A1")]).unwrap();
        s.upsert_meters(&[meter("M1", "A1")]).unwrap();
    }
    // The writer commits batches of BATCH history rows; a consistent copy holds whole batches only.
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, committed) = (db.clone(), stop.clone(), committed.clone());
        std::thread::spawn(move || {
            let mut s = Store::open(&db).unwrap();
            let start = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
            let mut day = 0u64;
            let mut batches = 0u64;
            while !stop.load(Ordering::Relaxed) || batches < 5 {
                let reads: Vec<HistoryRead> = (0..BATCH)
                    .map(|i| HistoryRead {
                        account_id: "A1".into(),
                        meter_id: "M1".into(),
                        read_on: start + chrono::Days::new(day + i),
                        reading: day + i,
                        kind: ReadKind::Actual,
                    })
                    .collect();
                s.upsert_history(&reads).unwrap();
                day += BATCH;
                batches += 1;
                committed.store(batches, Ordering::Release);
            }
            batches
        })
    };
    let mut copies = Vec::new();
    let mut last = 0;
    for i in 0..4 {
        // Each copy starts after at least one more commit, so every copy overlaps the writer's work.
        while committed.load(Ordering::Acquire) == last {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        last = committed.load(Ordering::Acquire);
        let dest = dir.path().join(format!("copy-{i}.db"));
        meter_gateway::store::backup_database(&db, &dest).unwrap();
        copies.push(dest);
    }
    stop.store(true, Ordering::Relaxed);
    let batches = writer.join().unwrap();
    let mut seen = Vec::new();
    for copy in &copies {
        let s = Store::open(copy).unwrap();
        let n = s.counts().unwrap().history;
        assert_eq!(
            n % BATCH,
            0,
            "{} holds a partial batch: {n} rows",
            copy.display()
        );
        let check: String = rusqlite::Connection::open(copy)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        seen.push(n);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen[0] > 0, "{seen:?}");
    assert!(*seen.last().unwrap() <= batches * BATCH);
}

#[test]
fn the_cli_backup_copies_the_database_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    Store::open(&db)
        .unwrap()
        .upsert_accounts(&[account("A1")])
        .unwrap();
    let dest = dir.path().join("backup.db");
    let out = gateway()
        .arg("--db")
        .arg(&db)
        .arg("backup")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        Store::open(&dest).unwrap().account("A1").unwrap(),
        Some(account("A1"))
    );
    let before = std::fs::read(&dest).unwrap();
    let out = gateway()
        .arg("--db")
        .arg(&db)
        .arg("backup")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}

#[test]
fn the_cli_backup_of_a_missing_database_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    let dest = dir.path().join("backup.db");
    let out = gateway()
        .arg("--db")
        .arg(&db)
        .arg("backup")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!db.exists() && !dest.exists());
}

#[test]
fn a_database_from_a_newer_binary_is_refused_at_the_cli_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("future.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE from_the_future (x INTEGER);")
            .unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let codes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cis/codes.csv");
    let out = gateway()
        .arg("--db")
        .arg(&db)
        .args(["import", "codes"])
        .arg(&codes)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("newer than this meter-gateway understands"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION + 1);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "no migration ran on the newer database");
}
