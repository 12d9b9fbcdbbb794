//! Properties of the frame decoder and the message codec over random inputs: chunking never
//! matters, corruption is never accepted as a different frame, nothing panics, messages round-trip.
#![cfg(feature = "alloc")]

#[path = "support/fake_route.rs"]
mod fake_route;

use firmware_protocol::message::{
    limits, AccountOrder, ByeReason, Compression, FieldOrder, FieldOrderKind, Hello, Message,
    MessageCode, OrderCompletion, Read, ReadMethod, ReadType, RefusalReason, RefusedRead, Route,
    RouteOffer, RouteStop, Unit, Welcome,
};
use firmware_protocol::{encode_frame_vec, Decoder, Feed, FrameError, FrameType, Header};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

type Decoded = Result<(Header, Vec<u8>), FrameError>;

fn feed_chunks(d: &mut Decoder<Vec<u8>>, chunks: &[&[u8]]) -> Vec<Decoded> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            match d.feed(input) {
                Feed::Consumed => break,
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
    out
}

fn decode(wire: &[u8]) -> Vec<Decoded> {
    feed_chunks(
        &mut Decoder::new(firmware_protocol::DEFAULT_MAX_PAYLOAD),
        &[wire],
    )
}

fn header() -> impl Strategy<Value = Header> {
    (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(t, flags, seq)| Header {
        version: firmware_protocol::PROTOCOL_VERSION,
        frame_type: FrameType::from_u8(t),
        flags,
        seq,
    })
}

/// Payloads biased towards zeros and long non-zero runs, the cases COBS is sensitive to.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300),
        vec(prop_oneof![Just(0u8), any::<u8>()], 0..64),
        (1usize..600, 1u8..=255).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn frame() -> impl Strategy<Value = (Header, Vec<u8>)> {
    (header(), payload())
}

fn encode(frames: &[(Header, Vec<u8>)]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (h, p) in frames {
        encode_frame_vec(h, p, &mut wire).expect("within limits");
    }
    wire
}

/// Splits `wire` at the given points (taken modulo its length).
fn split<'a>(wire: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for c in cuts {
        chunks.push(&wire[start..c]);
        start = c;
    }
    chunks.push(&wire[start..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_frame_stream_split_anywhere_decodes_to_the_same_frames(
        frames in vec(frame(), 1..6),
        points in vec(any::<usize>(), 0..12),
    ) {
        let wire = encode(&frames);
        let mut d = Decoder::new(firmware_protocol::DEFAULT_MAX_PAYLOAD);
        let got = feed_chunks(&mut d, &split(&wire, &points));
        let want: Vec<Decoded> = frames.into_iter().map(Ok).collect();
        prop_assert_eq!(got, want);
        prop_assert!(!d.has_partial());
    }

    #[test]
    fn flipped_bits_are_never_accepted_and_the_next_frame_still_decodes(
        f in frame(),
        flips in vec((any::<usize>(), 0u8..8), 1..5),
        next in frame(),
    ) {
        let mut wire = encode(std::slice::from_ref(&f));
        let clean = wire.clone();
        for (at, bit) in &flips {
            let i = at % wire.len();
            wire[i] ^= 1 << bit;
        }
        // The delimiter must survive for the next frame to start clean; a flipped delimiter merges
        // the two frames, which is covered by the insertion/deletion property.
        let last = wire.len() - 1;
        wire[last] = 0;
        let hit = wire != clean;
        wire.extend(encode(std::slice::from_ref(&next)));
        let got = decode(&wire);
        let frames: Vec<_> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        if hit {
            prop_assert_eq!(frames, vec![&next]);
        } else {
            prop_assert_eq!(frames, vec![&f, &next]);
        }
    }

    #[test]
    fn insertions_and_deletions_never_produce_a_different_frame(
        f in frame(),
        edits in vec((any::<usize>(), any::<bool>(), any::<u8>()), 1..6),
    ) {
        let mut wire = encode(std::slice::from_ref(&f));
        for (at, insert, byte) in edits {
            let i = at % (wire.len() + 1);
            if insert {
                wire.insert(i, byte);
            } else if i < wire.len() {
                wire.remove(i);
            }
        }
        for frame in decode(&wire).into_iter().flatten() {
            prop_assert_eq!(&frame, &f, "a damaged stream produced a different frame");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder_or_exceed_its_limit(
        bytes in vec(prop_oneof![Just(0u8), any::<u8>()], 0..2048),
        limit in 0usize..2048,
        points in vec(any::<usize>(), 0..8),
    ) {
        let mut d = Decoder::new(limit);
        for (_, payload) in feed_chunks(&mut d, &split(&bytes, &points)).into_iter().flatten() {
            prop_assert!(payload.len() <= limit);
        }
    }
}

// ---- messages -------------------------------------------------------------------------------

/// Strings within a limit, with multi-byte characters (the limit is in bytes).
fn text(max_bytes: usize) -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.'ñé&-]{0,24}".prop_map(move |s| {
        let mut s: String = s;
        while s.len() > max_bytes {
            s.pop();
        }
        s
    })
}

