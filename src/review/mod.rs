//! The clerk's desk: web pages for flagged reads, message codes, field orders, leak adjustments, reports.
//!
//! Server-rendered HTML over axum (maud templates: every value is escaped unless marked otherwise),
//! plain forms and a few lines of script (the worklist's j/k keys). Every page needs a signed-in clerk
//! ([`ClerkUser`]); approving a large leak credit needs an admin. Every POST form carries the session's
//! CSRF token. Money is `rust_decimal`, written one way ([`html::money`]).
//!
//! GET pages only read, on read-only connections ([`crate::store::Db::read`]): they never write and never
//! wait behind the writer. The work itself ([`actions`], [`orders`]) runs on the database writer
//! thread, one transaction per decision, each writing `review_actions` and the append-only `audit_log`;
//! what a decision implies (a completed re-read folded back into its read) is written where the data
//! changes (the upload, the office completing the order).

pub mod actions;
pub mod chart;
mod codes;
mod detail;
pub mod handhelds;
pub mod html;
pub mod leak;
mod order_pages;
pub mod orders;
mod paperwork;
pub mod queue;
pub mod reports;
pub mod settings;
pub mod tariff;

pub use leak::LeakPolicy;
pub use settings::{PaperworkConfig, ReviewConfig};
pub use tariff::TariffConfig;

use crate::serve::auth::ClerkUser;
use crate::serve::error::AppError;
use crate::serve::state::AppState;
use crate::store::Store;
use actions::ReviewError;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rusqlite::Connection;

/// Largest form a clerk page accepts: a form of short fields needs far less.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The clerk pages' routes (merged into the daemon's router by `serve`).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/review", get(queue::home))
        .route("/review/cycles/{cycle}", get(queue::queue))
        .route("/review/cycles/{cycle}/exceptions.csv", get(queue::csv))
        .route("/review/cycles/{cycle}/print", get(queue::print))
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
        .route("/review/paperwork", get(paperwork::home))
        .route("/review/paperwork/notices", get(paperwork::notices))
        .route("/review/paperwork/shut-offs", get(paperwork::shut_offs))
        .route(
            "/review/paperwork/tags",
            get(paperwork::tags).post(paperwork::record_tag),
        )
        .route("/review/handhelds", get(handhelds::handhelds))
        .route("/review/handhelds/refused.csv", get(handhelds::refused_csv))
        .route("/review/reports", get(reports::home))
        .route("/review/reports/{cycle}", get(reports::report_page))
        .route("/review/reports/{cycle}/{file}", get(reports::csv))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(html_errors))
}

/// A browser (it asks for `text/html`) gets an error as a page, not the API's JSON.
async fn html_errors(req: Request, next: Next) -> Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !wants_html
        || !is_json
        || !(res.status().is_client_error() || res.status().is_server_error())
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the request failed".into());
    let page = html::error_page(parts.status.as_u16(), &message).into_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(page))
}

fn viewer(u: &ClerkUser) -> html::Viewer {
    html::Viewer {
        name: u.name.clone(),
        admin: u.role == crate::domain::UserRole::Admin,
        csrf: u.csrf.clone(),
    }
}

fn to_app(e: ReviewError) -> AppError {
    match e {
        ReviewError::UnknownRead(_)
        | ReviewError::UnknownOrder(_)
        | ReviewError::UnknownCycle(_) => AppError::NotFound(e.to_string()),
        e if e.is_user_error() => AppError::BadRequest(e.to_string()),
        e => AppError::internal(e),
    }
}

/// Runs `f` on a read-only connection (one read transaction, off the writer thread, with the desk's own
/// reader permit): GET pages never write, never wait behind the handhelds' uploads, and never make an
/// upload's judging wait for them.
async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Connection) -> Result<T, ReviewError> + Send + 'static,
) -> Result<T, AppError> {
    state.db.read_desk(f).await?.map_err(to_app)
}

/// Whether a refusal is the clerk's to fix (shown on the page) rather than a missing thing or a fault.
fn fixable(e: &ReviewError) -> bool {
    e.is_user_error()
        && !matches!(
            e,
            ReviewError::UnknownRead(_)
                | ReviewError::UnknownOrder(_)
                | ReviewError::UnknownCycle(_)
        )
}

/// The 303 to `to` carrying what was done.
fn done_redirect(to: &str, done: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={}", html::url(done))).into_response()
}

/// Runs a form's action on the writer and answers with a redirect (303, so a reload does not post
/// again): to the page `f` names, or `back`, carrying what was done. A refusal the clerk can fix comes
/// back as `Err(Ok(error))` for the caller to show beside the form; anything else is an error page.
async fn act(
    state: &AppState,
    back: String,
    f: impl FnOnce(&mut Store) -> Result<(Option<String>, String), ReviewError> + Send + 'static,
) -> Result<Result<Response, ReviewError>, AppError> {
    match state.db.call(f).await? {
        Ok((to, done)) => Ok(Ok(done_redirect(&to.unwrap_or(back), &done))),
        Err(e) if fixable(&e) => Ok(Err(e)),
        Err(e) => Err(to_app(e)),
    }
}

/// A refused form as the page shows it: the message beside the field, what was typed kept.
fn form_error(form: &str, e: &ReviewError, values: &[(&str, &str)]) -> html::FormError {
    html::FormError {
        form: form.to_string(),
        field: e.field_name().unwrap_or("").to_string(),
        message: e.to_string(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// The status of a page shown again with a refused form.
const REFUSED: axum::http::StatusCode = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
