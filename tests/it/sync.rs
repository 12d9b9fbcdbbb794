//! Integration tests: sync. A docking end to end, over the link simulator and over pseudo-terminals:
//! reads stored once, routes and codes loaded, cuts resumed, bad frames and unknown devices refused.

use chrono::NaiveDateTime;
use firmware_protocol::message::error_code;
use firmware_protocol::sim::{Cut, LinkParams, Side, Sim};
use meter_gateway::auth::DeviceToken;
use meter_gateway::config::Config;
use meter_gateway::demo::{self, DemoParams};
use meter_gateway::store::{Db, Store};
use meter_gateway::sync::dock::{DockSession, Note, Phase};
use meter_gateway::sync::handheld::{walk_route, Handheld, HandheldState, Mode, ReadModel, Rng};
use meter_gateway::sync::{DockBoard, SyncService};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::support::{day, keep_stops, keyed, walk_part};

const BAUD: u32 = 115_200;

fn noon() -> NaiveDateTime {
    day(2026, 11, 10).and_hms_opt(12, 0, 0).unwrap()
}

/// A demo district of `accounts` accounts with its cycle open over every route and device `HH-01`
/// registered, in the store at `path` (in memory when `None`).
fn district(path: Option<&Path>, accounts: u32) -> (Store, String) {
    let mut s = match path {
        Some(p) => Store::open(p).unwrap(),
        None => Store::open_in_memory().unwrap(),
    };
    let d = demo::generate(&DemoParams {
        accounts,
        seed: 11,
        as_of: day(2026, 11, 5),
    });
    demo::load(&mut s, &d).unwrap();
    d.open_cycle(&mut s, noon()).unwrap();
    let token = DeviceToken::generate("HH-01").unwrap();
    s.add_device(&token, noon()).unwrap();
    (s, d.cycle.id)
}

fn service((store, cycle): (Store, String)) -> (SyncService, String) {
    (
        SyncService::new(Db::start(store).unwrap(), Arc::new(Config::default())),
        cycle,
    )
}

fn dock(service: &SyncService, board: &DockBoard, now_ms: u64) -> DockSession {
    DockSession::new(service.clone(), board.clone(), "sim", BAUD, noon(), now_ms)
}

fn handheld(state: HandheldState, now_ms: u64, nonce: u32) -> Handheld {
    Handheld::new(state, Mode::default(), BAUD, nonce, now_ms)
}

/// Rows stored from `device`: (count, distinct device sequence numbers).
fn device_reads((service, cycle): &(SyncService, String), device: &str) -> (usize, usize) {
    let (device, cycle) = (device.to_string(), cycle.clone());
    service
        .db()
        .call_blocking(move |s| {
            let reads: Vec<u64> = s
                .cycle_reads(&cycle)
                .unwrap()
                .into_iter()
                .filter_map(|r| r.device.filter(|(d, _)| *d == device).map(|(_, q)| q))
                .collect();
            let distinct: HashSet<u64> = reads.iter().copied().collect();
            (reads.len(), distinct.len())
        })
        .unwrap()
}

/// Docks `hh` at `dock` over a clean simulated link; returns both when the handheld is finished.
fn dock_sim(
    dock: DockSession,
    hh: Handheld,
    params: LinkParams,
    start_ms: u64,
) -> (DockSession, Handheld, u64) {
    let mut sim = Sim::new(dock, hh, params, start_ms);
    sim.run_until(120_000, |s| s.b.finished());
    let now = sim.now_ms();
    let Sim { a, b, .. } = sim;
    (a, b, now)
}

