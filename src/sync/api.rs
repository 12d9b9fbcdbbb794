//! The HTTP device API's JSON (`/api/v1/device/...`, PROTOCOL.md §4): the types the daemon
//! (`serve::device_api`) answers with and the reference handheld (`sync::client`) sends and reads,
//! so that a field renamed on one side fails to compile on the other. Reads carry the fields of the
//! wire protocol's `Read`; times are district local ISO 8601 date-times without an offset.

use crate::cycles::{RouteCode, RouteFile};
use chrono::NaiveDateTime;
use firmware_protocol::message::{self as msg, limits};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// A read's `read_type` and `method` as JSON name them (PROTOCOL.md §3.3): the wire's `ReadType` and
// `ReadMethod` by name, carried by `ReadJson` itself, so an unknown name fails the read's parse,
// naming the value (`unknown variant ...`, the read refused alone as `bad_read`). The protocol
// enums stay free of serde (`firmware-protocol` is `no_std`): these mirror them with `From`s. Their
// doc comments are the OpenAPI document's descriptions.

/// The names `read_type` takes (for the OpenAPI document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadTypeName {
    Regular,
    HighConfirmed,
    LowConfirmed,
    Skipped,
}

/// The names `method` takes (for the OpenAPI document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadMethodName {
    Keyed,
    Probe,
    Radio,
}

impl From<ReadTypeName> for msg::ReadType {
    fn from(t: ReadTypeName) -> Self {
        match t {
            ReadTypeName::Regular => msg::ReadType::Regular,
            ReadTypeName::HighConfirmed => msg::ReadType::HighConfirmed,
            ReadTypeName::LowConfirmed => msg::ReadType::LowConfirmed,
            ReadTypeName::Skipped => msg::ReadType::Skipped,
        }
    }
}

impl From<msg::ReadType> for ReadTypeName {
    /// A code this side does not know is `regular`, as the dock stores it (PROTOCOL.md §3.3).
    fn from(t: msg::ReadType) -> Self {
        match t {
            msg::ReadType::HighConfirmed => ReadTypeName::HighConfirmed,
            msg::ReadType::LowConfirmed => ReadTypeName::LowConfirmed,
            msg::ReadType::Skipped => ReadTypeName::Skipped,
            _ => ReadTypeName::Regular,
        }
    }
}

impl From<ReadMethodName> for msg::ReadMethod {
    fn from(m: ReadMethodName) -> Self {
        match m {
            ReadMethodName::Keyed => msg::ReadMethod::Keyed,
            ReadMethodName::Probe => msg::ReadMethod::Probe,
            ReadMethodName::Radio => msg::ReadMethod::Radio,
        }
    }
}

impl From<msg::ReadMethod> for ReadMethodName {
    /// A code this side does not know is `keyed`, as the dock stores it (PROTOCOL.md §3.3).
    fn from(m: msg::ReadMethod) -> Self {
        match m {
            msg::ReadMethod::Probe => ReadMethodName::Probe,
            msg::ReadMethod::Radio => ReadMethodName::Radio,
            _ => ReadMethodName::Keyed,
        }
    }
}

/// A request the API refuses for its content; the message names the field (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ApiError(pub String);

pub use super::RefusedRead;

