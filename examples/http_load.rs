//! HTTP sync under load: a demo district, one handheld per route syncing over Wi-Fi at once.
//!
//! Every handheld downloads its route (`GET /api/v1/device/route`) and uploads `--reads` reads of it in
//! one batch (`POST /api/v1/device/reads`), all concurrently. Printed:
//!
//! - errors (must be 0) and reads committed per second through the daemon (in-process, 127.0.0.1:0);
//! - the baseline, measured in the same run: the same rows inserted into `field_reads` of a fresh
//!   database in ONE raw transaction (no HTTP, no validation); target: the daemon ≥ 30% of it
//!   (group commit makes many small durable uploads cost about one fsync per group);
//! - the daemon's peak RSS (VmHWM) serving the same load from a child process (`serve` on a copy of
//!   the district, so district generation does not count); target ≤ 100 MB.
//!
//! ```text
//! cargo run --release --example http_load -- [--accounts 150000] [--handhelds 200] [--reads 500]
//! ```

use anyhow::{bail, ensure, Context, Result};
use chrono::{NaiveDate, NaiveDateTime};
use firmware_protocol::message as msg;
use meter_gateway::auth::DeviceToken;
use meter_gateway::config::Config;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::serve::{self, AppState};
use meter_gateway::store::{Db, Store};
use meter_gateway::sync::api::{
    ReadJson, ReadMethodName, ReadTypeName, ReceiptJson, RoutesJson, UploadJson,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CYCLE: &str = "2026-10";

struct Options {
    accounts: u32,
    handhelds: usize,
    reads: usize,
}

fn options() -> Result<Options> {
    let mut o = Options {
        accounts: 150_000,
        handhelds: 200,
        reads: 500,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--accounts" => o.accounts = value.parse()?,
            "--handhelds" => o.handhelds = value.parse()?,
            "--reads" => o.reads = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn now() -> NaiveDateTime {
    day(2026, 10, 20).and_hms_opt(8, 0, 0).expect("valid time")
}

/// Builds the district into `db`: cycle open, one handheld per route (as many as asked), assigned.
fn build_district(db: &Path, o: &Options) -> Result<Vec<String>> {
    let district = demo::generate(&DemoParams {
        accounts: o.accounts,
        seed: 2026,
        as_of: day(2026, 10, 20),
    });
    // Routes vary in size: give the handhelds the routes with the most active meters.
    let route_of: std::collections::HashMap<&str, &str> = district
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a.route_id.as_str()))
        .collect();
    let mut meters_per_route: std::collections::HashMap<&str, usize> = Default::default();
    for m in &district.meters {
        if m.status == meter_gateway::domain::MeterStatus::Active {
            if let Some(r) = m.account_id.as_deref().and_then(|a| route_of.get(a)) {
                *meters_per_route.entry(r).or_default() += 1;
            }
        }
    }
    let mut routes: Vec<(&str, usize)> = meters_per_route.into_iter().collect();
    routes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    routes.retain(|(_, n)| *n >= o.reads + 10);
    ensure!(
        routes.len() >= o.handhelds,
        "{} accounts make only {} routes of {}+ meters, fewer than {} handhelds; raise --accounts",
        o.accounts,
        routes.len(),
        o.reads + 10,
        o.handhelds
    );
    let chosen: Vec<String> = routes
        .iter()
        .take(o.handhelds)
        .map(|(r, _)| r.to_string())
        .collect();
    let mut store = Store::open(db)?;
    demo::load(&mut store, &district)?;
    meter_gateway::cycles::open_cycle(
        &mut store,
        CYCLE,
        day(2026, 10, 1),
        day(2026, 10, 31),
        &[],
        now(),
    )?;
    let mut tokens = Vec::with_capacity(o.handhelds);
    for (i, route) in chosen.iter().enumerate() {
        let token = DeviceToken::generate(&format!("LOAD-{i:03}"))?;
        store.add_device(&token, now())?;
        store.assign_route(CYCLE, route, &token.device_id, now())?;
        tokens.push(token.to_string());
    }
    Ok(tokens)
}

// ---- the client: ureq with the daemon's own JSON types, one blocking thread per handheld ----------

/// Reads an answer's body as text (for an error) or as `T` (the daemon's type for it).
fn answer<T: serde::de::DeserializeOwned>(
    what: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<T> {
    let (parts, mut body) = response.into_parts();
    let text = body
        .read_to_string()
        .with_context(|| format!("{what}: answer"))?;
    ensure!(
        parts.status == 200,
        "{what}: HTTP {}: {text}",
        parts.status.as_u16()
    );
    serde_json::from_str(&text).with_context(|| format!("{what}: {text}"))
}

// ---- the load ------------------------------------------------------------------------------------

#[derive(Default)]
struct LoadResult {
    errors: Vec<String>,
    reads_committed: usize,
    /// Of those, reads validation flagged for a clerk.
    reads_flagged: usize,
    /// Every handheld downloading its route at once.
    downloads: Duration,
    /// Every handheld uploading at once: from the first upload sent to the last receipt.
    uploads: Duration,
    /// The batches sent, for the baselines.
    batches: Vec<(String, UploadJson)>,
}

/// A handheld's download: its route file, turned into the batch of reads it will upload.
fn download(
    agent: &ureq::Agent,
    addr: SocketAddr,
    token: &str,
    reads: usize,
) -> Result<UploadJson> {
    let response = agent
        .get(format!("http://{addr}/api/v1/device/route"))
        .header("Authorization", format!("Bearer {token}"))
        .call()?;
    let routes: RoutesJson = answer("route", response)?;
    let file = routes.routes.first().context("no route for the handheld")?;
    let route = meter_gateway::sync::route_data(file);
    ensure!(
        route.stops.len() >= reads,
        "route has {} stops, fewer than {reads}",
        route.stops.len()
    );
    let read_day = meter_gateway::sync::protocol_day(READ_DAY);
    let batch = route
        .stops
        .iter()
        .take(reads)
        .enumerate()
        .map(|(i, s)| {
            Ok(ReadJson {
                device_seq: i as u64 + 1,
                meter_id: s.meter_id.clone(),
                reading: reading_for(s, (route.window_from, route.window_to), read_day),
                read_time: READ_DAY
                    .and_hms_opt(8 + (i / 60 % 9) as u32, (i % 60) as u32, 0)
                    .context("read time")?,
                read_type: ReadTypeName::Regular,
                method: ReadMethodName::Keyed,
                message_codes: Vec::new(),
                skip_code: None,
                note: None,
                reader_id: "LD".into(),
                order: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let device = token.split('.').next().unwrap_or_default();
    // One state id per handheld (its number in the token's device id, as hex).
    let state: u64 = device
        .bytes()
        .fold(7, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Ok(UploadJson {
        state_id: Some(format!("{:016x}", state.max(1))),
        batch_id: format!("{device}-1"),
        reads: batch,
    })
}

/// The day every handheld of the load reads its route (mid-window).
const READ_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2026, 10, 16) {
    Some(d) => d,
    None => panic!("a valid date"),
};

/// What a reader keys in at a stop on a normal day: the middle of the stop's limits for that day
/// (as a handheld computes them), else the previous reading plus a little. Most reads of a real day
/// are normal; the few the gateway still flags are counted.
fn reading_for(stop: &msg::RouteStop, window: (u32, u32), day: u32) -> u64 {
    let modulus = 10u64.pow(u32::from(stop.dials.clamp(1, 12)));
    match stop.limits_on(window, day) {
        msg::DayLimits::Range { low, high } if low <= high => low + (high - low) / 2,
        _ => (stop.previous_reading + 7) % modulus,
    }
}

/// A handheld's upload; returns the reads stored and when the upload started and ended.
fn upload(
    agent: &ureq::Agent,
    addr: SocketAddr,
    token: &str,
    batch: &UploadJson,
) -> Result<(usize, usize, Instant, Instant)> {
    let reads = batch.reads.len();
    let started = Instant::now();
    let response = agent
        .post(format!("http://{addr}/api/v1/device/reads"))
        .header("Authorization", format!("Bearer {token}"))
        .send_json(batch)?;
    let ReceiptJson { receipt, .. } = answer("reads", response)?;
    let done = Instant::now();
    let settled = receipt.stored + receipt.already_received;
    ensure!(
        settled == reads,
        "receipt accounts for {settled} of {reads} reads: {receipt:?}"
    );
    ensure!(
        receipt.up_to_seq == Some(reads as u64),
        "up_to_seq {:?} instead of {reads}",
        receipt.up_to_seq
    );
    Ok((receipt.stored, receipt.flagged, started, done))
}

/// Every handheld downloads at once; then, once all have their route, every handheld uploads at once
/// (so the upload figure is not mixed with route building). Each handheld is a blocking thread of
/// tokio's pool (at most 512: more handhelds than that would queue).
async fn run_load(addr: SocketAddr, tokens: &[String], reads: usize) -> LoadResult {
    let mut result = LoadResult::default();
    let agent = agent();
    let start = Instant::now();
    let downloads: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (t, agent) = (t.clone(), agent.clone());
            tokio::task::spawn_blocking(move || (download(&agent, addr, &t, reads), t))
        })
        .collect();
    for d in downloads {
        match d.await {
            Ok((Ok(batch), token)) => result.batches.push((token, batch)),
            Ok((Err(e), _)) => result.errors.push(e.to_string()),
            Err(e) => result.errors.push(e.to_string()),
        }
    }
    result.downloads = start.elapsed();
    let uploads: Vec<_> = result
        .batches
        .iter()
        .map(|(t, b)| {
            let (t, b, agent) = (t.clone(), b.clone(), agent.clone());
            tokio::task::spawn_blocking(move || upload(&agent, addr, &t, &b))
        })
        .collect();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for u in uploads {
        match u.await {
            Ok(Ok((stored, flagged, s, e))) => {
                result.reads_committed += stored;
                result.reads_flagged += flagged;
                first = Some(first.map_or(s, |f| f.min(s)));
                last = Some(last.map_or(e, |l| l.max(e)));
            }
            Ok(Err(e)) => result.errors.push(e.to_string()),
            Err(e) => result.errors.push(e.to_string()),
        }
    }
    if let (Some(f), Some(l)) = (first, last) {
        result.uploads = l - f;
    }
    result
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn report(label: &str, r: &LoadResult, handhelds: usize) {
    println!(
        "{label}: {} handhelds downloaded their routes in {:.2} s; {} reads committed ({} flagged) in {:.2} s = {:.0} reads/s; {} errors",
        handhelds,
        r.downloads.as_secs_f64(),
        r.reads_committed,
        r.reads_flagged,
        r.uploads.as_secs_f64(),
        per_sec(r.reads_committed, r.uploads),
        r.errors.len(),
    );
    for e in r.errors.iter().take(5) {
        println!("  error: {e}");
    }
}

/// The same batches through the sync engine directly (no HTTP), one after another: shows what HTTP
/// and concurrency add or cost.
fn engine_sequential(db: &Path, batches: &[(String, UploadJson)]) -> Result<(usize, Duration)> {
    let handle = Db::open(db)?;
    let sync = meter_gateway::sync::SyncService::new(handle.clone(), Arc::new(Config::default()));
    let mut prepared = Vec::with_capacity(batches.len());
    for (token, upload) in batches {
        let reads = upload
            .reads
            .iter()
            .map(|r| r.to_protocol().map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<Result<Vec<_>>>()?;
        let device = token.split('.').next().unwrap_or_default().to_string();
        let state_id = serve::device_api::parse_state_id(upload.state_id.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        prepared.push((device, state_id, upload.batch_id.clone(), reads));
    }
    let started = Instant::now();
    let mut stored = 0;
    for (device, state_id, batch, reads) in prepared {
        let from = meter_gateway::sync::Uploader {
            device_id: &device,
            state_id,
            via: meter_gateway::sync::Via::Http,
        };
        stored += sync
            .upload_blocking(from, Some(&batch), reads, now())?
            .stored;
    }
    let took = started.elapsed();
    handle.shutdown();
    Ok((stored, took))
}

// ---- the baseline: one raw transaction ------------------------------------------------------------

/// Inserts the device reads of `from` into a fresh database's `field_reads` in ONE transaction (the
/// same pragmas as the daemon: WAL, synchronous=FULL); returns rows and the time it took.
fn raw_insert(from: &Path, into: &Path) -> Result<(usize, Duration)> {
    drop(Store::open(into)?); // the schema, migrated
    let src = rusqlite::Connection::open(from)?;
    let cycle: (String, String, String, String) = src.query_row(
        "SELECT cycle_id, window_from, window_to, opened_at FROM cycles WHERE cycle_id = ?1",
        [CYCLE],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let columns =
        "cycle_id, meter_id, account_id, read_at, raw_reading, reading, read_type, method, \
                   reader, codes, skip_code, note, device_id, device_seq, received_at, status, \
                   previous_reading, previous_read_on, consumption, expected_use, expected_basis, \
                   low_limit, high_limit";
    let mut st = src.prepare(&format!(
        "SELECT {columns} FROM field_reads WHERE device_id IS NOT NULL ORDER BY read_id"
    ))?;
    let rows: Vec<Vec<rusqlite::types::Value>> = st
        .query_map([], |r| {
            (0..23)
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect()
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut dst = rusqlite::Connection::open(into)?;
    dst.pragma_update(None, "journal_mode", "WAL")?;
    dst.pragma_update(None, "synchronous", "FULL")?;
    dst.pragma_update(None, "foreign_keys", "ON")?;
    let started = Instant::now();
    let tx = dst.transaction()?;
    tx.execute(
        "INSERT INTO cycles (cycle_id, window_from, window_to, status, opened_at) VALUES (?1, ?2, ?3, 'open', ?4)",
        rusqlite::params![cycle.0, cycle.1, cycle.2, cycle.3],
    )?;
    {
        let placeholders = (1..=23)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut ins = tx.prepare(&format!(
            "INSERT INTO field_reads ({columns}) VALUES ({placeholders})"
        ))?;
        for row in &rows {
            ins.execute(rusqlite::params_from_iter(row.iter()))?;
        }
    }
    tx.commit()?;
    Ok((rows.len(), started.elapsed()))
}

// ---- the child daemon -----------------------------------------------------------------------------

#[path = "support/peak_memory.rs"]
mod peak_memory;

#[path = "support/child_daemon.rs"]
mod child_daemon;
use child_daemon::{agent, serve_child};

/// The daemon's settings for the run: the defaults, but a request may wait as long as the whole load
/// takes (every handheld's request queues behind the one writer; a 408 here would measure the
/// timeout, not the daemon).
const LOAD_CONFIG: &str = "[serve]\nrequest_timeout_secs = 3600\n";

fn load_config() -> Result<Config> {
    Ok(Config::parse(LOAD_CONFIG)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-child") {
        // The daemon exactly as `meter-gateway serve` runs it.
        let db = args.get(2).context("--serve-child DB CONFIG")?;
        let config = args.get(3).context("--serve-child DB CONFIG")?;
        let cli = <meter_gateway::cli::Cli as clap::Parser>::try_parse_from([
            "meter-gateway",
            "--db",
            db,
            "--config",
            config,
            "serve",
            "--http",
            "127.0.0.1:0",
        ])?;
        return meter_gateway::cli::run(cli);
    }
    let o = options()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("district.db");
    let t = Instant::now();
    let tokens = build_district(&db, &o)?;
    let copy: PathBuf = dir.path().join("district-child.db");
    std::fs::copy(&db, &copy)?;
    let engine_copy: PathBuf = dir.path().join("district-engine.db");
    std::fs::copy(&db, &engine_copy)?;
    println!("daemon settings: {}", LOAD_CONFIG.replace('\n', " "));
    println!(
        "district: {} accounts, {} handhelds × {} reads, built in {:.1} s",
        o.accounts,
        tokens.len(),
        o.reads,
        t.elapsed().as_secs_f64()
    );

    // In-process daemon.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let handle = Db::open(&db)?;
    let state = AppState::new(handle.clone(), Arc::new(load_config()?));
    let in_process = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve::run(listener, state, async move {
            let _ = stop_rx.await;
        }));
        let result = run_load(addr, &tokens, o.reads).await;
        let _ = stop_tx.send(());
        server.await??;
        anyhow::Ok(result)
    })?;
    handle.shutdown();
    report("daemon (in-process)", &in_process, tokens.len());

    let (rows, raw) = raw_insert(&db, &dir.path().join("raw.db"))?;
    let raw_rate = per_sec(rows, raw);
    let daemon_rate = per_sec(in_process.reads_committed, in_process.uploads);
    println!(
        "baseline: the same {rows} rows in one raw transaction: {:.3} s = {raw_rate:.0} rows/s",
        raw.as_secs_f64()
    );
    println!(
        "daemon / raw insert: {:.0}% (target ≥ 30%)",
        100.0 * daemon_rate / raw_rate
    );

    let (engine_reads, engine) = engine_sequential(&engine_copy, &in_process.batches)?;
    println!(
        "for comparison: the same batches through the sync engine, no HTTP, one at a time: {engine_reads} reads in {:.2} s = {:.0} reads/s",
        engine.as_secs_f64(),
        per_sec(engine_reads, engine)
    );

    // Child daemon: the same load on a copy of the district, for its peak memory.
    let config_file = dir.path().join("load.toml");
    std::fs::write(&config_file, LOAD_CONFIG)?;
    let (mut child, addr) = serve_child(
        &[
            copy.to_str().context("db path")?,
            config_file.to_str().context("config path")?,
        ],
        "warn",
    )?;
    let in_child = runtime.block_on(run_load(addr, &tokens, o.reads));
    let peak = peak_memory::peak_rss_kib(Some(child.0.id())).context("no VmHWM for the child")?;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()?;
    ensure!(killed.success(), "could not signal the child daemon");
    let exit = child.0.wait()?;
    report("daemon (child `serve`)", &in_child, tokens.len());
    println!(
        "child `serve` peak RSS: {:.1} MB (target ≤ 100 MB); exit after SIGTERM: {exit}",
        peak as f64 / 1024.0
    );
    let errors = in_process.errors.len() + in_child.errors.len();
    ensure!(errors == 0, "{errors} handhelds failed");
    Ok(())
}
