//! Issue 17: sign-in under attack, taking access away, CSV for spreadsheets, refused characters,
//! health that tells the truth, headers and cross-site POSTs.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::domain::ReadType;
use meter_gateway::domain::UserRole;
use meter_gateway::serve::{self, AppState};
use meter_gateway::store::{Db, Store};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::fixture::{self, CYCLE};
use crate::support::gateway;
use crate::web::{add_clerk, form_body as form, send};

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

fn memory_state(config: Config) -> AppState {
    AppState::new(
        Db::start(Store::open_in_memory().unwrap()).unwrap(),
        Arc::new(config),
    )
}

const LOGIN_TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn login(name: &str, password: &str, client: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            header::COOKIE,
            format!("{}={LOGIN_TOKEN}", serve::auth::LOGIN_CSRF_COOKIE),
        )
        .body(Body::from(form(&[
            ("name", name),
            ("password", password),
            ("csrf", LOGIN_TOKEN),
        ])))
        .unwrap();
    let addr: SocketAddr = format!("{client}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

// ---- sign-in -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_costs_one_check_and_slows_only_its_name_and_address() {
    let state = memory_state(Config::default());
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;
    add_clerk(&state, "dora", "another long password").await;
    // 200 wrong passwords for one name from one address, all at once.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, login("carla", &format!("guess {i}"), "10.0.1.1")).await
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.contains_key(header::RETRY_AFTER));
        }
        *by_status.entry(r.status.as_u16()).or_insert(0) += 1;
    }
    let checked = state.signin.checked();
    assert!(checked <= 10, "{checked} checked: {by_status:?}");
    assert_eq!(by_status.get(&401).copied().unwrap_or(0), checked as i32);
    assert_eq!(
        by_status.get(&429).copied().unwrap_or(0),
        200 - checked as i32,
        "{by_status:?}"
    );
    // The clerk at her own desk is not slowed, nor is another clerk behind the same address.
    let r = send(&app, login("carla", "water under the bridge", "10.0.2.7")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = send(&app, login("dora", "another long password", "10.0.1.1")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    state.db.shutdown();
}

#[tokio::test]
async fn after_the_free_failures_a_pair_waits_longer_each_time_and_a_success_clears_it() {
    let state = memory_state(Config::default());
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;
    for i in 0..5 {
        let r = send(&app, login("carla", "guess", "10.0.1.1")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let checked = state.signin.checked();
    // The sixth attempt, right password or not, waits a second: 429, not checked, the page says so.
    let r = send(&app, login("carla", "water under the bridge", "10.0.1.1")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert!(r.body.contains("try again in 1 s"), "{}", r.body);
    assert!(
        r.body.contains("<form"),
        "the sign-in page again: {}",
        r.body
    );
    assert_eq!(state.signin.checked(), checked);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = send(&app, login("carla", "guess again", "10.0.1.1")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Six failures: two seconds now.
    let r = send(&app, login("carla", "water under the bridge", "10.0.1.1")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::RETRY_AFTER], "2");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = send(&app, login("carla", "water under the bridge", "10.0.1.1")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = send(&app, login("carla", "guess", "10.0.1.1")).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the success cleared the pair"
    );
    state.db.shutdown();
}

#[tokio::test]
async fn a_sign_in_form_with_a_stale_token_is_refused_saying_so() {
    let state = memory_state(Config::default());
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water under the bridge").await;
    let mut req = login("carla", "water under the bridge", "10.0.1.1");
    req.headers_mut().insert(
        header::COOKIE,
        format!("{}=another-token", serve::auth::LOGIN_CSRF_COOKIE)
            .parse()
            .unwrap(),
    );
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body.contains("security token did not match"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("may not do that"), "{}", r.body);
    assert_eq!(state.signin.checked(), 0);
    state.db.shutdown();
}

// ---- headers, cross-site POSTs, CSRF, refused characters ----------------------------------------

fn csp_hashes_of_inline(tag: &str, html: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    html.split(&open)
        .skip(1)
        .map(|rest| {
            let body = rest.split(&close).next().unwrap();
            serve::security::csp_hash(body)
        })
        .collect()
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_the_policy_allows_every_inline_script_and_style(
) {
    let d = fixture::district();
    let app = serve::router(d.state.clone());
    let (cookie, _) = serve::sign_in_session_for_tests(&d.state, "carla", UserRole::Clerk).await;
    let page = |path: &str| {
        Request::builder()
            .uri(path)
            .header(header::COOKIE, &cookie)
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap()
    };
    let mut inline = Vec::new();
    for req in [
        page(&format!("/review/cycles/{CYCLE}")),
        page(&format!("/review/reads/{}", d.high)),
        page("/review/orders"),
        page("/review/reads/999999"),
        get("/login"),
        get("/healthz"),
        get("/review"),
        get("/api/v1/device/codes"),
        get("/no/such/page"),
    ] {
        let path = req.uri().to_string();
        let r = send(&app, req).await;
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(
            r.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{path}"
        );
        assert_eq!(r.headers[header::REFERRER_POLICY], "same-origin", "{path}");
        for hash in csp_hashes_of_inline("script", &r.body)
            .into_iter()
            .chain(csp_hashes_of_inline("style", &r.body))
        {
            assert!(
                csp.contains(&hash),
                "{path}: inline {hash} not allowed by {csp}"
            );
            inline.push(hash);
        }
        // No inline event handlers or style attributes, which no hash can allow.
        for attribute in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onchange=",
            " style=",
        ] {
            assert!(!r.body.contains(attribute), "{path} has{attribute}");
        }
    }
    assert!(
        inline.len() >= 3,
        "the worklist's script and the styles were seen"
    );
    d.state.db.shutdown();
}

#[tokio::test]
async fn a_post_from_another_site_is_refused_and_a_csrf_failure_says_what_it_is() {
    let d = fixture::district();
    let app = serve::router(d.state.clone());
    let (cookie, csrf) = serve::sign_in_session_for_tests(&d.state, "carla", UserRole::Clerk).await;
    let accept = |origin: Option<&str>, token: &str| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(format!("/review/reads/{}/hold", d.miskey))
            .header(header::HOST, "gateway.local:8080")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::from(form(&[
            ("csrf", token),
            ("reason", "call the owner"),
        ])))
        .unwrap()
    };
    let r = send(&app, accept(Some("http://evil.example"), &csrf)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("evil.example"), "{}", r.body);
    let r = send(&app, accept(Some("http://gateway.local:8080"), "wrong")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body.contains("security token did not match"),
        "{}",
        r.body
    );
    let r = send(&app, accept(Some("http://gateway.local:8080"), &csrf)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // A note with a right-to-left override is refused, naming the field.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/review/reads/{}/hold", d.high))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[
            ("csrf", &csrf),
            ("reason", "call back \u{202E}tnuocca"),
        ])))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("field `reason`") && r.body.contains("U+202E"),
        "{}",
        r.body
    );
    d.state.db.shutdown();
}

