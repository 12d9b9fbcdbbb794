//! A clerk's morning at the desk in headless Chromium (the WebDriver client of `browser.rs`), on a
//! small demo district: sign in, search an account, save and next through ten exceptions, correct a
//! read, print a door hanger (on Letter paper, through the browser's own PDF printing), check the pages
//! fit a 390 px phone, sign out. Screenshots go under the build's target directory.
//!
//! Skipped without chromium and chromedriver, unless `CI` is set.

use crate::browser::{find_in_path, free_port, http, KillOnDrop, WebDriver};
use chrono::{Datelike, Duration as Days, Local};
use meter_gateway::config::Config;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::domain::UserRole;
use meter_gateway::serve;
use meter_gateway::store::{Db, NewUserSecret, Store};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

fn read_id_of(url: &str) -> Option<i64> {
    let rest = url.split("/review/reads/").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_clerks_morning_search_save_and_next_correct_print_and_sign_out() {
    let (Some(chromium), Some(driver)) = (
        find_in_path(&["chromium", "chromium-browser", "google-chrome"]),
        find_in_path(&["chromedriver"]),
    ) else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)");
        }
        println!("skipped: chromium or chromedriver not found");
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-morning");
    std::fs::create_dir_all(&shots).unwrap();

    // A small demo district, last month's cycle and its reads in (all in the past, as at the desk the
    // morning after the handhelds brought them back).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("district.db");
    let now = Local::now().naive_local();
    {
        let district = demo::generate(&DemoParams {
            accounts: 800,
            seed: 2026,
            as_of: Local::now().date_naive().with_day(1).unwrap() - Days::days(1),
        });
        let mut store = Store::open(&path).unwrap();
        demo::load(&mut store, &district).unwrap();
        let cycle = district.open_cycle(&mut store, now).unwrap();
        meter_gateway::cycles::ingest(
            &mut store,
            &Config::default(),
            &cycle.id,
            &district.field_reads,
            now,
        )
        .unwrap();
        let hash = serve::auth::hash_password(PASSWORD).unwrap();
        store
            .add_user(
                "ann",
                UserRole::Clerk,
                NewUserSecret::PasswordHash(&hash),
                now,
            )
            .unwrap();
    }
    let state = serve::test_state(Db::open(&path).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve::run(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    let port = free_port();
    let _driver = KillOnDrop(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while http(addr, "GET", "/status", None).map(|v| v["ready"] == json!(true)) != Ok(true) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
        "binary": chromium.to_string_lossy(),
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1440,900", format!("--user-data-dir={}", profile.path().display())],
    }}}});
    let session = http(addr, "POST", "/session", Some(&caps)).expect("a browser session");
    let wd = WebDriver {
        addr,
        session: session["sessionId"].as_str().unwrap().to_string(),
    };

    // Sign in.
    wd.goto(&format!("{base}/review"));
    wd.wait("the sign-in page", |w| w.url().contains("/login"));
    wd.type_into(&wd.find("#name"), "ann");
    wd.type_into(&wd.find("#password"), PASSWORD);
    wd.click(&wd.find("form[action='/login'] button[type=submit]"));
    wd.wait("the worklist", |w| w.url().contains("/review/cycles/"));
    let list_url = wd.url();
    let rows = wd.count("#queue tbody tr");
    assert!(
        rows >= 11,
        "a morning's worth of exceptions on the first page: {rows}"
    );
    wd.screenshot(&shots.join("1-worklist.png"));

    // Search an account (the customer on the phone).
    let account = wd
        .script("return document.querySelector('#queue tbody tr td[data-label=Account]').innerText.split('\\n')[0].trim()")
        .as_str()
        .unwrap()
        .to_string();
    wd.type_into(&wd.find("input[name=q]"), &account);
    wd.click(&wd.find("form[aria-label='Search and filter'] button[type=submit]"));
    wd.wait("the search's results", |w| w.url().contains("q="));
    assert!(wd.count("#queue tbody tr") >= 1);
    assert!(wd.source().contains(&account));

    // Save and next through ten exceptions.
    wd.goto(&format!("{list_url}?show=open"));
    wd.click(&wd.find("#queue tbody tr a"));
    wd.wait("a read's page", |w| w.url().contains("/review/reads/"));
    wd.screenshot(&shots.join("2-read.png"));
    let mut seen = Vec::new();
    for _ in 0..10 {
        let here = read_id_of(&wd.url()).expect("on a read's page");
        seen.push(here);
        wd.type_into(&wd.find("#accept-reason"), "checked against the history");
        wd.click(&wd.find("#accept"));
        wd.wait("the next read", |w| {
            read_id_of(&w.url()).is_some_and(|id| id != here)
                && w.source().contains(&format!("Read {here} accepted."))
        });
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 10, "ten different reads decided");

    // Correct a high read to a reading just past the previous one.
    wd.goto(&format!("{list_url}?show=open&flag=high"));
    wd.click(&wd.find("#queue tbody tr a"));
    wd.wait("a high read", |w| w.url().contains("/review/reads/"));
    let previous: Value =
        wd.script("return document.querySelector('#previous-reading').innerText.split(' ')[0]");
    let previous: u64 = previous
        .as_str()
        .unwrap()
        .parse()
        .expect("a previous reading");
    wd.type_into(&wd.find("#correct-reading"), &(previous + 5).to_string());
    wd.type_into(&wd.find("#correct-reason"), "one digit doubled");
    wd.click(&wd.find("#correct"));
    wd.wait("the correction", |w| w.source().contains("re-validated as"));

    // Print a door hanger for the account searched.
    wd.goto(&format!("{base}/review/paperwork"));
    wd.type_into(&wd.find("#notice-accounts"), &account);
    wd.type_into(&wd.find("#notice-amount"), "84.20");
    wd.click(&wd.find("#print-notices"));
    wd.wait("the door hanger", |w| w.source().contains("sheet notice"));
    assert!(wd.source().contains("$84.20"));
    wd.screenshot(&shots.join("3-door-hanger.png"));
    // Letter paper, through the browser's own printing: one page, a PDF.
    let pdf = wd.cmd(
        "POST",
        "/print",
        Some(json!({ "page": { "width": 21.59, "height": 27.94 }, "background": false })),
    );
    let pdf = crate::browser::base64_decode(pdf.as_str().unwrap_or(""));
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    std::fs::write(shots.join("3-door-hanger.pdf"), &pdf).unwrap();
    let pages = String::from_utf8_lossy(&pdf)
        .matches("/Type /Page\n")
        .count()
        + String::from_utf8_lossy(&pdf)
            .matches("/Type /Page>>")
            .count()
        + String::from_utf8_lossy(&pdf).matches("/Type/Page/").count();
    assert!(
        pages <= 2,
        "one door hanger fits a Letter sheet ({pages} pages)"
    );

    // A 390 px phone: the worklist and a read page do not scroll sideways.
    wd.cmd(
        "POST",
        "/window/rect",
        Some(json!({ "width": 390, "height": 844 })),
    );
    for page in [
        list_url.clone(),
        format!("{base}/review/reads/{}", seen[0]),
        format!("{base}/review/orders"),
        format!("{base}/review/paperwork"),
    ] {
        wd.goto(&page);
        wd.wait("the page", |w| w.count("main") == 1);
        let fits = wd.script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1",
        );
        assert_eq!(fits, json!(true), "{page} fits 390 px");
    }
    wd.screenshot(&shots.join("4-phone-read.png"));

    // Sign out.
    wd.click(&wd.find("form[action='/logout'] button[type=submit]"));
    wd.wait("the sign-in page", |w| w.url().contains("/login"));
    wd.goto(&format!("{base}/review"));
    wd.wait("signed out", |w| w.url().contains("/login"));

    drop(wd);
    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
    println!("screenshots: {}", shots.display());
}
