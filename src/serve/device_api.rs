//! The handheld API over HTTP (Wi-Fi sync), versioned under `/api/v1/device/`, and the dock board.
//!
//! The same [`crate::sync::SyncService`] as the serial docks: reads enter through one validation path
//! and are acknowledged only once durably committed (group commit). Reads are JSON with the fields of
//! the wire protocol's `Read` (`firmware_protocol::message::Read`); times are district local
//! ISO 8601 date-times. Protocol 2 (PROTOCOL.md §4): every call names the handheld's state id, a
//! repeated sequence number or batch id is "already received" only for the same content.

use super::auth::{ClerkUser, DeviceAuth};
use super::error::AppError;
use super::AppState;
use crate::cycles::Refusal;
use crate::domain::RefusalReason;
use crate::sync::api::ApiError;
pub use crate::sync::api::{
    parse_state_id, state_id_text, CodesJson, HelloJson, OrderJson, ReadJson, ReceiptJson,
    RoutesJson, UploadJson, WelcomeJson,
};
use crate::sync::{DockStatus, MalformedRead, SyncError, UploadReceipt, Uploader, Via};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use firmware_protocol::message::{self as msg, limits};
use serde::Serialize;
use serde_json::value::RawValue;

pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v1/device/hello", post(post_hello))
        .route("/api/v1/device/route", get(get_routes))
        .route(
            "/api/v1/device/reads",
            post(post_reads).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v1/device/codes", get(get_codes))
        .route("/api/v1/docks", get(get_docks))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocksJson {
    pub docks: Vec<DockStatus>,
}

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        AppError::BadRequest(e.0)
    }
}

fn sync_error(e: SyncError) -> AppError {
    match e {
        // The device authenticated a moment ago: it was retired in between.
        SyncError::UnknownDevice(_) => AppError::Unauthorized,
        e @ SyncError::NoOpenCycle(_) => AppError::Conflict(e.to_string()),
        e @ SyncError::TooManyReads { .. } => AppError::TooLarge(e.to_string()),
        e @ SyncError::NoStateId => AppError::BadRequest(e.to_string()),
        SyncError::Cycle(e @ crate::cycles::CycleError::Closed(_)) => {
            AppError::Conflict(e.to_string())
        }
        other => AppError::internal(other),
    }
}

async fn get_routes(
    State(state): State<AppState>,
    device: DeviceAuth,
) -> Result<Json<RoutesJson>, AppError> {
    let routes = state
        .sync
        .routes_for(&device.device_id, state.now_local())
        .await
        .map_err(sync_error)?;
    tracing::info!(device = %device.device_id, routes = routes.len(), "routes sent over HTTP");
    // Serialized straight from the route files: a `serde_json::Value` tree of a 600-stop route would
    // take several times the memory of its text, per concurrent download.
    Ok(Json(RoutesJson { routes }))
}

async fn post_hello(
    State(state): State<AppState>,
    device: DeviceAuth,
    body: Result<Json<HelloJson>, JsonRejection>,
) -> Result<Json<WelcomeJson>, AppError> {
    let Json(hello) = body?;
    let state_id = parse_state_id(hello.state_id.as_deref())?;
    let firmware = hello.firmware_version.as_deref().map(str::trim);
    if let Some(f) = firmware {
        crate::text::check("firmware_version", f)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        if f.is_empty() || f.len() > limits::ID || f.chars().any(char::is_control) {
            return Err(AppError::BadRequest(format!(
                "firmware_version must be 1-{} characters without control characters",
                limits::ID
            )));
        }
    }
    // Whole seconds: the protocol's clock (PROTOCOL.md §4).
    let now = state.now_local();
    let now = chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now);
    let from = Uploader {
        device_id: &device.device_id,
        state_id,
        via: Via::Http,
    };
    let held_seq = state
        .sync
        .hello(from, firmware, now)
        .await
        .map_err(sync_error)?
        .ok_or(AppError::Unauthorized)?;
    tracing::info!(device = %device.device_id, state = %state_id_text(state_id), held_seq, "handheld says hello over HTTP");
    Ok(Json(WelcomeJson {
        protocol_version: msg::SESSION_PROTOCOL_VERSION,
        server_time: now,
        held_seq,
    }))
}

