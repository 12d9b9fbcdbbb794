//! Integration tests: CIS imports and exports through the library API and the CLI.

use crate::support::gateway;
use chrono::NaiveDate;
use meter_gateway::cis::{self, ImportError, ImportReport, Table};
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::domain::{
    AccountStatus, FieldRead, FlagKind, MeterStatus, ReadKind, ReadMethod, ReadType, Route, Unit,
};
use meter_gateway::store::Store;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cis")
        .join(name)
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Imports the fixture district (accounts, meters, history, codes) into `store`.
fn import_fixtures(store: &mut Store) -> Vec<ImportReport> {
    vec![
        cis::import_accounts(store, &fixture("accounts.csv")).unwrap(),
        cis::import_meters(store, &fixture("meters.csv")).unwrap(),
        cis::import_history(store, &fixture("history.csv")).unwrap(),
        cis::import_codes(store, &fixture("codes.csv")).unwrap(),
    ]
}

/// Everything the district tables hold, as text, to compare a database before and after.
fn dump(store: &Store) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n",
        store.routes().unwrap(),
        store.codes(true).unwrap()
    );
    store
        .for_each_account(|a| -> Result<(), meter_gateway::store::StoreError> {
            out.push_str(&format!("{a:?}\n"));
            Ok(())
        })
        .unwrap();
    store
        .for_each_meter(|m| -> Result<(), meter_gateway::store::StoreError> {
            out.push_str(&format!("{m:?}\n"));
            Ok(())
        })
        .unwrap();
    store
        .for_each_history(|h| -> Result<(), meter_gateway::store::StoreError> {
            out.push_str(&format!("{h:?}\n"));
            Ok(())
        })
        .unwrap();
    out
}

fn messages(err: &ImportError) -> Vec<String> {
    err.row_errors().iter().map(|e| e.to_string()).collect()
}

#[test]
fn the_fixture_district_imports_with_every_value_where_it_belongs() {
    let mut s = Store::open_in_memory().unwrap();
    let reports = import_fixtures(&mut s);
    let inserted: Vec<u64> = reports.iter().map(|r| r.inserted).collect();
    assert_eq!(inserted, [6, 8, 12, 4]);
    assert_eq!(reports[0].routes_created, 2);

    let cafe = s.account("100003").unwrap().unwrap();
    assert_eq!(cafe.name, "The \"Blue Door\" Cafe");
    assert_eq!(cafe.service_address, "200 Main St, Unit B");
    assert_eq!(
        s.account("100002").unwrap().unwrap().rate_class,
        "residential"
    );
    assert_eq!(
        s.account("100006").unwrap().unwrap().status,
        AccountStatus::Closed
    );
    let stock = s.meter("M-9000").unwrap().unwrap();
    assert_eq!(
        (stock.account_id, stock.status, stock.register.unit),
        (None, MeterStatus::Inventory, Unit::M3)
    );
    let walk: Vec<_> = s
        .accounts_on_route("R02")
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(walk, ["100004", "100005", "100006"]);
    let history = s.history_of_account("100001").unwrap();
    assert_eq!(history.len(), 6);
    assert_eq!(
        (history[2].kind, history[3].kind),
        (ReadKind::Final, ReadKind::Initial)
    );
    let follow_up: Vec<_> = s
        .codes(false)
        .unwrap()
        .into_iter()
        .filter(|c| c.requires_follow_up)
        .map(|c| c.code)
        .collect();
    assert_eq!(follow_up, ["BX", "LK"]);
}

#[test]
fn importing_the_same_files_again_changes_nothing() {
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let before = dump(&s);
    for r in import_fixtures(&mut s) {
        assert_eq!((r.inserted, r.updated, r.unchanged), (0, 0, r.rows), "{r}");
        assert_eq!(r.routes_created, 0);
    }
    assert_eq!(dump(&s), before);
}

#[test]
fn a_changed_row_is_counted_as_updated_and_its_new_values_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let changed = std::fs::read_to_string(fixture("accounts.csv"))
        .unwrap()
        .replace("555-0101", "555-0199");
    let report = cis::import_accounts(&mut s, &write(dir.path(), "a.csv", &changed)).unwrap();
    assert_eq!(
        (report.inserted, report.updated, report.unchanged),
        (0, 1, 5)
    );
    assert_eq!(s.account("100001").unwrap().unwrap().phone, "555-0199");
}

