//! `meter-gateway cycle close|reopen` and `export billing`.

use super::{actor, say};
use crate::billing::{close_cycle_by, open_batch, reopen_cycle, write_batch, BatchFormat};
use crate::clock::DistrictClock;
use crate::config::Config;
use crate::store::Store;
use std::io::Write;
use std::path::Path;

pub fn close(
    db: &Path,
    config: &Config,
    id: &str,
    hold: &[String],
    clock: &DistrictClock,
) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    let r = close_cycle_by(&mut store, config, id, hold, &actor(), clock.now_local())?;
    say!(
        "closed cycle {}: batch version {}, {} account record(s), {} meter line(s), {} HCF, \
         adjustments {}; {} missing read(s) estimated",
        r.cycle_id,
        r.batch_version,
        r.records,
        r.meter_lines,
        r.consumption_hcf,
        r.adjustments_total,
        r.estimated
    );
    if !r.held.is_empty() {
        say!("held out of the batch: {}", r.held.join(", "));
    }
    say!("checksum (SHA-256): {}", r.checksum);
    Ok(())
}

pub fn reopen(db: &Path, id: &str, reason: &str, clock: &DistrictClock) -> anyhow::Result<()> {
    let mut store = Store::open(db)?;
    let r = reopen_cycle(&mut store, id, reason, &actor(), clock.now_local())?;
    say!(
        "reopened cycle {} (batch version {} stays the latest until the cycle closes again; {} history \
         row(s) taken back)",
        r.cycle_id, r.batch_version, r.history_removed
    );
    Ok(())
}

pub fn export(
    db: &Path,
    cycle: &str,
    format: BatchFormat,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let store = Store::open(db)?;
    let batch = open_batch(&store, cycle, None)?;
    if crate::store::billing::cycle_status(store.conn(), cycle)?.as_deref() == Some("open") {
        eprintln!(
            "note: cycle {cycle} was reopened after batch version {} was written; a new version comes \
             when it closes again",
            batch.header().batch_version
        );
    }
    match file {
        Some(p) => {
            // Written next to the target and renamed: a billing run never picks up half a file.
            let tmp = p.with_extension("partial");
            let f = std::fs::File::create(&tmp)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(f);
            write_batch(&batch, format, &mut w)?;
            w.flush()?;
            w.get_ref().sync_all()?;
            drop(w);
            std::fs::rename(&tmp, p)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
            let h = batch.header();
            eprintln!(
                "wrote cycle {} batch version {} ({} records, {} held) to {}; checksum {}",
                h.cycle_id,
                h.batch_version,
                h.record_count,
                h.held_count,
                p.display(),
                h.checksum
            );
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            write_batch(&batch, format, &mut w)?;
            w.flush()?;
        }
    }
    Ok(())
}
