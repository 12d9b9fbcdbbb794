//! Unit tests of the message codec.

use super::codec::{Reader, Writer};
use super::route::MIN_STOP_BYTES;
use super::*;
use alloc::string::ToString;
use alloc::vec;

fn stop() -> RouteStop {
    RouteStop {
        sequence: 10,
        account_id: "100234-01".into(),
        customer_name: "María Núñez".into(),
        service_address: "1412 W Orchard Ln".into(),
        meter_id: "SN48213377".into(),
        location_note: "left of driveway".into(),
        hazard_note: "dog in yard".into(),
        dials: 6,
        decimals: 0,
        multiplier: 1,
        unit: Unit::Hcf,
        previous_reading: 4_512,
        previous_read_date: 20_750,
        low_limit: 4_520,
        high_limit: 4_560,
        field_orders: vec![FieldOrder {
            order_id: 7,
            kind: FieldOrderKind::Reread,
            instructions: "customer disputes last bill".into(),
        }],
        low_limit_last: 4_524,
        high_limit_last: 4_575,
    }
}

fn read() -> Read {
    Read {
        device_seq: 1_001,
        meter_id: "SN48213377".into(),
        reading: 4_537,
        read_time: 1_795_000_000,
        read_type: ReadType::Regular,
        method: ReadMethod::Keyed,
        message_codes: vec!["LK".into()],
        skip_code: None,
        note: Some("leak at hose bib".into()),
        reader_id: "JS".into(),
        order: Some(OrderCompletion {
            order_id: 9,
            new_meter_id: Some("SN5000001".into()),
            new_meter_initial: Some(0),
        }),
    }
}

fn all_messages() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            device_id: "HH-0042".into(),
            firmware_version: "3.1.4".into(),
            protocol_versions: vec![2],
            max_payload: 1024,
            window: 8,
            compression: Compression::DEFLATE,
            pending_reads: 312,
            state_id: u64::MAX,
        }),
        Message::Welcome(Welcome {
            protocol_version: 2,
            max_payload: 512,
            window: 4,
            compression: Compression::NONE,
            server_time: -1,
            assigned_routes: vec!["R07".into(), "R12".into()],
            held_seq: 1_000,
        }),
        Message::ClockSync {
            server_time: i64::MIN,
        },
        Message::RouteOffer(RouteOffer {
            transfer_id: u32::MAX,
            route_id: "R07".into(),
            cycle_id: "2026-11".into(),
            stops: 1,
            bytes: 300,
            compressed: true,
        }),
        Message::RouteAccept {
            transfer_id: 3,
            resume_from: 0,
        },
        Message::RouteData(Route {
            route_id: "R07".into(),
            cycle_id: "2026-11".into(),
            window_from: 20_758,
            window_to: 20_777,
            stops: vec![stop(), stop()],
        }),
        Message::MessageCodeTable {
            codes: vec![MessageCode {
                code: "DG".into(),
                category: "hazard".into(),
                description: "Dog".into(),
                requires_follow_up: false,
            }],
        },
        Message::FieldOrders {
            orders: vec![AccountOrder {
                account_id: "100234-01".into(),
                meter_id: "SN48213377".into(),
                order: FieldOrder {
                    order_id: u64::MAX,
                    kind: FieldOrderKind::Unknown(77),
                    instructions: String::new(),
                },
            }],
        },
        Message::ReadBatch {
            reads: vec![read(), read()],
        },
        Message::ReadAck {
            up_to_seq: u64::MAX,
            refused: vec![
                RefusedRead {
                    device_seq: 17,
                    reason: RefusalReason::SeqConflict,
                },
                RefusedRead {
                    device_seq: 18,
                    reason: RefusalReason::Unknown(200),
                },
            ],
        },
        Message::Error {
            code: error_code::BUSY,
            text: "serving another handheld".into(),
        },
        Message::Bye {
            reason: ByeReason::Done,
        },
        Message::Unknown {
            message_type: 0x7E,
            body: vec![1, 2, 3],
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for m in all_messages() {
        let bytes = m.to_vec();
        assert_eq!(bytes[0], m.message_type());
        assert_eq!(Message::decode(&bytes), Ok(m.clone()), "{}", m.name());
        assert_eq!(m.validate(), Ok(()));
    }
}

