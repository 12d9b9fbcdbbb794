//! The handheld API over HTTP (Wi-Fi sync), versioned under `/api/v1/device/`, and the dock board.
//!
//! The same [`crate::sync::SyncService`] as the serial docks: reads enter through one validation path
//! and are acknowledged only once durably committed (group commit). Reads are JSON with the fields of
//! the wire protocol's `Read` (`firmware_protocol::message::Read`); times are district local
//! ISO 8601 date-times.

use super::auth::{now_local, ClerkUser, DeviceAuth};
use super::error::AppError;
use super::AppState;
use crate::cycles::{RouteCode, RouteFile};
use crate::sync::{DockStatus, SyncError, UploadReceipt};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDateTime;
use firmware_protocol::message::{self as msg, limits};
use serde::{Deserialize, Serialize};

pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v1/device/route", get(get_routes))
        .route(
            "/api/v1/device/reads",
            post(post_reads).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v1/device/codes", get(get_codes))
        .route("/api/v1/docks", get(get_docks))
}

/// One read as a handheld sends it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadJson {
    /// Strictly increasing per device, never reused: the idempotency key of the read.
    pub device_seq: u64,
    pub meter_id: String,
    /// The register value as keyed or probed; 0 when skipped.
    pub reading: u64,
    /// District local time, e.g. `2026-11-05T09:41:07`.
    pub read_time: NaiveDateTime,
    /// `regular`, `high_confirmed`, `low_confirmed`, `skipped`.
    pub read_type: String,
    /// `keyed`, `probe`, `radio`.
    pub method: String,
    #[serde(default)]
    pub message_codes: Vec<String>,
    #[serde(default)]
    pub skip_code: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    pub reader_id: String,
    #[serde(default)]
    pub order: Option<OrderJson>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OrderJson {
    pub order_id: u64,
    #[serde(default)]
    pub new_meter_id: Option<String>,
    #[serde(default)]
    pub new_meter_initial: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UploadJson {
    /// Chosen by the handheld; a retried POST with the same id gets the first answer, stores nothing.
    pub batch_id: String,
    pub reads: Vec<ReadJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptJson {
    pub batch_id: String,
    /// The handheld may delete every read with `device_seq` up to this one.
    pub up_to_seq: Option<u64>,
    pub stored: usize,
    pub flagged: usize,
    pub already_received: usize,
}

#[derive(Debug, Serialize)]
pub struct RoutesJson {
    pub routes: Vec<RouteFile>,
}

#[derive(Debug, Serialize)]
pub struct CodesJson {
    pub codes: Vec<RouteCode>,
}

#[derive(Debug, Serialize)]
pub struct DocksJson {
    pub docks: Vec<DockStatus>,
}

fn check_len(what: &str, seq: u64, value: &str, max: usize) -> Result<(), AppError> {
    if value.len() > max {
        return Err(AppError::BadRequest(format!(
            "read {seq}: {what} is longer than {max} bytes"
        )));
    }
    Ok(())
}

impl ReadJson {
    /// The protocol read, refusing what the wire format would refuse (unknown names, overlong fields).
    pub fn to_protocol(&self) -> Result<msg::Read, AppError> {
        let seq = self.device_seq;
        let read_type = msg::ReadType::from_name(&self.read_type).ok_or_else(|| {
            AppError::BadRequest(format!(
                "read {seq}: unknown read_type `{}`",
                self.read_type
            ))
        })?;
        let method = msg::ReadMethod::from_name(&self.method).ok_or_else(|| {
            AppError::BadRequest(format!("read {seq}: unknown method `{}`", self.method))
        })?;
        if self.meter_id.trim().is_empty() {
            return Err(AppError::BadRequest(format!(
                "read {seq}: meter_id is empty"
            )));
        }
        check_len("meter_id", seq, &self.meter_id, limits::ID)?;
        check_len("reader_id", seq, &self.reader_id, limits::ID)?;
        if self.message_codes.len() > limits::CODES_PER_READ {
            return Err(AppError::BadRequest(format!(
                "read {seq}: at most {} message codes",
                limits::CODES_PER_READ
            )));
        }
        for c in &self.message_codes {
            check_len("a message code", seq, c, limits::CODE)?;
        }
        if let Some(s) = &self.skip_code {
            check_len("skip_code", seq, s, limits::CODE)?;
        }
        if let Some(n) = &self.note {
            check_len("note", seq, n, limits::NOTE)?;
        }
        if let Some(m) = self.order.as_ref().and_then(|o| o.new_meter_id.as_ref()) {
            check_len("order.new_meter_id", seq, m, limits::ID)?;
        }
        Ok(msg::Read {
            device_seq: seq,
            meter_id: self.meter_id.clone(),
            reading: self.reading,
            read_time: crate::sync::protocol_time(self.read_time),
            read_type,
            method,
            message_codes: self.message_codes.clone(),
            skip_code: self.skip_code.clone(),
            note: self.note.clone(),
            reader_id: self.reader_id.clone(),
            order: self.order.as_ref().map(|o| msg::OrderCompletion {
                order_id: o.order_id,
                new_meter_id: o.new_meter_id.clone(),
                new_meter_initial: o.new_meter_initial,
            }),
        })
    }
}

fn sync_error(e: SyncError) -> AppError {
    match e {
        // The device authenticated a moment ago: it was retired in between.
        SyncError::UnknownDevice(_) => AppError::Unauthorized,
        e @ SyncError::NoOpenCycle(_) => AppError::Conflict(e.to_string()),
        SyncError::TooManyReads { .. } => AppError::PayloadTooLarge,
        e @ SyncError::BadTime { .. } => AppError::BadRequest(e.to_string()),
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
        .routes_for(&device.device_id, now_local())
        .await
        .map_err(sync_error)?;
    tracing::info!(device = %device.device_id, routes = routes.len(), "routes sent over HTTP");
    // Serialized straight from the route files: a `serde_json::Value` tree of a 600-stop route would
    // take several times the memory of its text, per concurrent download.
    Ok(Json(RoutesJson { routes }))
}

async fn post_reads(
    State(state): State<AppState>,
    device: DeviceAuth,
    body: Result<Json<UploadJson>, JsonRejection>,
) -> Result<Json<ReceiptJson>, AppError> {
    let Json(upload) = body?;
    let batch = upload.batch_id.trim().to_string();
    if batch.is_empty() || batch.len() > 64 || batch.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "batch_id must be 1-64 characters without control characters".into(),
        ));
    }
    if upload.reads.len() > limits::READS {
        return Err(AppError::PayloadTooLarge);
    }
    let reads = upload
        .reads
        .iter()
        .map(ReadJson::to_protocol)
        .collect::<Result<Vec<_>, _>>()?;
    // Only the protocol reads wait for the writer: with every handheld uploading at once, a second
    // copy of each batch would double the daemon's memory.
    drop(upload);
    let receipt: UploadReceipt = state
        .sync
        .upload(&device.device_id, Some(&batch), reads, now_local())
        .await
        .map_err(sync_error)?;
    tracing::info!(
        device = %device.device_id, batch = %batch, stored = receipt.stored,
        already = receipt.already_received, "reads received over HTTP"
    );
    Ok(Json(ReceiptJson {
        batch_id: batch,
        up_to_seq: receipt.up_to_seq,
        stored: receipt.stored,
        flagged: receipt.flagged,
        already_received: receipt.already_received,
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
        let mut r = read();
        r.read_type = "guessed".into();
        assert!(matches!(r.to_protocol(), Err(AppError::BadRequest(m)) if m.contains("guessed")));
        let mut r = read();
        r.meter_id = "M".repeat(limits::ID + 1);
        assert!(r.to_protocol().is_err());
        let mut r = read();
        r.message_codes = vec!["X".into(); limits::CODES_PER_READ + 1];
        assert!(r.to_protocol().is_err());
    }
}