fn field_order() -> impl Strategy<Value = FieldOrder> {
    (any::<u64>(), any::<u8>(), text(limits::NOTE)).prop_map(|(order_id, kind, instructions)| {
        FieldOrder {
            order_id,
            kind: FieldOrderKind::from_u8(kind),
            instructions,
        }
    })
}

fn stop() -> impl Strategy<Value = RouteStop> {
    (
        (
            any::<u32>(),
            text(limits::ID),
            text(limits::NAME),
            text(limits::NAME),
            text(limits::ID),
            text(limits::NOTE),
            text(limits::NOTE),
        ),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u8>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
        vec(field_order(), 0..3),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |((seq, acct, name, addr, meter, loc, haz), nums, field_orders, last)| {
                let (dials, decimals, multiplier, unit, prev, date, low, high) = nums;
                RouteStop {
                    sequence: seq,
                    account_id: acct,
                    customer_name: name,
                    service_address: addr,
                    meter_id: meter,
                    location_note: loc,
                    hazard_note: haz,
                    dials,
                    decimals,
                    multiplier,
                    unit: Unit::from_u8(unit),
                    previous_reading: prev,
                    previous_read_date: date,
                    low_limit: low,
                    high_limit: high,
                    field_orders,
                    low_limit_last: last.0,
                    high_limit_last: last.1,
                }
            },
        )
}

