//! The clerk's desk on a large district: the worklist's first page (size and time) and single-read
//! uploads from a handheld while a clerk browses, each beside a baseline measured in the same run.
//!
//! A demo district (100,000 accounts by default) is loaded and its cycle's reads ingested, except one
//! route's, which a handheld uploads one read per request through the in-process daemon
//! (127.0.0.1:0). Printed:
//!
//! - the worklist's first page: bytes and median / p95 time over `--pages` loads; baseline: the same
//!   exceptions read straight from SQLite (the floor), and what one page of every exception weighs
//!   (the list as CSV);
//! - single-read upload latency, p50 / p95: first alone (the baseline), then while a clerk browses
//!   (worklist pages, read pages, reports) as fast as the daemon answers.
//!
//! Targets: first page ≤ 300 KB and ≤ 300 ms median; upload p95 ≤ 500 ms under clerk load.
//!
//! ```sh
//! cargo run --release --example desk_bench -- [--accounts 100000] [--pages 21] [--uploads 200]
//! ```

use anyhow::{ensure, Context, Result};
use chrono::NaiveDate;
use meter_gateway::auth::DeviceToken;
use meter_gateway::config::Config;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::domain::UserRole;
use meter_gateway::serve::{self, AppState};
use meter_gateway::store::{Db, Store};
use meter_gateway::sync::api::{
    ReadJson, ReadMethodName, ReadTypeName, ReceiptJson, RoutesJson, UploadJson,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time between two uploads' starts.
const PACE: Duration = Duration::from_millis(50);

struct Options {
    accounts: u32,
    pages: usize,
    uploads: usize,
    /// Keep the district in this file (and reuse it when it exists) instead of a temporary one.
    db: Option<std::path::PathBuf>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        accounts: 100_000,
        pages: 21,
        uploads: 200,
        db: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--accounts" => o.accounts = value.parse()?,
            "--pages" => o.pages = value.parse()?,
            "--uploads" => o.uploads = value.parse()?,
            "--db" => o.db = Some(value.into()),
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    ensure!(
        o.pages > 0 && o.uploads >= 2,
        "--pages ≥ 1 and --uploads ≥ 2"
    );
    Ok(o)
}

/// The district in `db`, its cycle's reads in except one route's; a handheld registered for that
/// route. Returns the cycle id and the handheld's token.
fn build(db: &Path, accounts: u32) -> Result<(String, String)> {
    let as_of = NaiveDate::from_ymd_opt(2026, 10, 20).context("date")?;
    let district = demo::generate(&DemoParams {
        accounts,
        seed: 2026,
        as_of,
    });
    // The demo's reads cover the whole month and a few days past it (what the handhelds bring back):
    // the desk looks at them a week after the window closes, so none is in the future.
    let now = (district.cycle.window_to + chrono::Duration::days(7))
        .and_hms_opt(8, 0, 0)
        .context("time")?;
    let mut store = Store::open(db)?;
    demo::load(&mut store, &district)?;
    let cycle = district.open_cycle(&mut store, now)?;
    // The handheld's route: the one with the most accounts.
    let mut per_route: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in &district.accounts {
        *per_route.entry(a.route_id.as_str()).or_default() += 1;
    }
    let route = per_route
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(r, _)| r.to_string())
        .context("no routes")?;
    let on_route: std::collections::HashSet<&str> = district
        .accounts
        .iter()
        .filter(|a| a.route_id == route)
        .map(|a| a.id.as_str())
        .collect();
    let meter_on_route: std::collections::HashSet<&str> = district
        .meters
        .iter()
        .filter(|m| {
            m.account_id
                .as_deref()
                .is_some_and(|a| on_route.contains(a))
        })
        .map(|m| m.id.as_str())
        .collect();
    let reads: Vec<_> = district
        .field_reads
        .iter()
        .filter(|r| !meter_on_route.contains(r.meter_id.as_str()))
        .cloned()
        .collect();
    meter_gateway::cycles::ingest(&mut store, &Config::default(), &cycle.id, &reads, now)?;
    let token = DeviceToken::generate("BENCH-01")?;
    store.add_device(&token, now)?;
    store.assign_route(&cycle.id, &route, &token.device_id, now)?;
    Ok((cycle.id, token.to_string()))
}

/// One HTTP/1.1 request per connection; returns status and body.
/// The largest answer read (every exception of a large cycle as CSV is a few MB).
const MAX_ANSWER_BYTES: u64 = 1 << 30;

/// The clerk's browser and the handheld: ureq on blocking threads, an answer of any status read (the
/// status is checked by the caller), with the daemon's own JSON types for the device API.
#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        Client {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
            base: format!("http://{addr}"),
        }
    }

    /// A clerk's page (HTML, or the CSV it links) with the session cookie: status and body.
    fn page(&self, path: &str, cookie: &str) -> Result<(u16, Vec<u8>)> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Cookie", cookie)
            .header("Accept", "text/html")
            .call()?;
        read(response)
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> Result<(u16, Vec<u8>)> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()?;
    Ok((status, body))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The handheld's reads: one per stop of its route, the middle of the stop's hi/lo limits.