// ---- CSV for spreadsheets -----------------------------------------------------------------------

#[tokio::test]
async fn csv_files_for_people_never_start_a_cell_with_a_formula() {
    let d = fixture::district();
    let mut read = fixture::field_read(
        "M2",
        d.read_day.and_hms_opt(15, 0, 0).unwrap(),
        &(d.last[1] + 900).to_string(),
        ReadType::Regular,
        "=HYPERLINK(\"http://x.example\",\"pay\")",
    );
    read.note = Some("@SUM(1+1)".into());
    d.state
        .db
        .call(move |s| cycles::ingest(s, &Config::default(), CYCLE, &[read], fixture::now()))
        .await
        .unwrap()
        .unwrap();
    let app = serve::router(d.state.clone());
    let (cookie, _) = serve::sign_in_session_for_tests(&d.state, "carla", UserRole::Clerk).await;
    let mut files = Vec::new();
    for path in [
        format!("/review/reports/{CYCLE}/productivity.csv"),
        format!("/review/reports/{CYCLE}/exceptions.csv"),
        format!("/review/cycles/{CYCLE}/exceptions.csv?show=all"),
    ] {
        let req = Request::builder()
            .uri(&path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        files.push((path, r.body));
    }
    let mut listing = Vec::new();
    let rows = cycles::list_reads(&Store::open(&d.path).unwrap(), CYCLE).unwrap();
    cycles::write_reads(&rows, cycles::ReadsFormat::Csv, &mut listing).unwrap();
    files.push((
        "reads --format csv".into(),
        String::from_utf8(listing).unwrap(),
    ));
    let mut saw_reader = false;
    for (what, text) in &files {
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        for rec in rd.records() {
            for cell in rec.unwrap().iter() {
                assert!(
                    !matches!(cell.chars().next(), Some('=' | '+' | '@' | '\t' | '\r')),
                    "{what}: {cell:?}"
                );
                assert!(
                    !cell.starts_with('-') || cell.parse::<f64>().is_ok(),
                    "{what}: {cell:?}"
                );
                saw_reader |= cell == "'=HYPERLINK(\"http://x.example\",\"pay\")";
            }
        }
    }
    assert!(
        saw_reader,
        "the reader id is in the files, marked: {files:?}"
    );
    d.state.db.shutdown();
}

#[test]
fn a_cis_export_with_formula_like_values_imports_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let db_arg = db.to_str().unwrap();
    let accounts = dir.path().join("accounts.csv");
    std::fs::write(
        &accounts,
        "account_id,name,service_address,status,rate_class,route_id,sequence,apn,phone\n\
         -A7,=HYPERLINK(\"http://x\"),\"@1 Main St, Apt 2\",active,residential,R01,10,'-12,+1 555 0100\n\
         A8,'=already quoted,2 Main St,active,residential,R01,20,-12,\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = gateway()
            .arg("--db")
            .arg(db_arg)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["import", "accounts", accounts.to_str().unwrap()]);
    let exported = dir.path().join("out.csv");
    run(&["export", "accounts", exported.to_str().unwrap()]);
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.contains("'-A7,\"'=HYPERLINK(\"\"http"), "{text}");
    assert!(text.contains("'@1 Main St"), "{text}");
    assert!(text.contains(",-12,"), "a number stays a number: {text}");
    // A cell the CIS wrote as `'=...` is read as `=...` (what `export` writes for it); `'-12` stays
    // as it is (`export` never writes a mark before a number).
    // The export imports back as the same rows (nothing changes), and exports the same bytes.
    let second = dir.path().join("second.db");
    let out = gateway()
        .arg("--db")
        .arg(&second)
        .args(["import", "accounts", exported.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let again = dir.path().join("again.csv");
    let out = gateway()
        .arg("--db")
        .arg(&second)
        .args(["export", "accounts", again.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
    let store = Store::open(&second).unwrap();
    let a7 = store.account("-A7").unwrap().unwrap();
    assert_eq!(
        (
            a7.name.as_str(),
            a7.service_address.as_str(),
            a7.apn.as_str(),
            a7.phone.as_str()
        ),
        (
            "=HYPERLINK(\"http://x\")",
            "@1 Main St, Apt 2",
            "'-12",
            "+1 555 0100"
        )
    );
    let a8 = store.account("A8").unwrap().unwrap();
    assert_eq!(
        (a8.name.as_str(), a8.apn.as_str()),
        ("=already quoted", "-12")
    );
}

// ---- refused characters at every entry point ----------------------------------------------------

#[test]
fn nul_and_bidi_controls_are_refused_by_the_cis_import_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let codes = dir.path().join("codes.csv");
    std::fs::write(
        &codes,
        "code,category,description,requires_follow_up\nLK,trouble,Leak \u{202E}kael,true\n",
    )
    .unwrap();
    let out = gateway()
        .arg("--db")
        .arg(&db)
        .args(["import", "codes", codes.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":2: column description") && err.contains("U+202E"),
        "{err}"
    );
    let out = gateway()
        .arg("--db")
        .arg(&db)
        .args(["device", "add", "HH\u{2066}01"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("argument 5") && err.contains("U+2066"),
        "{err}"
    );
}

#[tokio::test]
async fn the_device_api_refuses_them_in_its_fields_and_in_reads() {
    let d = fixture::district();
    let app = serve::router(d.state.clone());
    let token = serve::device_token_for_tests(&d.state, "HH-01").await;
    let upload = |body: Value| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/device/reads")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let read = |seq: u64, note: &str| {
        json!({ "device_seq": seq, "meter_id": "M2", "reading": d.last[1] + 11,
                "read_time": d.read_day.and_hms_opt(16, 0, 0).unwrap().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "read_type": "regular", "method": "keyed", "reader_id": "pat", "note": note })
    };
    let r = send(
        &app,
        upload(json!({ "state_id": "9f", "batch_id": "b\u{202E}1", "reads": [read(1, "ok")] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("batch_id") && r.body.contains("U+202E"),
        "{}",
        r.body
    );
    // A reading no register can show (found by schemathesis: it was a 500) is refused alone.
    let mut huge = read(3, "");
    huge["reading"] = json!(9_223_372_036_854_775_808_u64);
    let r = send(
        &app,
        upload(json!({ "state_id": "9f", "batch_id": "b2",
            "reads": [read(1, "gate code 12\u{0000}34"), read(2, "dog in yard"), huge] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let receipt = serde_json::from_str::<Value>(&r.body).unwrap();
    assert_eq!(receipt["stored"], 1, "{receipt}");
    assert_eq!(receipt["refused"][1]["device_seq"], 3, "{receipt}");
    assert!(
        receipt["refused"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("beyond any register"),
        "{receipt}"
    );
    let refused = &receipt["refused"][0];
    assert_eq!(refused["device_seq"], 1, "{receipt}");
    assert_eq!(refused["reason"], "bad_read", "{receipt}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("note contains a NUL"),
        "{receipt}"
    );
    d.state.db.shutdown();
}

// ---- taking access away ---------------------------------------------------------------------------

fn cli(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    gateway().arg("--db").arg(db).args(args).output().unwrap()
}

fn cli_with_stdin(db: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = gateway()
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn word_starting(out: &std::process::Output, prefix: &str) -> String {
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in {text}"))
        .to_string()
}

fn bearer_get(path: &str, token: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_admin_retires_and_rotates_handhelds_and_disables_and_resets_users_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let first = word_starting(&cli(&db, &["device", "add", "HH-05"]), "HH-05.");
    let state = serve::test_state(Db::open(&db).unwrap());
    let app = serve::router(state.clone());
    let codes = "/api/v1/device/codes";
    assert_eq!(
        send(&app, bearer_get(codes, &first)).await.status,
        StatusCode::OK
    );

    // A new token that cannot be printed is not made: the old one keeps working.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let lost = gateway()
        .arg("--db")
        .arg(&db)
        .args(["device", "rotate", "HH-05"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!lost.status.success(), "{lost:?}");
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("keeps its old token"),
        "{lost:?}"
    );
    assert_eq!(
        send(&app, bearer_get(codes, &first)).await.status,
        StatusCode::OK
    );

    let second = word_starting(&cli(&db, &["device", "rotate", "HH-05"]), "HH-05.");
    assert_ne!(first, second);
    assert_eq!(
        send(&app, bearer_get(codes, &first)).await.status,
        StatusCode::UNAUTHORIZED,
        "the old token is refused at once"
    );
    assert_eq!(
        send(&app, bearer_get(codes, &second)).await.status,
        StatusCode::OK
    );
    let out = cli(
        &db,
        &["device", "retire", "HH-05", "--reason", "lost in the field"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        send(&app, bearer_get(codes, &second)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let listing = String::from_utf8(cli(&db, &["device", "list"]).stdout).unwrap();
    assert!(
        listing.contains("HH-05\t") && listing.contains("\tretired\t"),
        "{listing}"
    );
    let out = cli(&db, &["device", "rotate", "HH-05"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retired"),
        "{out:?}"
    );

    // A clerk signed in; disabled: the session ends and sign-in is refused.
    let out = cli_with_stdin(
        &db,
        &[
            "user",
            "add",
            "carla",
            "--role",
            "clerk",
            "--password-stdin",
        ],
        "water under the bridge\n",
    );
    assert!(out.status.success(), "{out:?}");
    let r = send(&app, login("carla", "water under the bridge", "10.0.0.8")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let session = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(serve::auth::SESSION_COOKIE))
        .unwrap();
    let docks = || {
        Request::builder()
            .uri("/api/v1/docks")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, docks()).await.status, StatusCode::OK);
    let out = cli(
        &db,
        &["user", "disable", "carla", "--reason", "left the District"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"),
        "{out:?}"
    );
    assert_eq!(send(&app, docks()).await.status, StatusCode::UNAUTHORIZED);
    let r = send(&app, login("carla", "water under the bridge", "10.0.0.8")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(cli(&db, &["user", "enable", "carla"]).status.success());
    let out = cli_with_stdin(
        &db,
        &["user", "reset-password", "carla", "--password-stdin"],
        "a brand new long password\n",
    );
    assert!(out.status.success(), "{out:?}");
    let r = send(&app, login("carla", "water under the bridge", "10.0.0.9")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &app,
        login("carla", "a brand new long password", "10.0.0.9"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    // A billing user's token: a new one replaces it; disabled, none works.
    let old = word_starting(
        &cli(&db, &["user", "add", "billrun", "--role", "billing"]),
        "mgb_",
    );
    let doc = "/api/v1/openapi.json";
    assert_eq!(
        send(&app, bearer_get(doc, &old)).await.status,
        StatusCode::OK
    );
    let new = word_starting(&cli(&db, &["user", "reset-password", "billrun"]), "mgb_");
    assert_eq!(
        send(&app, bearer_get(doc, &old)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, bearer_get(doc, &new)).await.status,
        StatusCode::OK
    );
    assert!(cli(&db, &["user", "disable", "billrun"]).status.success());
    assert_eq!(
        send(&app, bearer_get(doc, &new)).await.status,
        StatusCode::UNAUTHORIZED
    );
    state.db.shutdown();

    // Every step is in the audit log, without a secret.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let audit: Vec<String> = conn
        .prepare(
            "SELECT entity || ' ' || entity_id || ' ' || action || ' ' || reason FROM audit_log
              WHERE entity IN ('device', 'user') ORDER BY audit_id",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        audit,
        [
            "device HH-05 rotate_token ",
            "device HH-05 retire lost in the field",
            "user carla disable left the District",
            "user carla enable ",
            "user carla reset_password ",
            "user billrun new_token ",
            "user billrun disable ",
        ]
    );
    let everything: String = conn
        .query_row(
            "SELECT group_concat(coalesce(after, ''), ' ') FROM audit_log",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!everything.contains(&new) && !everything.contains(&second[6..]));
}

// ---- health ---------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_says_not_ok_when_the_database_cannot_be_written_and_a_panicking_job_changes_nothing(
) {
    let d = fixture::district();
    let app = serve::router(d.state.clone());
    let health = |app: Router| async move { send(&app, get("/healthz")).await };
    let r = health(app.clone()).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok\n"));
    // A job that panics (a bug) is answered an error; the writer, and the daemon, go on.
    let panicked = d
        .state
        .db
        .call(|_| -> u32 { panic!("a bug in a handler's job") })
        .await;
    assert!(panicked.is_err());
    let token = serve::device_token_for_tests(&d.state, "HH-02").await;
    let r = send(&app, bearer_get("/api/v1/device/codes", &token)).await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(health(app.clone()).await.status, StatusCode::OK);
    // The database stops taking writes (what a read-only file or a full disk does to the writer).
    d.state
        .db
        .call(|s| s.conn_for_tests().pragma_update(None, "query_only", true))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = health(app.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.body.starts_with("not ok: the database cannot be written"),
        "{}",
        r.body
    );
    d.state.db.shutdown();
    let r = health(app.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Waits for a child to exit, at most `secs` (then kills it and fails).
fn exit_within(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "still running after {secs} s: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn serve_on(db: &std::path::Path, config: Option<&std::path::Path>) -> std::process::Child {
    let mut c = gateway();
    if let Some(path) = config {
        c.arg("--config").arg(path);
    }
    c.arg("--db")
        .arg(db)
        .args(["serve", "--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn serve_refuses_a_database_it_cannot_write_and_a_full_file_system_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    // A database file SQLite may only read (its header's write version is one it does not know):
    // what a read-only file is for every user, root included.
    let db = dir.path().join("read-only.db");
    drop(Store::open(&db).unwrap());
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[18] = 3;
    std::fs::write(&db, bytes).unwrap();
    let out = exit_within(serve_on(&db, None), 30);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a database it can write") && err.contains("read-only"),
        "{err}"
    );
    // A file system with less free space than `[serve] min_free_mb`.
    let db = dir.path().join("full.db");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[serve]\nmin_free_mb = 1000000000000\n").unwrap();
    let out = exit_within(serve_on(&db, Some(&config)), 30);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MiB free on the database's file system"),
        "{err}"
    );
    // Not root: a file without write permission.
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        use std::os::unix::fs::PermissionsExt;
        let db = dir.path().join("mode.db");
        drop(Store::open(&db).unwrap());
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
        let out = exit_within(serve_on(&db, None), 30);
        assert!(!out.status.success(), "{out:?}");
    }
}

#[test]
fn serve_tells_systemd_it_is_ready_and_feeds_the_watchdog_while_well() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut child = gateway()
        .arg("--db")
        .arg(dir.path().join("gw.db"))
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        match socket.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => {
                let _ = child.kill();
                panic!("{e}; received {seen:?}");
            }
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = exit_within(child, 30);
    assert!(out.status.success(), "{out:?}");
    assert!(seen[0].contains("READY=1"), "{seen:?}");
}

#[tokio::test]
async fn cookies_are_secure_when_the_gateway_says_it_is_behind_tls_and_bearer_posts_need_no_origin()
{
    let mut config = Config::default();
    config.serve.secure_cookies = true;
    let state = memory_state(config);
    let app = serve::router(state.clone());
    let r = send(&app, get("/login")).await;
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let plain = memory_state(Config::default());
    let r = send(&serve::router(plain.clone()), get("/login")).await;
    assert!(!r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Secure"));
    // A handheld's POST carries its token, which no other site's page can send: its Origin (the
    // field app's pages send `null`) does not matter.
    let token = serve::device_token_for_tests(&state, "PH-01").await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/device/hello")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ORIGIN, "null")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "state_id": "9f" }).to_string()))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    state.db.shutdown();
    plain.db.shutdown();
}

#[tokio::test]
async fn a_sign_in_name_with_a_bidi_control_is_refused_but_a_password_may_hold_anything() {
    let state = memory_state(Config::default());
    let app = serve::router(state.clone());
    add_clerk(&state, "carla", "water \u{202E}under the bridge").await;
    let r = send(&app, login("car\u{202E}la", "whatever it is", "10.0.3.1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("field `name`"), "{}", r.body);
    let r = send(
        &app,
        login("carla", "water \u{202E}under the bridge", "10.0.3.1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    state.db.shutdown();
}
