-- Migration 6: what judging a read needs about its meter, prepared ahead of dock time.
--
-- One row per meter in service on an open cycle's route: the meter, its account, and the account's
-- history already built into billing periods (src/store/basis.rs encodes it). Judging a handheld's
-- upload then seeks one row per read instead of the meter, the account, every meter register the
-- account's history mentions and every history row.
--
-- A cache, never the truth: a row is written from `meters`, `accounts` and `history` in the same
-- transaction, and the triggers below delete it whenever any of them changes for its account, so a row
-- that exists is current. A meter without a row is judged from the tables themselves (same result).
-- Keyed by route first: a handheld uploads the reads of its route, which then come from one range
-- of the table (a few dozen pages) instead of a page per meter.
CREATE TABLE judging_basis (
    route_id        TEXT NOT NULL,
    meter_id        TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    basis           BLOB NOT NULL,
    PRIMARY KEY (route_id, meter_id)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX judging_basis_by_meter ON judging_basis(meter_id);
CREATE INDEX judging_basis_by_account ON judging_basis(account_id);

CREATE TRIGGER judging_basis_history_insert AFTER INSERT ON history
BEGIN DELETE FROM judging_basis WHERE account_id = NEW.account_id; END;
CREATE TRIGGER judging_basis_history_update AFTER UPDATE ON history
BEGIN DELETE FROM judging_basis WHERE account_id IN (OLD.account_id, NEW.account_id); END;
CREATE TRIGGER judging_basis_history_delete AFTER DELETE ON history
BEGIN DELETE FROM judging_basis WHERE account_id = OLD.account_id; END;

-- Only a change to a column judging reads (a CIS import that changes a customer's phone keeps the row;
-- `UPDATE OF` would not do: the import's UPDATE names every column).
CREATE TRIGGER judging_basis_account_update AFTER UPDATE ON accounts
WHEN OLD.account_id IS NOT NEW.account_id OR OLD.status IS NOT NEW.status
  OR OLD.rate_class IS NOT NEW.rate_class OR OLD.route_id IS NOT NEW.route_id
  OR OLD.sequence IS NOT NEW.sequence
BEGIN DELETE FROM judging_basis WHERE account_id IN (OLD.account_id, NEW.account_id); END;
CREATE TRIGGER judging_basis_account_delete AFTER DELETE ON accounts
BEGIN DELETE FROM judging_basis WHERE account_id = OLD.account_id; END;

CREATE TRIGGER judging_basis_meter_insert AFTER INSERT ON meters
BEGIN DELETE FROM judging_basis WHERE meter_id = NEW.meter_id OR account_id = NEW.account_id; END;
CREATE TRIGGER judging_basis_meter_delete AFTER DELETE ON meters
BEGIN DELETE FROM judging_basis WHERE meter_id = OLD.meter_id OR account_id = OLD.account_id; END;
CREATE TRIGGER judging_basis_meter_update AFTER UPDATE ON meters
WHEN OLD.meter_id IS NOT NEW.meter_id OR OLD.account_id IS NOT NEW.account_id
  OR OLD.status IS NOT NEW.status
BEGIN
    DELETE FROM judging_basis WHERE meter_id IN (OLD.meter_id, NEW.meter_id)
        OR account_id IN (OLD.account_id, NEW.account_id);
END;
-- A register changed: history anywhere may be read through it (a pulled meter's reads stay with the
-- account that had it), so every row goes.
CREATE TRIGGER judging_basis_register_update AFTER UPDATE ON meters
WHEN OLD.dials IS NOT NEW.dials OR OLD.multiplier IS NOT NEW.multiplier OR OLD.unit IS NOT NEW.unit
BEGIN DELETE FROM judging_basis; END;

-- Inserting a read runs no trigger any more: any INSERT trigger on a table makes SQLite open a
-- statement journal for every row inserted, which cost a third of storing a handheld's upload on a
-- district-sized database (measured with `examples/http_load.rs`). New reads are written in three
-- places only, each in the transaction that refuses a closed cycle: `cycles::store_judged` (every read
-- from a CSV, a handheld or a clerk's correction), a clerk's estimate (which also marks the read it
-- replaces, an update `field_reads_frozen_update` refuses on a closed cycle), and the estimates written
-- by the close itself before it marks the cycle closed. Updates and deletes of a
-- closed cycle's reads, flags and adjustments stay refused by the store itself.
DROP TRIGGER field_reads_frozen_insert;
