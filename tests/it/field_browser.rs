//! The field app (`/field/`) in headless Chromium, through the WebDriver client of `browser.rs`, with
//! the daemon in-process: a reader pairs a phone, downloads a route, goes offline (DevTools network
//! emulation), keys twenty reads (one outside the day's limits, re-keyed and confirmed; one skipped;
//! field orders completed in place; a double tap), reloads and restarts the browser offline, comes
//! back online and syncs through a dropped answer and a sequence conflict; the database then holds
//! every read exactly once, with its codes. And the app's limit formula against the protocol's vectors.
//!
//! Skipped without chromium and chromedriver, unless `CI` is set.

use crate::browser::{self, chromium_and_driver, session, WebDriver};
use chrono::{Local, NaiveDate};
use firmware_protocol::message::{self as msg, DayLimits};
use meter_gateway::auth::DeviceToken;
use meter_gateway::config::Config;
use meter_gateway::cycles::{self, RouteFile, RouteStop};
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::serve;
use meter_gateway::store::{Db, Store};
use meter_gateway::sync::{Uploader, Via};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEVICE: &str = "PH-01";
const READER: &str = "JS";
/// Reads keyed on the walk.
const READS: usize = 20;

fn script_with(wd: &WebDriver, script: &str, args: Value) -> Value {
    wd.cmd(
        "POST",
        "/execute/sync",
        Some(json!({ "script": script, "args": args })),
    )
}

fn script_async(wd: &WebDriver, script: &str, args: Value) -> Value {
    wd.cmd(
        "POST",
        "/execute/async",
        Some(json!({ "script": script, "args": args })),
    )
}

