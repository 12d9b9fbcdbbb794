//! Peak resident memory (`VmHWM` in `/proc/PID/status`), shared by the benchmarks that report it.
//! (A module under `examples/support/`, included with `#[path]`; not an example of its own.)

/// The peak resident memory in KiB of process `pid`, or of this process when `None`.
pub fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