fn route_reads(client: &Client, token: &str, n: usize) -> Result<Vec<ReadJson>> {
    let response = client
        .agent
        .get(format!("{}/api/v1/device/route", client.base))
        .header("Authorization", format!("Bearer {token}"))
        .call()?;
    let (status, body) = read(response)?;
    ensure!(status == 200, "route: HTTP {status}");
    let routes: RoutesJson = serde_json::from_slice(&body)?;
    let stops = &routes.routes.first().context("no route")?.stops;
    ensure!(
        stops.len() >= n,
        "route has {} stops, fewer than {n}",
        stops.len()
    );
    stops
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, s)| {
            let reading = match &s.limits {
                Some(l) if l.last_day.low <= l.last_day.high => {
                    l.last_day.low + (l.last_day.high - l.last_day.low) / 2
                }
                _ => s.previous_reading.unwrap_or(0) + 7,
            };
            let read_time = NaiveDate::from_ymd_opt(2026, 10, 30)
                .and_then(|d| d.and_hms_opt(8 + (i / 60 % 9) as u32, (i % 60) as u32, 0))
                .context("read time")?;
            Ok(ReadJson {
                device_seq: i as u64 + 1,
                meter_id: s.meter_id.clone(),
                reading,
                read_time,
                read_type: ReadTypeName::Regular,
                method: ReadMethodName::Keyed,
                message_codes: Vec::new(),
                skip_code: None,
                note: None,
                reader_id: "BR".into(),
                order: None,
            })
        })
        .collect()
}

