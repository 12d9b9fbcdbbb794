//! The reliable-transfer layer end to end: whole transfers over the simulated serial link (rate,
//! latency, bit errors, cable cuts), and its timers driven by hand. Virtual time throughout.
#![cfg(feature = "std")]

use firmware_protocol::sim::{Cut, LinkParams, Side, Sim};
use firmware_protocol::transfer::{
    Direction, Endpoint, Event, LinkConfig, LinkState, PeerError, RejectReason, Role,
};
use firmware_protocol::{encode_frame_vec, Decoder, Feed, FrameType, Header};

const T0: u64 = 1_000_000;

fn config(nonce: u32) -> LinkConfig {
    LinkConfig {
        max_payload: 4096,
        window: 32,
        line_rate: Some(11_520),
        nonce,
        ..LinkConfig::default()
    }
}

/// Deterministic incompressible bytes.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn pair_with(params: LinkParams, a: LinkConfig, b: LinkConfig) -> Sim<Endpoint, Endpoint> {
    let dock = Endpoint::new(Role::Dock, a, T0);
    let handheld = Endpoint::new(Role::Handheld, b, T0);
    Sim::new(dock, handheld, params, T0)
}

fn pair(params: LinkParams) -> Sim<Endpoint, Endpoint> {
    pair_with(params, config(1), config(2))
}

/// Every event either side reported, in order.
#[derive(Default)]
struct Log {
    a: Vec<Event>,
    b: Vec<Event>,
}

impl Log {
    fn collect(&mut self, sim: &mut Sim<Endpoint, Endpoint>) {
        while let Some(e) = sim.a.poll_event() {
            self.a.push(e);
        }
        while let Some(e) = sim.b.poll_event() {
            self.b.push(e);
        }
    }
}

fn completed(events: &[Event]) -> Vec<(u32, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TransferComplete { id, data } => Some((*id, data.clone())),
            _ => None,
        })
        .collect()
}

fn ids(done: &[(u32, Vec<u8>)]) -> Vec<(u32, usize)> {
    done.iter().map(|(id, d)| (*id, d.len())).collect()
}

