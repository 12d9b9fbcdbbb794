//! The README's commands, run through the real binary in the order an office uses them: CIS export and
//! import, a cycle opened, its route file, field reads imported and validated, status and listings, a
//! backup, a handheld and a billing user registered, the close refused while exceptions are open and
//! done with holds, the billing batch exported, and the cycle reopened.

use chrono::{Days, Local};
use meter_gateway::demo::{generate, load, DemoParams};
use meter_gateway::store::Store;
use std::path::Path;
use std::process::{Command, Output};

fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meter-gateway"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("METER_GATEWAY_CONFIG")
        .output()
        .unwrap()
}

fn ok(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(
        out.status.success(),
        "meter-gateway {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_office_month_runs_through_the_readme_commands() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();

    // A district as the CIS would have it, written out through `export`.
    let as_of = Local::now()
        .date_naive()
        .checked_sub_days(Days::new(45))
        .unwrap();
    let district = generate(&DemoParams {
        accounts: 400,
        seed: 3,
        as_of,
    });
    let source = p("cis.db");
    load(&mut Store::open(&source).unwrap(), &district).unwrap();
    for what in ["accounts", "meters", "history", "codes"] {
        ok(&source, &["export", what, &s(&p(&format!("{what}.csv")))]);
    }

    // The gateway's own database, imported from those files.
    let db = p("district.db");
    for what in ["accounts", "meters", "history", "codes"] {
        ok(&db, &["import", what, &s(&p(&format!("{what}.csv")))]);
    }
    let c = &district.cycle;
    let (from, to) = (c.window_from.to_string(), c.window_to.to_string());
    ok(&db, &["cycle", "open", &c.id, "--from", &from, "--to", &to]);
    let route = ok(&db, &["route", "--cycle", &c.id, "--route", "R01"]);
    let route: serde_json::Value = serde_json::from_str(&route).unwrap();
    assert!(!route["stops"].as_array().unwrap().is_empty());

    // The month's reads as a CSV from the handhelds' software.
    let mut csv = String::from("meter_id,read_at,reading,reader,codes,verified\n");
    for r in &district.field_reads {
        csv += &format!(
            "{},{},{},{},{},{}\n",
            r.meter_id,
            r.read_at.format("%Y-%m-%dT%H:%M:%S"),
            r.raw_reading,
            r.reader,
            r.codes.join(";"),
            r.confirmed()
        );
    }
    std::fs::write(p("reads.csv"), csv).unwrap();
    ok(
        &db,
        &["import", "reads", "--cycle", &c.id, &s(&p("reads.csv"))],
    );
    assert!(ok(&db, &["cycle", "status", &c.id]).contains("R01"));
    let reads: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&db, &["reads", "--cycle", &c.id, "--format", "json"])).unwrap();
    assert!(reads.iter().any(|r| r["status"] == "flagged"));
    assert!(ok(&db, &["reads", "--cycle", &c.id, "--format", "csv"]).starts_with("account_id,"));

    ok(&db, &["backup", &s(&p("backup.db"))]);
    assert!(
        Store::open(&p("backup.db"))
            .unwrap()
            .counts()
            .unwrap()
            .accounts()
            == 400
    );
    assert!(ok(&db, &["device", "add", "HH-01"]).contains("HH-01."));
    ok(
        &db,
        &[
            "assign", "--cycle", &c.id, "--route", "R01", "--device", "HH-01",
        ],
    );
    assert!(ok(&db, &["user", "add", "billing-run", "--role", "billing"]).contains("token"));

    // Close refuses while exceptions are open, and names them.
    let refused = run(&db, &["cycle", "close", &c.id]);
    assert!(!refused.status.success());
    assert!(!refused.stderr.is_empty() || !refused.stdout.is_empty());

    // Hold every account with an open exception, then close and hand the batch to billing.
    let mut holds: Vec<String> = reads
        .iter()
        .filter(|r| r["status"] == "flagged")
        .filter_map(|r| r["account_id"].as_str().map(str::to_string))
        .collect();
    holds.sort();
    holds.dedup();
    // Reads of meters on no account cannot be held by account: the clerk resolves them on the review
    // pages (here through the same library call the page makes).
    {
        let mut store = Store::open(&db).unwrap();
        let orphans: Vec<i64> = store
            .cycle_reads(&c.id)
            .unwrap()
            .into_iter()
            .filter(|r| {
                r.account_id.is_none() && r.status == meter_gateway::domain::ReadStatus::Flagged
            })
            .map(|r| r.read_id)
            .collect();
        for id in orphans {
            let now = Local::now().naive_local();
            meter_gateway::review::actions::accept(
                &mut store,
                id,
                "clerk",
                "meter not ours; inventory fixed",
                now,
            )
            .unwrap();
        }
    }
    let mut args = vec!["cycle", "close", c.id.as_str(), "--hold"];
    args.extend(holds.iter().map(String::as_str));
    let closed = run(&db, &args);
    assert!(
        closed.status.success(),
        "close with holds failed: {}{}",
        String::from_utf8_lossy(&closed.stdout),
        String::from_utf8_lossy(&closed.stderr)
    );
    ok(
        &db,
        &[
            "export",
            "billing",
            "--cycle",
            &c.id,
            "--format",
            "csv",
            &s(&p("batch.csv")),
        ],
    );
    let first = std::fs::read(p("batch.csv")).unwrap();
    ok(
        &db,
        &[
            "export",
            "billing",
            "--cycle",
            &c.id,
            "--format",
            "csv",
            &s(&p("again.csv")),
        ],
    );
    assert_eq!(
        first,
        std::fs::read(p("again.csv")).unwrap(),
        "exporting twice must give identical bytes"
    );
    ok(
        &db,
        &[
            "cycle",
            "reopen",
            &c.id,
            "--reason",
            "late read from route R01",
        ],
    );
}

