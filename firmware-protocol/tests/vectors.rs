//! The golden vectors in `vectors/` (written by `vectors/generate.py`, a second implementation of
//! the spec) checked against this crate both ways: encoding the fields gives the bytes, decoding the
//! bytes gives the fields, and damaged variants are rejected.
#![cfg(feature = "alloc")]

use firmware_protocol::crc::crc32c;
use firmware_protocol::message::{
    AccountOrder, ByeReason, Compression, FieldOrder, FieldOrderKind, Hello, Message, MessageCode,
    MessageError, OrderCompletion, Read, ReadMethod, ReadType, RefusalReason, RefusedRead, Route,
    RouteOffer, RouteStop, Unit, Welcome,
};
use firmware_protocol::{encode_frame_vec, Decoder, Feed, FrameError, FrameType, Header};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// One case: its `key = value` lines, with a record of which keys a test looked at.
struct Case {
    fields: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Case {
    fn name(&self) -> String {
        self.raw("name")
    }

    fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    fn raw(&self, key: &str) -> String {
        self.used.borrow_mut().insert(key.to_string());
        match self.fields.get(key) {
            Some(v) => v.clone(),
            None => panic!("case {:?} has no `{key}`", self.fields.get("name")),
        }
    }

    fn int(&self, key: &str) -> i128 {
        let v = self.raw(key);
        match v.strip_prefix("0x") {
            Some(hex) => i128::from_str_radix(hex, 16).expect("hex integer"),
            None => v
                .parse()
                .unwrap_or_else(|_| panic!("`{key}` = {v} is not an integer")),
        }
    }

    fn num<T: TryFrom<i128>>(&self, key: &str) -> T {
        T::try_from(self.int(key)).unwrap_or_else(|_| panic!("`{key}` out of range"))
    }

    fn hex(&self, key: &str) -> Vec<u8> {
        let v = self.raw(key);
        if v == "-" {
            return Vec::new();
        }
        assert!(v.len() % 2 == 0, "odd hex in `{key}`");
        (0..v.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&v[i..i + 2], 16).expect("hex byte"))
            .collect()
    }

    fn str(&self, key: &str) -> String {
        unquote(&self.raw(key))
    }

    fn opt<T>(&self, key: &str, f: impl FnOnce(&str) -> T) -> Option<T> {
        if self.fields.get(key).map(String::as_str) == Some("none") {
            self.used.borrow_mut().insert(key.to_string());
            None
        } else {
            Some(f(key))
        }
    }

    fn bool(&self, key: &str) -> bool {
        match self.raw(key).as_str() {
            "true" => true,
            "false" => false,
            other => panic!("`{key}` = {other} is not a bool"),
        }
    }

    fn len(&self, key: &str) -> usize {
        self.num(&format!("{key}.len"))
    }

    fn bytes_list(&self, key: &str) -> Vec<u8> {
        let v = self.raw(key);
        let inner = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .expect("list");
        inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("byte"))
            .collect()
    }

    /// An enum code: a name, or `unknown(N)`.
    fn code<T>(&self, key: &str, from_name: fn(&str) -> Option<T>, from_u8: fn(u8) -> T) -> T {
        let v = self.raw(key);
        if let Some(n) = v.strip_prefix("unknown(").and_then(|v| v.strip_suffix(')')) {
            return from_u8(n.parse().expect("code"));
        }
        from_name(&v).unwrap_or_else(|| panic!("`{key}` = {v} is not a known name"))
    }

    fn assert_all_used(&self) {
        let used = self.used.borrow();
        let unused: Vec<_> = self
            .fields
            .keys()
            .filter(|k| !used.contains(*k) && *k != "note" && *k != "name")
            .collect();
        assert!(
            unused.is_empty(),
            "case {:?}: fields not checked: {unused:?}",
            self.fields.get("name")
        );
    }
}

/// A JSON string literal, as `generate.py` writes it (`json.dumps(..., ensure_ascii=False)`).
fn unquote(v: &str) -> String {
    let inner = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{v} is not a string literal"));
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('/') => out.push('/'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&hex, 16).expect("\\u escape");
                out.push(char::from_u32(c).expect("BMP scalar"));
            }
            other => panic!("escape {other:?}"),
        }
    }
    out
}

fn load(file: &str) -> Vec<Case> {
    let path = format!("{}/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut cases = Vec::new();
    let mut fields = BTreeMap::new();
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.trim_end();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !fields.is_empty() {
                cases.push(Case {
                    fields: std::mem::take(&mut fields),
                    used: RefCell::new(BTreeSet::new()),
                });
            }
            continue;
        }
        let (k, v) = line.split_once(" = ").expect("`key = value`");
        assert!(
            fields.insert(k.to_string(), v.to_string()).is_none(),
            "duplicate key {k}"
        );
    }
    assert!(!cases.is_empty(), "{file} has no cases");
    cases
}

