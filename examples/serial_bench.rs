//! Serial docking through a paced 115200-baud PTY relay (`../shared/tools/serial-link-relay.py`):
//! a 2,000-meter route download and a 2,000-read upload through a real dock thread, against gzip +
//! ZMODEM (lrzsz) carrying the same route as a Sensus fixed-width file in the same run; and the
//! transfer layer's raw efficiency through the relay, clean and at 20 ms one-way latency.
//!
//! `cargo run --release --example serial_bench` (needs python3, gzip and lrzsz's `sz`/`rz`).

use anyhow::{bail, Context};
use chrono::NaiveDate;
use firmware_protocol::message::{self as msg, Message};
use firmware_protocol::transfer::{Endpoint, Event, Role};
use meter_gateway::auth::DeviceToken;
use meter_gateway::config::Config;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::domain::MeterStatus;
use meter_gateway::store::{Db, Store};
use meter_gateway::sync::dock::link_config;
use meter_gateway::sync::handheld::{walk_route, Handheld, HandheldState, Mode, ReadModel, Rng};
use meter_gateway::sync::serial::{run_handheld, spawn_dock, write_frame, Pacer};
use meter_gateway::sync::{DockBoard, SyncService};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LINE: f64 = 11_520.0; // 115200 baud 8N1, bytes per second each way
const METERS: u32 = 2_000;

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools")
}

/// The relay, killed on drop.
struct Relay(Child);

impl Relay {
    fn start(dir: &Path, extra: &[&str]) -> anyhow::Result<(Relay, PathBuf, PathBuf)> {
        let (a, b) = (dir.join("A"), dir.join("B"));
        let mut child = Command::new("python3")
            .arg(tools().join("serial-link-relay.py"))
            .arg("--links")
            .arg(format!("{},{}", a.display(), b.display()))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the relay (python3)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("relay stdout")?).read_line(&mut line)?;
        if !line.starts_with("ready") {
            bail!("relay said {line:?}");
        }
        Ok((Relay(child), a, b))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open(path: &Path) -> anyhow::Result<Box<dyn serialport::SerialPort>> {
    serialport::new(path.to_string_lossy(), 115_200)
        .timeout(Duration::from_millis(2))
        .open()
        .with_context(|| format!("opening {}", path.display()))
}

/// A 2,000-meter demo district on ONE route, its cycle open, device HH-BENCH registered.
fn district(db: &Path) -> anyhow::Result<()> {
    let mut d = demo::generate(&DemoParams {
        accounts: METERS + METERS / 10,
        seed: 3,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 5).context("date")?,
    });
    // One route of exactly METERS active meters (the demo makes 600-account routes): the first
    // accounts move to route 0 until it holds that many; the rest stay where they were.
    let route = d.routes[0].id.clone();
    let mut meters = 0;
    for (i, a) in d.accounts.iter_mut().enumerate() {
        if meters >= METERS {
            if a.route_id == route {
                a.route_id = d.routes[1].id.clone();
            }
            continue;
        }
        a.route_id = route.clone();
        a.sequence = (i as u32 + 1) * 10;
        meters += d
            .meters
            .iter()
            .filter(|m| m.account_id.as_deref() == Some(&a.id) && m.status == MeterStatus::Active)
            .count() as u32;
    }
    let mut s = Store::open(db)?;
    demo::load(&mut s, &d)?;
    let now = d.cycle.window_from.and_hms_opt(8, 0, 0).context("time")?;
    d.open_cycle(&mut s, now)?;
    s.add_device(&DeviceToken::generate("HH-BENCH")?, now)?;
    s.assign_route(&d.cycle.id, &route, "HH-BENCH", now)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    district(&db)?;
    let sync = SyncService::new(Db::open(&db)?, Arc::new(Config::default()));
    let board = DockBoard::default();