fn read() -> impl Strategy<Value = Read> {
    (
        (any::<u64>(), text(limits::ID), any::<u64>(), any::<i64>()),
        (any::<u8>(), any::<u8>(), vec(text(limits::CODE), 0..4)),
        (
            option::of(text(limits::CODE)),
            option::of(text(limits::NOTE)),
            text(limits::ID),
        ),
        option::of((
            any::<u64>(),
            option::of(text(limits::ID)),
            option::of(any::<u64>()),
        )),
    )
        .prop_map(|(a, b, c, order)| Read {
            device_seq: a.0,
            meter_id: a.1,
            reading: a.2,
            read_time: a.3,
            read_type: ReadType::from_u8(b.0),
            method: ReadMethod::from_u8(b.1),
            message_codes: b.2,
            skip_code: c.0,
            note: c.1,
            reader_id: c.2,
            order: order.map(
                |(order_id, new_meter_id, new_meter_initial)| OrderCompletion {
                    order_id,
                    new_meter_id,
                    new_meter_initial,
                },
            ),
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            text(limits::ID),
            text(limits::ID),
            vec(any::<u8>(), 0..4),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            (any::<u32>(), any::<u64>())
        )
            .prop_map(|(d, f, pv, mp, w, c, (p, s))| Message::Hello(Hello {
                device_id: d,
                firmware_version: f,
                protocol_versions: pv,
                max_payload: mp,
                window: w,
                compression: Compression(c),
                pending_reads: p,
                state_id: s,
            })),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<i64>(),
            (vec(text(limits::ID), 0..4), any::<u64>())
        )
            .prop_map(|(v, mp, w, c, t, (r, h))| Message::Welcome(Welcome {
                protocol_version: v,
                max_payload: mp,
                window: w,
                compression: Compression(c),
                server_time: t,
                assigned_routes: r,
                held_seq: h,
            })),
        any::<i64>().prop_map(|t| Message::ClockSync { server_time: t }),
        (
            any::<u32>(),
            text(limits::ID),
            text(limits::ID),
            any::<u32>(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(|(id, r, c, s, b, z)| Message::RouteOffer(RouteOffer {
                transfer_id: id,
                route_id: r,
                cycle_id: c,
                stops: s,
                bytes: b,
                compressed: z,
            })),
        (any::<u32>(), any::<u32>()).prop_map(|(t, r)| Message::RouteAccept {
            transfer_id: t,
            resume_from: r
        }),
        (
            text(limits::ID),
            text(limits::ID),
            any::<u32>(),
            any::<u32>(),
            vec(stop(), 0..4)
        )
            .prop_map(|(r, c, from, to, stops)| Message::RouteData(Route {
                route_id: r,
                cycle_id: c,
                window_from: from,
                window_to: to,
                stops,
            })),
        vec(
            (
                text(limits::CODE),
                text(limits::CATEGORY),
                text(limits::NAME),
                any::<bool>()
            ),
            0..4
        )
        .prop_map(|codes| Message::MessageCodeTable {
            codes: codes
                .into_iter()
                .map(|(code, category, description, f)| MessageCode {
                    code,
                    category,
                    description,
                    requires_follow_up: f,
                })
                .collect(),
        }),
        vec((text(limits::ID), text(limits::ID), field_order()), 0..4).prop_map(|orders| {
            Message::FieldOrders {
                orders: orders
                    .into_iter()
                    .map(|(account_id, meter_id, order)| AccountOrder {
                        account_id,
                        meter_id,
                        order,
                    })
                    .collect(),
            }
        }),
        vec(read(), 0..4).prop_map(|reads| Message::ReadBatch { reads }),
        (any::<u64>(), vec((any::<u64>(), any::<u8>()), 0..4)).prop_map(|(up_to_seq, refused)| {
            Message::ReadAck {
                up_to_seq,
                refused: refused
                    .into_iter()
                    .map(|(device_seq, r)| RefusedRead {
                        device_seq,
                        reason: RefusalReason::from_u8(r),
                    })
                    .collect(),
            }
        }),
        (any::<u16>(), text(limits::NOTE)).prop_map(|(code, text)| Message::Error { code, text }),
        any::<u8>().prop_map(|r| Message::Bye {
            reason: ByeReason::from_u8(r)
        }),
        (0x60u8..0xFF, vec(any::<u8>(), 0..16))
            .prop_map(|(message_type, body)| { Message::Unknown { message_type, body } }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_message_round_trips(m in message()) {
        let bytes = m.to_vec();
        prop_assert_eq!(Message::decode(&bytes), Ok(m.clone()));
        prop_assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn decoding_arbitrary_bytes_as_a_message_never_panics(
        t in prop_oneof![0x01u8..0x06, 0x10u8..0x12, 0x20u8..0x25, any::<u8>()],
        v in prop_oneof![Just(1u8), any::<u8>()],
        body in vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = vec![t, v];
        bytes.extend(body);
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic_and_whatever_is_accepted_is_within_limits(
        m in message(),
        edits in vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = m.to_vec();
        for (at, byte, op) in edits {
            let i = at % (bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok(decoded) = Message::decode(&bytes) {
            // Whatever the decoder accepts is a well-formed message within the limits.
            prop_assert_eq!(decoded.validate(), Ok(()));
        }
    }
}

#[test]
fn a_realistic_two_thousand_stop_route_deflates_well_below_56_kib() {
    let route = fake_route::route(2_000, 0x5EED + 2_000);
    let z = firmware_protocol::message::encode_route_transfer(&route, true);
    assert!(z.len() < 50_000, "{} bytes deflated", z.len());
    assert_eq!(
        firmware_protocol::message::decode_route_transfer(&z, true),
        Ok(Message::RouteData(route))
    );
}