fn delivered(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn peer_errors(events: &[Event]) -> Vec<PeerError> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PeerError(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_transfer_crosses_a_clean_link_byte_identical_and_once() {
    let data = payload(40_000, 1);
    let mut sim = pair(LinkParams::default());
    sim.a.send(7, data.clone()).unwrap();
    let mut log = Log::default();
    let done = sim.run_until(60_000, |s| {
        log.collect(s);
        !delivered(&log.a).is_empty()
    });
    assert!(done, "not delivered; dock saw {:?}", log.a);
    // Keep running: nothing may be delivered a second time.
    sim.run_until(70_000, |s| {
        log.collect(s);
        false
    });
    let got = completed(&log.b);
    assert!(got == vec![(7, data.clone())], "received {:?}", ids(&got));
    assert_eq!(delivered(&log.a), vec![7]);
    assert_eq!(sim.a.stats().chunk_bytes_resent, 0);
    assert_eq!(
        sim.a.state(),
        LinkState::Up,
        "an idle link is kept alive by pings"
    );
    assert!(log.b.iter().any(|e| matches!(
        e,
        Event::Progress {
            id: 7,
            direction: Direction::Incoming,
            ..
        }
    )));
    // On a clean link frames grow past the initial 1 KB, toward the negotiated 4 KB.
    assert!(sim.a.chunk_len() > 2048, "chunk {}", sim.a.chunk_len());
}

#[test]
fn both_sides_send_at_once_and_every_transfer_arrives_once() {
    let (a1, a2, b1) = (payload(20_000, 2), payload(3_000, 3), payload(25_000, 4));
    let mut sim = pair(LinkParams {
        latency_ms: 20,
        ..LinkParams::default()
    });
    sim.a.send(1, a1.clone()).unwrap();
    sim.a.send(2, a2.clone()).unwrap();
    sim.a.send(3, Vec::new()).unwrap();
    sim.b.send(1, b1.clone()).unwrap();
    let mut log = Log::default();
    let done = sim.run_until(60_000, |s| {
        log.collect(s);
        delivered(&log.a).len() == 3 && delivered(&log.b).len() == 1
    });
    assert!(done, "dock {:?} handheld {:?}", log.a, log.b);
    sim.run_until(65_000, |s| {
        log.collect(s);
        false
    });
    // An empty transfer completes with its Offer, ahead of the others; the rest keep their order.
    let mut got_b = completed(&log.b);
    got_b.sort();
    let mut want_b = vec![(1, a1), (2, a2), (3, Vec::new())];
    want_b.sort();
    assert!(got_b == want_b, "handheld received {:?}", ids(&got_b));
    let got_a = completed(&log.a);
    assert!(got_a == vec![(1, b1)], "dock received {:?}", ids(&got_a));
}

#[test]
fn transfers_arrive_byte_identical_through_latency_and_bit_errors() {
    for seed in 1..=3 {
        let (down, up) = (payload(30_000, seed), payload(12_000, seed + 100));
        let mut sim = pair(LinkParams {
            latency_ms: 20,
            ber: 1e-4,
            seed,
            ..LinkParams::default()
        });
        sim.a.send(10, down.clone()).unwrap();
        sim.b.send(20, up.clone()).unwrap();
        let mut log = Log::default();
        let done = sim.run_until(120_000, |s| {
            log.collect(s);
            !delivered(&log.a).is_empty() && !delivered(&log.b).is_empty()
        });
        assert!(done, "seed {seed}: dock {:?}", sim.a.stats());
        let (got_b, got_a) = (completed(&log.b), completed(&log.a));
        assert!(got_b == vec![(10, down)], "seed {seed}: {:?}", ids(&got_b));
        assert!(got_a == vec![(20, up)], "seed {seed}: {:?}", ids(&got_a));
        assert!(sim.link.stats().bit_flips > 0);
        assert!(sim.a.stats().bad_frames + sim.b.stats().bad_frames > 0);
        assert!(peer_errors(&log.a).is_empty() && peer_errors(&log.b).is_empty());
        // Under a bit error rate of 1e-4 a 1 KB frame fails more often than not: frames shrink.
        assert!(
            sim.a.chunk_len() < 600,
            "seed {seed}: chunk {}",
            sim.a.chunk_len()
        );
    }
}

#[test]
fn a_cable_cut_resumes_from_the_receivers_offset() {
    const ID: u32 = 0xC0FFEE;
    let data = payload(40_000, 9);
    let mut sim = pair(LinkParams {
        cut: Some(Cut::AfterBytes {
            side: Side::A,
            bytes: 15_000,
        }),
        ..LinkParams::default()
    });
    sim.a.send(ID, data.clone()).unwrap();
    let mut log = Log::default();
    assert!(sim.run_until(60_000, |s| {
        log.collect(s);
        s.link.is_cut()
    }));
    assert!(completed(&log.b).is_empty());
    let (offset, held) = sim.b.partial(ID).expect("the handheld holds a prefix");
    assert_eq!(held, &data[..offset as usize]);
    assert!(offset > 8_000, "held only {offset} bytes");
    assert_eq!(sim.a.pending_sends().collect::<Vec<_>>(), vec![ID]);
    let sent_before = sim.a.stats().chunk_bytes_sent - sim.a.stats().chunk_bytes_resent;

    // Redock: both endpoints are rebuilt; the handheld is seeded with what it held.
    let mut handheld = Endpoint::new(Role::Handheld, config(3), T0 + 600_000);
    for p in sim.b.partials() {
        handheld
            .import_partial(p.id, p.total, p.data.to_vec())
            .unwrap();
    }
    let mut dock = Endpoint::new(Role::Dock, config(4), T0 + 600_000);
    dock.send(ID, data.clone()).unwrap();
    let mut sim = Sim::new(dock, handheld, LinkParams::default(), T0 + 600_000);
    let mut log = Log::default();
    assert!(sim.run_until(60_000, |s| {
        log.collect(s);
        !delivered(&log.a).is_empty()
    }));
    let got = completed(&log.b);
    assert!(got == vec![(ID, data.clone())], "received {:?}", ids(&got));
    for events in [&log.a, &log.b] {
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Resumed { id: ID, offset: o, .. } if *o == offset)));
    }
    // Only what followed the receiver's offset crossed the link again, and what the first
    // connection sent beyond that offset (lost in the cut) is at most one window.
    assert_eq!(sim.a.stats().chunk_bytes_sent, 40_000 - u64::from(offset));
    let window_bytes = 32 * 4096;
    assert!(sent_before - u64::from(offset) <= window_bytes);
}