/// One read as a handheld sends it. (Times are district local time without an offset: the
/// OpenAPI document gives their pattern, not `date-time`, which needs an offset.)
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadJson {
    /// Strictly increasing per handheld state, 1 to 2^63 − 1, never reused: with the state id,
    /// the idempotency key of the read.
    #[schema(minimum = 1)]
    pub device_seq: u64,
    /// At most 32 bytes (UTF-8).
    #[schema(min_length = 1, max_length = 32)]
    pub meter_id: String,
    /// The register value as keyed or probed; 0 when skipped.
    pub reading: u64,
    /// District local time, e.g. `2026-11-05T09:41:07`.
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$", example = "2026-11-05T09:41:07")]
    pub read_time: NaiveDateTime,
    /// `regular`, `high_confirmed`, `low_confirmed`, `skipped`.
    pub read_type: ReadTypeName,
    /// `keyed`, `probe`, `radio`.
    pub method: ReadMethodName,
    /// At most 8 codes of at most 8 bytes each.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub message_codes: Vec<String>,
    /// At most 8 bytes.
    #[serde(default)]
    #[schema(max_length = 8)]
    pub skip_code: Option<String>,
    /// At most 255 bytes.
    #[serde(default)]
    #[schema(max_length = 255)]
    pub note: Option<String>,
    /// At most 32 bytes.
    #[schema(max_length = 32)]
    pub reader_id: String,
    #[serde(default)]
    pub order: Option<OrderJson>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderJson {
    pub order_id: u64,
    /// At most 32 bytes.
    #[serde(default)]
    #[schema(max_length = 32)]
    pub new_meter_id: Option<String>,
    #[serde(default)]
    pub new_meter_initial: Option<u64>,
}

/// The body of `POST /api/v1/device/reads`. The daemon takes each read as it came (`R` a raw JSON
/// value) and parses it alone, so that a malformed read is refused by itself; clients send
/// [`ReadJson`]s.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadJson<R = ReadJson> {
    /// The handheld's state identity: 1–16 hex digits, not zero (PROTOCOL.md §4.1). Required: a
    /// request without it is a protocol-1 client and is refused.
    #[serde(default)]
    #[schema(value_type = String, required = true, pattern = "^0*[1-9a-fA-F][0-9a-fA-F]*$", min_length = 1, max_length = 16)]
    pub state_id: Option<String>,
    /// Chosen by the handheld; a retried POST with the same id and the same reads gets the first
    /// answer and stores nothing; the same id with other reads is refused (409 `batch_conflict`).
    /// 1–64 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub batch_id: String,
    /// At most 10,000 reads.
    #[schema(value_type = Vec<ReadJson>, max_items = 10000)]
    pub reads: Vec<R>,
}

/// The answer to an upload: the batch id and what became of its reads (the sync engine's receipt,
/// its fields at the top level: `up_to_seq`, `stored`, `flagged`, `already_received`, `refused`,
/// `held_seq`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ReceiptJson {
    pub batch_id: String,
    #[serde(flatten)]
    pub receipt: super::UploadReceipt,
}

/// `POST /api/v1/device/hello`: a handheld states who it is before it syncs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HelloJson {
    /// The handheld's state identity (as in uploads).
    #[serde(default)]
    #[schema(value_type = String, required = true, pattern = "^0*[1-9a-fA-F][0-9a-fA-F]*$", min_length = 1, max_length = 16)]
    pub state_id: Option<String>,
    /// 1–32 bytes, no control characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub firmware_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
pub struct WelcomeJson {
    pub protocol_version: u8,
    /// District local time: the handheld sets its clock from it.
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$", example = "2026-11-05T09:41:07")]
    pub server_time: NaiveDateTime,
    /// The highest `device_seq` the gateway holds from this state (0: none).
    pub held_seq: u64,
}

/// A state id as JSON carries it: 1–16 hex digits (a 64-bit number; JSON numbers lose precision
/// above 2^53), not zero.
pub fn parse_state_id(text: Option<&str>) -> Result<u64, ApiError> {
    let Some(t) = text else {
        return Err(ApiError(
            "state_id is required (device protocol 2, PROTOCOL.md §4): the handheld's state \
             identity, 1-16 hex digits; a protocol-1 client must be updated"
                .into(),
        ));
    };
    let t = t.trim();
    match u64::from_str_radix(t, 16) {
        Ok(v) if v != 0 && !t.is_empty() && t.len() <= 16 && !t.starts_with('+') => Ok(v),
        _ => Err(ApiError(format!(
            "state_id `{}` is not 1-16 hex digits, not all zero",
            t.chars().take(40).collect::<String>()
        ))),
    }
}

/// A state id as JSON carries it (16 lower-case hex digits).
pub fn state_id_text(state_id: u64) -> String {
    format!("{state_id:016x}")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RoutesJson {
    pub routes: Vec<RouteFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CodesJson {
    pub codes: Vec<RouteCode>,
}

fn check_len(what: &str, seq: u64, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError(format!(
            "read {seq}: {what} is longer than {max} bytes"
        )));
    }
    Ok(())
}

