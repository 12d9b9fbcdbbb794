//! `GET /api/v1/cycles/{id}/billing?format=jsonl|csv&version=N`: the batch for a billing user.

use crate::billing::{write_batch, BatchFormat as BillingFormat, BillingError};
use crate::serve::{AppError, AppState, BillingUser};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(Debug, serde::Deserialize)]
struct BatchQuery {
    format: Option<String>,
    version: Option<u32>,
}

/// The billing export's routes (merged into the daemon's router).
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/cycles/{id}/billing", get(batch))
}

async fn batch(
    _user: BillingUser,
    State(state): State<AppState>,
    Path(cycle_id): Path<String>,
    Query(q): Query<BatchQuery>,
) -> Result<Response, AppError> {
    let format = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => BillingFormat::Jsonl,
        "csv" => BillingFormat::Csv,
        other => {
            return Err(AppError::BadRequest(format!(
                "format `{other}`: expected jsonl or csv"
            )))
        }
    };
    let version = q.version;
    let (bytes, checksum, batch_version, cycle_status) = state
        .db
        .call(move |s| -> Result<_, BillingError> {
            let b = crate::billing::open_batch(s, &cycle_id, version)?;
            let mut out = Vec::new();
            write_batch(&b, format, &mut out)?;
            let status = crate::store::billing::cycle_status(s.conn(), &cycle_id)?;
            let h = b.header();
            Ok((out, h.checksum.clone(), h.batch_version, status))
        })
        .await?
        .map_err(|e| match e {
            BillingError::UnknownCycle(_)
            | BillingError::NeverClosed(_)
            | BillingError::NoSuchBatch { .. } => AppError::NotFound(e.to_string()),
            other => AppError::internal(other),
        })?;
    let content_type = match format {
        BillingFormat::Jsonl => "application/x-ndjson",
        BillingFormat::Csv => "text/csv; charset=utf-8",
    };
    let mut resp = bytes.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&checksum) {
        headers.insert("x-batch-checksum", v);
    }
    headers.insert("x-batch-version", HeaderValue::from(batch_version));
    // A reopened cycle still serves its last closed version; the billing run should know a newer
    // one is coming.
    if let Some(Ok(v)) = cycle_status.map(|s| HeaderValue::from_str(&s)) {
        headers.insert("x-cycle-status", v);
    }
    Ok(resp)
}
