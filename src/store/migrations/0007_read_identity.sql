-- Migration 7: a handheld's reads are identified by (device, state id, sequence) and by their content.
--
-- Protocol 2 gives every handheld a state identity, a random 64-bit number made when its read storage
-- is initialised (stored here as the same 64 bits read as a signed integer). A wiped, replaced or
-- restored handheld starts its sequence again under a new state id, so its reads can never be taken
-- for reads already received. `device_content` is the SHA-256 of the read as the handheld sent it
-- (the wire encoding of its `Read` record): a repeat of (device, state, seq) is "already received"
-- only when it matches; otherwise the repeat is refused and logged in `refused_reads`.
-- Reads stored before protocol 2 keep a NULL state and content; no protocol-2 read can collide with them.
ALTER TABLE field_reads ADD COLUMN device_state INTEGER;
ALTER TABLE field_reads ADD COLUMN device_content BLOB;
DROP INDEX field_reads_by_device_seq;
CREATE UNIQUE INDEX field_reads_by_device_seq ON field_reads(device_id, device_state, device_seq)
    WHERE device_id IS NOT NULL;

-- HTTP upload batches, now per state id, with the digest of their reads and the answer given: a
-- repeated batch id gets that answer again only when its reads are the same, and is refused (409)
-- otherwise. Batches taken before protocol 2 keep an answer built from what was recorded.
CREATE TABLE upload_batches_v7 (
    device_id       TEXT NOT NULL REFERENCES devices(device_id),
    state_id        INTEGER NOT NULL,
    batch_id        TEXT NOT NULL,
    content         BLOB,
    received_at     TEXT NOT NULL,
    reads           INTEGER NOT NULL,
    up_to_seq       INTEGER,
    answer          TEXT NOT NULL,
    PRIMARY KEY (device_id, state_id, batch_id)
) STRICT, WITHOUT ROWID;
INSERT INTO upload_batches_v7 (device_id, state_id, batch_id, received_at, reads, up_to_seq, answer)
    SELECT device_id, 0, batch_id, received_at, reads, up_to_seq,
           json_object('up_to_seq', up_to_seq, 'stored', 0, 'flagged', 0, 'already_received', reads,
                       'refused', json('[]'), 'held_seq', 0, 'batch_conflict', NULL)
      FROM upload_batches;
DROP TABLE upload_batches;
ALTER TABLE upload_batches_v7 RENAME TO upload_batches;

-- Reads the gateway did not store, with their content as received, for a clerk to see and act on:
-- a sequence number reused for a different read, a batch id reused for different reads, a read time
-- outside the accepted bounds, an off-route read the District refuses. The same refusal repeated (the
-- handheld sends the read again) is one row, counted.
CREATE TABLE refused_reads (
    refusal_id      INTEGER PRIMARY KEY,
    device_id       TEXT NOT NULL,
    state_id        INTEGER NOT NULL,
    device_seq      INTEGER,
    batch_id        TEXT,
    reason          TEXT NOT NULL CHECK (reason IN ('seq_conflict', 'batch_conflict', 'bad_time', 'off_route', 'bad_read')),
    detail          TEXT NOT NULL,
    meter_id        TEXT NOT NULL DEFAULT '',
    read_json       TEXT NOT NULL,
    content         BLOB NOT NULL,
    existing_read_id INTEGER REFERENCES field_reads(read_id),
    first_at        TEXT NOT NULL,
    last_at         TEXT NOT NULL,
    times           INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE UNIQUE INDEX refused_reads_once ON refused_reads(device_id, state_id, reason, content);
CREATE INDEX refused_reads_by_time ON refused_reads(last_at);
CREATE INDEX refused_reads_by_seq ON refused_reads(device_id, state_id, device_seq);

-- Where each handheld stands: the state ids it has used and when each was last seen, so a clerk can
-- tell a wiped or replaced unit (a new state id) from one that merely docked again.
CREATE TABLE device_states (
    device_id       TEXT NOT NULL REFERENCES devices(device_id),
    state_id        INTEGER NOT NULL,
    first_seen_at   TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL,
    via             TEXT NOT NULL CHECK (via IN ('serial', 'http')),
    firmware_version TEXT,
    PRIMARY KEY (device_id, state_id)
) STRICT, WITHOUT ROWID;
