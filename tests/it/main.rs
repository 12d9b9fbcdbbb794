//! The one integration-test binary: drives the gateway through its library API and its CLI.

mod billing;
mod cis;
mod cycles;
mod demo;
mod http_api;
mod review;
mod store;
mod sync;