/// Imports `contents` as `table` into the fixture district and checks it is rejected with exactly
/// `expected` (after the file name) and that the database did not change.
fn assert_rejected(table: Table, contents: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let before = dump(&s);
    let path = write(dir.path(), "bad.csv", contents);
    let err = cis::import_file(&mut s, table, &path, &mut |_| {}).unwrap_err();
    let prefix = format!("{}:", path.display());
    let got: Vec<String> = messages(&err)
        .into_iter()
        .map(|m| m.strip_prefix(&prefix).map(str::to_string).unwrap_or(m))
        .collect();
    assert_eq!(got, expected, "{err}");
    assert_eq!(dump(&s), before, "a rejected file must write nothing");
}

#[test]
fn an_unknown_account_status_names_file_line_and_column_and_writes_nothing() {
    assert_rejected(
        Table::Accounts,
        "account_id,name,service_address,status,rate_class,route_id,sequence\n\
         200001,New,1 A St,active,residential,R09,1\n\
         200002,New,2 A St,suspended,residential,R09,2\n",
        &["3: column status: `suspended` is not an account status: unknown account status `suspended` (expected one of: active inactive closed )"],
    );
}

#[test]
fn a_reading_with_more_digits_than_the_dials_is_rejected() {
    assert_rejected(
        Table::History,
        "account_id,meter_id,read_on,reading,kind\n\
         100002,M-1002,2024-08-31,12345,actual\n",
        &["2: column reading: 12345 has more digits than meter M-1002's 4 dials"],
    );
}

#[test]
fn a_meter_of_an_unknown_account_is_rejected() {
    assert_rejected(
        Table::Meters,
        "meter_id,account_id,status,dials,multiplier,unit\n\
         M-5000,100001,active,4,1,hcf\n\
         M-5001,999999,active,4,1,hcf\n",
        &["3: column account_id: unknown account `999999`"],
    );
}

#[test]
fn history_of_an_unknown_meter_or_account_is_rejected() {
    assert_rejected(
        Table::History,
        "account_id,meter_id,read_on,reading,kind\n\
         100001,M-7777,2024-08-31,30,actual\n\
         999999,M-1001,2024-08-31,30,actual\n",
        &[
            "2: column meter_id: unknown meter `M-7777`",
            "3: column account_id: unknown account `999999`",
        ],
    );
}

#[test]
fn history_of_a_meter_that_never_served_the_account_is_rejected() {
    assert_rejected(
        Table::History,
        "account_id,meter_id,read_on,reading,kind\n\
         100002,M-1001,2024-08-31,30,actual\n\
         100002,M-0999,2024-07-01,9900,actual\n\
         100002,M-9000,2024-07-01,1,actual\n",
        &[
            "2: column meter_id: meter M-1001 is at account 100001 since 2024-06-03, and no history puts it at account 100002",
            "3: column meter_id: meter M-0999 was removed on 2024-06-03, before this read, and no history puts it at account 100002",
            "4: column meter_id: meter M-9000 has never been installed (no account, no removal date)",
        ],
    );
}

#[test]
fn history_of_a_meter_before_it_moved_to_its_current_account_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    // M-1001 was set at 100001 on 2024-06-03; where it was before is not recorded, so reads up to
    // that day may belong to another account, and once linked, later reads there are accepted too.
    let path = write(
        dir.path(),
        "h.csv",
        "account_id,meter_id,read_on,reading,kind\n\
         100005,M-1001,2024-05-01,0,initial\n\
         100005,M-1001,2024-06-03,5,final\n",
    );
    let r = cis::import_history(&mut s, &path).unwrap();
    assert_eq!(r.inserted, 2);
}