#[test]
fn every_proper_prefix_of_a_message_is_rejected() {
    for m in all_messages() {
        if matches!(m, Message::Unknown { .. }) {
            continue;
        }
        let bytes = m.to_vec();
        for cut in 0..bytes.len() {
            assert!(
                Message::decode(&bytes[..cut]).is_err(),
                "{} cut at {cut}",
                m.name()
            );
        }
    }
}

#[test]
fn varints_use_the_shortest_little_endian_groups() {
    let cases: &[(u64, &[u8])] = &[
        (0, &[0x00]),
        (1, &[0x01]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (300, &[0xAC, 0x02]),
        (16_384, &[0x80, 0x80, 0x01]),
        (
            u64::MAX,
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
    ];
    for (v, want) in cases {
        let mut out = Vec::new();
        write_varint(&mut out, *v);
        assert_eq!(&out, want, "{v}");
        let mut r = Reader {
            buf: want,
            pos: 0,
            base: 0,
            lenient: false,
        };
        assert_eq!(r.varint("v"), Ok(*v));
    }
}

#[test]
fn overlong_and_oversized_varints_are_rejected() {
    let read = |b: &[u8]| {
        Reader {
            buf: b,
            pos: 0,
            base: 0,
            lenient: false,
        }
        .varint("v")
    };
    assert_eq!(
        read(&[0x80, 0x00]),
        Err(MessageError::NonCanonicalVarint { at: 0 })
    );
    assert_eq!(
        read(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
        Err(MessageError::VarintOverflow { at: 0 })
    );
    assert_eq!(
        read(&[0x80; 11]),
        Err(MessageError::VarintOverflow { at: 0 })
    );
}

#[test]
fn zigzag_keeps_small_negative_numbers_short() {
    assert_eq!(zigzag(0), 0);
    assert_eq!(zigzag(-1), 1);
    assert_eq!(zigzag(1), 2);
    assert_eq!(zigzag(i64::MIN), u64::MAX);
    for v in [0, 1, -1, 1_795_000_000, i64::MAX, i64::MIN] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
}

#[test]
fn a_hostile_list_count_is_refused_before_allocating() {
    // ReadBatch claiming 2^62 reads in 12 bytes.
    let mut bytes = vec![message_type::READ_BATCH, 1];
    write_varint(&mut bytes, 1 << 62);
    assert_eq!(
        Message::decode(&bytes),
        Err(MessageError::TooManyItems {
            field: "reads",
            count: 1 << 62,
            max: limits::READS
        })
    );
    // Within the limit but more items than bytes left.
    let mut bytes = vec![message_type::READ_BATCH, 1];
    write_varint(&mut bytes, 5_000);
    assert!(matches!(
        Message::decode(&bytes),
        Err(MessageError::Truncated { field: "reads", .. })
    ));
}

#[test]
fn a_string_over_its_limit_is_refused_with_the_field_named() {
    let m = Message::Error {
        code: 1,
        text: "x".repeat(limits::NOTE + 1),
    };
    assert_eq!(
        Message::decode(&m.to_vec()),
        Err(MessageError::StringTooLong {
            field: "text",
            len: 256,
            max: 255
        })
    );
    assert!(m.encode_checked(&mut Vec::new()).is_err());
}

#[test]
fn invalid_utf8_is_refused_at_its_offset() {
    let bytes = [message_type::ERROR, 1, 0x01, 0x03, b'a', 0xC3, 0x28];
    assert_eq!(
        Message::decode(&bytes),
        Err(MessageError::BadUtf8 {
            field: "text",
            at: 5
        })
    );
}

#[test]
fn a_bool_other_than_zero_or_one_is_refused() {
    let offer = Message::RouteOffer(RouteOffer {
        transfer_id: 1,
        route_id: "R".into(),
        cycle_id: "C".into(),
        stops: 1,
        bytes: 1,
        compressed: true,
    });
    let mut bytes = offer.to_vec();
    let last = bytes.len() - 1;
    bytes[last] = 2;
    assert_eq!(
        Message::decode(&bytes),
        Err(MessageError::OutOfRange {
            field: "compressed",
            value: 2
        })
    );
}

#[test]
fn an_unknown_message_type_is_reported_not_fatal() {
    assert_eq!(
        Message::decode(&[0x99, 1, 0xAA]),
        Ok(Message::Unknown {
            message_type: 0x99,
            body: vec![1, 0xAA]
        })
    );
    assert_eq!(Message::decode(&[]), Err(MessageError::Empty));
}

#[test]
fn a_newer_message_version_may_append_fields_to_the_body_and_to_records() {
    // Version 2 of ReadBatch with one extra byte in the read record and one after the list.
    let mut v1 = Vec::new();
    Message::ReadBatch {
        reads: vec![read()],
    }
    .encode(&mut v1);
    let mut rec = Vec::new();
    write_read(&mut Writer { out: &mut rec }, &read());
    rec.push(0xEE);
    let mut v2 = vec![message_type::READ_BATCH, 2, 1];
    write_varint(&mut v2, rec.len() as u64);
    v2.extend_from_slice(&rec);
    v2.push(0xEE);
    assert_eq!(Message::decode(&v2), Message::decode(&v1));
    // The same bytes at version 1 are an error: a v1 decoder knows every v1 field.
    v2[1] = 1;
    assert!(matches!(
        Message::decode(&v2),
        Err(MessageError::TrailingBytes { .. })
    ));
}

#[test]
fn a_route_claiming_more_stops_than_its_bytes_can_hold_is_refused() {
    let mut bytes = vec![message_type::ROUTE_DATA, 2, 1, b'R', 1, b'C', 0, 0];
    write_varint(&mut bytes, 10);
    bytes.extend_from_slice(&[0u8; 10 * MIN_STOP_BYTES - 1]);
    assert!(matches!(
        Message::decode(&bytes),
        Err(MessageError::Truncated { field: "stops", .. })
    ));
}

#[test]
fn version_zero_is_unsupported() {
    assert_eq!(
        Message::decode(&[message_type::READ_ACK, 0, 5]),
        Err(MessageError::UnsupportedVersion {
            message_type: message_type::READ_ACK,
            version: 0
        })
    );
}

#[test]
fn a_record_longer_than_the_message_is_an_overrun() {
    let bytes = [message_type::READ_BATCH, 1, 1, 0x7F, 0x01];
    assert_eq!(
        Message::decode(&bytes),
        Err(MessageError::RecordOverrun { at: 3, len: 127 })
    );
}

#[test]
fn limits_that_wrap_through_zero_accept_readings_on_both_sides_of_the_rollover() {
    let mut s = stop();
    s.previous_reading = 999_940;
    (s.low_limit, s.high_limit) = (999_950, 30);
    (s.low_limit_last, s.high_limit_last) = (999_950, 30);
    let l = s.limits_on((100, 130), 110);
    assert!(l.contains(999_990));
    assert!(l.contains(0));
    assert!(l.contains(30));
    assert!(!l.contains(31));
    assert!(!l.contains(500_000));
    (s.low_limit, s.high_limit) = (100, 200);
    (s.low_limit_last, s.high_limit_last) = (100, 200);
    s.previous_reading = 90;
    let l = s.limits_on((100, 130), 110);
    assert!(l.contains(100) && l.contains(200) && !l.contains(99) && !l.contains(201));
}

#[test]
fn limits_move_linearly_from_the_first_day_to_the_last() {
    let mut s = stop();
    s.previous_reading = 1_000;
    (s.low_limit, s.high_limit) = (1_010, 1_040);
    (s.low_limit_last, s.high_limit_last) = (1_020, 1_071);
    let w = (20_000, 20_030);
    assert_eq!(
        s.limits_on(w, 20_000),
        DayLimits::Range {
            low: 1_010,
            high: 1_040
        }
    );
    assert_eq!(
        s.limits_on(w, 20_030),
        DayLimits::Range {
            low: 1_020,
            high: 1_071
        }
    );
    // Day 10 of 30: low 1010 + ⌊10·10/30⌋ = 1013, high 1040 + ⌈31·10/30⌉ = 1051.
    assert_eq!(
        s.limits_on(w, 20_010),
        DayLimits::Range {
            low: 1_013,
            high: 1_051
        }
    );
    // Days outside the window take the nearest end.
    assert_eq!(s.limits_on(w, 19_000), s.limits_on(w, 20_000));
    assert_eq!(s.limits_on(w, 21_000), s.limits_on(w, 20_030));
    // A one-day window, or a reversed one, gives the first-day limits.
    assert_eq!(
        s.limits_on((20_000, 20_000), 20_000),
        s.limits_on(w, 20_000)
    );
}

#[test]
fn limits_crossing_the_rollover_between_the_two_ends_wrap_on_the_days_between() {
    let mut s = stop();
    s.dials = 4;
    s.previous_reading = 9_950;
    // First day 9960–9990; last day 9980–0030 (the range wraps by then).
    (s.low_limit, s.high_limit) = (9_960, 9_990);
    (s.low_limit_last, s.high_limit_last) = (9_980, 30);
    let l = s.limits_on((0, 20), 20);
    assert_eq!(
        l,
        DayLimits::Range {
            low: 9_980,
            high: 30
        }
    );
    assert!(l.contains(9_999) && l.contains(0) && l.contains(30) && !l.contains(31));
    // Half way: offsets from 9950 go low 10 → 30 and high 40 → 80, so the limits are 9970 and
    // 9950 + 60 = 10010, which wraps to 10.
    assert_eq!(
        s.limits_on((0, 20), 10),
        DayLimits::Range {
            low: 9_970,
            high: 10
        }
    );
}

#[test]
fn a_stop_without_limits_accepts_every_reading_on_every_day() {
    let mut s = stop();
    s.dials = 5;
    s.previous_reading = 123;
    (s.low_limit, s.high_limit) = (0, 99_999);
    (s.low_limit_last, s.high_limit_last) = (0, 99_999);
    assert_eq!(s.limits_on((0, 30), 15), DayLimits::Any);
    assert!(DayLimits::Any.contains(u64::MAX));
    // An inactive account: no movement at all is expected.
    (s.low_limit, s.high_limit) = (123, 123);
    (s.low_limit_last, s.high_limit_last) = (123, 123);
    let l = s.limits_on((0, 30), 15);
    assert!(l.contains(123) && !l.contains(124) && !l.contains(122));
}

#[test]
fn version_one_bodies_decode_with_the_fields_version_two_appended_at_their_defaults() {
    // Hello v1: no state id.
    let hello = Message::Hello(Hello {
        device_id: "HH-1".into(),
        firmware_version: "1".into(),
        protocol_versions: vec![1],
        max_payload: 1024,
        window: 8,
        compression: Compression::NONE,
        pending_reads: 0,
        state_id: 0,
    });
    let mut bytes = hello.to_vec();
    bytes.pop(); // the state id (0: one byte)
    bytes[1] = 1;
    assert_eq!(Message::decode(&bytes), Ok(hello));
    // ReadAck v1: no refusals.
    assert_eq!(
        Message::decode(&[message_type::READ_ACK, 1, 5]),
        Ok(Message::ReadAck {
            up_to_seq: 5,
            refused: Vec::new()
        })
    );
    // RouteData v1: the last-day limits are the first-day ones.
    let mut one = stop();
    (one.low_limit_last, one.high_limit_last) = (one.low_limit, one.high_limit);
    let route = Route {
        route_id: "R".into(),
        cycle_id: "C".into(),
        window_from: 1,
        window_to: 2,
        stops: vec![one],
    };
    let mut bytes = Message::RouteData(route.clone()).to_vec();
    bytes.truncate(bytes.len() - 2);
    bytes[1] = 1;
    assert_eq!(Message::decode(&bytes), Ok(Message::RouteData(route)));
}

#[test]
fn a_route_transfer_round_trips_compressed_and_plain() {
    let route = Route {
        route_id: "R07".into(),
        cycle_id: "2026-11".into(),
        window_from: 1,
        window_to: 2,
        stops: vec![stop(); 50],
    };
    for compressed in [false, true] {
        let bytes = encode_route_transfer(&route, compressed);
        assert_eq!(
            decode_route_transfer(&bytes, compressed),
            Ok(Message::RouteData(route.clone()))
        );
    }
    assert!(
        encode_route_transfer(&route, true).len() < encode_route_transfer(&route, false).len() / 5
    );
}

#[test]
fn code_enums_keep_unknown_codes_and_names() {
    for code in 0..=255u8 {
        assert_eq!(Unit::from_u8(code).to_u8(), code);
        assert_eq!(ReadType::from_u8(code).to_u8(), code);
    }
    assert_eq!(
        FieldOrderKind::from_name("meter_change"),
        Some(FieldOrderKind::MeterChange)
    );
    assert_eq!(ReadMethod::Probe.name(), Some("probe"));
    assert_eq!(ByeReason::Unknown(9).name(), None);
}

#[test]
fn errors_display_the_field_and_offset() {
    let e = MessageError::Truncated {
        field: "meter_id",
        at: 17,
    };
    assert_eq!(e.to_string(), "message ends inside `meter_id` at byte 17");
}
