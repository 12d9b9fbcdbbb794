//! `meter-gateway serve`, `device`, `assign`, `user`.

use super::{actor, bad_input, say, DeviceAction, ServeArgs, UserAction};
use crate::auth::DeviceToken;
use crate::clock::DistrictClock;
use crate::config::Config;
use crate::domain::UserRole;
use crate::serve::{auth, health, run, shutdown_signal, AppState};
use crate::store::{Db, NewUserSecret, Store};
use anyhow::Context;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `meter-gateway serve`.
pub fn serve(
    db: &Path,
    config: Config,
    args: &ServeArgs,
    clock: &DistrictClock,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gateway")
        .build()
        .context("cannot start the async runtime")?;
    let path = db;
    let db = Db::open(db).with_context(|| format!("opening {}", db.display()))?;
    // A database the daemon cannot write would take every handheld's upload and answer it 500:
    // refuse to start instead, saying why.
    if let Err(sick) = health::check_before_serving(&runtime, &db, &config.serve) {
        db.shutdown();
        anyhow::bail!(
            "meter-gateway serve needs a database it can write, and {} is not one: {sick}",
            path.display()
        );
    }
    // Re-reads completed before folding happened where orders complete come back into their reads
    // once, here, rather than on a clerk's page.
    let now = clock.now_local();
    let folded = db.call_blocking(move |s| crate::cycles::apply_completed_rereads(s, now))??;
    if folded > 0 {
        tracing::info!(folded, "completed re-reads folded back into their reads");
    }
    let state = AppState::new(db.clone(), Arc::new(config));
    let docks = match crate::sync::serial::start_docks(&args.serial, &state.sync, &state.docks) {
        Ok(d) => d,
        Err(e) => {
            db.shutdown();
            return Err(anyhow::Error::new(e).context("starting the serial docks"));
        }
    };
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("cannot listen on {}", args.http))?;
        let address = listener.local_addr()?;
        tracing::info!(%address, docks = docks.len(), "serving");
        let stop = shutdown_signal();
        // Tests and scripts start on port 0 and read the address from here.
        say!("listening on http://{address}");
        io::stdout().flush()?;
        // systemd (`Type=notify`): ready now; the watchdog fed while the database is well.
        health::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("serving"),
        ]);
        if let Some(every) = health::watchdog_interval() {
            tracing::info!(
                interval_ms = every.as_millis() as u64,
                "feeding the systemd watchdog"
            );
            tokio::spawn(health::feed_watchdog(state.clone(), every));
        }
        run(listener, state, stop).await?;
        health::notify(&[sd_notify::NotifyState::Stopping]);
        anyhow::Ok(())
    });
    // Whatever happened to the listener, stop the docks and let queued writes finish.
    docks.stop_and_join();
    runtime.shutdown_timeout(Duration::from_secs(5));
    db.shutdown();
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// `meter-gateway device add|list`.
pub fn device(db: &Path, action: &DeviceAction, clock: &DistrictClock) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    match action {
        DeviceAction::Add { device_id } => {
            let token = DeviceToken::generate(device_id.trim())?;
            store.add_device(&token, clock.now_local())?;
            // One line, written and flushed before the command succeeds: a token nobody could
            // read (the output closed) undoes the registration rather than leave a device whose
            // secret is lost.
            let shown = print_secret(&format!(
                "registered handheld {}; token (shown once; enter it on the handheld): {token}",
                token.device_id
            ));
            if let Err(e) = shown {
                store.forget_new_device(&token.device_id)?;
                anyhow::bail!(
                    "the token could not be printed ({e}); handheld {} was not registered: run the command again",
                    token.device_id
                );
            }
        }
        DeviceAction::Retire { device_id, reason } => {
            store.retire_device(device_id, &actor(), reason, clock.now_local())?;
            say!(
                "retired handheld {device_id}: its token is refused from now on (its reads are kept)"
            );
        }
        DeviceAction::Rotate { device_id } => {
            let token = DeviceToken::generate(device_id.trim())?;
            // Shown before the change commits: a token nobody could read leaves the old one working.
            store.rotate_device(&token, &actor(), clock.now_local(), || {
                print_secret(&format!(
                    "new token for handheld {} (shown once; enter it on the handheld; the old one is \
                     refused from now on): {token}",
                    token.device_id
                ))
            })?;
        }
        DeviceAction::List => {
            let states = store.device_states()?;
            let refused = store.refused_reads(None, usize::MAX >> 1)?;
            say!(
                "device_id\tregistered_at\tstatus\tlast_seen_at\tfirmware\tstates\tlatest_state\trefused_reads"
            );
            for d in store.devices()? {
                let mine: Vec<_> = states
                    .iter()
                    .filter(|s| s.device_id == d.device_id)
                    .collect();
                say!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    d.device_id,
                    d.registered_at,
                    if d.retired { "retired" } else { "active" },
                    d.last_seen_at.as_deref().unwrap_or("-"),
                    d.firmware_version.as_deref().unwrap_or("-"),
                    mine.len(),
                    mine.first().map_or("-", |s| s.state_id.as_str()),
                    refused
                        .iter()
                        .filter(|r| r.device_id == d.device_id)
                        .count(),
                );
            }
            if !refused.is_empty() {
                say!(
                    "{} refused read(s): see the Handhelds page (/review/handhelds) for what was sent",
                    refused.len()
                );
            }
        }
    }
    Ok(())
}

