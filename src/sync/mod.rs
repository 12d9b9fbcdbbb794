//! The sync engine: what happens when a handheld docks, shared by the serial and HTTP transports.
