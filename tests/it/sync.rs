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

use crate::support::day;

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
    let (_, hh, _) = dock_sim(
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