/// CIS exports often keep a pulled meter's last account: `M-0998` in the fixture is in inventory,
/// removed on 2018-04-02 from account 100002, and still names it.
#[test]
fn a_removed_meter_naming_its_last_account_imports_as_last_installed_there_not_in_service() {
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let pulled = s.meter("M-0998").unwrap().unwrap();
    assert_eq!(
        (
            pulled.account_id.as_deref(),
            pulled.status,
            pulled.removed_on
        ),
        (
            Some("100002"),
            MeterStatus::Inventory,
            NaiveDate::from_ymd_opt(2018, 4, 2)
        )
    );
    // Not a stop: the route file lists each account's meter in service only.
    let day = |d: u32| NaiveDate::from_ymd_opt(2024, 8, d).unwrap();
    let now = day(20).and_hms_opt(9, 0, 0).unwrap();
    cycles::open_cycle(&mut s, "2024-08", day(1), day(31), &[], now).unwrap();
    let cfg = Config::default();
    let route = cycles::route_file(&s, &cfg, "2024-08", "R01").unwrap();
    let stops: Vec<&str> = route.stops.iter().map(|st| st.meter_id.as_str()).collect();
    assert_eq!(stops, ["M-1001", "M-1002", "M-2003"]);
    // A read of it is a meter mismatch that names where it was last; the account's own meter is
    // judged as usual.
    let read = |meter: &str, reading: &str| FieldRead {
        meter_id: meter.into(),
        read_at: day(12).and_hms_opt(10, 0, 0).unwrap(),
        raw_reading: reading.into(),
        read_type: ReadType::Regular,
        method: ReadMethod::Radio,
        reader: "JD".into(),
        codes: Vec::new(),
        skip_code: None,
        note: None,
        device: None,
    };
    let reads = [read("M-0998", "5120"), read("M-1002", "4453")];
    cycles::ingest(&mut s, &cfg, "2024-08", &reads, now).unwrap();
    let stored = s.cycle_reads("2024-08").unwrap();
    let flags = |meter: &str| -> Vec<(FlagKind, String)> {
        stored
            .iter()
            .filter(|r| r.meter_id == meter)
            .flat_map(|r| r.flags.iter().map(|f| (f.kind, f.explanation.clone())))
            .collect()
    };
    let pulled = flags("M-0998");
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    assert_eq!(pulled[0].0, FlagKind::MeterMismatch);
    assert!(
        pulled[0].1.contains("is inventory, last at account 100002"),
        "{}",
        pulled[0].1
    );
    assert!(
        flags("M-1002")
            .iter()
            .all(|(k, _)| *k != FlagKind::MeterMismatch),
        "{:?}",
        flags("M-1002")
    );
}

#[test]
fn history_of_a_removed_meter_at_its_last_account_stops_at_its_removal() {
    assert_rejected(
        Table::History,
        "account_id,meter_id,read_on,reading,kind\n\
         100002,M-0998,2018-03-30,9500,actual\n\
         100002,M-0998,2018-05-01,9511,actual\n",
        &["3: column meter_id: meter M-0998 was removed from account 100002 on 2018-04-02, before this read"],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let path = write(
        dir.path(),
        "h.csv",
        "account_id,meter_id,read_on,reading,kind\n\
         100002,M-0998,2018-03-30,9500,actual\n\
         100002,M-0998,2018-04-02,9502,final\n",
    );
    assert_eq!(cis::import_history(&mut s, &path).unwrap().inserted, 2);
}

#[test]
fn route_names_in_an_accounts_file_name_routes_and_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let header = "account_id,name,service_address,status,rate_class,route_id,sequence,route_name\n";
    let named = format!("{header}200001,New,1 A St,active,residential,R01,5,Old town\n");
    let r = cis::import_accounts(&mut s, &write(dir.path(), "a.csv", &named)).unwrap();
    assert_eq!((r.inserted, r.routes_created), (1, 0));
    // A file without names leaves the name alone.
    cis::import_accounts(&mut s, &fixture("accounts.csv")).unwrap();
    assert_eq!(s.routes().unwrap()[0].name, "Old town");
    assert_rejected(
        Table::Accounts,
        &format!(
            "{header}200001,New,1 A St,active,residential,R01,5,Old town\n\
             200002,New,2 A St,active,residential,R01,6,Oldtown\n"
        ),
        &["3: column route_name: route R01 is named `Old town` on line 2, `Oldtown` here"],
    );
}

#[test]
fn a_key_repeated_within_the_file_is_rejected_with_the_line_it_repeats() {
    assert_rejected(
        Table::Codes,
        "code,category,description\nZZ,note,First\nYY,note,Other\nZZ,note,Second\n",
        &["4: column code: duplicate key: the same row key is on line 2"],
    );
    // Spelled differently, the same history key (date and kind normalised) is still a repeat.
    assert_rejected(
        Table::History,
        "account_id,meter_id,read_on,reading,kind\n\
         100002,M-1002,2024-08-31,4450,actual\n\
         100002,M-1002,2024-08-31,4451,ACTUAL\n",
        &["3: column read_on: duplicate key: the same row key is on line 2"],
    );
}

