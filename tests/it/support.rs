//! What many test modules build: dates, district rows, message codes, the gateway binary.

use chrono::{NaiveDate, NaiveDateTime};
use meter_gateway::domain::{
    Account, AccountStatus, MessageCode, Meter, MeterStatus, Register, Unit,
};
use std::process::Command;

/// A handheld's key for a read (state 1), the content digest standing for `content`: the same
/// content gives the same digest, as the same read sent again does.
pub fn device_ref(device: &str, seq: u64, content: &str) -> meter_gateway::domain::DeviceRef {
    use sha2::{Digest, Sha256};
    meter_gateway::domain::DeviceRef {
        device_id: device.to_string(),
        state_id: 1,
        seq,
        content: Sha256::digest(content.as_bytes()).into(),
    }
}

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// `d` at `h` o'clock.
pub fn at(d: NaiveDate, h: u32) -> NaiveDateTime {
    d.and_hms_opt(h, 0, 0).unwrap()
}

/// A residential account "Customer ID" at `seq` Ocean Ave.
pub fn account(id: &str, route: &str, seq: u32, status: AccountStatus) -> Account {
    Account {
        id: id.into(),
        name: format!("Customer {id}"),
        service_address: format!("{seq} Ocean Ave"),
        status,
        rate_class: "residential".into(),
        route_id: route.into(),
        sequence: seq,
        apn: String::new(),
        phone: String::new(),
    }
}

/// An HCF meter of `dials` dials, installed 2020-01-01.
pub fn meter(id: &str, account: Option<&str>, status: MeterStatus, dials: u8) -> Meter {
    Meter {
        id: id.into(),
        account_id: account.map(str::to_string),
        status,
        register: Register {
            dials,
            multiplier: 1,
            unit: Unit::Hcf,
        },
        installed_on: Some(day(2020, 1, 1)),
        removed_on: None,
    }
}

/// `LK` (a leak: opens a follow-up) and `DG` (a dog).
pub fn message_codes() -> Vec<MessageCode> {
    vec![
        MessageCode {
            code: "LK".into(),
            category: "trouble".into(),
            description: "Leak seen".into(),
            requires_follow_up: true,
            retired: false,
        },
        MessageCode {
            code: "DG".into(),
            category: "hazard".into(),
            description: "Dog".into(),
            requires_follow_up: false,
            retired: false,
        },
    ]
}

/// The `meter-gateway` binary, with the environment's database and config settings removed.
pub fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meter-gateway"));
    c.env_remove("METER_GATEWAY_DB")
        .env_remove("METER_GATEWAY_CONFIG")
        .env("RUST_LOG", "warn");
    c
}

// ---- handhelds --------------------------------------------------------------------------------

/// Keeps only the reads of the stops at `positions` of the handheld's first route (a reader who read
/// part of the route).
pub fn keep_stops(
    state: &mut meter_gateway::sync::handheld::HandheldState,
    positions: std::ops::Range<usize>,
) {
    let meters: std::collections::HashSet<String> = state.routes[0].stops[positions]
        .iter()
        .map(|s| s.meter_id.clone())
        .collect();
    state.pending.retain(|r| meters.contains(&r.meter_id));
}

/// What the handheld keyed, by (meter, reading, time): the reads that must each be stored once.
pub fn keyed(state: &meter_gateway::sync::handheld::HandheldState) -> Vec<(String, String, i64)> {
    state
        .pending
        .iter()
        .map(|r| {
            let raw = if r.read_type == firmware_protocol::message::ReadType::Skipped {
                String::new()
            } else {
                r.reading.to_string()
            };
            (r.meter_id.clone(), raw, r.read_time)
        })
        .collect()
}

/// Walks the handheld's route at `time` (protocol seconds) and keeps the reads of `stops`.
pub fn walk_part(
    state: &mut meter_gateway::sync::handheld::HandheldState,
    seed: u64,
    stops: std::ops::Range<usize>,
    time: i64,
) {
    let mut part = state.clone();
    part.pending.clear();
    meter_gateway::sync::handheld::walk_route(
        &mut part,
        0,
        &meter_gateway::sync::handheld::ReadModel::default(),
        &mut meter_gateway::sync::handheld::Rng::new(seed),
        "JS",
        time,
    );
    keep_stops(&mut part, stops);
    // Numbered in the handheld's own order, from its counter.
    for mut r in part.pending.drain(..) {
        r.device_seq = 0;
        state.record(r);
    }
}
