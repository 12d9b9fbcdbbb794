//! Integration tests: demo. The generated district goes through the real store, and the `demo`
//! command builds a fresh database (and refuses to touch an existing one).

use crate::support::gateway;
use chrono::NaiveDate;
use meter_gateway::demo::{generate, load, DemoParams, Problem};
use meter_gateway::domain::{AccountStatus, MeterStatus};
use meter_gateway::store::Store;

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

/// Kills the demo if a test fails half-way.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `demo` and returns once it says it is ready (handhelds done), with what it printed.
fn start_demo(args: &[&str], db: &std::path::Path) -> (Running, String) {
    use std::io::{BufRead, BufReader};
    let mut child = gateway()
        .args(args)
        .arg("--db")
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("Press Ctrl-C") {
                let _ = tx.send(seen.clone());
            }
        }
        let _ = tx.send(seen);
    });
    let out = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the demo never got ready");
    (running, out)
}

fn stop(mut demo: Running) {
    let pid = demo.0.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = demo.0.wait().unwrap();
    assert!(
        exit.success(),
        "the demo did not stop cleanly on SIGTERM: {exit}"
    );
}

#[test]
fn the_demo_builds_a_district_runs_handhelds_over_serial_and_http_and_fills_the_exception_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (demo, out) = start_demo(&["demo", "--accounts", "2400", "--seed", "9"], &db);
    assert!(out.contains("Planted problems"), "{out}");
    assert!(out.contains("Clerk sign-in"), "{out}");
    assert!(out.contains("Virtual cradle for HH-01"), "{out}");
    assert!(out.contains("read(s) flagged for review"), "{out}");
    stop(demo);
    // --db keeps the data: reads came up over both transports and validation flagged some.
    let store = Store::open(&db).unwrap();
    // The demo's cycle is the month it runs in.
    let cycle = chrono::Local::now().format("%Y-%m").to_string();
    let reads = store.cycle_reads(&cycle).unwrap();
    let by_device = |d: &str| {
        reads
            .iter()
            .filter(|r| r.device.as_ref().is_some_and(|(id, _)| id == d))
            .count()
    };
    assert!(by_device("HH-01") > 0, "no reads over the serial link");
    assert!(by_device("HH-03") > 0, "no reads over HTTP");
    assert!(
        reads.iter().any(|r| !r.flags.is_empty()),
        "nothing was flagged"
    );
    assert_eq!(store.counts().unwrap().accounts(), 2400);
}

#[test]
fn the_demo_with_no_handhelds_only_serves_and_a_second_run_reuses_the_kept_district() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (demo, out) = start_demo(&["demo", "--accounts", "200", "--no-handhelds"], &db);
    assert!(!out.contains("Virtual cradle"), "{out}");
    stop(demo);
    let (demo, out) = start_demo(&["demo", "--accounts", "200"], &db);
    assert!(out.contains("Using the district kept in"), "{out}");
    stop(demo);
}

#[test]
fn the_demo_refuses_a_file_that_is_not_a_gateway_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    std::fs::write(&db, b"precious").unwrap();
    let out = gateway()
        .args(["demo", "--accounts", "50", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&db).unwrap(), b"precious");
}