#[test]
fn unparsable_dates_and_numbers_are_rejected_column_by_column() {
    assert_rejected(
        Table::Meters,
        "meter_id,account_id,status,dials,multiplier,unit,installed_on,removed_on\n\
         M-5000,100001,active,four,1,hcf,2024-13-01,\n\
         M-5001,100001,active,4,x10,hcf,,06/03/2024\n",
        &[
            "2: column dials: `four` is not a whole number",
            "2: column installed_on: `2024-13-01` is not an ISO 8601 date (YYYY-MM-DD)",
            "3: column multiplier: `x10` is not a whole number",
            "3: column removed_on: `06/03/2024` is not an ISO 8601 date (YYYY-MM-DD)",
        ],
    );
}

#[test]
fn a_missing_required_column_is_reported_against_the_header() {
    assert_rejected(
        Table::History,
        "account_id,meter_id,reading,kind\n100002,M-1002,4450,actual\n",
        &["1: column read_on: missing required column in the header"],
    );
}

#[test]
fn an_empty_required_field_and_a_misplaced_account_are_rejected() {
    assert_rejected(
        Table::Meters,
        "meter_id,account_id,status,dials,multiplier,unit\n\
         ,100001,active,4,1,hcf\n\
         M-5001,100001,inventory,4,1,hcf\n\
         M-5002,,active,4,1,hcf\n",
        &[
            "2: column meter_id: is empty",
            "3: column account_id: a meter in status inventory with no removal date is at no account: leave account_id empty, or give removed_on if `100001` is where it was last installed",
            "4: column account_id: is empty, but an active meter is set at an account",
        ],
    );
}

#[test]
fn every_bad_row_is_reported_and_the_good_rows_around_them_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    let mut csv = String::from("code,category,description,requires_follow_up\n");
    for i in 0..120 {
        // Every third row is bad.
        let flag = if i % 3 == 0 { "maybe" } else { "no" };
        csv.push_str(&format!("C{i:03},note,Code {i},{flag}\n"));
    }
    let path = write(dir.path(), "codes.csv", &csv);
    let err = cis::import_codes(&mut s, &path).unwrap_err();
    let msgs = messages(&err);
    assert_eq!(msgs.len(), 40);
    assert_eq!(
        msgs[1],
        format!(
            "{}:5: column requires_follow_up: `maybe` is not a yes/no value (true/false, yes/no, 1/0)",
            path.display()
        )
    );
    assert!(s.codes(true).unwrap().is_empty());
}

#[test]
fn past_fifty_errors_the_rest_are_counted_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    let mut csv = String::from("code,category,description\n");
    for i in 0..130 {
        csv.push_str(&format!("C{i},,no category\n"));
    }
    let path = write(dir.path(), "codes.csv", &csv);
    let err = cis::import_codes(&mut s, &path).unwrap_err();
    assert_eq!(err.row_errors().len(), cis::MAX_SHOWN_ERRORS);
    let text = err.to_string();
    assert!(text.contains("130 errors"), "{text}");
    assert!(text.ends_with("\nand 80 more"), "{text}");
    assert_eq!(err.row_errors()[49].line, 51);
}

#[test]
fn spreadsheet_files_with_a_byte_order_mark_crlf_and_padding_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    let path = write(
        dir.path(),
        "codes.csv",
        "\u{feff}Code , Category,DESCRIPTION,Requires_Follow_Up\r\n LK ,Trouble,Leak,Y\r\n\r\n",
    );
    let r = cis::import_codes(&mut s, &path).unwrap();
    assert_eq!((r.rows, r.inserted), (1, 1));
    let lk = &s.codes(false).unwrap()[0];
    assert_eq!(
        (
            lk.code.as_str(),
            lk.category.as_str(),
            lk.requires_follow_up
        ),
        ("LK", "trouble", true)
    );
}

