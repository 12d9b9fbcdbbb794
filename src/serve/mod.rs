//! `meter-gateway serve`: the daemon. One process: the HTTP API (device API, billing export), the clerk
//! pages, and one listener per serial dock, over one database writer ([`crate::store::Db`]).
//!
//! Every endpoint but `GET /healthz`, the sign-in page and `GET /` (a redirect to the queue or to the
//! sign-in page, showing nothing) needs a credential of the right role ([`auth`]); bodies are bounded;
//! handlers answer with [`error::AppError`], which never leaks internals.

pub mod auth;
pub mod device_api;
pub mod error;
pub mod health;
pub mod openapi;
pub mod pages;
pub mod security;
pub mod signin;

use crate::auth::DeviceToken;
use crate::cli::{DeviceAction, ServeArgs, UserAction};
use crate::config::Config;
use crate::domain::UserRole;
use crate::store::{Db, NewUserSecret, Store};
use crate::sync::{DockBoard, SyncService};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::{
    billing_token_for_tests, check_csrf, device_token_for_tests, sign_in_session_for_tests,
    AdminUser, AnyCredential, BillingUser, ClerkUser, DeviceAuth,
};
pub use error::AppError;

/// Everything a request handler or a dock needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    /// The sync engine shared by the HTTP device API and the serial docks.
    pub sync: SyncService,
    /// Live status of the serial docks.
    pub docks: DockBoard,
    /// Sign-in's backoff per (name, address) and its bound on password checks in flight.
    pub signin: Arc<signin::SignInGuard>,
    /// The last health check, shared by `/healthz` callers and the systemd watchdog.
    pub health: Arc<health::HealthCache>,
}

impl AppState {
    pub fn new(db: Db, config: Arc<Config>) -> AppState {
        AppState {
            sync: SyncService::new(db.clone(), config.clone()),
            docks: DockBoard::default(),
            signin: Arc::new(signin::SignInGuard::new(&config.serve)),
            health: Arc::new(health::HealthCache::default()),
            db,
            config,
        }
    }
}

/// A state with the default settings, for tests of any area.
pub fn test_state(db: Db) -> AppState {
    AppState::new(db, Arc::new(Config::default()))
}

/// `[serve]` settings.
///
/// ```toml
/// [serve]
/// secure_cookies = true        # the gateway is reached over HTTPS (through a TLS proxy)
/// session_minutes = 720
/// ```
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Mark cookies `Secure` (only sent over HTTPS). Off by default: the office LAN often runs plain
    /// HTTP; turn it on behind a TLS proxy.
    pub secure_cookies: bool,
    /// A sign-in lasts this long (absolute, not sliding).
    pub session_minutes: u32,
    /// Failed sign-ins in a row for one user name from one address that cost no wait; after them the
    /// pair waits 1 s, 2 s, 4 s ... after its last failure (see `serve::signin`). Other addresses and
    /// other names are not slowed.
    #[serde(alias = "login_max_failures")]
    pub login_free_failures: u32,
    /// The longest wait of the backoff.
    pub login_backoff_max_secs: u64,
    /// Failures older than this are forgotten.
    #[serde(alias = "login_window_minutes")]
    pub login_forget_minutes: u32,
    /// Password checks (argon2id, 19 MiB each) running at once; more wait.
    pub login_checks_in_flight: usize,
    /// How long a sign-in waits for a check to start before it is answered 429.
    pub login_queue_ms: u64,
    /// Origins besides the request's own `Host` that may POST (e.g. `https://gateway.example.org`
    /// when a TLS proxy rewrites `Host`). A POST from any other `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// `/healthz` and `serve`'s start refuse a database whose file system has less free than this.
    pub min_free_mb: u64,
    /// How long the health check waits for the database writer to take its probe.
    pub health_timeout_secs: u64,
    /// Longest a request may take before it is answered 408. Uploads queue behind one writer: when
    /// every handheld of a district syncs at once, the last one waits for all the others.
    pub request_timeout_secs: u64,
    /// Largest request body: a handheld's read upload (the largest thing anyone sends).
    pub max_upload_bytes: usize,
    /// Largest body of any other request (clerk forms, sign-in).
    pub max_form_bytes: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            secure_cookies: false,
            session_minutes: 12 * 60,
            login_free_failures: 5,
            login_backoff_max_secs: 300,
            login_forget_minutes: 24 * 60,
            login_checks_in_flight: 2,
            login_queue_ms: 2000,
            allowed_origins: Vec::new(),
            min_free_mb: 64,
            health_timeout_secs: 10,
            request_timeout_secs: 60,
            max_upload_bytes: 4 * 1024 * 1024,
            max_form_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
        }
    }
}

async fn not_found() -> AppError {
    AppError::NotFound("no such page".into())
}