    if std::env::var_os("BENCH_EFF_ONLY").is_some() {
        let clean = efficiency(&dir.path().join("eff0"), &[])?;
        println!("clean {:.1}%", clean * 100.0);
        return Ok(());
    }
    // ---- docking through the relay -------------------------------------------------------------
    let link_dir = dir.path().join("link");
    let (relay, a, b) = Relay::start(&link_dir, &[])?;
    let stop = Arc::new(AtomicBool::new(false));
    let dock = spawn_dock(a.clone(), sync.clone(), board.clone(), stop.clone())?;
    std::thread::sleep(Duration::from_millis(300)); // the dock opens its port
    let mut port = open(&b)?;
    let start = Instant::now();
    let ms = || start.elapsed().as_millis() as u64;

    let t0 = ms();
    let mut hh = Handheld::new(
        HandheldState::new("HH-BENCH"),
        Mode::default(),
        115_200,
        1,
        t0,
    );
    run_handheld(
        &mut *port,
        115_200,
        &mut hh,
        start,
        Duration::from_secs(120),
        |_| {},
    )
    .context("download docking")?;
    let o = hh.outcome().clone();
    if !o.done || o.routes_received != 1 {
        bail!("download docking failed: {o:?}");
    }
    let mut state = hh.state();
    let route = &state.routes[0];
    let stops = route.stops.len();
    let compressed = msg::encode_route_transfer(route, true).len();
    let plain = msg::encode_route_transfer(route, false).len();
    let route_s = (o.route_loaded_ms.unwrap_or(0) - t0) as f64 / 1000.0;
    let docking_s = (ms() - t0) as f64 / 1000.0;

    walk_route(
        &mut state,
        0,
        &ReadModel::default(),
        &mut Rng::new(7),
        "BENCH",
        1_793_000_000,
    );
    let reads = state.unacknowledged();
    let batch_bytes = Message::ReadBatch {
        reads: state.pending.clone(),
    }
    .to_vec()
    .len();
    let t1 = ms();
    let mode = Mode {
        download: false,
        ..Mode::default()
    };
    let mut hh = Handheld::new(state, mode, 115_200, 2, t1);
    let wire_before = hh.link_stats().bytes_sent;
    run_handheld(
        &mut *port,
        115_200,
        &mut hh,
        start,
        Duration::from_secs(120),
        |_| {},
    )?;
    let o = hh.outcome().clone();
    if o.reads_acknowledged != reads {
        bail!("upload docking failed: {o:?}");
    }
    let up_started = o.upload_started_ms.context("no upload")?;
    let ack_s = (o.last_ack_ms.context("no ack")? - up_started) as f64 / 1000.0;
    let delivered_to_ack = o.last_ack_ms.unwrap_or(0) - o.upload_delivered_ms.unwrap_or(0);
    let link_s = batch_bytes as f64 / LINE;
    // What the handheld actually put on the line (frames, control records, acknowledgements).
    let wire_s = (o.wire_bytes_at_last_ack - wire_before) as f64 / LINE;
    stop.store(true, Ordering::SeqCst);
    let _ = dock.join();
    drop(port);
    drop(relay);