#[test]
fn a_peer_restart_mid_transfer_resumes_without_the_other_side_restarting() {
    let data = payload(30_000, 11);
    let mut sim = pair(LinkParams::default());
    sim.a.send(5, data.clone()).unwrap();
    let mut log = Log::default();
    assert!(sim.run_until(60_000, |s| {
        log.collect(s);
        s.b.partial(5).is_some_and(|(o, _)| o > 10_000)
    }));
    // The handheld reboots; its firmware kept the partial download. The dock endpoint lives on.
    let (offset, held) = sim.b.partial(5).map(|(o, h)| (o, h.to_vec())).unwrap();
    let mut reborn = Endpoint::new(Role::Handheld, config(77), sim.now_ms());
    reborn.import_partial(5, 30_000, held).unwrap();
    sim.b = reborn;
    let mut log = Log::default();
    assert!(sim.run_until(120_000, |s| {
        log.collect(s);
        !delivered(&log.a).is_empty()
    }));
    let got = completed(&log.b);
    assert!(got == vec![(5, data)], "received {:?}", ids(&got));
    assert_eq!(sim.a.stats().peer_restarts, 1);
    assert!(log
        .b
        .iter()
        .any(|e| matches!(e, Event::Resumed { id: 5, offset: o, .. } if *o >= offset)));
}

#[test]
fn a_peer_that_reboots_into_the_same_session_nonce_is_still_seen_to_restart() {
    let data = payload(20_000, 12);
    let mut sim = pair(LinkParams::default());
    sim.a.send(5, data.clone()).unwrap();
    assert!(sim.run_until(60_000, |s| s.b.partial(5).is_some_and(|(o, _)| o > 5_000)));
    let held = sim.b.partial(5).map(|(_, h)| h.to_vec()).unwrap();
    // Same nonce, same clock reading: the same session number as before the reboot.
    let mut reborn = Endpoint::new(Role::Handheld, config(2), T0);
    reborn.import_partial(5, 20_000, held).unwrap();
    sim.b = reborn;
    let mut log = Log::default();
    assert!(sim.run_until(120_000, |s| {
        log.collect(s);
        !delivered(&log.a).is_empty()
    }));
    let got = completed(&log.b);
    assert!(got == vec![(5, data)], "received {:?}", ids(&got));
    assert_eq!(sim.a.stats().peer_restarts, 1);
}

#[test]
fn an_offer_beyond_the_receivers_limit_is_rejected() {
    let mut sim = pair_with(
        LinkParams::default(),
        config(1),
        LinkConfig {
            max_transfer_len: 10_000,
            ..config(2)
        },
    );
    sim.a.send(1, payload(20_000, 1)).unwrap();
    sim.a.send(2, payload(5_000, 2)).unwrap();
    let mut log = Log::default();
    assert!(sim.run_until(30_000, |s| {
        log.collect(s);
        !delivered(&log.a).is_empty()
    }));
    assert!(log.a.contains(&Event::Rejected {
        id: 1,
        reason: RejectReason::TooLarge
    }));
    assert_eq!(completed(&log.b).len(), 1);
    assert_eq!(delivered(&log.a), vec![2]);
}

#[test]
fn a_transfer_delivered_on_an_earlier_connection_is_not_delivered_again() {
    let data = payload(10_000, 5);
    let mut sim = pair(LinkParams::default());
    sim.b.mark_delivered(9, 10_000);
    sim.a.send(9, data).unwrap();
    let mut log = Log::default();
    assert!(sim.run_until(30_000, |s| {
        log.collect(s);
        !delivered(&log.a).is_empty()
    }));
    assert!(completed(&log.b).is_empty());
    assert_eq!(sim.a.stats().chunk_bytes_sent, 0);
}

// ---- Driven by hand, frame by frame ----

/// Everything `ep` wants to send now, one frame per entry.
fn frames(ep: &mut Endpoint, now: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut f = Vec::new();
        if !ep.poll_transmit(now, &mut f) {
            return out;
        }
        out.push(f);
    }
}

