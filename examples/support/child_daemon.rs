//! What the HTTP benchmarks share: the daemon in a child process (the example started again as
//! `--serve-child ...`), and their ureq client. (A module under `examples/support/`, included with
//! `#[path]`; not an example of its own.)

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;

/// Kills the child daemon if the run fails half-way.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this example again as `--serve-child ARGS...` with `RUST_LOG=rust_log`, and reads the
/// address the child prints (`listening on http://ADDR`).
pub fn serve_child(args: &[&str], rust_log: &str) -> Result<(Child, SocketAddr)> {
    let mut child = Child(
        std::process::Command::new(std::env::current_exe()?)
            .arg("--serve-child")
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .with_context(|| format!("child said {line:?}"))?
        .parse()?;
    Ok((child, addr))
}

/// The client: an answer of any status is read (a refusal is counted or reported, not an error),
/// no redirect followed (a 303 must not change what is counted), no timeout of its own (the
/// daemon's is the one that counts).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}