fn upload_each(client: &Client, token: &str, reads: &[ReadJson]) -> Result<Vec<Duration>> {
    let auth = format!("Bearer {token}");
    let mut times = Vec::with_capacity(reads.len());
    for r in reads {
        let batch = UploadJson {
            state_id: Some("00000000000000b1".into()),
            batch_id: format!("BENCH-{}", r.device_seq),
            reads: vec![r.clone()],
        };
        let t = Instant::now();
        let response = client
            .agent
            .post(format!("{}/api/v1/device/reads", client.base))
            .header("Authorization", &auth)
            .send_json(&batch)?;
        let (status, answer) = read(response)?;
        times.push(t.elapsed());
        std::thread::sleep(PACE.saturating_sub(t.elapsed()));
        ensure!(
            status == 200,
            "upload: HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        let _: ReceiptJson = serde_json::from_slice(&answer)?;
    }
    times.sort();
    Ok(times)
}

const KINDS: [&str; 5] = [
    "worklist",
    "read page",
    "page 2 by account",
    "search",
    "reports",
];

/// A clerk browsing as fast as the daemon answers, until `stop`: the worklist, a read's page, the
/// worklist's second page, a search, the reports. Returns each page's kind and time.
fn browse(
    client: &Client,
    cookie: &str,
    cycle: &str,
    stop: &AtomicBool,
) -> Result<Vec<(usize, Duration)>> {
    let mut served = Vec::new();
    let mut read_ids: Vec<i64> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let path = match i % 5 {
            0 => format!("/review/cycles/{cycle}"),
            1 => match read_ids.get(i / 5 % read_ids.len().max(1)) {
                Some(id) => format!("/review/reads/{id}"),
                None => format!("/review/cycles/{cycle}?page=2"),
            },
            2 => format!("/review/cycles/{cycle}?page=2&sort=account"),
            3 => format!("/review/cycles/{cycle}?q=main"),
            _ => format!("/review/reports/{cycle}"),
        };
        let t = Instant::now();
        let (status, body) = client.page(&path, cookie)?;
        served.push((i % 5, t.elapsed()));
        ensure!(status == 200, "{path}: HTTP {status}");
        if read_ids.is_empty() && i.is_multiple_of(5) {
            let text = String::from_utf8_lossy(&body);
            read_ids = text
                .match_indices("href=\"/review/reads/")
                .filter_map(|(at, m)| {
                    text[at + m.len()..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .take(20)
                .collect();
        }
        i += 1;
    }
    Ok(served)
}

fn main() -> Result<()> {
    let o = options()?;
    let dir = tempfile::tempdir()?;
    let db =
        o.db.clone()
            .unwrap_or_else(|| dir.path().join("district.db"));
    let t = Instant::now();
    let info = db.with_extension("bench");
    let (cycle, token) = match std::fs::read_to_string(&info) {
        Ok(text) if db.exists() => {
            let (c, t) = text.trim().split_once(' ').context("bench info file")?;
            (c.to_string(), t.to_string())
        }
        _ => {
            let built = build(&db, o.accounts)?;
            std::fs::write(&info, format!("{} {}", built.0, built.1))?;
            built
        }
    };
    println!(
        "district: {} accounts, cycle {cycle} ingested but one route, built in {:.1} s",
        o.accounts,
        t.elapsed().as_secs_f64()
    );

    // Baseline for the page: the cycle's exceptions straight from SQLite, no HTTP, no HTML.
    let conn = rusqlite::Connection::open(&db)?;
    let mut floor = Vec::new();
    let mut exceptions = 0;
    for _ in 0..o.pages.min(5) {
        let t = Instant::now();
        let mut stmt = conn.prepare(
            "SELECT r.read_id, r.meter_id, r.account_id, a.name, a.service_address, r.raw_reading, r.consumption, \
             r.expected_use, r.status FROM field_reads r LEFT JOIN accounts a ON a.account_id = r.account_id \
             WHERE r.cycle_id = ?1 AND r.superseded_by IS NULL AND (r.status IN ('flagged', 'held', 'resolved', 'estimated') \
             OR EXISTS (SELECT 1 FROM flags f WHERE f.read_id = r.read_id))",
        )?;
        exceptions = stmt.query_map([&cycle], |r| r.get::<_, i64>(0))?.count();
        floor.push(t.elapsed());
    }
    floor.sort();
    drop(conn);

    let config = Config::parse("[serve]\nrequest_timeout_secs = 600\n")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let handle = Db::open(&db)?;
    let state = AppState::new(handle.clone(), Arc::new(config));
    let (addr, cookie, stop_tx, server) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve::run(listener, state.clone(), async move {
            let _ = stop_rx.await;
        }));
        let (cookie, _) = serve::sign_in_session_for_tests(&state, "clerk", UserRole::Clerk).await;
        anyhow::Ok((addr, cookie, stop_tx, server))
    })?;
    // The clerk and the handheld are blocking clients on threads of their own; the daemon answers on
    // the runtime's workers.
    let client = Client::new(addr);

    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..o.pages {
        let t = Instant::now();
        let (status, body) = client.page(&format!("/review/cycles/{cycle}"), &cookie)?;
        times.push(t.elapsed());
        ensure!(status == 200, "worklist: HTTP {status}");
        size = body.len();
    }
    times.sort();
    let (status, csv) = client.page(
        &format!("/review/cycles/{cycle}/exceptions.csv?show=all"),
        &cookie,
    )?;
    ensure!(status == 200, "CSV: HTTP {status}");
    println!(
        "worklist first page: {:.0} KB, median {}, p95 {} over {} loads (targets ≤ 300 KB, ≤ 300 ms median)",
        size as f64 / 1024.0,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        o.pages
    );
    println!(
        "baseline: the {exceptions} exceptions straight from SQLite: median {}; every exception on one page \
         (the list as CSV, no markup): {:.0} KB",
        ms(percentile(&floor, 0.5)),
        csv.len() as f64 / 1024.0
    );

    let reads = route_reads(&client, &token, o.uploads)?;
    let (alone, busy) = reads.split_at(o.uploads / 2);
    let quiet = upload_each(&client, &token, alone)?;
    let stop = Arc::new(AtomicBool::new(false));
    let clerk = {
        let (client, cookie, cycle, stop) =
            (client.clone(), cookie.clone(), cycle.clone(), stop.clone());
        std::thread::spawn(move || browse(&client, &cookie, &cycle, &stop))
    };
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let loaded = upload_each(&client, &token, busy)?;
    let span = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let pages = clerk
        .join()
        .map_err(|_| anyhow::anyhow!("the clerk's thread panicked"))??;
    println!(
        "single-read uploads while a clerk browses: p50 {}, p95 {} over {} uploads; the clerk got {} pages \
         in {:.1} s (target p95 ≤ 500 ms)",
        ms(percentile(&loaded, 0.5)),
        ms(percentile(&loaded, 0.95)),
        loaded.len(),
        pages.len(),
        span.as_secs_f64()
    );
    let by_kind: Vec<String> = KINDS
        .iter()
        .enumerate()
        .filter_map(|(k, name)| {
            let mut t: Vec<Duration> = pages.iter().filter(|p| p.0 == k).map(|p| p.1).collect();
            t.sort();
            (!t.is_empty()).then(|| format!("{name} {}", ms(percentile(&t, 0.5))))
        })
        .collect();
    println!(
        "the clerk's pages meanwhile, median: {}",
        by_kind.join(", ")
    );
    println!(
        "baseline: the same uploads with no clerk: p50 {}, p95 {} over {} uploads",
        ms(percentile(&quiet, 0.5)),
        ms(percentile(&quiet, 0.95)),
        quiet.len()
    );
    runtime.block_on(async {
        let _ = stop_tx.send(());
        server.await??;
        anyhow::Ok(())
    })?;
    handle.shutdown();
    Ok(())
}