/// Writes a line carrying a secret shown once, and flushes it: an error means nobody got it.
fn print_secret(line: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// `meter-gateway assign --cycle ID --route R --device D`.
pub fn assign(
    db: &Path,
    cycle: &str,
    route: &str,
    device: &str,
    clock: &DistrictClock,
) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    store.assign_route(cycle, route, device, clock.now_local())?;
    say!("route {route} of cycle {cycle} assigned to {device}");
    Ok(())
}

/// Reads a new password: prompted twice (without echo) on a terminal, else one line of standard input.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        if !io::stdin().is_terminal() {
            return Err(bad_input(anyhow::anyhow!(
                "standard input is not a terminal: pass --password-stdin to read the password from it"
            )));
        }
        let first = rpassword::prompt_password("password: ")?;
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            return Err(bad_input(anyhow::anyhow!("the two passwords differ")));
        }
        return Ok(first);
    }
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(trim_newline(&line).to_string())
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

/// `meter-gateway user add|list`.
pub fn user(db: &Path, action: &UserAction, clock: &DistrictClock) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    match action {
        UserAction::Add {
            name,
            role,
            password_stdin,
        } => {
            let role = &UserRole::from(*role);
            crate::store::check_user_name(name)?;
            if *role == UserRole::Billing {
                if *password_stdin {
                    return Err(bad_input(anyhow::anyhow!(
                        "billing users get an API token, not a password"
                    )));
                }
                let (token, hash) = auth::new_billing_token()?;
                store.add_user(
                    name,
                    *role,
                    NewUserSecret::TokenSha256(&hash),
                    clock.now_local(),
                )?;
                let shown = print_secret(&format!(
                    "created billing user {name}; API token (shown once; send it as \
                     `Authorization: Bearer TOKEN`): {token}"
                ));
                if let Err(e) = shown {
                    store.forget_new_user(name)?;
                    anyhow::bail!(
                        "the token could not be printed ({e}); billing user {name} was not created: run the command again"
                    );
                }
            } else {
                let password = read_password(*password_stdin)?;
                let hash = auth::hash_password(&password)?;
                store.add_user(
                    name,
                    *role,
                    NewUserSecret::PasswordHash(&hash),
                    clock.now_local(),
                )?;
                say!("created {} {name}", crate::store::role_text(*role));
            }
        }
        UserAction::Disable { name, reason } => {
            let c = store.disable_user(name, &actor(), reason, clock.now_local())?;
            say!(
                "disabled {name}: {} session(s) ended, {} API token(s) revoked",
                c.sessions_ended,
                c.tokens_revoked
            );
        }
        UserAction::Enable { name, reason } => {
            store.enable_user(name, &actor(), reason, clock.now_local())?;
            say!("enabled {name}");
        }
        UserAction::ResetPassword {
            name,
            password_stdin,
        } => {
            let billing = store
                .users()?
                .into_iter()
                .find(|u| &u.name == name)
                .ok_or_else(|| anyhow::anyhow!("no user {name}"))?
                .role
                == UserRole::Billing;
            let actor = actor();
            if billing {
                if *password_stdin {
                    return Err(bad_input(anyhow::anyhow!(
                        "billing users get an API token, not a password"
                    )));
                }
                let (token, hash) = auth::new_billing_token()?;
                store.reset_user_secret(
                    name,
                    NewUserSecret::TokenSha256(&hash),
                    &actor,
                    clock.now_local(),
                    || {
                        print_secret(&format!(
                        "new API token for billing user {name} (shown once; the old one is refused \
                         from now on): {token}"
                    ))
                    },
                )?;
            } else {
                let password = read_password(*password_stdin)?;
                let hash = auth::hash_password(&password)?;
                let c = store.reset_user_secret(
                    name,
                    NewUserSecret::PasswordHash(&hash),
                    &actor,
                    clock.now_local(),
                    || Ok(()),
                )?;
                say!(
                    "new password for {name}; {} session(s) ended",
                    c.sessions_ended
                );
            }
        }
        UserAction::List => {
            say!("name\trole\tcreated_at\tstatus");
            for u in store.users()? {
                say!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    crate::store::role_text(u.role),
                    u.created_at,
                    if u.disabled { "disabled" } else { "active" }
                );
            }
        }
    }
    Ok(())
}
