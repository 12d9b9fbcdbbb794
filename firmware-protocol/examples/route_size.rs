//! Prints how large route transfers are, plain and deflated, for realistic fake routes, and how long
//! they take on the serial links handhelds use.
//!
//! `cargo run -p firmware-protocol --features std --release --example route_size`

// Messages need the `alloc` feature; without it the example only says so, so that
// `cargo test --no-default-features` still builds every target.
#[cfg(not(feature = "alloc"))]
fn main() {
    eprintln!("run with --features std");
}

#[cfg(feature = "alloc")]
#[path = "../tests/support/fake_route.rs"]
mod fake_route;

#[cfg(feature = "alloc")]
fn main() {
    use firmware_protocol::message::{decode_route_transfer, encode_route_transfer, Message};
    use std::time::Instant;

    println!("stops  plain_bytes  deflated_bytes  ratio  bytes/stop  deflate_ms  inflate+decode_ms  secs@115200  secs@9600");
    for stops in [100u32, 500, 2_000, 5_000, 20_000] {
        let route = fake_route::route(stops, 0x5EED + u64::from(stops));
        let plain = encode_route_transfer(&route, false);
        let t = Instant::now();
        let z = encode_route_transfer(&route, true);
        let deflate_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let back = decode_route_transfer(&z, true);
        let inflate_ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(matches!(back, Ok(Message::RouteData(ref r)) if *r == route));
        // 8N1: ten bit times per byte; framing overhead ignored here (about 2% at 1 KiB payloads).
        println!(
            "{stops:>5}  {:>11}  {:>14}  {:>5.2}  {:>10.1}  {deflate_ms:>10.1}  {inflate_ms:>17.1}  {:>11.1}  {:>9.1}",
            plain.len(),
            z.len(),
            plain.len() as f64 / z.len() as f64,
            z.len() as f64 / f64::from(stops),
            z.len() as f64 / 11_520.0,
            z.len() as f64 / 960.0,
        );
    }
}
