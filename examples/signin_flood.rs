//! Sign-in under attack: `--attempts` wrong passwords fired at once at a `meter-gateway serve` child
//! process, all from one address. Printed:
//!
//! - **one name**: how many of the attempts had their password checked (argon2id) and how many were
//!   answered 429 unchecked; target ≤ 10 checked;
//! - **as many names as attempts** (a spray, each name a pair of its own): how many were checked with
//!   at most `[serve] login_checks_in_flight` checks running at once;
//! - the daemon's peak RSS (VmHWM) over both bursts; target ≤ 150 MB;
//! - the baseline, measured in the same run: the same number of argon2id checks started at once with
//!   no bound (what sign-in did before: every attempt went to the blocking pool), in a child process
//!   of its own, and its peak RSS.
//!
//! ```text
//! cargo run --release --example signin_flood -- [--attempts 200]
//! ```

use anyhow::{ensure, Context, Result};
use meter_gateway::domain::UserRole;
use meter_gateway::store::{NewUserSecret, Store};
use std::net::SocketAddr;
use std::time::Instant;

#[path = "support/peak_memory.rs"]
mod peak_memory;

#[path = "support/child_daemon.rs"]
mod child_daemon;
use child_daemon::{agent, serve_child};

const PASSWORD: &str = "water under the bridge";
fn attempts() -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--attempts") {
        Some(i) => Ok(args.get(i + 1).context("--attempts N")?.parse()?),
        None => Ok(200),
    }
}

/// One sign-in post, the form the sign-in page sends with its CSRF cookie; returns the status code.
fn sign_in(agent: &ureq::Agent, addr: SocketAddr, name: &str, password: &str) -> Result<u16> {
    let token = "0123456789abcdef0123456789abcdef";
    let mut answer = agent
        .post(format!("http://{addr}/login"))
        .header("Cookie", format!("mg_login_csrf={token}"))
        .send_form([("name", name), ("password", password), ("csrf", token)])?;
    // Read to the end, as a browser would, before the status counts.
    answer.body_mut().read_to_vec()?;
    Ok(answer.status().as_u16())
}

/// Fires every attempt at once, each from a blocking thread of tokio's pool (at most 512 at once);
/// returns (checked = 401 wrong password, 429 not checked, other).
async fn burst(addr: SocketAddr, names: Vec<String>) -> Result<(usize, usize, usize)> {
    let agent = agent();
    let tasks: Vec<_> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || {
                sign_in(&agent, addr, &name, &format!("wrong guess {i}"))
            })
        })
        .collect();
    let (mut checked, mut refused, mut other) = (0, 0, 0);
    for t in tasks {
        match t.await?? {
            401 => checked += 1,
            429 => refused += 1,
            _ => other += 1,
        }
    }
    Ok((checked, refused, other))
}

/// The baseline's child: `n` argon2id checks started at once on threads of their own.
fn unbounded_child(n: usize) -> Result<()> {
    let hash = meter_gateway::serve::auth::hash_password(PASSWORD)?;
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let hash = hash.clone();
            std::thread::spawn(move || {
                meter_gateway::serve::auth::verify_password(&hash, &format!("wrong guess {i}"))
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let peak = peak_memory::peak_rss_kib(None).context("no VmHWM")?;
    println!("{peak}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve-child") => {
            let db = args.get(2).context("--serve-child DB")?;
            let cli = <meter_gateway::cli::Cli as clap::Parser>::try_parse_from([
                "meter-gateway",
                "--db",
                db,
                "serve",
                "--http",
                "127.0.0.1:0",
            ])?;
            return meter_gateway::cli::run(cli);
        }
        Some("--unbounded-child") => {
            return unbounded_child(args.get(2).context("N")?.parse()?);
        }
        _ => {}
    }
    let n = attempts()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("district.db");
    {
        let mut store = Store::open(&db)?;
        let hash = meter_gateway::serve::auth::hash_password(PASSWORD)?;
        store.add_user(
            "carla",
            UserRole::Clerk,
            NewUserSecret::PasswordHash(&hash),
            chrono::Local::now().naive_local(),
        )?;
    }
    let defaults = meter_gateway::serve::ServeConfig::default();
    println!(
        "daemon settings: login_free_failures = {}, login_checks_in_flight = {}, login_queue_ms = {}",
        defaults.login_free_failures, defaults.login_checks_in_flight, defaults.login_queue_ms
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (child, addr) = serve_child(&[db.to_str().context("db path")?], "error")?;
    let at_rest = peak_memory::peak_rss_kib(Some(child.0.id())).context("no VmHWM")?;

    let t = Instant::now();
    let (checked, refused, other) = runtime.block_on(burst(addr, vec!["carla".into(); n]))?;
    println!(
        "{n} wrong passwords for one name at once: {checked} checked, {refused} answered 429 unchecked, \
         {other} other, in {:.2} s (target ≤ 10 checked; the rate limit before issue 17 checked 33–51 of 200)",
        t.elapsed().as_secs_f64()
    );
    let after_one = peak_memory::peak_rss_kib(Some(child.0.id())).context("no VmHWM")?;
    println!(
        "daemon peak RSS after it: {:.1} MB",
        after_one as f64 / 1024.0
    );
    let t = Instant::now();
    let names = (0..n).map(|i| format!("user{i}")).collect();
    let (spray_checked, spray_refused, spray_other) = runtime.block_on(burst(addr, names))?;
    println!(
        "{n} wrong passwords for {n} names at once: {spray_checked} checked ({} at a time), \
         {spray_refused} answered 429 unchecked, {spray_other} other, in {:.2} s",
        defaults.login_checks_in_flight,
        t.elapsed().as_secs_f64()
    );
    let peak = peak_memory::peak_rss_kib(Some(child.0.id())).context("no VmHWM")?;
    println!(
        "daemon peak RSS: {:.1} MB over both bursts (target ≤ 150 MB; {:.1} MB at rest)",
        peak as f64 / 1024.0,
        at_rest as f64 / 1024.0
    );
    drop(child);

    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--unbounded-child", &n.to_string()])
        .output()?;
    ensure!(out.status.success(), "baseline child failed: {out:?}");
    let baseline: u64 = String::from_utf8(out.stdout)?.trim().parse()?;
    println!(
        "baseline: {n} argon2id checks at once with no bound (sign-in before issue 17): peak RSS {:.1} MB",
        baseline as f64 / 1024.0
    );
    ensure!(other == 0 && spray_other == 0, "unexpected answers");
    Ok(())
}
