-- Migration 1: the district. Append-only: never edit a migration that has shipped; add a new file.
-- Dates are ISO 8601 text (YYYY-MM-DD), times are district local time (YYYY-MM-DDTHH:MM:SS),
-- money is decimal text (rust_decimal). Booleans are 0/1.

CREATE TABLE routes (
    route_id        TEXT PRIMARY KEY,
    name            TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE accounts (
    account_id      TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    service_address TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'closed')),
    rate_class      TEXT NOT NULL,
    route_id        TEXT NOT NULL REFERENCES routes(route_id),
    sequence        INTEGER NOT NULL,
    apn             TEXT NOT NULL DEFAULT '',
    phone           TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX accounts_by_route ON accounts(route_id, sequence);

CREATE TABLE meters (
    meter_id        TEXT PRIMARY KEY,
    account_id      TEXT REFERENCES accounts(account_id),
    status          TEXT NOT NULL CHECK (status IN ('active', 'inventory', 'retired')),
    dials           INTEGER NOT NULL CHECK (dials BETWEEN 1 AND 12),
    multiplier      INTEGER NOT NULL CHECK (multiplier >= 1),
    unit            TEXT NOT NULL CHECK (unit IN ('cf', 'hcf', 'gal', 'kgal', 'm3')),
    installed_on    TEXT,
    removed_on      TEXT
) STRICT;
CREATE INDEX meters_by_account ON meters(account_id);

-- Read history: belongs to the account (follows it across meter changes); meter_id says which register.
CREATE TABLE history (
    account_id      TEXT NOT NULL REFERENCES accounts(account_id),
    meter_id        TEXT NOT NULL REFERENCES meters(meter_id),
    read_on         TEXT NOT NULL,
    reading         INTEGER NOT NULL CHECK (reading >= 0),
    kind            TEXT NOT NULL CHECK (kind IN ('actual', 'estimated', 'initial', 'final')),
    PRIMARY KEY (account_id, meter_id, read_on, kind)
) STRICT, WITHOUT ROWID;

CREATE TABLE message_codes (
    code            TEXT PRIMARY KEY,
    category        TEXT NOT NULL,
    description     TEXT NOT NULL,
    requires_follow_up INTEGER NOT NULL DEFAULT 0,
    retired         INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE cycles (
    cycle_id        TEXT PRIMARY KEY,
    window_from     TEXT NOT NULL,
    window_to       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at       TEXT NOT NULL,
    closed_at       TEXT,
    batch_version   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE cycle_routes (
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    route_id        TEXT NOT NULL REFERENCES routes(route_id),
    PRIMARY KEY (cycle_id, route_id)
) STRICT, WITHOUT ROWID;

-- Every read that came from the field (handheld upload or reads CSV), with the validation decision.
-- `superseded_by` links a duplicate or a corrected read to the read that replaced it.
CREATE TABLE field_reads (
    read_id         INTEGER PRIMARY KEY,
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    meter_id        TEXT NOT NULL,
    account_id      TEXT,
    read_at         TEXT NOT NULL,
    raw_reading     TEXT NOT NULL,
    reading         INTEGER,
    read_type       TEXT NOT NULL,
    method          TEXT NOT NULL,
    reader          TEXT NOT NULL DEFAULT '',
    codes           TEXT NOT NULL DEFAULT '',
    skip_code       TEXT,
    note            TEXT,
    device_id       TEXT,
    device_seq      INTEGER,
    received_at     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('accepted', 'flagged', 'estimated', 'resolved', 'held')),
    previous_reading INTEGER,
    previous_read_on TEXT,
    consumption     INTEGER,
    expected_use    REAL,
    expected_basis  TEXT,
    low_limit       INTEGER,
    high_limit      INTEGER,
    superseded_by   INTEGER REFERENCES field_reads(read_id)
) STRICT;
CREATE INDEX field_reads_by_cycle_meter ON field_reads(cycle_id, meter_id);
CREATE UNIQUE INDEX field_reads_by_device_seq ON field_reads(device_id, device_seq) WHERE device_id IS NOT NULL;

CREATE TABLE flags (
    read_id         INTEGER NOT NULL REFERENCES field_reads(read_id),
    flag            TEXT NOT NULL,
    quality         TEXT NOT NULL,
    explanation     TEXT NOT NULL,
    PRIMARY KEY (read_id, flag)
) STRICT, WITHOUT ROWID;

-- Clerk decisions on a read (accept, correct, estimate, re-read, hold, leak adjustment).
CREATE TABLE review_actions (
    action_id       INTEGER PRIMARY KEY,
    read_id         INTEGER NOT NULL REFERENCES field_reads(read_id),
    action          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '{}'
) STRICT;

-- Append-only audit log: who changed what, when, before and after (JSON).
CREATE TABLE audit_log (
    audit_id        INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    entity          TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    action          TEXT NOT NULL,
    before          TEXT,
    after           TEXT,
    reason          TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Field orders: re-read, door hanger / 48-hour notice, shut-off, turn-on, meter change.
CREATE TABLE field_orders (
    order_id        INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('reread', 'door_hanger', 'shut_off', 'turn_on', 'meter_change')),
    account_id      TEXT NOT NULL REFERENCES accounts(account_id),
    meter_id        TEXT,
    cycle_id        TEXT REFERENCES cycles(cycle_id),
    read_id         INTEGER REFERENCES field_reads(read_id),
    status          TEXT NOT NULL CHECK (status IN ('open', 'sent', 'completed', 'cancelled')),
    instructions    TEXT NOT NULL DEFAULT '',
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    completed_at    TEXT,
    result          TEXT
) STRICT;
CREATE INDEX field_orders_by_account ON field_orders(account_id, status);

-- Follow-up items opened by message codes that require one (a leak seen, a broken lid).
CREATE TABLE follow_ups (
    follow_up_id    INTEGER PRIMARY KEY,
    read_id         INTEGER NOT NULL REFERENCES field_reads(read_id),
    code            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    opened_at       TEXT NOT NULL,
    closed_at       TEXT,
    UNIQUE (read_id, code)
) STRICT;