impl ReadJson {
    /// The protocol read, refusing what the wire format would refuse (overlong fields, a `device_seq`
    /// out of range; unknown names never parse).
    pub fn to_protocol(&self) -> Result<msg::Read, ApiError> {
        let seq = self.device_seq;
        if seq == 0 || seq > crate::cycles::MAX_DEVICE_SEQ {
            return Err(ApiError(format!(
                "read {seq}: device_seq must be between 1 and {}",
                crate::cycles::MAX_DEVICE_SEQ
            )));
        }
        if self.meter_id.trim().is_empty() {
            return Err(ApiError(format!("read {seq}: meter_id is empty")));
        }
        check_len("meter_id", seq, &self.meter_id, limits::ID)?;
        check_len("reader_id", seq, &self.reader_id, limits::ID)?;
        if self.message_codes.len() > limits::CODES_PER_READ {
            return Err(ApiError(format!(
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
            read_type: self.read_type.into(),
            method: self.method.into(),
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

impl ReadJson {
    /// A handheld's read as the API carries it; `None` when its time is no calendar time (JSON
    /// carries district local date-times).
    pub fn from_protocol(r: &msg::Read) -> Option<ReadJson> {
        Some(ReadJson {
            device_seq: r.device_seq,
            meter_id: r.meter_id.clone(),
            reading: r.reading,
            read_time: crate::sync::local_time(r.read_time)?,
            read_type: r.read_type.into(),
            method: r.method.into(),
            message_codes: r.message_codes.clone(),
            skip_code: r.skip_code.clone(),
            note: r.note.clone(),
            reader_id: r.reader_id.clone(),
            order: r.order.as_ref().map(|o| OrderJson {
                order_id: o.order_id,
                new_meter_id: o.new_meter_id.clone(),
                new_meter_initial: o.new_meter_initial,
            }),
        })
    }
}

impl RefusedRead {
    /// As `ReadAck.refused` carries it.
    pub fn to_protocol(&self) -> msg::RefusedRead {
        msg::RefusedRead {
            device_seq: self.device_seq,
            reason: self.wire_reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_ids_are_one_to_sixteen_hex_digits_and_never_zero() {
        assert_eq!(parse_state_id(Some("9f3a")), Ok(0x9f3a));
        assert_eq!(parse_state_id(Some(&state_id_text(u64::MAX))), Ok(u64::MAX));
        for bad in ["", "0", "0000", "12345678901234567", "+1", "xyz", "-1"] {
            assert!(parse_state_id(Some(bad)).is_err(), "{bad}");
        }
        let missing = parse_state_id(None).unwrap_err();
        assert!(missing.0.contains("protocol 2"), "{missing}");
    }

    #[test]
    fn read_types_and_methods_keep_their_wire_names() {
        for (t, name) in [
            (msg::ReadType::Regular, "regular"),
            (msg::ReadType::HighConfirmed, "high_confirmed"),
            (msg::ReadType::LowConfirmed, "low_confirmed"),
            (msg::ReadType::Skipped, "skipped"),
        ] {
            let j = ReadTypeName::from(t);
            assert_eq!(serde_json::to_value(j).unwrap(), serde_json::json!(name));
            assert_eq!(msg::ReadType::from(j), t);
            assert_eq!(t.name(), Some(name));
        }
        for (m, name) in [
            (msg::ReadMethod::Keyed, "keyed"),
            (msg::ReadMethod::Probe, "probe"),
            (msg::ReadMethod::Radio, "radio"),
        ] {
            let j = ReadMethodName::from(m);
            assert_eq!(serde_json::to_value(j).unwrap(), serde_json::json!(name));
            assert_eq!(msg::ReadMethod::from(j), m);
            assert_eq!(m.name(), Some(name));
        }
        // A code this side does not know is carried as the dock stores it.
        assert_eq!(
            ReadTypeName::from(msg::ReadType::Unknown(9)),
            ReadTypeName::Regular
        );
        assert_eq!(
            ReadMethodName::from(msg::ReadMethod::Unknown(9)),
            ReadMethodName::Keyed
        );
    }

    #[test]
    fn a_read_goes_to_json_and_back_unchanged() {
        let r = msg::Read {
            device_seq: 7,
            meter_id: "M-1".into(),
            reading: 1234,
            read_time: crate::sync::protocol_time(
                chrono::NaiveDate::from_ymd_opt(2026, 11, 5)
                    .unwrap()
                    .and_hms_opt(9, 41, 7)
                    .unwrap(),
            ),
            read_type: msg::ReadType::HighConfirmed,
            method: msg::ReadMethod::Probe,
            message_codes: vec!["LK".into()],
            skip_code: None,
            note: Some("hose bib".into()),
            reader_id: "R1".into(),
            order: Some(msg::OrderCompletion {
                order_id: 9,
                new_meter_id: None,
                new_meter_initial: None,
            }),
        };
        let json = ReadJson::from_protocol(&r).unwrap();
        assert_eq!(json.to_protocol(), Ok(r.clone()));
        let far = msg::Read {
            read_time: i64::MAX,
            ..r
        };
        assert_eq!(ReadJson::from_protocol(&far), None);
    }
}
