//! `meter-gateway demo`: the whole system in one command. Builds the demo district as of today (the
//! clock is read once, here), opens its cycle, starts the daemon on 127.0.0.1 with a clerk and an admin
//! login, and runs simulated handhelds (the reference handheld) docking over virtual serial links (PTY
//! pairs) and over HTTP: routes go down, their reads come up, validation flags the anomalies, and the
//! clerk's exception queue fills. Then it grades what was flagged against what it planted on those
//! routes ([`super::score`]) and prints where to start. Stays up until Ctrl-C.

use super::{flags_in_store, generate, handheld_read, load, score, summary, DemoParams, District};
use crate::config::Config;
use crate::domain::UserRole;
use crate::serve::AppState;
use crate::store::{Db, NewUserSecret, Store};
use crate::sync::client::{Cradle, HttpCradle, Progress, SerialCradle};
use crate::sync::handheld::{walk_route, HandheldState, Mode, ReadModel, Rng};
use anyhow::Context as _;
use chrono::NaiveDateTime;
use firmware_protocol::message as msg;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serialport::SerialPort as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const SERIAL_HANDHELDS: usize = 2;
const HTTP_HANDHELDS: usize = 2;
const BAUD: u32 = 115_200;

/// A handheld the demo runs: its device id, how it docks, and the route it carries.
struct DemoHandheld {
    device_id: String,
    token: String,
    route_id: String,
    serial: bool,
}

/// Removes the demo's temporary database when the demo ends (the default: `--db` keeps the data).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `meter-gateway demo` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Number of accounts in the demo district.
    pub accounts: u32,
    /// The same seed builds the same district.
    pub seed: u64,
    /// Start only the daemon, no simulated handhelds.
    pub no_handhelds: bool,
}

