//! `GET /healthz`, the systemd watchdog and the start-up check: the daemon says it is well only when
//! its database writer is alive and the database takes a write ([`crate::store::Db::check_health`]).
//!
//! `/healthz` needs no credential, so its answer is shared: a check runs at most once a second
//! whatever the number of callers, and never more than one at a time.

use super::state::AppState;
use crate::store::{Db, Sick};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};

/// The last outcome of a health check, reused for a second.
#[derive(Default)]
pub struct HealthCache {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), Sick>)>>,
}

/// How long a check's outcome is reused.
const FRESH: Duration = Duration::from_secs(1);

impl HealthCache {
    /// The health of `state`'s database, checked now unless a check finished less than a second ago.
    pub async fn check(&self, state: &AppState) -> Result<(), Sick> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < FRESH {
                return outcome.clone();
            }
        }
        let outcome = check_now(&state.db, &state.config.serve).await;
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

async fn check_now(db: &Db, cfg: &super::settings::ServeConfig) -> Result<(), Sick> {
    db.check_health(
        Duration::from_secs(cfg.health_timeout_secs.max(1)),
        cfg.min_free_mb.saturating_mul(1 << 20),
    )
    .await
}

/// `GET /healthz` (no credential): `200 ok` when the writer is alive and the database writable, else
/// `503` with the reason, as plain text.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match state.health.check(&state).await {
        Ok(()) => (StatusCode::OK, text, "ok\n".to_string()).into_response(),
        Err(sick) => {
            tracing::error!(reason = %sick, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                format!("not ok: {sick}\n"),
            )
                .into_response()
        }
    }
}

/// The start-up check of `meter-gateway serve`: the same as `/healthz`.
pub fn check_before_serving(
    runtime: &tokio::runtime::Runtime,
    db: &Db,
    cfg: &super::settings::ServeConfig,
) -> Result<(), Sick> {
    runtime.block_on(check_now(db, cfg))
}

/// The watchdog interval systemd asks for (`WatchdogSec=`, passed as `WATCHDOG_USEC`), if any and if
/// meant for this process (`WATCHDOG_PID`, when set).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Tells systemd something (`Type=notify`); nothing happens outside systemd (no `NOTIFY_SOCKET`).
pub fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Feeds systemd's watchdog at half its interval while the database is well (or merely busy): a
/// writer that stopped, is stuck, or a database that cannot be written stops the feeding, and systemd
/// restarts the daemon (whose start-up check then says what is wrong). Runs until the runtime stops.
pub async fn feed_watchdog(state: AppState, every: Duration) {
    let mut was_well = true;
    loop {
        tokio::time::sleep(every / 2).await;
        match state.health.check(&state).await {
            Ok(()) => {
                notify(&[sd_notify::NotifyState::Watchdog]);
                if !was_well {
                    notify(&[sd_notify::NotifyState::Status("serving")]);
                    was_well = true;
                }
            }
            Err(sick) if sick.is_busy() => notify(&[sd_notify::NotifyState::Watchdog]),
            Err(sick) => {
                let status = format!("not ok: {sick}");
                tracing::error!(reason = %sick, "health check failed: not feeding the watchdog");
                notify(&[sd_notify::NotifyState::Status(&status)]);
                was_well = false;
            }
        }
    }
}