#[test]
fn a_field_that_is_not_utf8_is_reported_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = b"code,category,description\nLK,trouble,\xff\xfe\n".to_vec();
    let path = dir.path().join("latin1.csv");
    std::fs::write(&path, bytes).unwrap();
    let mut s = Store::open_in_memory().unwrap();
    let err = cis::import_codes(&mut s, &path).unwrap_err();
    assert_eq!(
        messages(&err),
        [format!(
            "{}:2: column description: not valid UTF-8",
            path.display()
        )]
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let mut s = Store::open_in_memory().unwrap();
    let err = cis::import_accounts(&mut s, Path::new("/nonexistent/accounts.csv")).unwrap_err();
    assert!(matches!(err, ImportError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/accounts.csv"),
        "{err}"
    );
}

#[test]
fn export_then_import_gives_the_same_database_and_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Store::open_in_memory().unwrap();
    import_fixtures(&mut first);
    first
        .upsert_routes(&[Route {
            id: "R01".into(),
            name: "Old town, east of Main".into(),
        }])
        .unwrap();
    let mut second = Store::open_in_memory().unwrap();
    for table in Table::ALL {
        let out = dir.path().join(format!("{table}-1.csv"));
        let exported = cis::export(&first, table, &out).unwrap();
        let imported = cis::import_file(&mut second, table, &out, &mut |_| {}).unwrap();
        assert_eq!(exported.rows, imported.inserted, "{table}");
    }
    assert_eq!(dump(&second), dump(&first));
    for table in Table::ALL {
        let again = dir.path().join(format!("{table}-2.csv"));
        cis::export(&second, table, &again).unwrap();
        let a = std::fs::read(dir.path().join(format!("{table}-1.csv"))).unwrap();
        let b = std::fs::read(&again).unwrap();
        assert_eq!(a, b, "{table}");
    }
    // Quoting survives: the cafe's name has quotes and a comma-bearing address.
    let accounts = std::fs::read_to_string(dir.path().join("accounts-1.csv")).unwrap();
    assert!(accounts.contains(r#""The ""Blue Door"" Cafe","200 Main St, Unit B""#));
    assert_eq!(second.routes().unwrap()[0].name, "Old town, east of Main");
}

#[test]
fn an_export_replaces_the_target_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_in_memory().unwrap();
    import_fixtures(&mut s);
    let out = dir.path().join("codes.csv");
    std::fs::write(&out, "old contents").unwrap();
    cis::export(&s, Table::Codes, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("code,category,description,requires_follow_up,retired\n"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no partial file is left behind");
    let missing_dir = dir.path().join("no/such/dir/codes.csv");
    assert!(cis::export(&s, Table::Codes, &missing_dir).is_err());
}

// ---- the CLI ---------------------------------------------------------------------------------

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_imports_and_exports_with_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    let (ok, out, err) = run(gateway()
        .arg("--db")
        .arg(&db)
        .args(["import", "accounts"])
        .arg(fixture("accounts.csv")));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("6 rows") && out.contains("6 inserted") && out.contains("2 new routes"),
        "{out}"
    );
    let (ok, out, err) = run(gateway()
        .arg("--db")
        .arg(&db)
        .args(["import", "accounts"])
        .arg(fixture("accounts.csv")));
    assert!(ok, "{err}");
    assert!(out.contains("0 inserted, 0 updated, 6 unchanged"), "{out}");

    let csv = dir.path().join("accounts.csv");
    let (ok, out, err) = run(gateway()
        .arg("--db")
        .arg(&db)
        .args(["export", "accounts"])
        .arg(&csv));
    assert!(ok, "{err}");
    assert!(out.contains("6 rows"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        7,
        "header and six accounts"
    );
}

#[test]
fn the_cli_rejects_a_bad_file_listing_its_rows_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("district.db");
    let bad = write(
        dir.path(),
        "meters.csv",
        "meter_id,account_id,status,dials,multiplier,unit\nM1,NOPE,active,4,1,hcf\n",
    );
    let (ok, _, err) = run(gateway()
        .arg("--db")
        .arg(&db)
        .args(["import", "meters"])
        .arg(&bad));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}:2: column account_id: unknown account `NOPE`",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
}

#[test]
fn the_database_comes_from_the_db_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let by_env = dir.path().join("env.db");
    let by_flag = dir.path().join("flag.db");
    let (ok, _, err) = run(gateway()
        .env("METER_GATEWAY_DB", &by_env)
        .current_dir(dir.path())
        .args(["import", "codes"])
        .arg(fixture("codes.csv")));
    assert!(ok, "{err}");
    assert!(by_env.exists());
    assert!(!dir.path().join("meter-gateway.db").exists());
    // The flag wins over the environment.
    let (ok, _, err) = run(gateway()
        .env("METER_GATEWAY_DB", &by_env)
        .arg("--db")
        .arg(&by_flag)
        .args(["import", "accounts"])
        .arg(fixture("accounts.csv")));
    assert!(ok, "{err}");
    assert_eq!(
        Store::open(&by_flag).unwrap().counts().unwrap().accounts(),
        6
    );
    let env_counts = Store::open(&by_env).unwrap().counts().unwrap();
    assert_eq!((env_counts.codes, env_counts.accounts()), (4, 0));
}

#[test]
fn exporting_from_a_database_that_does_not_exist_fails_instead_of_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    let (ok, _, err) = run(gateway()
        .arg("--db")
        .arg(&db)
        .args(["export", "codes"])
        .arg(dir.path().join("codes.csv")));
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!db.exists());
}