    // ---- baseline: gzip + ZMODEM of the Sensus fixed-width route ---------------------------------
    let txt = dir.path().join("route.txt");
    let ok = Command::new("python3")
        .arg(tools().join("sensus-route.py"))
        .arg(METERS.to_string())
        .arg(&txt)
        .status()?;
    if !ok.success() {
        bail!("sensus-route.py failed");
    }
    Command::new("gzip").arg("-9k").arg(&txt).status()?;
    let gz = dir.path().join("route.txt.gz");
    let gz_len = std::fs::metadata(&gz)?.len();
    let zm = Command::new("bash")
        .arg(tools().join("zmodem-baseline.sh"))
        .arg(&gz)
        .output()
        .context("running zmodem-baseline.sh")?;
    let zm_text = String::from_utf8_lossy(&zm.stdout).to_string();
    // "zmodem rc=0 12345 bytes in 1.23 s, ..."
    let zm_s: Option<f64> = zm_text
        .split(" in ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .filter(|_| zm_text.contains("rc=0") && zm_text.contains("identical"));

    // ---- raw protocol efficiency through the relay ------------------------------------------------
    let clean = efficiency(&dir.path().join("eff0"), &[])?;
    eprintln!("clean {:.1}%", clean * 100.0);
    let slow = efficiency(&dir.path().join("eff20"), &["--latency", "0.02"])?;

    println!("serial docking through serial-link-relay.py at 115200 baud (11,520 B/s each way)");
    println!("route download: {stops} stops, RouteData {plain} B plain, {compressed} B deflated");
    println!(
        "  route loaded {route_s:.2} s after docking began (whole docking incl. codes and byes {docking_s:.2} s); \
         route bytes alone at line rate {:.2} s",
        compressed as f64 / LINE
    );
    match zm_s {
        Some(z) => println!(
            "  baseline gzip + ZMODEM (lrzsz) of the Sensus fixed-width route ({gz_len} B gzipped): {z:.2} s \
             -> this protocol takes {:.2}x the baseline's time ({})",
            route_s / z,
            if route_s < z { "faster: target met" } else { "SLOWER: target missed" }
        ),
        None => println!("  baseline gzip + ZMODEM: did not run ({})", zm_text.trim()),
    }
    println!("upload: {reads} reads, ReadBatch {batch_bytes} B");
    println!(
        "  last ReadAck {ack_s:.3} s after the batches were queued; line time of everything the handheld sent \
         until then (frames, control, acks) {wire_s:.3} s -> {:.0} ms more (target <= 100 ms: {})",
        (ack_s - wire_s) * 1000.0,
        if ack_s - wire_s <= 0.1 { "met" } else { "MISSED" }
    );
    println!(
        "  (against the bare ReadBatch bytes, {link_s:.3} s at line rate: {:.0} ms more, i.e. framing and \
         transfer set-up; last batch delivered -> its ReadAck {delivered_to_ack} ms)",
        (ack_s - link_s) * 1000.0
    );
    println!("transfer layer, 200 KB through the relay (goodput / line rate):");
    println!(
        "  clean: {:.1}%   20 ms one-way latency: {:.1}%",
        clean * 100.0,
        slow * 100.0
    );
    Ok(())
}

/// Goodput of one 200 KB transfer dock → handheld through a relay started with `extra`.
fn efficiency(dir: &Path, extra: &[&str]) -> anyhow::Result<f64> {
    const LEN: usize = 200_000;
    let (_relay, a, b) = Relay::start(dir, extra)?;
    let mut pa = open(&a)?;
    let mut pb = open(&b)?;
    let data: Vec<u8> = {
        let mut rng = Rng::new(99);
        (0..LEN).map(|_| rng.next_u64() as u8).collect()
    };
    let start = Instant::now();
    let ms = || start.elapsed().as_millis() as u64;
    let mut ea = Endpoint::new(Role::Dock, link_config(115_200, 1), ms());
    let mut eb = Endpoint::new(Role::Handheld, link_config(115_200, 2), ms());
    ea.send(0x8000_0001, data.clone())?;
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::new();
    let mut pacers = [Pacer::new(115_200), Pacer::new(115_200)];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if Instant::now() > deadline {
            bail!("efficiency transfer did not finish");
        }
        for ((e, p), pacer) in [(&mut ea, &mut pa), (&mut eb, &mut pb)]
            .into_iter()
            .zip(&mut pacers)
        {
            if pacer.ready() {
                out.clear();
                if e.poll_transmit(ms(), &mut out) {
                    pacer.sent(out.len());
                    write_frame(&mut **p, &out).context("writing to the relay")?;
                }
            }
            if let Ok(n) = p.read(&mut buf) {
                if n > 0 {
                    e.handle_input(&buf[..n], ms());
                }
            }
            if e.poll_timeout().is_some_and(|t| t <= ms()) {
                e.handle_timeout(ms());
            }
        }
        while let Some(ev) = eb.poll_event() {
            if let Event::TransferComplete { data: got, .. } = ev {
                if got != data {
                    bail!("transfer corrupted");
                }
                let st = ea.stats();
                eprintln!(
                    "  [{}] {} frames, {} retransmissions, {} chunk bytes resent, {} timeouts; receiver: {} bad frames",
                    extra.join(" "),
                    st.frames_sent,
                    st.retransmissions,
                    st.chunk_bytes_resent,
                    st.timeouts,
                    eb.stats().bad_frames
                );
                return Ok(LEN as f64 / (start.elapsed().as_secs_f64() * LINE));
            }
        }
        while ea.poll_event().is_some() {}
    }
}