/// Loads the route at a first docking and walks it: a handheld holding a day's reads.
fn walked(service: &SyncService, board: &DockBoard) -> (DockSession, HandheldState, u64) {
    let (d, hh, now) = dock_sim(
        dock(service, board, 0),
        handheld(HandheldState::new("HH-01"), 0, 1),
        LinkParams::default(),
        0,
    );
    assert!(
        hh.outcome().done,
        "first docking did not finish: {:?}",
        hh.outcome()
    );
    let mut state = hh.state();
    assert_eq!(state.routes.len(), 1);
    let mut rng = Rng::new(5);
    let n = walk_route(
        &mut state,
        0,
        &ReadModel::default(),
        &mut rng,
        "JS",
        meter_gateway::sync::protocol_time(noon()),
    );
    assert_eq!(n, state.routes[0].stops.len());
    // What the handheld writes to flash reads back the same; a damaged file is refused, not a panic.
    let bytes = state.to_bytes();
    assert_eq!(HandheldState::from_bytes(&bytes).unwrap(), state);
    assert!(HandheldState::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    (d, state, now)
}

#[test]
fn a_whole_docking_loads_the_route_and_codes_then_stores_the_walked_reads_once() {
    let svc = service(district(None, 300));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let (d, state, now) = walked(sync, &board);
    assert!(!state.codes.is_empty(), "the message-code table came down");
    let stops = state.routes[0].stops.len();
    assert!(stops > 200);
    assert_eq!(state.unacknowledged(), stops);

    let (d, hh, _) = dock_sim(d, handheld(state, now, 2), LinkParams::default(), now);
    let out = hh.outcome();
    assert!(out.done, "{out:?}");
    assert_eq!(out.reads_acknowledged, stops);
    assert_eq!(
        hh.state().unacknowledged(),
        0,
        "acknowledged reads are deleted"
    );
    assert_eq!(device_reads(&svc, "HH-01"), (stops, stops));
    assert_eq!(d.phase(), Phase::Done);
    let status = board.status("sim").unwrap();
    assert_eq!(status.reads_received, stops as u64);
    assert_eq!(status.device.as_deref(), Some("HH-01"));
    // The route was already held: the second docking did not send it again.
    assert_eq!(out.routes_received, 0);
}

#[test]
fn a_cable_cut_mid_upload_resumes_and_stores_every_read_exactly_once() {
    let svc = service(district(None, 300));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let (d, state, now) = walked(sync, &board);
    let stops = state.unacknowledged();
    // The cable is pulled after the handheld has sent a few KB of its batch.
    let params = LinkParams {
        cut: Some(Cut::AfterBytes {
            side: Side::B,
            bytes: 6_000,
        }),
        ..LinkParams::default()
    };
    let (d, hh, now) = dock_sim(d, handheld(state, now, 3), params, now);
    assert!(hh.outcome().link_down && !hh.outcome().done);
    assert_eq!(hh.outcome().reads_acknowledged, 0);
    assert_eq!(
        device_reads(&svc, "HH-01").0,
        0,
        "nothing stored from a partial batch"
    );
    // The handheld reboots (state restored from flash) and docks again.
    let state = hh.state();
    assert_eq!(state.unacknowledged(), stops);
    let (mut d, hh, _) = dock_sim(
        d,
        handheld(state, now + 10, 4),
        LinkParams::default(),
        now + 10,
    );
    assert!(hh.outcome().done, "{:?}", hh.outcome());
    assert_eq!(device_reads(&svc, "HH-01"), (stops, stops));
    // The batch continued from what the dock held, not from byte 0.
    let resumed = std::iter::from_fn(|| d.poll_note()).find_map(|n| match n {
        Note::UploadResumed { from, .. } => Some(from),
        _ => None,
    });
    assert!(resumed.is_some_and(|from| from > 1000), "{resumed:?}");
}

#[test]
fn reads_resent_after_a_lost_acknowledgement_are_not_stored_twice() {
    let svc = service(district(None, 300));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let (d, state, now) = walked(sync, &board);
    let stops = state.unacknowledged();
    let before = state.clone();
    // A complete docking whose acknowledgement the handheld never keeps (it rebooted to the state
    // it had before): it sends the same batch again.
    let (d, hh, now) = dock_sim(d, handheld(state, now, 5), LinkParams::default(), now);
    assert!(hh.outcome().done);
    let (_, hh, _) = dock_sim(
        d,
        handheld(before, now + 10, 6),
        LinkParams::default(),
        now + 10,
    );
    assert!(hh.outcome().done);
    assert_eq!(hh.outcome().reads_acknowledged, stops);
    assert_eq!(device_reads(&svc, "HH-01"), (stops, stops));
}

#[test]
fn a_cable_cut_mid_download_resumes_the_route_instead_of_restarting() {
    let svc = service(district(None, 300));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let params = LinkParams {
        cut: Some(Cut::AfterBytes {
            side: Side::A,
            bytes: 4_000,
        }),
        ..LinkParams::default()
    };
    let (d, hh, now) = dock_sim(
        dock(sync, &board, 0),
        handheld(HandheldState::new("HH-01"), 0, 7),
        params,
        0,
    );
    assert!(hh.outcome().link_down);
    let state = hh.state();
    assert!(state.routes.is_empty());
    assert_eq!(state.partials.len(), 1, "the handheld keeps what it holds");
    let held = state.partials[0].data.len();
    assert!(held > 1000, "held {held} bytes");
    // What the dock logs of the first docking is not news for the second.
    let mut d = d;
    while d.poll_note().is_some() {}
    let (mut d, hh, _) = dock_sim(
        d,
        handheld(state, now + 10, 8),
        LinkParams::default(),
        now + 10,
    );
    let out = hh.outcome();
    assert!(out.done, "{out:?}");
    assert_eq!(out.routes_received, 1);
    assert_eq!(out.resumed_from, Some(held as u32));
    assert!(hh.state().partials.is_empty());
    // The dock logs the resume once, with the route's size.
    let resumes: Vec<(u32, u32)> = std::iter::from_fn(|| d.poll_note())
        .filter_map(|n| match n {
            Note::RouteResumed { from, total, .. } => Some((from, total)),
            _ => None,
        })
        .collect();
    assert_eq!(resumes.len(), 1, "{resumes:?}");
    assert!(
        resumes[0].0 == held as u32 && resumes[0].1 > resumes[0].0,
        "{resumes:?}"
    );
}

#[test]
fn an_idle_cradle_logs_nothing_while_it_waits() {
    use firmware_protocol::sim::Station;
    let svc = service(district(None, 60));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let mut d = dock(sync, &board, 0);
    // Five minutes with nothing on the line: the endpoint resets itself every few seconds.
    let mut now = 0;
    let mut out = Vec::new();
    while now < 300_000 {
        out.clear();
        while d.poll_transmit(now, &mut out) {
            out.clear();
        }
        now = d.poll_timeout().unwrap_or(now + 1_000).max(now + 1);
        d.handle_timeout(now);
    }
    let notes: Vec<Note> = std::iter::from_fn(|| d.poll_note()).collect();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(d.phase(), Phase::AwaitHello);
}

#[test]
fn an_unknown_device_is_refused_with_error_and_bye() {
    let svc = service(district(None, 60));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let (d, hh, _) = dock_sim(
        dock(sync, &board, 0),
        handheld(HandheldState::new("HH-99"), 0, 9),
        LinkParams::default(),
        0,
    );
    let refused = hh.outcome().refused.clone().expect("refused");
    assert_eq!(refused.0, error_code::UNKNOWN_DEVICE);
    assert!(refused.1.contains("HH-99"), "{}", refused.1);
    assert!(hh.state().routes.is_empty());
    assert_eq!(d.phase(), Phase::Refused);
}

#[test]
fn corrupt_and_oversize_frames_are_dropped_and_the_docking_still_completes() {
    use firmware_protocol::sim::Station;
    let svc = service(district(None, 60));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let mut d = dock(sync, &board, 0);
    // An oversize frame (64 KiB without a delimiter, then one), and a frame with a bad CRC.
    d.handle_input(&vec![0x55; 65_536], 0);
    d.handle_input(&[0], 0);
    let mut frame = Vec::new();
    firmware_protocol::encode_frame_vec(
        &firmware_protocol::frame::Header {
            version: 1,
            frame_type: firmware_protocol::frame::FrameType::Data,
            flags: 0,
            seq: 0,
        },
        b"garbage",
        &mut frame,
    )
    .unwrap();
    frame[9] = if frame[9] == 0x61 { 0x62 } else { 0x61 };
    d.handle_input(&frame, 1);
    let (d, hh, _) = dock_sim(
        d,
        handheld(HandheldState::new("HH-01"), 2, 10),
        LinkParams::default(),
        2,
    );
    assert!(hh.outcome().done, "{:?}", hh.outcome());
    assert_eq!(hh.outcome().routes_received, 1);
    assert_eq!(d.phase(), Phase::Done);
}

// ---- over pseudo-terminals -------------------------------------------------------------------------

mod pty {
    use super::*;
    use meter_gateway::sync::serial::{run_handheld, spawn_dock};
    use serialport::{SerialPort, TTYPort};
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// A dock thread on a PTY; stopped and joined on drop, also when a test fails.
    pub struct DockThread {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl DockThread {
        pub fn start(path: PathBuf, sync: &SyncService, board: &DockBoard) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let thread = spawn_dock(path, sync.clone(), board.clone(), stop.clone()).unwrap();
            Self {
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for DockThread {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// A PTY pair: the dock opens the slave by path; the test keeps the master.
    pub fn pty() -> (TTYPort, PathBuf) {
        let (mut master, slave) = TTYPort::pair().unwrap();
        let path = PathBuf::from(slave.name().unwrap());
        drop(slave);
        master.set_timeout(Duration::from_millis(5)).unwrap();
        (master, path)
    }

    /// Docks once; panics if the handheld does not finish within 15 s.
    pub fn dock_once(port: &mut TTYPort, hh: &mut Handheld, start: Instant) {
        run_handheld(port, BAUD, hh, start, Duration::from_secs(15), |_| {}).unwrap();
        let log: Vec<String> = std::iter::from_fn(|| hh.poll_log()).collect();
        assert!(
            hh.outcome().done,
            "docking did not finish: {:?} {log:?}",
            hh.outcome()
        );
    }

    /// A cable between two PTY pairs that the test can cut: it forwards both ways until the bytes
    /// from one side pass a threshold, then drops everything until it is mended.
    pub struct Relay {
        pub cut: Arc<AtomicBool>,
        /// Cut when this many bytes went dock → handheld (download) ...
        pub cut_after_down: Arc<AtomicU64>,
        /// ... or handheld → dock (upload).
        pub cut_after_up: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Relay {
        pub fn new(mut dock_side: TTYPort, mut hh_side: TTYPort) -> Self {
            let cut = Arc::new(AtomicBool::new(false));
            let cut_after_down = Arc::new(AtomicU64::new(u64::MAX));
            let cut_after_up = Arc::new(AtomicU64::new(u64::MAX));
            let stop = Arc::new(AtomicBool::new(false));
            dock_side.set_timeout(Duration::from_millis(2)).unwrap();
            hh_side.set_timeout(Duration::from_millis(2)).unwrap();
            let (c, cd, cu, s) = (
                cut.clone(),
                cut_after_down.clone(),
                cut_after_up.clone(),
                stop.clone(),
            );
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let (mut down, mut up) = (0u64, 0u64);
                while !s.load(Ordering::SeqCst) {
                    if let Ok(n) = dock_side.read(&mut buf) {
                        if n > 0 && !c.load(Ordering::SeqCst) {
                            down += n as u64;
                            let _ = hh_side.write_all(&buf[..n]);
                            if down >= cd.load(Ordering::SeqCst) {
                                c.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    if let Ok(n) = hh_side.read(&mut buf) {
                        if n > 0 && !c.load(Ordering::SeqCst) {
                            up += n as u64;
                            let _ = dock_side.write_all(&buf[..n]);
                            if up >= cu.load(Ordering::SeqCst) {
                                c.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    if cd.load(Ordering::SeqCst) == 0 {
                        // Mended: count afresh.
                        (down, up) = (0, 0);
                        cd.store(u64::MAX, Ordering::SeqCst);
                    }
                }
            });
            Self {
                cut,
                cut_after_down,
                cut_after_up,
                stop,
                thread: Some(thread),
            }
        }

        pub fn mend(&self) {
            self.cut_after_up.store(u64::MAX, Ordering::SeqCst);
            self.cut_after_down.store(0, Ordering::SeqCst);
            while self.cut_after_down.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.cut.store(false, Ordering::SeqCst);
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Runs the handheld until the relay cuts the cable, then it notices it was lifted out.
    pub fn dock_until_cut(port: &mut TTYPort, hh: &mut Handheld, relay: &Relay, start: Instant) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !relay.cut.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the cable was never cut");
            assert!(
                !hh.finished(),
                "finished before the cut: {:?}",
                hh.outcome()
            );
            run_handheld(port, BAUD, hh, start, Duration::from_millis(20), |_| {}).unwrap();
        }
        hh.port_lost();
    }

    #[test]
    fn a_full_docking_over_a_pty_stores_reads_and_loads_route_and_codes() {
        let svc = service(district(None, 300));
        let (sync, _) = &svc;
        let board = DockBoard::default();
        let (mut port, path) = pty();
        let _dock = DockThread::start(path.clone(), sync, &board);
        let start = Instant::now();
        let mut hh = Handheld::new(HandheldState::new("HH-01"), Mode::default(), BAUD, 21, 0);
        dock_once(&mut port, &mut hh, start);
        let mut state = hh.state();
        assert_eq!(hh.outcome().routes_received, 1);
        assert!(hh.outcome().codes_received > 0);
        let stops = walk_route(
            &mut state,
            0,
            &ReadModel::default(),
            &mut Rng::new(9),
            "JS",
            meter_gateway::sync::protocol_time(noon()),
        );
        let now = start.elapsed().as_millis() as u64;
        let mut hh = Handheld::new(state, Mode::default(), BAUD, 22, now);
        dock_once(&mut port, &mut hh, start);
        assert_eq!(hh.outcome().reads_acknowledged, stops);
        assert_eq!(hh.state().unacknowledged(), 0);
        assert_eq!(device_reads(&svc, "HH-01"), (stops, stops));
        let status = board.status(&path.display().to_string()).unwrap();
        assert_eq!(status.reads_received, stops as u64);
    }

    #[test]
    fn cable_cuts_mid_download_and_mid_upload_over_ptys_resume_and_deliver_everything_once() {
        let svc = service(district(None, 300));
        let (sync, _) = &svc;
        let board = DockBoard::default();
        let (dock_master, dock_path) = pty();
        let (mut hh_port, hh_far) = TTYPort::pair().unwrap();
        hh_port.set_timeout(Duration::from_millis(5)).unwrap();
        let relay = Relay::new(dock_master, hh_far);
        let _dock = DockThread::start(dock_path, sync, &board);
        let start = Instant::now();
        let ms = || start.elapsed().as_millis() as u64;

        // Download, cut after 5 KB of the route.
        relay.cut_after_down.store(5_000, Ordering::SeqCst);
        let mut hh = Handheld::new(HandheldState::new("HH-01"), Mode::default(), BAUD, 31, ms());
        dock_until_cut(&mut hh_port, &mut hh, &relay, start);
        let state = hh.state();
        assert!(state.routes.is_empty());
        relay.mend();
        let mut hh = Handheld::new(state, Mode::default(), BAUD, 32, ms());
        dock_once(&mut hh_port, &mut hh, start);
        assert_eq!(hh.outcome().routes_received, 1);
        assert!(
            hh.outcome().resumed_from.is_some_and(|b| b > 0),
            "{:?}",
            hh.outcome()
        );

        // Walk, then upload, cut after 6 KB of the batch.
        let mut state = hh.state();
        let stops = walk_route(
            &mut state,
            0,
            &ReadModel::default(),
            &mut Rng::new(3),
            "JS",
            meter_gateway::sync::protocol_time(noon()),
        );
        relay.cut_after_up.store(6_000, Ordering::SeqCst);
        let mut hh = Handheld::new(state, Mode::default(), BAUD, 33, ms());
        dock_until_cut(&mut hh_port, &mut hh, &relay, start);
        let state = hh.state();
        assert_eq!(state.unacknowledged(), stops);
        relay.mend();
        let mut hh = Handheld::new(state, Mode::default(), BAUD, 34, ms());
        dock_once(&mut hh_port, &mut hh, start);
        assert_eq!(hh.outcome().reads_acknowledged, stops);
        assert_eq!(device_reads(&svc, "HH-01"), (stops, stops));
    }
}

// ---- the real daemon, killed mid-upload ------------------------------------------------------------

mod crash {
    use super::pty::{dock_once, pty};
    use super::*;
    use meter_gateway::sync::serial::run_handheld;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// `meter-gateway serve` on a PTY; SIGKILLed on drop, also when a test fails.
    struct Daemon(Child);

    impl Daemon {
        fn start(db: &Path, serial: &Path) -> Self {
            let mut child = Command::new(env!("CARGO_BIN_EXE_meter-gateway"))
                .arg("--db")
                .arg(db)
                .args(["serve", "--http", "127.0.0.1:0", "--serial"])
                .arg(serial)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("listening on"), "daemon said {line:?}");
            Daemon(child)
        }

        fn kill(&mut self) {
            let _ = self.0.kill(); // SIGKILL
            let _ = self.0.wait();
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn stored(db: &Path, cycle: &str) -> Vec<u64> {
        Store::open(db)
            .unwrap()
            .cycle_reads(cycle)
            .unwrap()
            .into_iter()
            .filter_map(|r| r.device.map(|(_, q)| q))
            .collect()
    }

    #[test]
    fn a_daemon_killed_mid_upload_loses_no_acknowledged_read_and_stores_none_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("district.db");
        let (store, cycle) = district(Some(&db), 300);
        drop(store);
        let (mut port, path) = pty();
        let start = Instant::now();
        let ms = || start.elapsed().as_millis() as u64;

        let mut daemon = Daemon::start(&db, &path);
        let mut hh = Handheld::new(HandheldState::new("HH-01"), Mode::default(), BAUD, 41, ms());
        dock_once(&mut port, &mut hh, start);
        let mut state = hh.state();
        let stops = walk_route(
            &mut state,
            0,
            &ReadModel::default(),
            &mut Rng::new(4),
            "JS",
            meter_gateway::sync::protocol_time(noon()),
        );
        // Small batches, so the kill falls between acknowledged and unacknowledged ones.
        let mode = Mode {
            max_batch: 25,
            ..Mode::default()
        };
        let mut hh = Handheld::new(state, mode, BAUD, 42, ms());
        let mut killed = false;
        run_handheld(
            &mut port,
            BAUD,
            &mut hh,
            start,
            Duration::from_secs(15),
            |h| {
                if !killed && h.outcome().reads_acknowledged >= 50 {
                    daemon.kill();
                    killed = true;
                }
            },
        )
        .unwrap();
        assert!(
            killed,
            "the upload finished before the kill: {:?}",
            hh.outcome()
        );
        hh.port_lost();
        let state = hh.state();
        let acked = stops - state.unacknowledged();
        assert!(
            acked >= 50 && acked < stops,
            "acknowledged {acked} of {stops}"
        );
        let held: HashSet<u64> = state
            .pending
            .iter()
            .chain(state.in_flight.iter().flat_map(|(_, r)| r))
            .map(|r| r.device_seq)
            .collect();
        let after_kill = stored(&db, &cycle);
        let distinct: HashSet<u64> = after_kill.iter().copied().collect();
        assert_eq!(distinct.len(), after_kill.len(), "a read stored twice");
        for seq in 1..=stops as u64 {
            if !held.contains(&seq) {
                assert!(
                    distinct.contains(&seq),
                    "acknowledged read {seq} is not in the database"
                );
            }
        }

        let _daemon = Daemon::start(&db, &path);
        let mut hh = Handheld::new(state, mode, BAUD, 43, ms());
        dock_once(&mut port, &mut hh, start);
        assert_eq!(hh.state().unacknowledged(), 0);
        let all = stored(&db, &cycle);
        let distinct: HashSet<u64> = all.iter().copied().collect();
        assert_eq!((all.len(), distinct.len()), (stops, stops));
    }
}

// ---- protocol 2: state identity, content-checked repeats, deadlines ----------------------------

/// Every read stored from `device`, as (meter, raw reading, protocol time), with how often.
fn stored_from(
    (service, cycle): &(SyncService, String),
    device: &str,
) -> std::collections::HashMap<(String, String, i64), usize> {
    let (device, cycle) = (device.to_string(), cycle.clone());
    service
        .db()
        .call_blocking(move |s| {
            let mut out = std::collections::HashMap::new();
            for r in s.cycle_reads(&cycle).unwrap() {
                if r.device.as_ref().is_some_and(|(d, _)| *d == device) {
                    let key = (
                        r.meter_id.clone(),
                        r.raw_reading.clone(),
                        meter_gateway::sync::protocol_time(r.read_at),
                    );
                    *out.entry(key).or_insert(0) += 1;
                }
            }
            out
        })
        .unwrap()
}

fn refusals(service: &SyncService) -> Vec<(String, i64, String)> {
    service
        .db()
        .call_blocking(|s| {
            let mut rows = s.refused_reads(None, 10_000).unwrap();
            rows.reverse();
            rows.into_iter()
                .map(|r| (r.reason.to_string(), r.device_seq.unwrap_or(0), r.detail))
                .collect()
        })
        .unwrap()
}

#[test]
fn a_wiped_handheld_starts_a_new_state_and_none_of_its_reads_is_taken_for_an_old_one() {
    let svc = service(district(None, 300));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let (d, mut state, now) = walked(sync, &board);
    let stops = state.routes[0].stops.len();
    let half = stops / 2;
    keep_stops(&mut state, 0..half);
    let mut expected = keyed(&state);
    let (d, hh, now) = dock_sim(d, handheld(state, now, 21), LinkParams::default(), now);
    assert!(hh.outcome().done, "{:?}", hh.outcome());
    assert_eq!(hh.outcome().reads_acknowledged, half);

    // Flash wiped (or the unit replaced under the same device id): a new state, counting from 1.
    let wiped = HandheldState::new("HH-01");
    assert_ne!(wiped.state_id, hh.state().state_id);
    let (d, hh, now) = dock_sim(
        d,
        handheld(wiped, now + 10, 22),
        LinkParams::default(),
        now + 10,
    );
    assert!(hh.outcome().done);
    let mut state = hh.state();
    assert_eq!(state.next_seq, 1, "nothing held under the new state");
    walk_part(
        &mut state,
        9,
        half..stops,
        meter_gateway::sync::protocol_time(noon()) + 7_200,
    );
    assert_eq!(
        state.pending[0].device_seq, 1,
        "sequence numbers start again"
    );
    expected.extend(keyed(&state));
    let (_, hh, _) = dock_sim(
        d,
        handheld(state, now + 20, 23),
        LinkParams::default(),
        now + 20,
    );
    assert!(hh.outcome().done);
    assert_eq!(hh.outcome().reads_acknowledged, stops - half);
    assert_eq!(hh.outcome().reads_refused, 0);
    // Every keyed read is stored, exactly once.
    let stored = stored_from(&svc, "HH-01");
    for k in &expected {
        assert_eq!(stored.get(k), Some(&1), "{k:?}");
    }
    assert_eq!(stored.len(), expected.len());
}

#[test]
fn a_handheld_restored_from_an_old_state_renumbers_what_the_gateway_holds_and_loses_nothing() {
    let svc = service(district(None, 300));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let (d, mut state, now) = walked(sync, &board);
    let stops = state.routes[0].stops.len();
    let third = stops / 3;
    keep_stops(&mut state, 0..third);
    let mut expected = keyed(&state);
    // A copy of the flash, taken before the first upload.
    let old_copy = state.to_bytes();
    let (d, hh, now) = dock_sim(d, handheld(state, now, 31), LinkParams::default(), now);
    assert_eq!(hh.outcome().reads_acknowledged, third);
    let mut state = hh.state();
    walk_part(
        &mut state,
        10,
        third..2 * third,
        meter_gateway::sync::protocol_time(noon()) + 3_600,
    );
    expected.extend(keyed(&state));
    let (d, hh, now) = dock_sim(
        d,
        handheld(state, now + 10, 32),
        LinkParams::default(),
        now + 10,
    );
    assert_eq!(hh.outcome().reads_acknowledged, third);

    // The old copy is restored: its first third again (already received), and it numbers the
    // reads it takes now from where the copy stood, over numbers the gateway already holds.
    let mut restored = HandheldState::from_bytes(&old_copy).unwrap();
    walk_part(
        &mut restored,
        11,
        2 * third..stops,
        meter_gateway::sync::protocol_time(noon()) + 7_200,
    );
    let last = stops - 2 * third;
    expected.extend(restored.pending[third..].iter().map(|r| {
        (
            r.meter_id.clone(),
            if r.read_type == firmware_protocol::message::ReadType::Skipped {
                String::new()
            } else {
                r.reading.to_string()
            },
            r.read_time,
        )
    }));
    let (d, hh, now) = dock_sim(
        d,
        handheld(restored, now + 10, 33),
        LinkParams::default(),
        now + 10,
    );
    let out = hh.outcome().clone();
    assert!(out.done, "{out:?}");
    // Reads numbered 2·third+… … up to the gateway's highest were refused and renumbered.
    assert_eq!(out.reads_renumbered, third, "{out:?}");
    assert_eq!(out.reads_refused, third);
    assert_eq!(hh.state().unacknowledged(), third);
    let logged = refusals(sync);
    assert_eq!(logged.len(), third);
    assert!(logged.iter().all(|(reason, ..)| reason == "seq_conflict"));
    assert!(
        logged[0].2.contains("already holds a different read"),
        "{}",
        logged[0].2
    );
    // The next docking takes them under their new numbers, above what the gateway holds.
    let state = hh.state();
    assert!(state
        .pending
        .iter()
        .all(|r| r.device_seq > 2 * third as u64));
    let (_, hh, _) = dock_sim(
        d,
        handheld(state, now + 10, 34),
        LinkParams::default(),
        now + 10,
    );
    assert!(hh.outcome().done);
    assert_eq!(hh.outcome().reads_acknowledged, third);
    assert_eq!(hh.state().unacknowledged(), 0);
    let stored = stored_from(&svc, "HH-01");
    for k in &expected {
        assert_eq!(stored.get(k), Some(&1), "{k:?}");
    }
    assert_eq!(stored.len(), 2 * third + last);
}

/// A handheld that says `Hello` and then does only what `script` says with each message the dock
/// sends it: a stalled or misbehaving peer for the dock's deadlines.
struct Stalled {
    ep: firmware_protocol::transfer::Endpoint,
    hello: firmware_protocol::message::Hello,
    /// Reads sent right after `Welcome` (fewer than announced, for the reads deadline).
    reads: Vec<firmware_protocol::message::Read>,
    /// Answer a `RouteOffer` with a `RouteAccept` for another transfer id.
    wrong_accept: bool,
    /// Accept routes properly but never say `Bye`.
    no_bye: bool,
    next_id: u32,
    received: Vec<firmware_protocol::message::Message>,
    said_hello: bool,
}

impl Stalled {
    fn new(hello_pending: u32, nonce: u32) -> Self {
        use firmware_protocol::message as msg;
        let cfg = meter_gateway::sync::dock::link_config(BAUD, nonce);
        Stalled {
            ep: firmware_protocol::transfer::Endpoint::new(
                firmware_protocol::transfer::Role::Handheld,
                cfg,
                0,
            ),
            hello: msg::Hello {
                device_id: "HH-01".into(),
                firmware_version: "stalled".into(),
                protocol_versions: vec![msg::SESSION_PROTOCOL_VERSION],
                max_payload: 4096,
                window: 32,
                compression: msg::Compression::DEFLATE,
                pending_reads: hello_pending,
                state_id: 0x5_7A11,
            },
            reads: Vec::new(),
            wrong_accept: false,
            no_bye: false,
            next_id: 1,
            received: Vec::new(),
            said_hello: false,
        }
    }

    fn send(&mut self, m: &firmware_protocol::message::Message) {
        let id = self.next_id;
        self.next_id += 1;
        self.ep.send(id, m.to_vec()).unwrap();
    }

    fn pump(&mut self) {
        use firmware_protocol::message::Message;
        use firmware_protocol::transfer::Event;
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::LinkUp { .. } if !self.said_hello => {
                    self.said_hello = true;
                    self.send(&Message::Hello(self.hello.clone()));
                }
                Event::TransferComplete { data, .. } => {
                    let Ok(m) = Message::decode(&data) else {
                        continue; // a route transfer
                    };
                    match &m {
                        Message::Welcome(_) if !self.reads.is_empty() => {
                            let reads = std::mem::take(&mut self.reads);
                            self.ep
                                .send(0x8000_0001, Message::ReadBatch { reads }.to_vec())
                                .unwrap();
                        }
                        Message::RouteOffer(o) if self.wrong_accept => {
                            let wrong = o.transfer_id ^ 1;
                            self.send(&Message::RouteAccept {
                                transfer_id: wrong,
                                resume_from: 0,
                            });
                        }
                        Message::RouteOffer(o) if self.no_bye => {
                            let id = o.transfer_id;
                            self.send(&Message::RouteAccept {
                                transfer_id: id,
                                resume_from: 0,
                            });
                        }
                        _ => {}
                    }
                    self.received.push(m);
                }
                _ => {}
            }
        }
    }
}

impl firmware_protocol::sim::Station for Stalled {
    fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        self.ep.handle_input(bytes, now_ms);
        self.pump();
    }
    fn poll_transmit(&mut self, now_ms: u64, out: &mut Vec<u8>) -> bool {
        let sent = self.ep.poll_transmit(now_ms, out);
        self.pump();
        sent
    }
    fn poll_timeout(&self) -> Option<u64> {
        self.ep.poll_timeout()
    }
    fn handle_timeout(&mut self, now_ms: u64) {
        self.ep.handle_timeout(now_ms);
        self.pump();
    }
}

#[test]
fn every_wait_of_a_docking_ends_at_its_deadline_and_the_cradle_serves_the_next_handheld() {
    use firmware_protocol::message::{ByeReason, Message, ReadMethod, ReadType};
    let svc = service(district(None, 60));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let read = |seq: u64| firmware_protocol::message::Read {
        device_seq: seq,
        meter_id: "NO-SUCH-METER".into(),
        reading: 5,
        read_time: meter_gateway::sync::protocol_time(noon()),
        read_type: ReadType::Regular,
        method: ReadMethod::Keyed,
        message_codes: Vec::new(),
        skip_code: None,
        note: None,
        reader_id: "JS".into(),
        order: None,
    };
    let cases: Vec<(&str, Stalled)> = vec![
        ("read batch", {
            // Announces 3 reads, sends 2.
            let mut s = Stalled::new(3, 41);
            s.reads = vec![read(1), read(2)];
            s
        }),
        ("RouteAccept", {
            // Answers the offer for another transfer (Error 6), then nothing.
            let mut s = Stalled::new(0, 42);
            s.wrong_accept = true;
            s
        }),
        ("Bye", {
            let mut s = Stalled::new(0, 43);
            s.no_bye = true;
            s
        }),
    ];
    let mut d = dock(sync, &board, 0);
    let mut now = 0;
    for (waiting_for, stalled) in cases {
        let mut sim = Sim::new(d, stalled, LinkParams::default(), now);
        // Well past every default deadline (60 s at most), but not forever.
        sim.run_until(now + 200_000, |s| {
            s.b.received
                .iter()
                .any(|m| matches!(m, Message::Bye { reason } if *reason == ByeReason::Error))
        });
        now = sim.now_ms();
        let Sim { a, b, .. } = sim;
        d = a;
        let timeout = b.received.iter().find_map(|m| match m {
            Message::Error { code, text } if *code == error_code::TIMEOUT => Some(text.clone()),
            _ => None,
        });
        let text = timeout.unwrap_or_else(|| panic!("{waiting_for}: {:?}", b.received));
        assert!(text.contains(waiting_for), "{waiting_for}: {text}");
        assert!(
            b.received
                .iter()
                .any(|m| matches!(m, Message::Bye { reason } if *reason == ByeReason::Error)),
            "{waiting_for}"
        );
        let expired = std::iter::from_fn(|| d.poll_note()).find_map(|n| match n {
            Note::Expired { waiting_for, .. } => Some(waiting_for),
            _ => None,
        });
        assert_eq!(expired, Some(waiting_for));
        // Its Error and Bye out, the dock starts a fresh connection, free for the next handheld.
        assert_eq!(d.phase(), Phase::Refused);
        now += 5_000;
        firmware_protocol::sim::Station::handle_timeout(&mut d, now);
        assert_eq!(d.phase(), Phase::AwaitHello, "{waiting_for}");
    }
    // A good handheld docks at the same cradle and finishes.
    let (d, hh, _) = dock_sim(
        d,
        handheld(HandheldState::new("HH-01"), now, 45),
        LinkParams::default(),
        now,
    );
    assert!(hh.outcome().done, "{:?}", hh.outcome());
    assert_eq!(d.phase(), Phase::Done);
}

#[test]
fn a_protocol_1_handheld_is_refused_with_a_clear_error_and_keeps_its_reads() {
    let svc = service(district(None, 60));
    let (sync, _) = &svc;
    let board = DockBoard::default();
    let mut v1 = Stalled::new(5, 51);
    v1.hello.protocol_versions = vec![1];
    v1.hello.state_id = 0;
    let mut sim = Sim::new(dock(sync, &board, 0), v1, LinkParams::default(), 0);
    sim.run_until(60_000, |s| {
        s.b.received
            .iter()
            .any(|m| matches!(m, firmware_protocol::message::Message::Bye { .. }))
    });
    let text = sim
        .b
        .received
        .iter()
        .find_map(|m| match m {
            firmware_protocol::message::Message::Error { code, text }
                if *code == error_code::UNSUPPORTED_VERSION =>
            {
                Some(text.clone())
            }
            _ => None,
        })
        .expect("Error 2");
    assert!(
        text.contains("protocol 2") && text.contains("update its firmware"),
        "{text}"
    );
    assert!(!sim
        .b
        .received
        .iter()
        .any(|m| matches!(m, firmware_protocol::message::Message::ReadAck { .. })));
    assert_eq!(sim.a.phase(), Phase::Refused);
}
