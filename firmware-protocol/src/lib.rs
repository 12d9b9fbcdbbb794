//! The wire protocol between water-meter handhelds and the meter-gateway dock.
//!
//! Sans-IO and `no_std`: this crate turns bytes into frames and messages and drives the reliable
//! transfer state machines; it never touches a port, a socket or a clock. Time is a parameter.
//! The normative description is `PROTOCOL.md` beside this crate; test vectors are in `vectors/`.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;