fn text(wd: &WebDriver, id: &str) -> String {
    script_with(
        wd,
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
        json!([id]),
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn visible(wd: &WebDriver, id: &str) -> bool {
    script_with(
        wd,
        "const e = document.getElementById(arguments[0]); return !!e && !e.closest('[hidden]');",
        json!([id]),
    ) == json!(true)
}

/// A phone's screen: 390 × 844 CSS pixels, touch (headless Chromium's windows are at least 500 px
/// wide, so the window size alone does not make one).
fn phone(wd: &WebDriver) {
    wd.cmd(
        "POST",
        "/goog/cdp/execute",
        Some(
            json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
            "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true } }),
        ),
    );
}

/// DevTools network emulation: the page's requests fail as on a phone out of reach.
fn offline(wd: &WebDriver, off: bool) {
    if off {
        wd.cmd(
            "POST",
            "/chromium/network_conditions",
            Some(json!({ "network_conditions": {
                "offline": true, "latency": 0, "download_throughput": 0, "upload_throughput": 0 } })),
        );
    } else {
        wd.cmd("DELETE", "/chromium/network_conditions", None);
    }
}

/// Whether the page reaches the gateway at all (a plain request to `/healthz`).
fn reaches_the_gateway(wd: &WebDriver) -> bool {
    script_async(
        wd,
        "const done = arguments[arguments.length - 1];
         fetch('/healthz', { cache: 'no-store' }).then(r => done(r.ok), () => done(false));",
        json!([]),
    ) == json!(true)
}

fn wait_long(wd: &WebDriver, what: &str, seconds: u64, check: impl Fn(&WebDriver) -> bool) {
    let start = Instant::now();
    while !check(wd) {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "timed out waiting for {what}; at {}",
            wd.url()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn day_number(d: NaiveDate) -> u32 {
    u32::try_from((d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()).unwrap()
}

/// The stop's limits today, computed by the crate (the office's copy of PROTOCOL.md §3.6).
fn limits_today(file: &RouteFile, stop: &RouteStop, day: u32) -> DayLimits {
    let Some(l) = stop.limits else {
        return DayLimits::Any;
    };
    msg::limits_on(
        stop.dials,
        stop.previous_reading.unwrap_or(0),
        (l.first_day.low, l.first_day.high),
        (l.last_day.low, l.last_day.high),
        (day_number(file.window_from), day_number(file.window_to)),
        day,
    )
}

/// A read as the database holds it: raw reading, read type, codes, skip code, note, device_seq, flags.
type StoredRead = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
);

/// What the reader does at a stop of the walk.
#[derive(Debug, Clone, PartialEq)]
enum Act {
    /// Keys this reading (inside the day's limits, or a stop with none).
    Read(u64),
    /// Keys a reading outside the limits, is asked to key it again, and confirms it.
    High(u64),
    Skip,
}

#[test]
fn a_reader_pairs_a_phone_reads_twenty_meters_offline_and_every_read_is_stored_once() {
    let Some(found) = chromium_and_driver() else {
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("field");
    std::fs::create_dir_all(&shots).unwrap();

    // A small demo district, its cycle open today; a phone registered and given route R01.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("district.db");
    let now = Local::now().naive_local();
    let today = now.date();
    let token = DeviceToken::generate(DEVICE).unwrap();
    let (cycle, file, orders) = {
        let district = demo::generate(&DemoParams {
            accounts: 90,
            seed: 19,
            as_of: today,
        });
        let mut store = Store::open(&path).unwrap();
        demo::load(&mut store, &district).unwrap();
        let cycle = district.open_cycle(&mut store, now).unwrap();
        store.add_device(&token, now).unwrap();
        let route = district.routes[0].id.clone();
        store.assign_route(&cycle.id, &route, DEVICE, now).unwrap();
        let file = cycles::route_file(&store, &Config::default(), &cycle.id, &route).unwrap();
        assert!(file.stops.len() > READS + 10, "{} stops", file.stops.len());
        // Field orders for the reader to complete in place: a meter change at the third stop, a
        // door hanger at the sixth.
        let mut orders = Vec::new();
        for (i, kind) in [(2, "meter_change"), (5, "door_hanger")] {
            let s = &file.stops[i];
            let id = meter_gateway::review::orders::create_order(
                &mut store,
                kind,
                &s.account_id,
                Some(&s.meter_id),
                "see the office's note",
                "office",
                now,
            )
            .unwrap();
            orders.push((i, kind, id));
        }
        let file = cycles::route_file(&store, &Config::default(), &cycle.id, &route).unwrap();
        (cycle.id, file, orders)
    };

    // What the reader keys at each of the first twenty stops: a reading inside today's limits (the
    // middle; at the first stop with limits its high limit exactly, at the next its low limit), one
    // outside them, and a skip.
    let day = day_number(today);
    let mut acts = Vec::new();
    let mut with_limits = 0;
    for (i, stop) in file.stops.iter().take(READS).enumerate() {
        let m = 10u64.pow(u32::from(stop.dials));
        let prev = stop.previous_reading.unwrap_or(0) % m;
        let act = match limits_today(&file, stop, day) {
            _ if i == 7 => Act::Skip,
            DayLimits::Any => Act::Read((prev + 7) % m),
            DayLimits::Range { low, high } => {
                with_limits += 1;
                let span = (high + m - low) % m;
                match with_limits {
                    1 => Act::Read(high),
                    2 => Act::Read(low),
                    4 => Act::High((high + span.max(10)) % m),
                    _ => Act::Read((low + span / 2) % m),
                }
            }
        };
        acts.push(act);
    }
    let high_at = acts
        .iter()
        .position(|a| matches!(a, Act::High(_)))
        .expect("a stop with limits for the high read");
    assert!(with_limits >= 4, "stops with limits: {with_limits}");

    let state = serve::test_state(Db::open(&path).unwrap());
    let daemon = browser::daemon(&state);
    let base = daemon.base.clone();
    let profile = tempfile::tempdir().unwrap();
    let (wd, driver) = session(&found, "390,844", profile.path());
    phone(&wd);

    // Pairing: the token typed in once, kept on the phone, never in a URL.
    wd.goto(&format!("{base}/field"));
    wd.wait("the pairing screen", |w| visible(w, "pair"));
    assert!(wd.url().ends_with("/field/"), "{}", wd.url());
    wd.type_into(&wd.find("#token"), &format!("  {token}\n"));
    wd.type_into(&wd.find("#reader"), READER);
    wd.click(&wd.find("#pair-button"));
    wait_long(&wd, "the route downloaded", 20, |w| {
        visible(w, "home") && w.count("#routes button.route") == 1
    });
    assert!(!wd.url().contains(&token.secret), "no token in the URL");
    let first = text(&wd, "routes");
    assert!(
        first.contains(&format!("0 read, {} left", file.stops.len())),
        "{first}"
    );
    let state_id = text(&wd, "state-id");
    assert_eq!(state_id.len(), 16, "a 64-bit state id: {state_id}");
    let state_id = u64::from_str_radix(&state_id, 16).unwrap();
    // The app's files are kept by its service worker before the phone leaves the office.
    wait_long(&wd, "the service worker", 20, |w| {
        w.script("return !!navigator.serviceWorker.controller") == json!(true)
    });

    // Out of reach of the gateway.
    offline(&wd, true);
    assert!(!reaches_the_gateway(&wd), "the page is offline");
    wd.click(&wd.find("#routes button.route"));
    wd.wait("the walk list", |w| visible(w, "walk"));
    assert_eq!(wd.count("#stops li"), file.stops.len());
    wd.screenshot(&shots.join("walk.png"));
    wd.click(&wd.find("#next-unread"));

    for (i, act) in acts.iter().enumerate() {
        let stop = &file.stops[i];
        wd.wait(&format!("stop {i}"), |w| {
            visible(w, "key") && text(w, "key-meter") == stop.meter_id
        });
        assert_eq!(text(&wd, "key-address"), stop.service_address);
        if i == 10 {
            // Message codes and a note.
            wd.click(&wd.find("#extras summary"));
            for code in ["LK", "DG"] {
                wd.click(&wd.find(&format!("#codes button[data-code='{code}']")));
            }
            wd.type_into(&wd.find("#note"), "gate code 1234, dog friendly");
        }
        if let Some((_, kind, _)) = orders.iter().find(|(at, _, _)| *at == i) {
            assert!(visible(&wd, "key-orders"), "the order is shown at stop {i}");
            if *kind == "meter_change" {
                assert!(visible(&wd, "meter-change"));
                assert_eq!(text(&wd, "reading-label"), "Old meter's final reading");
                wd.type_into(&wd.find("#new-meter"), "NEW-0001");
                wd.type_into(&wd.find("#new-initial"), "5");
            }
        }
        match act {
            Act::Read(r) if i == 12 => {
                // A double tap on Save: one read.
                wd.type_into(&wd.find("#reading"), &r.to_string());
                wd.script("const b = document.getElementById('save'); b.click(); b.click();");
            }
            Act::Read(r) => {
                wd.type_into(&wd.find("#reading"), &r.to_string());
                if i == 1 {
                    wd.screenshot(&shots.join("keying.png"));
                }
                wd.click(&wd.find("#save"));
            }
            Act::High(r) => {
                wd.type_into(&wd.find("#reading"), &r.to_string());
                wd.click(&wd.find("#save"));
                wd.wait("the re-key prompt", |w| visible(w, "confirm"));
                assert!(
                    text(&wd, "confirm").contains("HIGH"),
                    "{}",
                    text(&wd, "confirm")
                );
                assert_eq!(text(&wd, "key-meter"), stop.meter_id, "still at the stop");
                assert_eq!(
                    wd.script("return document.getElementById('reading').value"),
                    json!(""),
                    "keyed again from scratch"
                );
                wd.screenshot(&shots.join("keying-high.png"));
                wd.type_into(&wd.find("#reading"), &r.to_string());
                wd.click(&wd.find("#save"));
            }
            Act::Skip => {
                wd.click(&wd.find(".skip-box summary"));
                let first_skip = text(&wd, "skip-code");
                assert!(!first_skip.is_empty(), "skip codes are offered");
                wd.click(&wd.find("#skip"));
            }
        }
        if i == 9 {
            // A reload while offline: the app comes from the service worker, the reads from storage.
            let at = i + 1;
            wd.wait("the next stop", |w| {
                text(w, "key-meter") == file.stops[at].meter_id
            });
            wd.cmd("POST", "/refresh", Some(json!({})));
            wd.wait("the app again", |w| {
                visible(w, "key") && text(w, "key-meter") == file.stops[at].meter_id
            });
            wd.click(&wd.find("#key-list"));
            wd.wait("the walk list", |w| visible(w, "walk"));
            assert!(
                text(&wd, "walk-progress").starts_with("10 read,"),
                "{}",
                text(&wd, "walk-progress")
            );
            wd.click(&wd.find("#next-unread"));
        }
    }
    wd.wait("the stop after the twentieth", |w| {
        text(w, "key-meter") == file.stops[READS].meter_id
    });
    assert!(!reaches_the_gateway(&wd), "still offline");

    // A phone restart: the browser closes and opens again on the same profile, still offline.
    drop(wd);
    drop(driver);
    let (wd, _driver) = session(&found, "390,844", profile.path());
    phone(&wd);
    offline(&wd, true);
    wd.goto(&format!("{base}/field/"));
    wd.wait("the app offline", |w| visible(w, "home"));
    assert!(!reaches_the_gateway(&wd), "offline after the restart");
    let status = text(&wd, "sync-status");
    assert!(status.contains("20 read(s) waiting"), "{status}");
    wd.screenshot(&shots.join("routes-offline.png"));
    assert!(
        text(&wd, "routes").contains(&format!("20 read, {} left", file.stops.len() - READS)),
        "{}",
        text(&wd, "routes")
    );

    // Meanwhile the gateway came to hold another read under one of this state's numbers (a restored
    // copy of the phone's storage synced first): the app must number its own read again.
    let planted_stop = &file.stops[READS + 5];
    let planted = msg::Read {
        device_seq: 3,
        meter_id: planted_stop.meter_id.clone(),
        reading: planted_stop.previous_reading.unwrap_or(0),
        read_time: meter_gateway::sync::protocol_time(now),
        read_type: msg::ReadType::Regular,
        method: msg::ReadMethod::Keyed,
        message_codes: Vec::new(),
        skip_code: None,
        note: None,
        reader_id: "other".into(),
        order: None,
    };
    let receipt = daemon
        .rt
        .block_on(state.sync.upload(
            Uploader {
                device_id: DEVICE,
                state_id,
                via: Via::Http,
            },
            Some("restored-copy"),
            vec![planted],
            now,
        ))
        .unwrap();
    assert_eq!(receipt.stored, 1);

    // Back in reach, the network misbehaves between the phone and the gateway: before the app's first
    // batch, another list of reads went up under its batch id (the gateway then refuses the app's
    // batch, 409 `batch_conflict`, and the app sends it under another id); the answer to that one is
    // lost on the way back (the gateway committed, the connection dropped): the reads stay on the
    // phone and go up again, and are recognised.
    wd.script(
        "const real = window.fetch;
         window.__uploads = 0;
         window.fetch = async (input, init) => {
           if (!String(input).includes('/api/v1/device/reads')) return real(input, init);
           window.__uploads += 1;
           if (window.__uploads === 1) {
             const body = JSON.parse(init.body);
             await real(input, { ...init, body: JSON.stringify({ ...body, reads: body.reads.slice(1) }) });
           }
           const r = await real(input, init);
           if (window.__uploads === 2) throw new TypeError('connection dropped (test)');
           return r;
         };",
    );
    offline(&wd, false);
    wait_long(&wd, "every read sent", 30, |w| {
        let status = text(w, "sync-status");
        if status.contains("All reads sent") {
            return true;
        }
        if w.script("return document.getElementById('sync').disabled") == json!(false) {
            w.click(&w.find("#sync"));
        }
        false
    });
    // The conflicting batch, the app's under another id (answer lost), the same again, and the read
    // numbered again after its sequence conflict.
    assert_eq!(wd.script("return window.__uploads"), json!(4));
    assert!(
        text(&wd, "routes").contains(&format!("20 read, {} left", file.stops.len() - READS)),
        "{}",
        text(&wd, "routes")
    );

    // In the database: each of the twenty reads once, as keyed, with its codes.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    for (i, act) in acts.iter().enumerate() {
        let stop = &file.stops[i];
        let rows: Vec<StoredRead> = db
            .prepare(
                "SELECT raw_reading, read_type, codes, skip_code, note, device_seq,
                        coalesce((SELECT group_concat(flag) FROM flags f WHERE f.read_id = r.read_id), '')
                   FROM field_reads r
                  WHERE cycle_id = ?1 AND meter_id = ?2 AND device_id = ?3 AND reader = ?4",
            )
            .unwrap()
            .query_map(
                rusqlite::params![cycle, stop.meter_id, DEVICE, READER],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows.len(),
            1,
            "stop {i} ({}) stored once: {rows:?}",
            stop.meter_id
        );
        let (raw, read_type, codes, skip, note, seq, flags) = &rows[0];
        match act {
            Act::Read(r) => {
                assert_eq!(
                    (raw, read_type.as_str()),
                    (&r.to_string(), "regular"),
                    "stop {i}"
                );
                // Read inside the day's limits on the phone: not high or low at the office.
                assert!(
                    !flags.split(',').any(|f| f == "high" || f == "low"),
                    "stop {i} flagged {flags}"
                );
            }
            Act::High(r) => {
                assert_eq!(
                    (raw, read_type.as_str()),
                    (&r.to_string(), "high_confirmed")
                );
                assert!(flags.split(',').any(|f| f == "high"), "flags {flags}");
            }
            Act::Skip => {
                assert_eq!(read_type, "skipped");
                assert!(skip.as_deref().is_some_and(|s| !s.is_empty()), "{skip:?}");
            }
        }
        if i == 10 {
            assert_eq!(codes, "LK;DG");
            assert_eq!(note.as_deref(), Some("gate code 1234, dog friendly"));
        } else {
            assert_eq!(codes, "", "stop {i}");
        }
        if i == 2 {
            assert_ne!(
                *seq, 3,
                "the read under the conflicting number was numbered again"
            );
        }
    }
    assert!(high_at != 7);
    let all: i64 = db
        .query_row(
            "SELECT count(*) FROM field_reads WHERE device_id = ?1",
            [DEVICE],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(all, READS as i64 + 1, "twenty reads and the planted one");
    // Numbered 1 to 20 as keyed (a double tap takes no number), the one refused under 3 numbered
    // again after them.
    let seqs: Vec<i64> = db
        .prepare(
            "SELECT device_seq FROM field_reads WHERE device_id = ?1 AND reader = ?2 ORDER BY 1",
        )
        .unwrap()
        .query_map([DEVICE, READER], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<i64> = (1..=21).filter(|&n| n != 3).collect();
    assert_eq!(seqs, expected);
    let conflicts: i64 = db
        .query_row(
            "SELECT count(*) FROM refused_reads WHERE device_id = ?1 AND reason = 'seq_conflict'",
            [DEVICE],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(conflicts, 1, "the conflict is on the Handhelds page");
    let batches: Vec<String> = db
        .prepare("SELECT batch_id FROM upload_batches WHERE device_id = ?1 ORDER BY received_at, batch_id")
        .unwrap()
        .query_map([DEVICE], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(batches.len(), 4, "{batches:?}");
    assert!(
        batches
            .iter()
            .any(|b| b.starts_with("PH-01-") && b.ends_with("-1")),
        "the app's batch sent again under another id: {batches:?}"
    );
    for (i, kind, id) in &orders {
        let (status, result): (String, Option<String>) = db
            .query_row(
                "SELECT status, result FROM field_orders WHERE order_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, "completed", "{kind} at stop {i}");
        if *kind == "meter_change" {
            let result: Value = serde_json::from_str(result.as_deref().unwrap()).unwrap();
            assert_eq!(result["new_meter_id"], "NEW-0001");
            assert_eq!(result["new_meter_initial"], 5);
        }
    }

    // The office retires the phone's token: the app says so.
    db.execute(
        "UPDATE devices SET retired = 1 WHERE device_id = ?1",
        [DEVICE],
    )
    .unwrap();
    wd.click(&wd.find("#sync"));
    wd.wait("the refusal", |w| visible(w, "banner"));
    assert!(
        text(&wd, "banner").contains("token was refused: ask the office to pair it again"),
        "{}",
        text(&wd, "banner")
    );

    drop(wd);
    daemon.shut_down();
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::copy(shots.join("keying.png"), docs.join("field-keying.png")).unwrap();
        println!("screenshot copied to {}", docs.display());
    }
    println!("screenshots: {}", shots.display());
}

/// One case of `vectors/limits.txt`.
fn vectors() -> Vec<serde_json::Map<String, Value>> {
    let file: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "firmware-protocol",
        "vectors",
        "limits.txt",
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(file).unwrap();
    let mut cases: Vec<serde_json::Map<String, Value>> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        let (k, v) = (k.trim(), v.trim());
        if k == "name" {
            cases.push(serde_json::Map::new());
        }
        cases
            .last_mut()
            .unwrap()
            .insert(k.to_string(), Value::String(v.to_string()));
    }
    cases
}

/// The app's limit formula (`limits.js`, in the browser that runs it) gives every vector of
/// `vectors/limits.txt`, and says inside / outside, high / low, as the crate does around them.
#[test]
fn the_field_apps_limits_are_the_protocols_vectors() {
    let Some(b) = browser::browser("390,844") else {
        return;
    };
    let wd = &b.wd;
    let state = serve::test_state(Db::start(Store::open_in_memory().unwrap()).unwrap());
    let daemon = browser::daemon(&state);
    wd.goto(&format!("{}/field/", daemon.base));
    wd.wait("the app", |w| visible(w, "pair"));
    let cases = vectors();
    assert!(cases.len() >= 12, "{} vectors", cases.len());
    let answers = script_async(
        wd,
        "const [cases, done] = arguments;
         import('/field/limits.js').then(L => done(cases.map(c => {
           const lim = L.limitsOn(c.dials, c.previous_reading, [c.low_first, c.high_first],
               [c.low_last, c.high_last], [c.window_from, c.window_to], c.day);
           const m = L.modulus(c.dials);
           const probe = lim === null ? [] : [lim.low - 1n, lim.low, lim.high, lim.high + 1n,
               BigInt(c.previous_reading), 0n, m - 1n].map(r => ((r % m) + m) % m);
           return { limits: lim === null ? 'any' : [String(lim.low), String(lim.high)],
             probes: probe.map(r => [String(r), L.inside(lim, r),
               L.inside(lim, r) ? null : L.outsideKind(c.dials, c.previous_reading, lim, r)]) };
         })), e => done({ error: String(e) }));",
        json!([cases]),
    );
    let answers = answers.as_array().unwrap_or_else(|| panic!("{answers}"));
    for (c, a) in cases.iter().zip(answers) {
        let name = c["name"].as_str().unwrap();
        let n = |k: &str| c[k].as_str().unwrap().parse::<u64>().unwrap();
        if c.get("limits").is_some() {
            assert_eq!(a["limits"], "any", "{name}");
            continue;
        }
        assert_eq!(
            a["limits"],
            json!([c["low"], c["high"]]),
            "{name}: the app's limits"
        );
        // The crate's judgement of the same readings.
        let dials = u8::try_from(n("dials")).unwrap();
        let limits = msg::limits_on(
            dials,
            n("previous_reading"),
            (n("low_first"), n("high_first")),
            (n("low_last"), n("high_last")),
            (
                u32::try_from(n("window_from")).unwrap(),
                u32::try_from(n("window_to")).unwrap(),
            ),
            u32::try_from(n("day")).unwrap(),
        );
        let DayLimits::Range { high, .. } = limits else {
            panic!("{name}: limits");
        };
        let m = 10u64.pow(u32::from(dials));
        let prev = n("previous_reading") % m;
        for p in a["probes"].as_array().unwrap() {
            let r: u64 = p[0].as_str().unwrap().parse().unwrap();
            assert_eq!(p[1], json!(limits.contains(r)), "{name}: {r} inside?");
            if !limits.contains(r) {
                let used = (r + m - prev) % m;
                let allowed = (high + m - prev) % m;
                let kind = if used > allowed {
                    "high_confirmed"
                } else {
                    "low_confirmed"
                };
                assert_eq!(p[2], kind, "{name}: {r}");
            }
        }
    }
    daemon.shut_down();
}