/// The whole HTTP application: device API, sign-in pages, clerk pages, billing export, health.
pub fn router(state: AppState) -> Router {
    let cfg = state.config.serve.clone();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/v1/openapi.json", get(openapi::serve_document))
        .merge(pages::router())
        .merge(device_api::router(cfg.max_upload_bytes))
        .merge(crate::review::router())
        .merge(crate::billing::router())
        .merge(crate::field::router())
        .fallback(not_found)
        // Extractors (Form, Json, Bytes) stop at this unless a route raises it (the read upload).
        .layer(DefaultBodyLimit::max(cfg.max_form_bytes))
        // Before any handler: a form field with a refused character, a POST from another site.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::refuse_unsafe_posts,
        ))
        .layer(axum::middleware::from_fn(pages::client_address_layer))
        .layer(axum::middleware::from_fn(error::rejections_as_json))
        // On every response, errors and redirects too.
        .layer(axum::middleware::from_fn(security::headers))
        // The hard ceiling for every body, whatever the handler reads it with.
        .layer(RequestBodyLimitLayer::new(
            cfg.max_upload_bytes.max(cfg.max_form_bytes),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish for at most `[serve] shutdown_grace_secs`, and returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let grace = Duration::from_secs(state.config.serve.shutdown_grace_secs);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    });
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served,
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future
/// is first polled, so a signal that arrives in between (a script that stops the daemon as soon as it
/// printed its address) is not lost to the default action. Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |listener: std::io::Result<tokio::signal::unix::Signal>,
                        name: &'static str| async move {
                match listener {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(interrupt, "Ctrl-C") => {},
                () = wait(terminate, "SIGTERM") => {},
            }
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    }
}

/// `meter-gateway serve`.
pub fn cli_serve(db: &Path, config: Config, args: &ServeArgs) -> anyhow::Result<()> {
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
    let folded = db.call_blocking(|s| {
        crate::review::actions::apply_completed_rereads(s, auth::now_local())
    })??;
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
        crate::cli::say!("listening on http://{address}");
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

fn now() -> chrono::NaiveDateTime {
    chrono::Local::now().naive_local()
}

/// `meter-gateway device add|list`.
pub fn cli_device(db: &Path, action: &DeviceAction) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    match action {
        DeviceAction::Add { device_id } => {
            let token = DeviceToken::generate(device_id.trim())?;
            store.add_device(&token, now())?;
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
            store.retire_device(device_id, &crate::billing::cli_actor(), reason, now())?;
            crate::cli::say!(
                "retired handheld {device_id}: its token is refused from now on (its reads are kept)"
            );
        }
        DeviceAction::Rotate { device_id } => {
            let token = DeviceToken::generate(device_id.trim())?;
            // Shown before the change commits: a token nobody could read leaves the old one working.
            store.rotate_device(&token, &crate::billing::cli_actor(), now(), || {
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
            crate::cli::say!(
                "device_id\tregistered_at\tstatus\tlast_seen_at\tfirmware\tstates\tlatest_state\trefused_reads"
            );
            for d in store.devices()? {
                let mine: Vec<_> = states
                    .iter()
                    .filter(|s| s.device_id == d.device_id)
                    .collect();
                crate::cli::say!(
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
                crate::cli::say!(
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
pub fn cli_assign(db: &Path, cycle: &str, route: &str, device: &str) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    store.assign_route(cycle, route, device, now())?;
    crate::cli::say!("route {route} of cycle {cycle} assigned to {device}");
    Ok(())
}

/// Reads a new password: prompted twice (without echo) on a terminal, else one line of standard input.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        anyhow::ensure!(
            io::stdin().is_terminal(),
            "standard input is not a terminal: pass --password-stdin to read the password from it"
        );
        let first = rpassword::prompt_password("password: ")?;
        let second = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(first == second, "the two passwords differ");
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
pub fn cli_user(db: &Path, action: &UserAction) -> anyhow::Result<()> {
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
                anyhow::ensure!(
                    !password_stdin,
                    "billing users get an API token, not a password"
                );
                let (token, hash) = auth::new_billing_token()?;
                store.add_user(name, *role, NewUserSecret::TokenSha256(&hash), now())?;
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
                store.add_user(name, *role, NewUserSecret::PasswordHash(&hash), now())?;
                crate::cli::say!("created {} {name}", crate::store::role_text(*role));
            }
        }
        UserAction::Disable { name, reason } => {
            let c = store.disable_user(name, &crate::billing::cli_actor(), reason, now())?;
            crate::cli::say!(
                "disabled {name}: {} session(s) ended, {} API token(s) revoked",
                c.sessions_ended,
                c.tokens_revoked
            );
        }
        UserAction::Enable { name, reason } => {
            store.enable_user(name, &crate::billing::cli_actor(), reason, now())?;
            crate::cli::say!("enabled {name}");
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
            let actor = crate::billing::cli_actor();
            if billing {
                anyhow::ensure!(
                    !password_stdin,
                    "billing users get an API token, not a password"
                );
                let (token, hash) = auth::new_billing_token()?;
                store.reset_user_secret(
                    name,
                    NewUserSecret::TokenSha256(&hash),
                    &actor,
                    now(),
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
                    now(),
                    || Ok(()),
                )?;
                crate::cli::say!(
                    "new password for {name}; {} session(s) ended",
                    c.sessions_ended
                );
            }
        }
        UserAction::List => {
            crate::cli::say!("name\trole\tcreated_at\tstatus");
            for u in store.users()? {
                crate::cli::say!(
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