fn frame_type(wire: &[u8]) -> FrameType {
    let mut d = Decoder::new(4096);
    match d.feed(wire) {
        Feed::Frame { frame, .. } => frame.header.frame_type,
        other => panic!("not a frame: {other:?}"),
    }
}

/// Two endpoints after the handshake, without line-rate timing (frames leave when handed out).
fn connected(now: u64) -> (Endpoint, Endpoint) {
    let cfg = |nonce| LinkConfig {
        nonce,
        line_rate: None,
        ..LinkConfig::default()
    };
    let mut a = Endpoint::new(Role::Dock, cfg(1), now);
    let mut b = Endpoint::new(Role::Handheld, cfg(2), now);
    for _ in 0..4 {
        for f in frames(&mut a, now) {
            b.handle_input(&f, now);
        }
        for f in frames(&mut b, now) {
            a.handle_input(&f, now);
        }
    }
    assert_eq!((a.state(), b.state()), (LinkState::Up, LinkState::Up));
    assert!(matches!(a.poll_event(), Some(Event::LinkUp { .. })));
    assert!(matches!(b.poll_event(), Some(Event::LinkUp { .. })));
    (a, b)
}

#[test]
fn duplicate_frames_are_acknowledged_but_not_delivered_twice() {
    let (mut a, mut b) = connected(T0);
    let data = payload(6_000, 6);
    a.send(1, data.clone()).unwrap();
    let mut got = Vec::new();
    for round in 0..50 {
        let now = T0 + round;
        for f in frames(&mut a, now) {
            // Every frame arrives twice, as after a retransmission whose ACK was lost.
            b.handle_input(&f, now);
            b.handle_input(&f, now);
        }
        for f in frames(&mut b, now) {
            a.handle_input(&f, now);
        }
        while let Some(e) = b.poll_event() {
            if let Event::TransferComplete { id, data } = e {
                got.push((id, data));
            }
        }
    }
    assert!(got == vec![(1, data)], "received {:?}", ids(&got));
    assert!(b.stats().duplicates >= 6);
}

#[test]
fn with_no_input_retransmissions_come_within_two_seconds_and_back_off_to_it() {
    let (mut a, _b) = connected(T0);
    a.send(1, payload(500, 7)).unwrap();
    let mut now = T0;
    let mut data_times = Vec::new();
    let mut down_at = None;
    while now < T0 + 60_000 && down_at.is_none() {
        for f in frames(&mut a, now) {
            if frame_type(&f) == FrameType::Data {
                data_times.push(now);
            }
        }
        while let Some(e) = a.poll_event() {
            if e == Event::LinkDown {
                down_at = Some(now);
            }
        }
        let Some(t) = a.poll_timeout() else { break };
        assert!(t >= now, "timer in the past");
        now = t.max(now + 1);
        a.handle_timeout(now);
    }
    // Offer first, then its retransmissions (the peer never answers, so no data follows).
    assert!(data_times.len() >= 4, "{data_times:?}");
    let gaps: Vec<u64> = data_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| g <= 2_000), "gaps {gaps:?}");
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0]),
        "back-off shrank: {gaps:?}"
    );
    assert_eq!(
        gaps.last(),
        Some(&2_000),
        "back-off reaches the ACK timeout: {gaps:?}"
    );
    // Keepalive: with nothing heard, the link is declared down after the missed probes.
    let down_at = down_at.expect("link declared down");
    assert!(
        down_at - T0 <= 1_000 + 3 * 2_000 + 10,
        "down after {} ms",
        down_at - T0
    );
    assert!(a.poll_timeout().is_none());
    assert!(!a.poll_transmit(now, &mut Vec::new()));
}

#[test]
fn keepalive_detects_a_dead_link_and_a_live_idle_link_stays_up() {
    let mut sim = pair(LinkParams::default());
    let mut log = Log::default();
    sim.run_until(30_000, |s| {
        log.collect(s);
        false
    });
    assert_eq!(
        (sim.a.state(), sim.b.state()),
        (LinkState::Up, LinkState::Up)
    );

    let mut sim = pair(LinkParams {
        cut: Some(Cut::AtMs(5_000)),
        ..LinkParams::default()
    });
    let mut log = Log::default();
    assert!(sim.run_until(30_000, |s| {
        log.collect(s);
        log.a.contains(&Event::LinkDown) && log.b.contains(&Event::LinkDown)
    }));
    let after_cut = sim.elapsed_ns() / 1_000_000 - 5_000;
    assert!(
        (4_000..=7_100).contains(&after_cut),
        "down {after_cut} ms after the cut"
    );
}

