//! meter-gateway: the meter-reading office's gateway between handhelds, clerks and the billing core.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`domain`] is the pure core, [`vee`] validates reads
//! against history (pure), [`store`] is the SQLite database, [`cis`] moves CSV files in and out,
//! [`cycles`] runs read cycles (open, ingest reads, route files) over the store, [`demo`] builds a
//! realistic district, [`cli`] is the command line (the only module that knows clap).
//!
//! The modules form a ladder, each naming only those below it (ARCHITECTURE.md, "Layers";
//! `tests/it/layers.rs` enforces it).

pub mod auth;
pub mod billing;
pub mod cis;
pub mod cli;
pub mod clock;
pub mod config;
pub mod csv_out;
pub mod cycles;
pub mod demo;
pub mod domain;
pub mod field;
pub mod review;
pub mod serve;
pub mod store;
pub mod sync;
pub mod text;
pub mod vee;