#[test]
fn crc_vectors_match() {
    for c in load("crc.txt") {
        let want: u32 = c.num("crc");
        assert_eq!(crc32c(&c.hex("input")), want, "{}", c.name());
        c.assert_all_used();
    }
}

/// Everything the decoder makes of `wire`, in order.
fn decode_all(wire: &[u8]) -> Vec<Result<(Header, Vec<u8>), FrameError>> {
    let mut d = Decoder::new(firmware_protocol::DEFAULT_MAX_PAYLOAD);
    let mut out = Vec::new();
    let mut input = wire;
    loop {
        match d.feed(input) {
            Feed::Consumed => return out,
            Feed::Frame { frame, remaining } => {
                out.push(Ok((frame.header, frame.payload.to_vec())));
                input = remaining;
            }
            Feed::Error { error, remaining } => {
                out.push(Err(error));
                input = remaining;
            }
        }
    }
}

fn frame_error(spec: &str) -> FrameError {
    let mut words = spec.split_whitespace();
    let kind = words.next().expect("error kind");
    let args: BTreeMap<&str, u64> = words
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap_or(("", w));
            let n = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            (k, n.expect("number"))
        })
        .collect();
    let arg = |k: &str| args[k];
    match kind {
        "bad_crc" => FrameError::BadCrc {
            expected: arg("expected") as u32,
            found: arg("found") as u32,
        },
        "too_short" => FrameError::TooShort {
            len: arg("len") as usize,
        },
        "bad_cobs" => FrameError::BadCobs {
            at: arg("at") as usize,
        },
        "too_long" => FrameError::TooLong {
            limit: arg("limit") as usize,
        },
        "unsupported_version" => FrameError::UnsupportedVersion(arg("") as u8),
        other => panic!("unknown error kind {other}"),
    }
}

