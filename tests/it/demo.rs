//! Integration tests: demo. The generated district goes through the real store, and the `demo`
//! command builds a fresh database (and refuses to touch an existing one).

use chrono::NaiveDate;
use meter_gateway::demo::{generate, load, DemoParams, Problem};
use meter_gateway::domain::{AccountStatus, MeterStatus};
use meter_gateway::store::Store;
use std::process::Command;

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meter-gateway"));
    c.env_remove("METER_GATEWAY_DB")
        .env_remove("METER_GATEWAY_CONFIG")
        .env("RUST_LOG", "warn");
    c
}

fn params(accounts: u32) -> DemoParams {
    DemoParams {
        accounts,
        seed: 2026,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
    }
}

#[test]
fn a_loaded_demo_district_has_the_counts_it_was_built_with() {
    let district = generate(&params(1_500));
    let mut store = Store::open_in_memory().unwrap();
    let report = load(&mut store, &district).unwrap();
    assert_eq!(report.accounts, district.accounts.len());
    assert_eq!(report.meters, district.meters.len());
    assert_eq!(report.history, district.history.len());

    let counts = store.counts().unwrap();
    let accounts =
        |s: AccountStatus| district.accounts.iter().filter(|a| a.status == s).count() as u64;
    let meters = |s: MeterStatus| district.meters.iter().filter(|m| m.status == s).count() as u64;
    assert_eq!(counts.routes, district.routes.len() as u64);
    assert_eq!(counts.accounts_active, accounts(AccountStatus::Active));
    assert_eq!(counts.accounts_inactive, accounts(AccountStatus::Inactive));
    assert_eq!(counts.accounts_closed, accounts(AccountStatus::Closed));
    assert_eq!(counts.meters_active, meters(MeterStatus::Active));
    assert_eq!(counts.meters_inventory, meters(MeterStatus::Inventory));
    assert_eq!(counts.meters_retired, meters(MeterStatus::Retired));
    assert_eq!(counts.history, district.history.len() as u64);
    assert_eq!(counts.codes, district.codes.len() as u64);
    assert!(
        counts.accounts_inactive > 0 && counts.accounts_closed > 0 && counts.meters_inventory > 0
    );
}

#[test]
fn an_account_reads_back_with_its_history_across_a_meter_change() {
    let district = generate(&params(1_500));
    let mut store = Store::open_in_memory().unwrap();
    load(&mut store, &district).unwrap();
    let changed = district
        .truth
        .iter()
        .find(|t| t.problem == Problem::MeterChangeThisYear)
        .expect("a meter change this year is planted");
    let expected: Vec<_> = district
        .history
        .iter()
        .filter(|h| h.account_id == changed.account_id)
        .cloned()
        .collect();
    assert_eq!(
        store.history_of_account(&changed.account_id).unwrap(),
        expected
    );
    let meters = store.meters_of_account(&changed.account_id).unwrap();
    assert!(meters
        .iter()
        .any(|m| m.id == changed.meter_id && m.status == MeterStatus::Active));
    let account = store.account(&changed.account_id).unwrap().unwrap();
    assert_eq!(
        Some(&account),
        district
            .accounts
            .iter()
            .find(|a| a.id == changed.account_id)
    );
}

#[test]
fn loading_the_same_district_twice_changes_nothing() {
    let district = generate(&params(400));
    let mut store = Store::open_in_memory().unwrap();
    load(&mut store, &district).unwrap();
    let again = load(&mut store, &district).unwrap();
    assert_eq!((again.accounts, again.meters, again.history), (0, 0, 0));
}

#[test]
fn the_demo_command_builds_a_fresh_database_and_says_what_it_planted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = gateway()
        .args(["demo", "--accounts", "600", "--seed", "9", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Planted problems"), "{stdout}");
    assert!(stdout.contains("leak"), "{stdout}");
    assert!(stdout.contains("Open cycle"), "{stdout}");
    assert!(stdout.contains("not built yet"), "{stdout}");
    let store = Store::open(&db).unwrap();
    assert_eq!(store.counts().unwrap().accounts(), 600);
}

#[test]
fn the_demo_command_refuses_an_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    std::fs::write(&db, b"precious").unwrap();
    let out = gateway()
        .args(["demo", "--accounts", "50", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), b"precious");
}