#[test]
fn a_partial_frame_followed_by_500_ms_of_silence_is_discarded() {
    let (mut a, mut b) = connected(T0);
    a.send(1, payload(800, 8)).unwrap();
    let offer = frames(&mut a, T0).remove(0);
    assert!(offer.len() <= a.max_frame_len());
    let (head, tail) = offer.split_at(offer.len() / 2);

    // Completed within the gap: accepted.
    b.handle_input(head, T0);
    b.handle_input(tail, T0 + 499);
    assert_eq!(b.stats().gap_discards, 0);
    assert_eq!(b.stats().bad_frames, 0);

    // The same frame split by 500 ms of silence: the head is dropped, the tail is garbage.
    let received = b.stats().frames_received;
    b.handle_input(head, T0 + 1_000);
    assert_eq!(b.poll_timeout().map(|t| t <= T0 + 1_500), Some(true));
    b.handle_timeout(T0 + 1_500);
    assert_eq!(b.stats().gap_discards, 1);
    b.handle_input(tail, T0 + 1_500);
    assert_eq!(b.stats().frames_received, received);
    assert_eq!(b.stats().bad_frames, 1);
}

#[test]
fn a_frame_from_a_newer_protocol_version_is_reported_once() {
    let (_a, mut b) = connected(T0);
    let mut wire = Vec::new();
    let header = Header {
        version: 2,
        ..Header::new(FrameType::Data, 0)
    };
    encode_frame_vec(&header, b"from the future", &mut wire).unwrap();
    b.handle_input(&wire, T0);
    b.handle_input(&wire, T0);
    let mut errors = Vec::new();
    while let Some(e) = b.poll_event() {
        if let Event::PeerError(p) = e {
            errors.push(p);
        }
    }
    assert_eq!(errors, vec![PeerError::UnsupportedVersion(2)]);
}

#[test]
fn imported_state_is_checked() {
    let mut e = Endpoint::new(Role::Handheld, LinkConfig::default(), 0);
    assert!(e.import_partial(1, 10, vec![0; 11]).is_err());
    assert!(e.import_partial(1, u32::MAX, Vec::new()).is_err());
    e.import_partial(2, 10, vec![1, 2, 3]).unwrap();
    assert_eq!(e.partial(2), Some((3, &[1u8, 2, 3][..])));
}

/// A hand-made `Reset` (session 77, no echo) announcing `max_payload` and `window`.
fn reset_frame(max_payload: u16, window: u16) -> Vec<u8> {
    let mut payload = vec![0u8; 4];
    payload.extend_from_slice(&max_payload.to_le_bytes());
    payload.extend_from_slice(&window.to_le_bytes());
    let mut wire = Vec::new();
    encode_frame_vec(&Header::new(FrameType::Reset, 77), &payload, &mut wire).unwrap();
    wire
}

#[test]
fn a_reset_below_the_smallest_chunk_or_with_no_window_is_ignored_and_reported() {
    for (max_payload, window) in [(0u16, 8u16), (31, 8), (1024, 0)] {
        let mut e = Endpoint::new(Role::Dock, config(5), T0);
        let _ = frames(&mut e, T0);
        e.handle_input(&reset_frame(max_payload, window), T0);
        let mut errors = Vec::new();
        while let Some(ev) = e.poll_event() {
            if let Event::PeerError(p) = ev {
                errors.push(p);
            }
        }
        assert_eq!(
            errors,
            vec![PeerError::BadReset {
                max_payload,
                window
            }]
        );
        // Not answered with an echo: the peer's session was not recorded.
        assert_eq!(e.state(), LinkState::Connecting);
        assert!(frames(&mut e, T0 + 1).is_empty());
    }
    // At the minimum the handshake proceeds: the Reset is answered at once.
    let mut e = Endpoint::new(Role::Dock, config(5), T0);
    let _ = frames(&mut e, T0);
    e.handle_input(&reset_frame(32, 1), T0);
    assert_eq!(frame_type(&frames(&mut e, T0)[0]), FrameType::Reset);
}
