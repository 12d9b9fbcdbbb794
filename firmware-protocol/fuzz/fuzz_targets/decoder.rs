//! The frame decoder on arbitrary input: the first byte picks the payload limit and the next two
//! a split point, so the fuzzer also explores limits and chunking. Invariants checked: no panic, no
//! frame above the limit, and every accepted frame re-encodes to bytes that decode to itself.
#![no_main]

use firmware_protocol::{encode_frame_vec, Decoder, Feed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[limit, a, b], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let limit = usize::from(limit) * 17;
    let split = usize::from(u16::from_le_bytes([a, b])) % (rest.len() + 1);
    let mut decoder = Decoder::new(limit);
    for chunk in [&rest[..split], &rest[split..]] {
        let mut input = chunk;
        loop {
            match decoder.feed(input) {
                Feed::Consumed => break,
                Feed::Error { remaining, .. } => input = remaining,
                Feed::Frame { frame, remaining } => {
                    assert!(frame.payload.len() <= limit);
                    let (header, payload) = (frame.header, frame.payload.to_vec());
                    let mut wire = Vec::new();
                    encode_frame_vec(&header, &payload, &mut wire).expect("within the limit");
                    let mut again = Decoder::new(limit);
                    match again.feed(&wire) {
                        Feed::Frame { frame, remaining } => {
                            assert_eq!(frame.header, header);
                            assert_eq!(frame.payload, &payload[..]);
                            assert!(remaining.is_empty());
                        }
                        other => panic!("re-encoded frame did not decode: {other:?}"),
                    }
                    input = remaining;
                }
            }
        }
    }
});
