-- Migration 8: the daemon's health probe.

-- One row, written by `/healthz` and the systemd watchdog through the database writer to prove that
-- the database still takes a commit (`Store::probe_writable`). Nothing else reads it.
CREATE TABLE health_probe (
    probe_id        INTEGER PRIMARY KEY CHECK (probe_id = 1),
    checked_at      TEXT NOT NULL
) STRICT;