async fn post_reads(
    State(state): State<AppState>,
    device: DeviceAuth,
    body: Result<Json<UploadJson<Box<RawValue>>>, JsonRejection>,
) -> Result<Json<ReceiptJson>, AppError> {
    let Json(upload) = body?;
    let state_id = parse_state_id(upload.state_id.as_deref())?;
    let batch = upload.batch_id.trim().to_string();
    crate::text::check("batch_id", &batch).map_err(|e| AppError::BadRequest(e.to_string()))?;
    if batch.is_empty() || batch.len() > 64 || batch.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "batch_id must be 1-64 characters without control characters".into(),
        ));
    }
    if upload.reads.len() > limits::READS {
        return Err(AppError::TooLarge(format!(
            "a batch holds at most {} reads, this one {}",
            limits::READS,
            upload.reads.len()
        )));
    }
    let mut reads = Vec::with_capacity(upload.reads.len());
    let mut malformed = Vec::new();
    for (i, raw) in upload.reads.iter().enumerate() {
        match take_read(i, raw.get())? {
            Ok(r) => reads.push(r),
            Err(m) => malformed.push(m),
        }
    }
    // Only the protocol reads wait for the writer: with every handheld uploading at once, a second
    // copy of each batch would double the daemon's memory.
    drop(upload);
    let from = Uploader {
        device_id: &device.device_id,
        state_id,
        via: Via::Http,
    };
    let receipt: UploadReceipt = state
        .sync
        .upload_with_malformed(from, Some(&batch), reads, malformed, state.now_local())
        .await
        .map_err(sync_error)?;
    if let Some(message) = receipt.batch_conflict.clone() {
        return Err(AppError::ConflictCode {
            code: "batch_conflict",
            message,
        });
    }
    tracing::info!(
        device = %device.device_id, batch = %batch, stored = receipt.stored,
        already = receipt.already_received, refused = receipt.refused.len(),
        "reads received over HTTP"
    );
    Ok(Json(ReceiptJson {
        batch_id: batch,
        receipt,
    }))
}

/// One read of an upload as it came: the protocol read, or, when a field cannot be what the
/// protocol says (a `device_seq` out of range, a read time that is no date, an unknown read type, an
/// unknown field...), a refusal of that read alone (PROTOCOL.md §4.2). A read without a usable
/// `device_seq` cannot be named in the receipt: the batch is refused (400).
fn take_read(index: usize, text: &str) -> Result<Result<msg::Read, MalformedRead>, AppError> {
    let parsed = serde_json::from_str::<ReadJson>(text);
    if let Ok(j) = &parsed {
        if let Ok(r) = j.to_protocol() {
            return Ok(Ok(r));
        }
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AppError::BadRequest(format!("read #{}: {e}", index + 1)))?;
    let Some(seq) = value.get("device_seq").and_then(serde_json::Value::as_u64) else {
        return Err(AppError::BadRequest(format!(
            "read #{}: no device_seq (a whole number): the read cannot be named",
            index + 1
        )));
    };
    let meter_id = value
        .get("meter_id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .chars()
        .take(limits::ID)
        .collect::<String>();
    let time_ok = value
        .get("read_time")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| t.parse::<chrono::NaiveDateTime>().is_ok());
    let (reason, why) = match parsed {
        Err(e) if !time_ok => (RefusalReason::BadTime, format!("read_time: {e}")),
        Err(e) => (RefusalReason::BadRead, e.to_string()),
        Ok(j) => (
            RefusalReason::BadRead,
            j.to_protocol().err().map(|e| e.0).unwrap_or_default(),
        ),
    };
    Ok(Err(MalformedRead {
        device_seq: seq,
        meter_id: meter_id.clone(),
        refusal: Refusal {
            reason,
            detail: format!("read {seq} (meter {meter_id}) refused as it came: {why}"),
        },
        read_json: text.chars().take(4 * limits::NOTE + 1024).collect(),
    }))
}

async fn get_codes(
    State(state): State<AppState>,
    _device: DeviceAuth,
) -> Result<Json<CodesJson>, AppError> {
    let codes = state.sync.codes().await.map_err(sync_error)?;
    Ok(Json(CodesJson { codes }))
}

async fn get_docks(State(state): State<AppState>, _user: ClerkUser) -> Json<DocksJson> {
    Json(DocksJson {
        docks: state.docks.snapshot(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read() -> ReadJson {
        serde_json::from_value(serde_json::json!({
            "device_seq": 7, "meter_id": "M-1", "reading": 1234,
            "read_time": "2026-11-05T09:41:07", "read_type": "high_confirmed", "method": "probe",
            "message_codes": ["LK"], "reader_id": "R1"
        }))
        .unwrap()
    }

    #[test]
    fn a_json_read_becomes_the_protocol_read() {
        let r = read().to_protocol().unwrap();
        assert_eq!(r.read_type, msg::ReadType::HighConfirmed);
        assert_eq!(r.method, msg::ReadMethod::Probe);
        assert_eq!(
            crate::sync::local_time(r.read_time).unwrap().to_string(),
            "2026-11-05 09:41:07"
        );
        assert_eq!((r.device_seq, r.reading), (7, 1234));
    }

    #[test]
    fn unknown_names_and_overlong_fields_are_refused() {
        for (field, name) in [("read_type", "guessed"), ("method", "telepathy")] {
            let mut j = serde_json::to_value(read()).unwrap();
            j[field] = serde_json::json!(name);
            let e = serde_json::from_value::<ReadJson>(j)
                .unwrap_err()
                .to_string();
            assert!(e.contains(name) && e.contains("unknown variant"), "{e}");
        }
        let mut r = read();
        r.meter_id = "M".repeat(limits::ID + 1);
        assert!(r.to_protocol().is_err());
        let mut r = read();
        r.message_codes = vec!["X".into(); limits::CODES_PER_READ + 1];
        assert!(r.to_protocol().is_err());
    }
}
