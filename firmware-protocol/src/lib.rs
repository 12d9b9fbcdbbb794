//! The wire protocol between water-meter handhelds and the meter-gateway dock.
//!
//! Sans-IO and `no_std`: this crate turns bytes into frames and messages and drives the reliable
//! transfer state machines; it never touches a port, a socket or a clock. Time is a parameter.
//! The normative description is `PROTOCOL.md` beside this crate; test vectors are in `vectors/`.
//!
//! Layers, bottom up:
//! - [`crc`]: CRC-32C, the frame check sequence.
//! - [`cobs`]: byte stuffing so that `0x00` only ever marks the end of a frame.
//! - [`frame`]: the 8-byte header and [`encode_frame`].
//! - [`decoder`]: the streaming [`Decoder`], fed whatever bytes the link delivered.
//! - `transfer` (with `alloc`): reliable transfer of byte strings over frames.
//! - `message` (with `alloc`): the application messages carried by transfers.
//! - `compress` (with `alloc`): bounded deflate for route data.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod cobs;
pub mod crc;
pub mod decoder;
pub mod frame;

#[cfg(feature = "alloc")]
pub mod compress;
#[cfg(feature = "alloc")]
pub mod message;
#[cfg(feature = "std")]
pub mod sim;
#[cfg(feature = "alloc")]
pub mod transfer;

pub use decoder::{Decoder, Feed, FrameError, FrameRef};
#[cfg(feature = "alloc")]
pub use frame::encode_frame_vec;
pub use frame::{
    encode_frame, max_encoded_len, EncodeError, FrameType, Header, CRC_LEN, DEFAULT_MAX_PAYLOAD,
    HEADER_LEN, MAX_PAYLOAD_LIMIT, PROTOCOL_VERSION,
};
#[cfg(feature = "alloc")]
pub use message::{Message, MessageError};
