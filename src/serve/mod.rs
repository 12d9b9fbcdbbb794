//! `meter-gateway serve`: the daemon. One process: the HTTP API (device API, billing export), the clerk
//! pages, and one listener per serial dock, over one database writer ([`crate::store::Db`]).
//!
//! Every endpoint but `GET /healthz`, the sign-in page and `GET /` (a redirect to the queue or to the
//! sign-in page, showing nothing) needs a credential of the right role ([`auth`]); bodies are bounded;
//! handlers answer with [`error::AppError`], which never leaks internals.

pub mod auth;
pub mod billing_api;
pub mod device_api;
pub mod error;
pub mod health;
pub mod openapi;
pub mod pages;
pub mod security;
pub mod signin;

use crate::config::Config;
use crate::store::Db;
use crate::sync::{DockBoard, SyncService};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
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
        .merge(billing_api::router())
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
