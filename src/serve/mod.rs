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
pub mod settings;
pub mod signin;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

#[cfg(any(test, feature = "test-support"))]
pub use auth::{billing_token_for_tests, device_token_for_tests, sign_in_session_for_tests};
pub use auth::{check_csrf, AdminUser, AnyCredential, BillingUser, ClerkUser, DeviceAuth};
pub use error::AppError;
pub use settings::ServeConfig;
#[cfg(any(test, feature = "test-support"))]
pub use state::test_state;
pub use state::AppState;

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
