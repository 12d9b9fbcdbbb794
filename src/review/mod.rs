//! The clerk's desk: web pages for flagged reads, message codes, field orders, leak adjustments, reports.
//!
//! Server-rendered HTML over axum, plain forms and a few lines of script (the queue's j/k keys). Every
//! page needs a signed-in clerk ([`ClerkUser`]); message codes need an admin. Every POST form carries the
//! session's CSRF token. Every value goes through [`html::esc`]. Money is `rust_decimal`.
//!
//! The work itself ([`actions`], [`orders`], [`reports`], [`leak`]) runs on the database writer thread,
//! one transaction per decision, each writing `review_actions` and the append-only `audit_log`.

pub mod actions;
pub mod chart;
mod codes;
mod detail;
pub mod html;
pub mod leak;
mod order_pages;
pub mod orders;
mod queue;
pub mod reports;
pub mod tariff;

pub use leak::LeakPolicy;
pub use tariff::TariffConfig;

use crate::serve::auth::ClerkUser;
use crate::serve::error::AppError;
use crate::serve::AppState;
use crate::store::Store;
use actions::ReviewError;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// Largest form a clerk page accepts: a form of short fields needs far less.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The clerk pages' routes (merged into the daemon's router by `serve`).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/review", get(queue::home))
        .route("/review/cycles/{cycle}", get(queue::queue))
        .route("/review/reads/{id}", get(detail::detail))
        .route("/review/reads/{id}/{action}", post(detail::post_action))
        .route("/review/codes", get(codes::list).post(codes::create))
        .route("/review/codes/{code}", post(codes::edit))
        .route(
            "/review/orders",
            get(order_pages::list).post(order_pages::create),
        )
        .route(
            "/review/orders/{id}/{action}",
            post(order_pages::post_action),
        )
        .route("/review/reports", get(reports::home))
        .route("/review/reports/{cycle}", get(reports::report_page))
        .route("/review/reports/{cycle}/{file}", get(reports::csv))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
}

fn viewer(u: &ClerkUser) -> html::Viewer {
    html::Viewer {
        name: u.name.clone(),
        admin: u.role == crate::cli::UserRole::Admin,
        csrf: u.csrf.clone(),
    }
}

fn to_app(e: ReviewError) -> AppError {
    match e {
        ReviewError::UnknownRead(_) | ReviewError::UnknownOrder(_) => {
            AppError::NotFound(e.to_string())
        }
        e if e.is_user_error() => AppError::BadRequest(e.to_string()),
        e => AppError::internal(e),
    }
}

/// Runs `f` on the database writer thread.
async fn db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Store) -> Result<T, ReviewError> + Send + 'static,
) -> Result<T, AppError> {
    state.db.call(f).await?.map_err(to_app)
}

/// Runs a form's action and answers with a redirect (303, so a reload does not post again): to the
/// page `f` names, or `back`, carrying what was done; a refusal the clerk can fix goes back to `back`
/// with the reason.
async fn act(
    state: &AppState,
    back: String,
    f: impl FnOnce(&mut Store) -> Result<(Option<String>, String), ReviewError> + Send + 'static,
) -> Result<Response, AppError> {
    let sep = |p: &str| if p.contains('?') { '&' } else { '?' };
    match state.db.call(f).await? {
        Ok((to, done)) => {
            let to = to.unwrap_or(back);
            Ok(Redirect::to(&format!("{to}{}done={}", sep(&to), html::url(&done))).into_response())
        }
        Err(e)
            if e.is_user_error()
                && !matches!(
                    e,
                    ReviewError::UnknownRead(_) | ReviewError::UnknownOrder(_)
                ) =>
        {
            Ok(Redirect::to(&format!(
                "{back}{}error={}",
                sep(&back),
                html::url(&e.to_string())
            ))
            .into_response())
        }
        Err(e) => Err(to_app(e)),
    }
}