#[test]
fn frame_vectors_encode_and_decode_both_ways() {
    let mut checked = 0;
    for c in load("frames.txt") {
        let wire = c.hex("wire");
        let got = decode_all(&wire);
        let expect = c.raw("expect");
        if expect != "frame" {
            assert_eq!(got, vec![Err(frame_error(&expect))], "{}", c.name());
            c.assert_all_used();
            continue;
        }
        let header = Header {
            version: c.num("version"),
            frame_type: FrameType::from_u8(c.num("frame_type")),
            flags: c.num("flags"),
            seq: c.num("seq"),
        };
        let payload = c.hex("payload");
        let unstuffed = c.hex("unstuffed");
        let crc: u32 = c.num("crc");
        assert_eq!(
            crc32c(&unstuffed[..unstuffed.len() - 4]),
            crc,
            "{}",
            c.name()
        );
        assert_eq!(unstuffed[unstuffed.len() - 4..], crc.to_le_bytes());
        let mut encoded = Vec::new();
        encode_frame_vec(&header, &payload, &mut encoded).expect("encodes");
        let leading = wire.iter().take_while(|&&b| b == 0).count();
        assert_eq!(
            encoded,
            wire[leading..],
            "{}: encoding the fields",
            c.name()
        );
        assert_eq!(
            got,
            vec![Ok((header, payload))],
            "{}: decoding the wire",
            c.name()
        );
        c.assert_all_used();
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn every_single_bit_flip_of_a_frame_vector_is_rejected() {
    for c in load("frames.txt") {
        if c.raw("expect") != "frame" {
            continue;
        }
        let wire = c.hex("wire");
        // Leading delimiters are not part of the frame. The last byte is the delimiter: flipping it
        // leaves a partial frame, checked separately.
        let start = wire.iter().take_while(|&&b| b == 0).count();
        for i in start..wire.len() - 1 {
            for bit in 0..8 {
                let mut bad = wire.clone();
                bad[i] ^= 1 << bit;
                let got = decode_all(&bad);
                assert!(
                    got.iter().all(Result::is_err),
                    "{}: flip of bit {bit} in byte {i} accepted: {got:?}",
                    c.name()
                );
            }
        }
        let mut cut = wire.clone();
        let last = cut.len() - 1;
        cut[last] = 0x01;
        assert!(decode_all(&cut).is_empty(), "{}", c.name());
    }
}

fn order(c: &Case, p: &str) -> FieldOrder {
    FieldOrder {
        order_id: c.num(&format!("{p}.order_id")),
        kind: c.code(
            &format!("{p}.kind"),
            FieldOrderKind::from_name,
            FieldOrderKind::from_u8,
        ),
        instructions: c.str(&format!("{p}.instructions")),
    }
}

fn stop(c: &Case, p: &str) -> RouteStop {
    let f = |k: &str| format!("{p}.{k}");
    RouteStop {
        sequence: c.num(&f("sequence")),
        account_id: c.str(&f("account_id")),
        customer_name: c.str(&f("customer_name")),
        service_address: c.str(&f("service_address")),
        meter_id: c.str(&f("meter_id")),
        location_note: c.str(&f("location_note")),
        hazard_note: c.str(&f("hazard_note")),
        dials: c.num(&f("dials")),
        decimals: c.num(&f("decimals")),
        multiplier: c.num(&f("multiplier")),
        unit: c.code(&f("unit"), Unit::from_name, Unit::from_u8),
        previous_reading: c.num(&f("previous_reading")),
        previous_read_date: c.num(&f("previous_read_date")),
        low_limit: c.num(&f("low_limit")),
        high_limit: c.num(&f("high_limit")),
        field_orders: (0..c.len(&f("field_orders")))
            .map(|i| order(c, &format!("{p}.field_orders[{i}]")))
            .collect(),
        low_limit_last: c.num(&f("low_limit_last")),
        high_limit_last: c.num(&f("high_limit_last")),
    }
}

fn read(c: &Case, p: &str) -> Read {
    let f = |k: &str| format!("{p}.{k}");
    Read {
        device_seq: c.num(&f("device_seq")),
        meter_id: c.str(&f("meter_id")),
        reading: c.num(&f("reading")),
        read_time: c.num(&f("read_time")),
        read_type: c.code(&f("read_type"), ReadType::from_name, ReadType::from_u8),
        method: c.code(&f("method"), ReadMethod::from_name, ReadMethod::from_u8),
        message_codes: (0..c.len(&f("message_codes")))
            .map(|i| c.str(&format!("{p}.message_codes[{i}]")))
            .collect(),
        skip_code: c.opt(&f("skip_code"), |k| c.str(k)),
        note: c.opt(&f("note"), |k| c.str(k)),
        reader_id: c.str(&f("reader_id")),
        order: c.opt(&f("order"), |k| OrderCompletion {
            order_id: c.num(&format!("{k}.order_id")),
            new_meter_id: c.opt(&format!("{k}.new_meter_id"), |k| c.str(k)),
            new_meter_initial: c.opt(&format!("{k}.new_meter_initial"), |k| c.num(k)),
        }),
    }
}

fn strings(c: &Case, key: &str) -> Vec<String> {
    (0..c.len(key))
        .map(|i| c.str(&format!("{key}[{i}]")))
        .collect()
}

/// Builds the message a case describes.
fn message(c: &Case) -> Message {
    match c.raw("type").as_str() {
        "hello" => Message::Hello(Hello {
            device_id: c.str("device_id"),
            firmware_version: c.str("firmware_version"),
            protocol_versions: c.bytes_list("protocol_versions"),
            max_payload: c.num("max_payload"),
            window: c.num("window"),
            compression: Compression(c.num("compression")),
            pending_reads: c.num("pending_reads"),
            state_id: c.num("state_id"),
        }),
        "welcome" => Message::Welcome(Welcome {
            protocol_version: c.num("protocol_version"),
            max_payload: c.num("max_payload"),
            window: c.num("window"),
            compression: Compression(c.num("compression")),
            server_time: c.num("server_time"),
            assigned_routes: strings(c, "assigned_routes"),
            held_seq: c.num("held_seq"),
        }),
        "clock_sync" => Message::ClockSync {
            server_time: c.num("server_time"),
        },
        "route_offer" => Message::RouteOffer(RouteOffer {
            transfer_id: c.num("transfer_id"),
            route_id: c.str("route_id"),
            cycle_id: c.str("cycle_id"),
            stops: c.num("stops"),
            bytes: c.num("bytes"),
            compressed: c.bool("compressed"),
        }),
        "route_accept" => Message::RouteAccept {
            transfer_id: c.num("transfer_id"),
            resume_from: c.num("resume_from"),
        },
        "route_data" => Message::RouteData(Route {
            route_id: c.str("route_id"),
            cycle_id: c.str("cycle_id"),
            window_from: c.num("window_from"),
            window_to: c.num("window_to"),
            stops: (0..c.len("stops"))
                .map(|i| stop(c, &format!("stops[{i}]")))
                .collect(),
        }),
        "message_code_table" => Message::MessageCodeTable {
            codes: (0..c.len("codes"))
                .map(|i| {
                    let f = |k: &str| format!("codes[{i}].{k}");
                    MessageCode {
                        code: c.str(&f("code")),
                        category: c.str(&f("category")),
                        description: c.str(&f("description")),
                        requires_follow_up: c.bool(&f("requires_follow_up")),
                    }
                })
                .collect(),
        },
        "field_orders" => Message::FieldOrders {
            orders: (0..c.len("orders"))
                .map(|i| AccountOrder {
                    account_id: c.str(&format!("orders[{i}].account_id")),
                    meter_id: c.str(&format!("orders[{i}].meter_id")),
                    order: order(c, &format!("orders[{i}].order")),
                })
                .collect(),
        },
        "read_batch" => Message::ReadBatch {
            reads: (0..c.len("reads"))
                .map(|i| read(c, &format!("reads[{i}]")))
                .collect(),
        },
        "read_ack" => Message::ReadAck {
            up_to_seq: c.num("up_to_seq"),
            refused: (0..c.len("refused"))
                .map(|i| RefusedRead {
                    device_seq: c.num(&format!("refused[{i}].device_seq")),
                    reason: c.code(
                        &format!("refused[{i}].reason"),
                        RefusalReason::from_name,
                        RefusalReason::from_u8,
                    ),
                })
                .collect(),
        },
        "error" => Message::Error {
            code: c.num("code"),
            text: c.str("text"),
        },
        "bye" => Message::Bye {
            reason: c.code("reason", ByeReason::from_name, ByeReason::from_u8),
        },
        "unknown" => Message::Unknown {
            message_type: c.num("message_type"),
            body: c.hex("body"),
        },
        other => panic!("unknown message type {other}"),
    }
}

fn error_kind(e: &MessageError) -> &'static str {
    match e {
        MessageError::Empty => "empty",
        MessageError::Truncated { .. } => "truncated",
        MessageError::UnsupportedVersion { .. } => "unsupported_version",
        MessageError::VarintOverflow { .. } => "varint_overflow",
        MessageError::NonCanonicalVarint { .. } => "non_canonical_varint",
        MessageError::OutOfRange { .. } => "out_of_range",
        MessageError::StringTooLong { .. } => "string_too_long",
        MessageError::BadUtf8 { .. } => "bad_utf8",
        MessageError::TooManyItems { .. } => "too_many_items",
        MessageError::RecordOverrun { .. } => "record_overrun",
        MessageError::TrailingBytes { .. } => "trailing_bytes",
        MessageError::Inflate(_) => "inflate",
        _ => "other",
    }
}

#[test]
fn message_vectors_encode_and_decode_both_ways() {
    let mut types = BTreeSet::new();
    for c in load("messages.txt") {
        let hex = c.hex("hex");
        if c.has("error") {
            let err = Message::decode(&hex).expect_err(&c.name());
            assert_eq!(error_kind(&err), c.raw("error"), "{}: {err}", c.name());
            c.assert_all_used();
            continue;
        }
        let m = message(&c);
        types.insert(m.name());
        assert_eq!(
            Message::decode(&hex).as_ref(),
            Ok(&m),
            "{}: decoding",
            c.name()
        );
        if c.has("decode_only") {
            assert!(c.bool("decode_only"));
        } else {
            assert_eq!(m.to_vec(), hex, "{}: encoding", c.name());
            assert_eq!(m.validate(), Ok(()), "{}", c.name());
        }
        c.assert_all_used();
    }
    assert_eq!(
        types.len(),
        13,
        "every message type has a vector: {types:?}"
    );
}

#[test]
fn every_truncation_of_a_message_vector_is_rejected() {
    for c in load("messages.txt") {
        // Unknown types have no known layout; a newer version's bytes are valid up to the fields
        // this decoder knows.
        if c.has("error") || c.has("decode_only") || c.raw("type") == "unknown" {
            continue;
        }
        let hex = c.hex("hex");
        for cut in 0..hex.len() {
            assert!(
                Message::decode(&hex[..cut]).is_err(),
                "{}: accepted when cut to {cut} bytes",
                c.name()
            );
        }
    }
}

#[test]
fn day_limit_vectors_match_the_reference() {
    use firmware_protocol::message::{limits_on, DayLimits};
    let cases = load("limits.txt");
    assert!(cases.len() >= 10);
    for c in cases {
        let got = limits_on(
            c.num("dials"),
            c.num("previous_reading"),
            (c.num("low_first"), c.num("high_first")),
            (c.num("low_last"), c.num("high_last")),
            (c.num("window_from"), c.num("window_to")),
            c.num("day"),
        );
        let want = if c.has("limits") {
            assert_eq!(c.raw("limits"), "any");
            DayLimits::Any
        } else {
            DayLimits::Range {
                low: c.num("low"),
                high: c.num("high"),
            }
        };
        assert_eq!(got, want, "{}", c.name());
        c.assert_all_used();
    }
}