/// `meter-gateway ARGS` with its standard output a pipe nobody reads any more (`| head` gone).
fn run_into_closed_pipe(db: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_meter-gateway"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("METER_GATEWAY_CONFIG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_output_pipe_ends_a_command_quietly_and_never_loses_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    ok(&db, &["device", "add", "HH-01"]);
    // A listing into a closed pipe: no panic, no noise, success.
    let out = run_into_closed_pipe(&db, &["device", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A token nobody could read is not a registration: the device is not added, and the command
    // says so (it can simply be run again).
    let out = run_into_closed_pipe(&db, &["device", "add", "HH-02"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("HH-02 was not registered"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let listed = ok(&db, &["device", "list"]);
    assert!(
        listed.contains("HH-01") && !listed.contains("HH-02"),
        "{listed}"
    );
    let again = ok(&db, &["device", "add", "HH-02"]);
    assert!(again.contains("HH-02."), "{again}");
    // The same for a billing user's API token.
    let out = run_into_closed_pipe(&db, &["user", "add", "billrun", "--role", "billing"]);
    assert!(!out.status.success());
    assert!(ok(&db, &["user", "add", "billrun", "--role", "billing"]).contains("mgb_"));
}

/// A script tells the user's mistakes (2) from the gateway's or the system's failures (1).
#[test]
fn bad_input_exits_2_and_a_failure_of_the_database_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let code = |out: &Output| out.status.code();
    // A CSV with a bad row: refused whole, the user's to fix.
    let csv = dir.path().join("accounts.csv");
    std::fs::write(
        &csv,
        "account_id,name,service_address,status,rate_class,route_id,sequence\n\
         A-1,Ann,1 Elm St,active,residential,R01,not-a-number\n",
    )
    .unwrap();
    let out = run(&db, &["import", "accounts", csv.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("accounts.csv:2"));
    // A file that is not there, an unknown cycle, an unknown argument: the same.
    let missing = dir.path().join("missing.csv");
    let out = run(&db, &["import", "meters", missing.to_str().unwrap()]);
    assert_eq!(code(&out), Some(2));
    assert_eq!(code(&run(&db, &["cycle", "status", "2099-01"])), Some(2));
    assert_eq!(code(&run(&db, &["cycle", "frobnicate"])), Some(2));
    // A database file that is not a database: the command cannot work, whatever its input.
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a_u8; 64 * 1024]).unwrap();
    let out = run(&corrupt, &["import", "accounts", csv.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&corrupt, &["cycle", "status", "2026-11"]);
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
