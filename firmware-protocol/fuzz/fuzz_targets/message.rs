//! Message decoding on arbitrary input: no panic, and whatever decodes re-encodes within the
//! limits and decodes again to the same message.
#![no_main]

use firmware_protocol::message::{decode_route_transfer, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let bytes = m.to_vec();
        assert_eq!(Message::decode(&bytes).as_ref(), Ok(&m));
    }
    // The compressed path: inflation is bounded whatever the stream claims.
    let _ = decode_route_transfer(data, true);
});
