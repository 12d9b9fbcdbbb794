-- Migration 2: handhelds and their sync bookkeeping.

-- Registered handhelds. The secret is shown once at registration; only its SHA-256 is kept.
CREATE TABLE devices (
    device_id       TEXT PRIMARY KEY,
    secret_sha256   TEXT NOT NULL,
    registered_at   TEXT NOT NULL,
    retired         INTEGER NOT NULL DEFAULT 0,
    last_seen_at    TEXT,
    firmware_version TEXT
) STRICT;

-- Which handheld reads which route in a cycle. A device with no assignment is given the next unread route.
CREATE TABLE route_assignments (
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    route_id        TEXT NOT NULL REFERENCES routes(route_id),
    device_id       TEXT NOT NULL REFERENCES devices(device_id),
    assigned_at     TEXT NOT NULL,
    PRIMARY KEY (cycle_id, route_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX route_assignments_by_device ON route_assignments(device_id, cycle_id);

-- Upload batches already taken (HTTP idempotency key: a retried POST gets the same answer).
CREATE TABLE upload_batches (
    device_id       TEXT NOT NULL REFERENCES devices(device_id),
    batch_id        TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    reads           INTEGER NOT NULL,
    up_to_seq       INTEGER,
    PRIMARY KEY (device_id, batch_id)
) STRICT, WITHOUT ROWID;
