//! The one integration-test binary: drives the gateway through its library API and its CLI.

mod billing;
mod browser;
mod cis;
mod cli;
mod cycles;
mod demo;
mod desk_browser;
mod field_browser;
mod fixture;
mod http_api;
mod layers;
mod review;
mod security;
mod store;
mod support;
mod sync;
mod web;
