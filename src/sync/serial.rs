//! Serial docks: one thread per cradle port, moving bytes between the port and a
//! [`DockSession`](super::dock::DockSession) and reading the clock, the service's district clock
//! (the only place the sync engine does either).
//!
//! A pulled USB adapter shows up as `read` returning `Ok(0)` or an error such as `EIO`: the dock
//! treats it as a disconnect, closes the port, shows "waiting" on the board and tries to open the
//! path again every `reopen_interval_ms`, so it never spins on a dead port.

use super::dock::{DockSession, Note};
use super::{DockBoard, DockConfig, SyncService};
use firmware_protocol::sim::Station;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a `read` blocks: bounds how late a timer or a stop request is handled.
const READ_TIMEOUT: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("cannot list serial ports: {0}")]
    List(#[from] serialport::Error),
    #[error("cannot start the dock thread for {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
}

/// Serial ports whose USB vendor/product id is one of the configured cradles.
pub fn discover(config: &DockConfig) -> Result<Vec<PathBuf>, SerialError> {
    if config.usb.is_empty() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = serialport::available_ports()?
        .into_iter()
        .filter(|p| match &p.port_type {
            serialport::SerialPortType::UsbPort(u) => config
                .usb
                .iter()
                .any(|id| id.vid == u.vid && id.pid == u.pid),
            _ => false,
        })
        .map(|p| PathBuf::from(p.port_name))
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// The running docks of a daemon.
pub struct Docks {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Docks {
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Asks every dock to stop (each finishes or abandons its transfer cleanly) and waits for them.
    pub fn stop_and_join(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts a dock on every path given and every port found by USB id (`[docks] usb`).
pub fn start_docks(
    paths: &[PathBuf],
    service: &SyncService,
    board: &DockBoard,
) -> Result<Docks, SerialError> {
    let mut all: Vec<PathBuf> = paths.to_vec();
    for p in discover(service.config().docks())? {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let threads = all
        .into_iter()
        .map(|p| spawn_dock(p, service.clone(), board.clone(), stop.clone()))
        .collect::<Result<_, _>>()?;
    Ok(Docks { stop, threads })
}

/// Starts the thread serving the cradle at `path` until `stop` is set.
pub fn spawn_dock(
    path: PathBuf,
    service: SyncService,
    board: DockBoard,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, SerialError> {
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name(format!("dock {shown}"))
        .spawn(move || run_dock(&path, service, board, &stop))
        .map_err(|source| SerialError::Spawn {
            path: shown,
            source,
        })
}

fn open(path: &Path, baud: u32) -> Result<Box<dyn serialport::SerialPort>, serialport::Error> {
    let port = serialport::new(path.to_string_lossy(), baud)
        .timeout(READ_TIMEOUT)
        .open()?;
    // Whatever an earlier session left in the buffers is stale.
    let _ = port.clear(serialport::ClearBuffer::All);
    Ok(port)
}

fn run_dock(path: &Path, service: SyncService, board: DockBoard, stop: &AtomicBool) {
    let name = path.display().to_string();
    // Every line this dock logs (its dockings, their uploads) carries the port.
    let _span = tracing::info_span!("dock", port = %name).entered();
    let config = service.config().docks().clone();
    let reopen = Duration::from_millis(config.reopen_interval_ms.max(50));
    let start = Instant::now();
    let ms = || start.elapsed().as_millis() as u64;
    let now = service.clock().now_local();
    let mut session = DockSession::new(service, board.clone(), &name, config.baud, now, ms());
    let mut logged_absent = false;
    while !stop.load(Ordering::SeqCst) {
        let mut port = match open(path, config.baud) {
            Ok(p) => {
                tracing::info!(dock = %name, "port open, waiting for a handheld");
                logged_absent = false;
                board.update(&name, |s| s.state = "idle".into());
                p
            }
            Err(e) => {
                if !logged_absent {
                    tracing::warn!(dock = %name, error = %e, "port not available; retrying");
                    logged_absent = true;
                }
                board.update(&name, |s| {
                    s.state = "waiting".into();
                    s.last_error = Some(e.to_string());
                });
                sleep_unless_stopped(reopen, stop);
                continue;
            }
        };
        let lost = serve_port(&mut *port, config.baud, &mut session, stop, &ms, &name);
        if lost {
            session.port_lost(ms());
            log_notes(&mut session, &name);
            board.update(&name, |s| s.state = "waiting".into());
            tracing::warn!(dock = %name, "port lost (adapter pulled?); reopening when it returns");
            drop(port);
            sleep_unless_stopped(reopen, stop);
        } else {
            // Stopping: say goodbye if a handheld is there, flush what fits in a moment.
            session.shut_down();
            let deadline = ms() + 300;
            let mut out = Vec::new();
            while ms() < deadline {
                out.clear();
                if !session.poll_transmit(ms(), &mut out) {
                    break;
                }
                if write_frame(&mut *port, &out).is_err() {
                    break;
                }
            }
            let _ = port.flush();
            log_notes(&mut session, &name);
            break;
        }
    }
    board.update(&name, |s| s.state = "stopped".into());
    tracing::info!(dock = %name, "dock stopped");
}

/// Paces frames at the line rate. The OS, the USB adapter (or a relay) accept bytes far faster than
/// the line carries them; a frame handed out early waits in their queues, where an acknowledgement
/// behind it waits too and the sender's timers see a round trip that is mostly queueing (and resend
/// frames that were merely queued). So a frame is handed out only when what was written before has
/// nearly left the port: at most `SLACK` of line time is ever queued, enough that the line does not
/// idle between two turns of the loop.
pub struct Pacer {
    bytes_per_s: f64,
    backlog: f64,
    at: Instant,
}

impl Pacer {
    const SLACK: f64 = 0.02;

    pub fn new(baud: u32) -> Self {
        Self {
            bytes_per_s: f64::from(baud.max(300)) / 10.0,
            backlog: 0.0,
            at: Instant::now(),
        }
    }

    /// Whether the port can take another frame now.
    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        let gone = now.duration_since(self.at).as_secs_f64() * self.bytes_per_s;
        self.backlog = (self.backlog - gone).max(0.0);
        self.at = now;
        self.backlog <= self.bytes_per_s * Self::SLACK
    }

    pub fn sent(&mut self, bytes: usize) {
        self.backlog += bytes as f64;
    }
}

/// Writes one whole frame. The port's timeout is short (it bounds reads); a frame cut short by it
/// would be lost, so a write that times out is continued, for up to the protocol's ACK timeout (the
/// line drains at least that fast, or the link is as good as down).
pub fn write_frame(port: &mut dyn serialport::SerialPort, mut frame: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !frame.is_empty() {
        match port.write(frame) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => frame = &frame[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                ) && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serves an open port until it is lost (returns true) or `stop` is set (false).
fn serve_port(
    port: &mut dyn serialport::SerialPort,
    baud: u32,
    session: &mut DockSession,
    stop: &AtomicBool,
    ms: &dyn Fn() -> u64,
    name: &str,
) -> bool {
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(8192);
    let mut zero_reads = 0u32;
    let mut pacer = Pacer::new(baud);
    while !stop.load(Ordering::SeqCst) {
        // Transmit while the endpoint has frames; the OS queue is the UART's buffer. Keep it short
        // so an acknowledgement never waits behind much data.
        let mut budget = 4;
        loop {
            if budget == 0 || !pacer.ready() {
                break;
            }
            out.clear();
            if !session.poll_transmit(ms(), &mut out) {
                break;
            }
            pacer.sent(out.len());
            budget -= 1;
            if let Err(e) = write_frame(port, &out) {
                if e.kind() == ErrorKind::TimedOut {
                    break; // nobody drains the line: the frame is lost; the protocol recovers
                }
                tracing::debug!(dock = %name, error = %e, "write failed");
                return true;
            }
        }
        match port.read(&mut buf) {
            Ok(0) => {
                // A pulled adapter reads Ok(0) forever; a PTY whose other end is closed, too.
                zero_reads += 1;
                if zero_reads >= 3 {
                    return true;
                }
                std::thread::sleep(READ_TIMEOUT);
            }
            Ok(n) => {
                zero_reads = 0;
                session.handle_input(&buf[..n], ms());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::debug!(dock = %name, error = %e, "read failed");
                return true;
            }
        }
        let now = ms();
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        log_notes(session, name);
    }
    false
}

fn log_notes(session: &mut DockSession, dock: &str) {
    while let Some(n) = session.poll_note() {
        match n {
            Note::Hello {
                device,
                firmware,
                pending_reads,
            } => tracing::info!(dock, %device, %firmware, pending_reads, "handheld docked"),
            Note::Refused { device, reason } => {
                tracing::warn!(dock, %device, %reason, "handheld refused")
            }
            Note::Stored {
                device,
                reads,
                stored,
                flagged,
                already_received,
                refused,
                up_to_seq,
            } => tracing::info!(
                dock, %device, reads, stored, flagged, already_received, refused, ?up_to_seq,
                "reads committed and acknowledged"
            ),
            Note::StoreFailed { device, error } => {
                tracing::error!(dock, %device, %error, "reads not stored; left on the handheld")
            }
            Note::RouteResumed {
                transfer_id,
                from,
                total,
            } => tracing::info!(dock, transfer_id, from, total, "route download resumes"),
            Note::UploadResumed { transfer_id, from } => {
                tracing::info!(dock, transfer_id, from, "upload resumes")
            }
            Note::Finished { device } => tracing::info!(dock, %device, "docking finished"),
            Note::Ended { device, reason } => {
                tracing::info!(dock, %device, %reason, "handheld ended the docking early")
            }
            Note::Disconnected { device, phase } => {
                tracing::info!(dock, %device, phase = phase.as_str(), "handheld gone")
            }
            Note::Expired {
                device,
                waiting_for,
                secs,
            } => match device {
                Some(device) => tracing::warn!(
                    dock, %device, waiting_for, secs,
                    "docking ended: no progress within its deadline"
                ),
                // Something on the line that never says Hello: not worth a warning every time.
                None => tracing::debug!(dock, waiting_for, secs, "no Hello; connection reset"),
            },
            Note::PeerError(e) => tracing::debug!(dock, error = %e, "peer error"),
        }
    }
}

/// Drives the reference handheld over an open port until it finishes (both byes, refused, or the
/// link went down) or `timeout` passes; `tick` is called every few milliseconds (progress bars).
/// Returns whether it finished.
pub fn run_handheld(
    port: &mut dyn serialport::SerialPort,
    baud: u32,
    handheld: &mut super::handheld::Handheld,
    start: Instant,
    timeout: Duration,
    mut tick: impl FnMut(&super::handheld::Handheld),
) -> std::io::Result<bool> {
    let ms = || start.elapsed().as_millis() as u64;
    let deadline = Instant::now() + timeout;
    let mut pacer = Pacer::new(baud);
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(8192);
    while Instant::now() < deadline {
        if handheld.finished() {
            // Let the last acknowledgements go out before the caller closes the port.
            for _ in 0..4 {
                out.clear();
                if handheld.poll_transmit(ms(), &mut out) && write_frame(port, &out).is_err() {
                    break;
                }
            }
            return Ok(true);
        }
        for _ in 0..4 {
            if !pacer.ready() {
                break;
            }
            out.clear();
            if !handheld.poll_transmit(ms(), &mut out) {
                break;
            }
            pacer.sent(out.len());
            // A write that fails (nobody at the other end yet, a full line) loses the frame;
            // the transfer layer sends it again, and its probes tell when the link is gone.
            if write_frame(port, &out).is_err() {
                break;
            }
        }
        match port.read(&mut buf) {
            Ok(n) if n > 0 => handheld.handle_input(&buf[..n], ms()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                ) => {}
            // Nothing at the other end (a PTY whose dock is not open yet, a cradle without power):
            // wait; the endpoint's probes decide when the link is down.
            _ => std::thread::sleep(READ_TIMEOUT),
        }
        let now = ms();
        if handheld.poll_timeout().is_some_and(|t| t <= now) {
            handheld.handle_timeout(now);
        }
        tick(handheld);
    }
    Ok(false)
}
