//! The one integration-test binary: drives the gateway through its library API and its CLI.

mod cis;
mod cycles;
mod demo;
mod store;