pub fn run(db: Option<&Path>, config: Config, args: &Options) -> anyhow::Result<()> {
    // The demo's one reading of the clock, in the district's time zone.
    let now = crate::clock::DistrictClock::system(config.district.time_zone).now_local();
    let (path, temp) = database(db)?;
    let (district, handhelds, logins) = if path.exists() {
        println!(
            "Using the district kept in {} (made by an earlier demo); no new handhelds are run on it.",
            path.display()
        );
        (None, Vec::new(), Vec::new())
    } else {
        let (d, handhelds, logins) = prepare(&path, args, now)?;
        (Some(d), handhelds, logins)
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gateway")
        .build()
        .context("cannot start the async runtime")?;
    let db = Db::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let state = AppState::new(db.clone(), Arc::new(config));
    let listener = runtime.block_on(async {
        match tokio::net::TcpListener::bind("127.0.0.1:8080").await {
            Ok(l) => Ok(l),
            // Another program has 8080: any free port will do for a demo.
            Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await,
        }
    })?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");
    let stop_signal = {
        let _in_runtime = runtime.enter();
        crate::serve::shutdown_signal()
    };
    let server = runtime.spawn(crate::serve::run(listener, state.clone(), stop_signal));

    print_logins(&url, &logins);
    let stop = Arc::new(AtomicBool::new(false));
    let (dock_threads, masters) = serial_docks(&handhelds, &state, &stop)?;

    let mut _cradles = Vec::new();
    if let Some(d) = &district {
        if !handhelds.is_empty() {
            println!();
            let routes: Vec<String> = handhelds.iter().map(|h| h.route_id.clone()).collect();
            _cradles = run_handhelds(d, handhelds, masters, &url, now)?;
            report_reads(d, &routes, &state, now)?;
        }
    }
    println!();
    match &district {
        Some(d) => println!(
            "Start here: {url}/ (sign in as `clerk`): the exception queue of cycle {}; open a read \
             to see its history chart and act on it.",
            d.cycle.id
        ),
        None => println!("Start here: {url}/ (sign in): the exception queue."),
    }
    println!("Press Ctrl-C to stop.");
    let served = runtime.block_on(server);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in dock_threads {
        let _ = t.join();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    db.shutdown();
    served.context("the HTTP server task failed")??;
    if temp.is_some() {
        println!("The demo database was temporary; pass --db PATH to keep the data.");
    }
    Ok(())
}

/// A login the demo made: user name and password.
type Login = (&'static str, String);

/// The serial handhelds' ends of their virtual cradles, by device id.
type Masters = HashMap<String, serialport::TTYPort>;

/// The database file: `db`, or one in a temporary directory removed when the demo ends.
fn database(db: Option<&Path>) -> anyhow::Result<(PathBuf, Option<TempDir>)> {
    Ok(match db {
        Some(p) => (p.to_path_buf(), None),
        None => {
            let dir =
                std::env::temp_dir().join(format!("meter-gateway-demo-{}", std::process::id()));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.join("demo.db"), Some(TempDir(dir)))
        }
    })
}

/// A new district in `path`, with a clerk's and an admin's login (name, password) and, unless told
/// otherwise, handhelds registered and assigned a route each.
fn prepare(
    path: &Path,
    args: &Options,
    now: NaiveDateTime,
) -> anyhow::Result<(District, Vec<DemoHandheld>, Vec<Login>)> {
    let d = build(path, args, now)?;
    let mut store = Store::open(path)?;
    let mut logins = Vec::new();
    // A clerk works the exception queue; an admin also approves the larger leak credits.
    for (name, role) in [("clerk", UserRole::Clerk), ("admin", UserRole::Admin)] {
        let password = crate::auth::random_hex(6)?;
        let hash = crate::serve::auth::hash_password(&password)
            .with_context(|| format!("hashing the {name}'s password"))?;
        store.add_user(name, role, NewUserSecret::PasswordHash(&hash), now)?;
        logins.push((name, password));
    }
    let mut handhelds = Vec::new();
    if !args.no_handhelds {
        for (i, route) in d
            .routes
            .iter()
            .take(SERIAL_HANDHELDS + HTTP_HANDHELDS)
            .enumerate()
        {
            let device_id = format!("HH-{:02}", i + 1);
            let token = crate::auth::DeviceToken::generate(&device_id)?;
            store.add_device(&token, now)?;
            store.assign_route(&d.cycle.id, &route.id, &device_id, now)?;
            handhelds.push(DemoHandheld {
                device_id,
                token: token.to_string(),
                route_id: route.id.clone(),
                serial: i < SERIAL_HANDHELDS,
            });
        }
    }
    Ok((d, handhelds, logins))
}

fn print_logins(url: &str, logins: &[(&str, String)]) {
    println!();
    println!("The gateway is serving at {url}");
    println!("Sign in at {url}/login");
    if logins.is_empty() {
        println!("  as `clerk` or `admin`, with the passwords printed when this database was made");
    }
    for (name, password) in logins {
        let does = if *name == "admin" {
            "works the queue and also approves leak credits above the District's limit"
        } else {
            "works the exception queue"
        };
        println!("  user `{name}`, password `{password}`: {does}");
    }
}

/// Serial docks on PTY pairs for the serial handhelds: the dock opens the slave by path, the
/// handheld keeps the master (returned by device id).
fn serial_docks(
    handhelds: &[DemoHandheld],
    state: &AppState,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(Vec<std::thread::JoinHandle<()>>, Masters)> {
    let mut dock_threads = Vec::new();
    let mut masters = HashMap::new();
    for h in handhelds.iter().filter(|h| h.serial) {
        let (master, slave) =
            serialport::TTYPort::pair().context("creating a virtual serial link")?;
        let slave_path = PathBuf::from(
            slave
                .name()
                .context("the virtual serial link has no name")?,
        );
        drop(slave);
        println!(
            "Virtual cradle for {}: {}",
            h.device_id,
            slave_path.display()
        );
        dock_threads.push(crate::sync::serial::spawn_dock(
            slave_path,
            state.sync.clone(),
            state.docks.clone(),
            stop.clone(),
        )?);
        masters.insert(h.device_id.clone(), master);
    }
    Ok((dock_threads, masters))
}

/// What the handhelds brought back: the cycle's progress, and the flags graded against what was
/// planted on their routes.
fn report_reads(
    d: &District,
    routes: &[String],
    state: &AppState,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let db = &state.db;
    let cycle_id = d.cycle.id.clone();
    let status = db.call_blocking(move |s| crate::cycles::cycle_status(s, &cycle_id))??;
    let (read_in, flagged, expected) = status.routes.iter().fold((0, 0, 0), |(i, f, e), r| {
        (i + r.read_in, f + r.flagged, e + r.expected)
    });
    println!();
    println!(
        "Cycle {}: {read_in} of {expected} meters read so far (the handhelds brought back \
         routes {}), {flagged} read(s) flagged for review.",
        status.cycle_id,
        routes.join(", ")
    );
    // Graded against what was planted on those routes: only the planted problems should be
    // flagged.
    let (config, cycle_id, today) = (state.config.clone(), d.cycle.id.clone(), now.date());
    let flags = db.call_blocking(move |s| flags_in_store(s, &*config, &cycle_id, today))??;
    let carried = d.on_handheld_routes(routes);
    let graded = score(&carried, |m| flags.get(m).cloned().unwrap_or_default());
    println!("Checked against what the demo planted on those routes:");
    print!("{}", graded.report());
    let missing = carried
        .truth
        .iter()
        .filter(|t| t.problem == super::Problem::Missing)
        .count();
    println!(
        "  ({missing} of the problems are meters with no read: flagged `missing` when the \
         cycle closes, with an estimate)"
    );
    Ok(())
}

/// Generates and loads the district as of `now`'s day, and opens its cycle.
fn build(path: &Path, args: &Options, now: NaiveDateTime) -> anyhow::Result<District> {
    anyhow::ensure!(
        args.accounts <= super::MAX_ACCOUNTS,
        "--accounts {} is more than the demo builds ({}); the largest US water utilities have under a \
         million meters",
        args.accounts,
        super::MAX_ACCOUNTS
    );
    let params = DemoParams {
        accounts: args.accounts,
        seed: args.seed,
        as_of: now.date(),
    };
    let started = std::time::Instant::now();
    let district = generate(&params);
    let mut store = Store::open(path)
        .with_context(|| format!("creating the demo database {}", path.display()))?;
    let report = load(&mut store, &district).context("loading the demo district")?;
    print!("{}", summary(&district, &params));
    println!(
        "Wrote {} routes, {} accounts, {} meters, {} history reads, {} message codes in {:.1} s.",
        report.routes,
        report.accounts,
        report.meters,
        report.history,
        report.codes,
        started.elapsed().as_secs_f64()
    );
    let c = &district.cycle;
    district
        .open_cycle(&mut store, now)
        .with_context(|| format!("opening cycle {}", c.id))?;
    println!(
        "Opened cycle {} over every route: its read window {} – {} opened {} days ago, every route \
         has been read since, and it closes in {} days.",
        c.id,
        c.window_from,
        c.window_to,
        (now.date() - c.window_from).num_days(),
        (c.window_to - now.date()).num_days()
    );
    Ok(district)
}

/// Each handheld docks to load its route, walks it, and docks again to upload, with a progress bar.
/// Returns the cradles: a serial one holds its end of the virtual link, which must stay open while the
/// daemon's dock listens on the other end.
fn run_handhelds(
    district: &District,
    handhelds: Vec<DemoHandheld>,
    mut masters: HashMap<String, serialport::TTYPort>,
    url: &str,
    now: NaiveDateTime,
) -> anyhow::Result<Vec<Box<dyn Cradle + Send>>> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:28} {msg:22} [{bar:30}] {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut threads = Vec::new();
    for (i, h) in handhelds.into_iter().enumerate() {
        let bar = bars.add(ProgressBar::new(1));
        bar.set_style(style.clone());
        let how = if h.serial { "serial" } else { "HTTP" };
        bar.set_prefix(format!("{} ({how}, {})", h.device_id, h.route_id));
        let mut cradle: Box<dyn Cradle + Send> = match masters.remove(&h.device_id) {
            Some(port) => Box::new(SerialCradle::from_port(Box::new(port), BAUD)),
            None => Box::new(HttpCradle::new(url, &h.token)?),
        };
        // The reads this handheld brings back: the district's reads taken on its route, with the
        // problems planted in them (leaks, mis-keys, stuck meters, a pulled meter's radio read...).
        let day: Vec<msg::Read> = district
            .on_handheld_routes(std::slice::from_ref(&h.route_id))
            .field_reads
            .iter()
            .filter_map(handheld_read)
            .collect();
        // A route with no district reads is walked instead, from yesterday morning: its reads are in
        // the cycle's window and none is after now.
        let start = crate::sync::protocol_time(super::walk_start(&district.cycle, now));
        let seed = i as u64 + 1;
        threads.push(std::thread::spawn(
            move || -> anyhow::Result<Box<dyn Cradle + Send>> {
                let mut progress = |p: Progress| {
                    let (what, done, total) = match p {
                        Progress::Route { done, total } => ("loading route (bytes)", done, total),
                        Progress::Reads { done, total } => ("uploading reads", done, total),
                    };
                    bar.set_message(what);
                    bar.set_length(total.max(1));
                    bar.set_position(done);
                };
                let state = HandheldState::new(&h.device_id);
                let (mut state, _) = cradle.dock(state, Mode::default(), &mut progress)?;
                bar.set_message("walking the route");
                let walked = if day.is_empty() {
                    (0..state.routes.len())
                        .map(|r| {
                            walk_route(
                                &mut state,
                                r,
                                &ReadModel::default(),
                                &mut Rng::new(seed),
                                "DEMO",
                                start,
                            )
                        })
                        .sum()
                } else {
                    let n = day.len();
                    for read in day {
                        state.record(read);
                    }
                    n
                };
                let (state, report) = cradle.dock(
                    state,
                    Mode {
                        download: false,
                        ..Mode::default()
                    },
                    &mut progress,
                )?;
                bar.finish_with_message(format!(
                    "{} reads up, {} acknowledged, {} left",
                    walked,
                    report.reads_acknowledged,
                    state.unacknowledged()
                ));
                Ok(cradle)
            },
        ));
    }
    let mut cradles = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(cradle)) => cradles.push(cradle),
            Ok(Err(e)) => eprintln!("a handheld failed: {e:#}"),
            Err(_) => eprintln!("a handheld thread panicked"),
        }
    }
    Ok(cradles)
}
