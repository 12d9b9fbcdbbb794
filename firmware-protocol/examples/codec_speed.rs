//! Prints how fast frames and messages encode and decode, against what a serial link needs
//! (115200 baud 8N1 = 11,520 bytes/s).
//!
//! `cargo run -p firmware-protocol --features std --release --example codec_speed`

#[cfg(not(feature = "alloc"))]
fn main() {
    eprintln!("run with --features std");
}

#[cfg(feature = "alloc")]
#[path = "../tests/support/fake_route.rs"]
mod fake_route;

#[cfg(feature = "alloc")]
fn main() {
    use firmware_protocol::message::{Message, Read, ReadMethod, ReadType};
    use firmware_protocol::{encode_frame_vec, Decoder, Feed, FrameType, Header};
    use std::time::Instant;

    let mb = |bytes: usize, secs: f64| bytes as f64 / secs / 1e6;

    // Frames: 4,000 frames with 1 KiB payloads, a third of the payload bytes zero.
    let mut rng = fake_route::Rng::new(7);
    let payloads: Vec<Vec<u8>> = (0..4_000)
        .map(|_| {
            (0..1024)
                .map(|_| {
                    if rng.chance(33) {
                        0
                    } else {
                        rng.below(256) as u8
                    }
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    let mut wire = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        encode_frame_vec(&Header::new(FrameType::Data, i as u32), p, &mut wire).expect("fits");
    }
    let enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut d = Decoder::new(1024);
    let (mut frames, mut bytes) = (0usize, 0usize);
    for chunk in wire.chunks(64) {
        let mut input = chunk;
        loop {
            match d.feed(input) {
                Feed::Consumed => break,
                Feed::Frame { frame, remaining } => {
                    frames += 1;
                    bytes += frame.payload.len();
                    input = remaining;
                }
                Feed::Error { error, .. } => panic!("{error}"),
            }
        }
    }
    let dec = t.elapsed().as_secs_f64();
    assert_eq!((frames, bytes), (4_000, 4_000 * 1024));
    println!(
        "frames: {} wire bytes; encode {:.0} MB/s, decode (64-byte reads) {:.0} MB/s; the link needs 0.0115 MB/s",
        wire.len(),
        mb(wire.len(), enc),
        mb(wire.len(), dec)
    );

    // Messages: a 2,000-stop route and a 10,000-read batch.
    let route = Message::RouteData(fake_route::route(2_000, 11));
    let reads = Message::ReadBatch {
        reads: (0..10_000u64)
            .map(|i| Read {
                device_seq: 1_000 + i,
                meter_id: format!("S{}", 48_000_000 + i * 7),
                reading: rng.below(1_000_000),
                read_time: 1_795_000_000 + i as i64 * 40,
                read_type: ReadType::Regular,
                method: ReadMethod::Keyed,
                message_codes: if rng.chance(10) {
                    vec!["DG".into()]
                } else {
                    Vec::new()
                },
                skip_code: None,
                note: None,
                reader_id: "JS".into(),
                order: None,
            })
            .collect(),
    };
    for m in [route, reads] {
        let t = Instant::now();
        let bytes = m.to_vec();
        let enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let back = Message::decode(&bytes).expect("decodes");
        let dec = t.elapsed().as_secs_f64();
        assert_eq!(back, m);
        println!(
            "{}: {} bytes; encode {:.1} ms, decode {:.1} ms",
            m.name(),
            bytes.len(),
            enc * 1e3,
            dec * 1e3
        );
    }
}
