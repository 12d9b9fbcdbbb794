-- Migration 5: cycle close and the billing handoff.
-- Money is decimal text (rust_decimal), never REAL.

-- Money owed to or by an account outside its metered use: leak (high-bill) credits computed by a
-- clerk under the District's policy, and other adjustments. Negative amounts are credits.
CREATE TABLE adjustments (
    adjustment_id   INTEGER PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(account_id),
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    read_id         INTEGER REFERENCES field_reads(read_id),
    kind            TEXT NOT NULL CHECK (kind IN ('leak_credit', 'other')),
    amount          TEXT NOT NULL,
    units           TEXT,
    note            TEXT NOT NULL DEFAULT '',
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL
) STRICT;
CREATE INDEX adjustments_by_account ON adjustments(account_id, adjustment_id);
CREATE INDEX adjustments_by_cycle ON adjustments(cycle_id, account_id, adjustment_id);

-- Every closing of a cycle writes one batch version; reopening and closing again writes the next one.
-- Old versions are kept, byte for byte: `body` is the canonical records (JSON lines) and `checksum` its
-- SHA-256, so an export of any version is reproducible and a billing core can verify what it took.
CREATE TABLE billing_batches (
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    version         INTEGER NOT NULL CHECK (version >= 1),
    schema_version  INTEGER NOT NULL,
    closed_at       TEXT NOT NULL,
    closed_by       TEXT NOT NULL,
    record_count    INTEGER NOT NULL,
    held_count      INTEGER NOT NULL,
    header          TEXT NOT NULL,
    body            TEXT NOT NULL,
    checksum        TEXT NOT NULL,
    PRIMARY KEY (cycle_id, version)
) STRICT;
CREATE TRIGGER billing_batches_no_update BEFORE UPDATE ON billing_batches
BEGIN SELECT RAISE(ABORT, 'billing batches are append-only'); END;
CREATE TRIGGER billing_batches_no_delete BEFORE DELETE ON billing_batches
BEGIN SELECT RAISE(ABORT, 'billing batches are append-only'); END;

-- History rows a close wrote (the cycle's billed reads become the accounts' history), so that a reopen
-- takes back exactly those and no imported row.
CREATE TABLE close_history (
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    account_id      TEXT NOT NULL,
    meter_id        TEXT NOT NULL,
    read_on         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    PRIMARY KEY (cycle_id, account_id, meter_id, read_on, kind)
) STRICT, WITHOUT ROWID;

-- A closed cycle is frozen for every writer, not only for the ones that remember to check: reads,
-- their flags and adjustments of a closed cycle change only after `cycle reopen`.
CREATE TRIGGER field_reads_frozen_insert BEFORE INSERT ON field_reads
WHEN (SELECT status FROM cycles WHERE cycle_id = NEW.cycle_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER field_reads_frozen_update BEFORE UPDATE ON field_reads
WHEN (SELECT status FROM cycles WHERE cycle_id = OLD.cycle_id) = 'closed'
  OR (SELECT status FROM cycles WHERE cycle_id = NEW.cycle_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER field_reads_frozen_delete BEFORE DELETE ON field_reads
WHEN (SELECT status FROM cycles WHERE cycle_id = OLD.cycle_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER flags_frozen_insert BEFORE INSERT ON flags
WHEN (SELECT c.status FROM field_reads r JOIN cycles c ON c.cycle_id = r.cycle_id WHERE r.read_id = NEW.read_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER flags_frozen_update BEFORE UPDATE ON flags
WHEN (SELECT c.status FROM field_reads r JOIN cycles c ON c.cycle_id = r.cycle_id WHERE r.read_id = OLD.read_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER flags_frozen_delete BEFORE DELETE ON flags
WHEN (SELECT c.status FROM field_reads r JOIN cycles c ON c.cycle_id = r.cycle_id WHERE r.read_id = OLD.read_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER adjustments_frozen_insert BEFORE INSERT ON adjustments
WHEN (SELECT status FROM cycles WHERE cycle_id = NEW.cycle_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER adjustments_frozen_update BEFORE UPDATE ON adjustments
WHEN (SELECT status FROM cycles WHERE cycle_id = OLD.cycle_id) = 'closed'
  OR (SELECT status FROM cycles WHERE cycle_id = NEW.cycle_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
CREATE TRIGGER adjustments_frozen_delete BEFORE DELETE ON adjustments
WHEN (SELECT status FROM cycles WHERE cycle_id = OLD.cycle_id) = 'closed'
BEGIN SELECT RAISE(ABORT, 'cycle is closed: reopen it first'); END;
