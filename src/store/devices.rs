//! Handhelds: registration (hashed secrets), route assignments, upload-batch idempotency.

use super::cycles::{state_int, time_text};
use super::{Result, Store, StoreError};
use crate::auth::{constant_time_eq, DeviceToken};
use crate::domain::RefusalReason;
use chrono::NaiveDateTime;
use rusqlite::{params, OptionalExtension};

/// A registered handheld as the office sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: String,
    pub registered_at: String,
    pub retired: bool,
    pub last_seen_at: Option<String>,
    pub firmware_version: Option<String>,
}

/// A read the gateway refused, as a clerk sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedReadRow {
    pub refusal_id: i64,
    pub device_id: String,
    /// The handheld state id as 16 hex digits.
    pub state_id: String,
    pub device_seq: Option<i64>,
    pub batch_id: Option<String>,
    pub reason: RefusalReason,
    pub detail: String,
    pub meter_id: String,
    /// The read (or batch) as received, JSON.
    pub read_json: String,
    pub existing_read_id: Option<i64>,
    pub first_at: String,
    pub last_at: String,
    /// How many times the handheld sent it.
    pub times: i64,
}

/// A handheld state the gateway has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStateRow {
    pub device_id: String,
    pub state_id: String,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub via: String,
    pub firmware_version: Option<String>,
    /// Reads stored under this state.
    pub reads: i64,
    /// The highest sequence number held.
    pub held_seq: i64,
}

/// Whether a handheld is retired (`None`: not registered).
fn device_retired_in(conn: &rusqlite::Connection, device_id: &str) -> Result<Option<bool>> {
    Ok(conn
        .query_row(
            "SELECT retired FROM devices WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )
        .optional()?)
}

fn audit_device(
    conn: &rusqlite::Connection,
    device_id: &str,
    actor: &str,
    action: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    super::review::insert_audit(
        conn,
        &super::review::AuditEntry {
            at: now,
            actor,
            entity: "device",
            entity_id: device_id,
            action,
            before: None,
            after: None,
            reason,
        },
    )?;
    Ok(())
}

/// Refused reads, newest first (at most `limit`), of one device or all.
pub fn refused_reads_in(
    conn: &rusqlite::Connection,
    device: Option<&str>,
    limit: usize,
) -> Result<Vec<RefusedReadRow>> {
    {
        let mut st = conn.prepare(
            "SELECT refusal_id, device_id, state_id, device_seq, batch_id, reason, detail, meter_id,
                    read_json, existing_read_id, first_at, last_at, times
               FROM refused_reads WHERE ?1 IS NULL OR device_id = ?1
              ORDER BY last_at DESC, refusal_id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![device, limit as i64], |r| {
            let state: i64 = r.get(2)?;
            Ok(RefusedReadRow {
                refusal_id: r.get(0)?,
                device_id: r.get(1)?,
                state_id: format!("{:016x}", u64::from_ne_bytes(state.to_ne_bytes())),
                device_seq: r.get(3)?,
                batch_id: r.get(4)?,
                reason: super::cycles::parse_at(r, 5)?,
                detail: r.get(6)?,
                meter_id: r.get(7)?,
                read_json: r.get(8)?,
                existing_read_id: r.get(9)?,
                first_at: r.get(10)?,
                last_at: r.get(11)?,
                times: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// The handheld states seen, the latest first per device, with what each holds.
pub fn device_states_in(conn: &rusqlite::Connection) -> Result<Vec<DeviceStateRow>> {
    {
        let mut st = conn.prepare(
            "SELECT s.device_id, s.state_id, s.first_seen_at, s.last_seen_at, s.via, s.firmware_version,
                    (SELECT count(*) FROM field_reads f
                      WHERE f.device_id = s.device_id AND f.device_state = s.state_id),
                    (SELECT coalesce(max(f.device_seq), 0) FROM field_reads f
                      WHERE f.device_id = s.device_id AND f.device_state = s.state_id)
               FROM device_states s ORDER BY s.device_id, s.last_seen_at DESC",
        )?;
        let rows = st.query_map([], |r| {
            let state: i64 = r.get(1)?;
            Ok(DeviceStateRow {
                device_id: r.get(0)?,
                state_id: format!("{:016x}", u64::from_ne_bytes(state.to_ne_bytes())),
                first_seen_at: r.get(2)?,
                last_seen_at: r.get(3)?,
                via: r.get(4)?,
                firmware_version: r.get(5)?,
                reads: r.get(6)?,
                held_seq: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// The registered handhelds (connection form of [`Store::devices`]).
pub fn devices_in(conn: &rusqlite::Connection) -> Result<Vec<Device>> {
    let mut st = conn.prepare(
        "SELECT device_id, registered_at, retired, last_seen_at, firmware_version FROM devices ORDER BY device_id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Device {
            device_id: r.get(0)?,
            registered_at: r.get(1)?,
            retired: r.get(2)?,
            last_seen_at: r.get(3)?,
            firmware_version: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Store {
    /// Refused reads, newest first (at most `limit`), of one device or all.
    pub fn refused_reads(&self, device: Option<&str>, limit: usize) -> Result<Vec<RefusedReadRow>> {
        refused_reads_in(self.conn(), device, limit)
    }

    /// The handheld states seen, the latest first per device.
    pub fn device_states(&self) -> Result<Vec<DeviceStateRow>> {
        device_states_in(self.conn())
    }

    /// Registers a handheld with the SHA-256 of its secret. Refuses an id already registered.
    pub fn add_device(&mut self, token: &DeviceToken, now: NaiveDateTime) -> Result<()> {
        let id = token.device_id.trim();
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Invalid(format!(
                "device id `{id}`: use 1-32 letters, digits, `-` or `_`"
            )));
        }
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Invalid(format!(
                    "device {id} is already registered"
                )));
            }
            tx.execute(
                "INSERT INTO devices (device_id, secret_sha256, registered_at) VALUES (?1, ?2, ?3)",
                params![id, token.secret_sha256(), time_text(now)],
            )?;
            Ok(())
        })
    }

    /// Takes back a registration that never reached its user (its token could not be shown): only a
    /// device never seen by the gateway.
    pub fn forget_new_device(&mut self, device_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM devices WHERE device_id = ?1 AND last_seen_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM device_states WHERE device_id = ?1)
                AND NOT EXISTS (SELECT 1 FROM route_assignments WHERE device_id = ?1)",
            [device_id],
        )?;
        Ok(())
    }

    /// Retires a handheld: its token is refused from the next request on (HTTP and cradle alike); its
    /// reads, states and refusals are kept. Audited.
    pub fn retire_device(
        &mut self,
        device_id: &str,
        actor: &str,
        reason: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        self.write(|tx| {
            match device_retired_in(tx, device_id)? {
                None => return Err(StoreError::Invalid(format!("no handheld {device_id}"))),
                Some(true) => {
                    return Err(StoreError::Invalid(format!(
                        "handheld {device_id} is already retired"
                    )))
                }
                Some(false) => {}
            }
            tx.execute(
                "UPDATE devices SET retired = 1 WHERE device_id = ?1",
                [device_id],
            )?;
            audit_device(tx, device_id, actor, "retire", reason, now)
        })
    }

    /// Gives a registered, not retired handheld a new token: the old one is refused from then on.
    /// `shown` runs last, before the commit: when it fails (the new token could not be shown), nothing
    /// changes and the old token still works. Audited (without secrets).
    pub fn rotate_device(
        &mut self,
        token: &DeviceToken,
        actor: &str,
        now: NaiveDateTime,
        shown: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<()> {
        let id = token.device_id.as_str();
        self.write(|tx| {
            match device_retired_in(tx, id)? {
                None => return Err(StoreError::Invalid(format!("no handheld {id}"))),
                Some(true) => {
                    return Err(StoreError::Invalid(format!(
                        "handheld {id} is retired: register a new one"
                    )))
                }
                Some(false) => {}
            }
            tx.execute(
                "UPDATE devices SET secret_sha256 = ?2 WHERE device_id = ?1",
                params![id, token.secret_sha256()],
            )?;
            audit_device(tx, id, actor, "rotate_token", "", now)?;
            shown().map_err(|e| {
                StoreError::Invalid(format!(
                    "the new token could not be shown ({e}); handheld {id} keeps its old token"
                ))
            })
        })
    }

    /// True when `token` names a registered, not retired device and its secret matches.
    pub fn verify_device(&self, token: &DeviceToken) -> Result<bool> {
        let stored: Option<String> = self
            .conn()
            .query_row(
                "SELECT secret_sha256 FROM devices WHERE device_id = ?1 AND retired = 0",
                [&token.device_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(stored.is_some_and(|h| constant_time_eq(&h, &token.secret_sha256())))
    }

    /// Whether a device id is registered and not retired (serial docks identify by id in `Hello`).
    pub fn device_known(&self, device_id: &str) -> Result<bool> {
        device_registered(self.conn(), device_id)
    }

    pub fn note_device_seen(
        &mut self,
        device_id: &str,
        firmware: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE devices SET last_seen_at = ?2, firmware_version = ?3 WHERE device_id = ?1",
            params![device_id, time_text(now), firmware],
        )?;
        Ok(())
    }

    pub fn devices(&self) -> Result<Vec<Device>> {
        devices_in(self.conn())
    }

    /// Assigns a cycle's route to a device (replacing an earlier assignment of that route).
    pub fn assign_route(
        &mut self,
        cycle_id: &str,
        route_id: &str,
        device_id: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        self.write(|tx| {
            let in_cycle: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM cycle_routes cr JOIN cycles c USING (cycle_id)
                  WHERE cr.cycle_id = ?1 AND cr.route_id = ?2 AND c.status = 'open')",
                params![cycle_id, route_id],
                |r| r.get(0),
            )?;
            if !in_cycle {
                return Err(StoreError::Invalid(format!(
                    "route {route_id} is not part of an open cycle {cycle_id}"
                )));
            }
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?1 AND retired = 0)",
                [device_id],
                |r| r.get(0),
            )?;
            if !known {
                return Err(StoreError::Invalid(format!("device {device_id} is not registered")));
            }
            tx.execute(
                "INSERT INTO route_assignments (cycle_id, route_id, device_id, assigned_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (cycle_id, route_id) DO UPDATE SET device_id = excluded.device_id,
                                                               assigned_at = excluded.assigned_at",
                params![cycle_id, route_id, device_id, time_text(now)],
            )?;
            Ok(())
        })
    }

    /// The routes of `cycle_id` a device should carry: its assignments, or else the next route nobody
    /// holds that still has the most unread meters (which is then assigned to it, so two handhelds docking
    /// at once do not get the same route).
    pub fn routes_for_device(
        &mut self,
        cycle_id: &str,
        device_id: &str,
        now: NaiveDateTime,
    ) -> Result<Vec<String>> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "SELECT route_id FROM route_assignments WHERE cycle_id = ?1 AND device_id = ?2 ORDER BY route_id",
            )?;
            let assigned: Vec<String> =
                st.query_map(params![cycle_id, device_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            if !assigned.is_empty() {
                return Ok(assigned);
            }
            let next: Option<String> = tx
                .query_row(
                    "SELECT cr.route_id,
                            (SELECT COUNT(*) FROM accounts a JOIN meters m ON m.account_id = a.account_id
                              WHERE a.route_id = cr.route_id AND m.status = 'active'
                                AND NOT EXISTS (SELECT 1 FROM field_reads f
                                                 WHERE f.cycle_id = cr.cycle_id AND f.meter_id = m.meter_id)) AS unread
                       FROM cycle_routes cr JOIN cycles c USING (cycle_id)
                      WHERE cr.cycle_id = ?1 AND c.status = 'open'
                        AND NOT EXISTS (SELECT 1 FROM route_assignments ra
                                         WHERE ra.cycle_id = cr.cycle_id AND ra.route_id = cr.route_id)
                      ORDER BY unread > 0 DESC, cr.route_id
                      LIMIT 1",
                    [cycle_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(route) = next else { return Ok(Vec::new()) };
            tx.execute(
                "INSERT INTO route_assignments (cycle_id, route_id, device_id, assigned_at) VALUES (?1, ?2, ?3, ?4)",
                params![cycle_id, route, device_id, time_text(now)],
            )?;
            Ok(vec![route])
        })
    }
}

// ---- sync engine helpers (inside a caller's savepoint; see `crate::sync`) ------------------------

/// The open cycle a device works in: the one holding its latest route assignment, else the only open
/// cycle. `None` when that is ambiguous or nothing is open.
pub(crate) fn open_cycle_of_device(
    conn: &rusqlite::Connection,
    device_id: &str,
) -> Result<Option<String>> {
    let assigned: Option<String> = conn
        .prepare_cached(
            "SELECT ra.cycle_id FROM route_assignments ra JOIN cycles c USING (cycle_id)
              WHERE ra.device_id = ?1 AND c.status = 'open'
              ORDER BY ra.assigned_at DESC, ra.cycle_id LIMIT 1",
        )?
        .query_row([device_id], |r| r.get(0))
        .optional()?;
    if assigned.is_some() {
        return Ok(assigned);
    }
    let open = open_cycle_ids(conn)?;
    Ok(if open.len() == 1 {
        open.into_iter().next()
    } else {
        None
    })
}

/// Who carries each route of a cycle: route id → device id.
pub(crate) fn route_assignments(
    conn: &rusqlite::Connection,
    cycle_id: &str,
) -> Result<std::collections::HashMap<String, String>> {
    let mut st = conn
        .prepare_cached("SELECT route_id, device_id FROM route_assignments WHERE cycle_id = ?1")?;
    let rows = st.query_map([cycle_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Routes assigned to a device in open cycles.
pub(crate) fn routes_of_device(
    conn: &rusqlite::Connection,
    device_id: &str,
) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT ra.route_id FROM route_assignments ra JOIN cycles c USING (cycle_id)
          WHERE ra.device_id = ?1 AND c.status = 'open' ORDER BY ra.route_id",
    )?;
    let ids = st.query_map([device_id], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

/// Ids of the open cycles, oldest first.
pub(crate) fn open_cycle_ids(conn: &rusqlite::Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT cycle_id FROM cycles WHERE status = 'open' ORDER BY opened_at, cycle_id",
    )?;
    let ids = st.query_map([], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

/// Marks an open (or sent) field order completed by a read. Returns false when there is no such order
/// still to do (unknown id, already completed or cancelled): a re-sent completion changes nothing.
///
/// An order that already names a read keeps it: a re-read's is the read to re-read, and the result
/// (`result_json`'s `read_id`) is folded into it by `cycles::fold_reread`.
pub(crate) fn complete_field_order(
    conn: &rusqlite::Connection,
    order_id: i64,
    read_id: i64,
    result_json: &str,
    now: NaiveDateTime,
) -> Result<bool> {
    let n = conn.execute(
        "UPDATE field_orders SET status = 'completed', read_id = COALESCE(read_id, ?2), result = ?3, completed_at = ?4
          WHERE order_id = ?1 AND status IN ('open', 'sent')",
        params![order_id, read_id, result_json, time_text(now)],
    )?;
    Ok(n > 0)
}

/// An HTTP upload batch as first answered: the digest of its reads and the answer given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBatch {
    pub content: Option<[u8; 32]>,
    pub reads: u64,
    pub up_to_seq: Option<u64>,
    /// The answer given, as JSON (the sync engine's receipt).
    pub answer_json: String,
}

/// Records the answer given to an upload batch (same savepoint as its reads).
pub(crate) fn record_upload_batch(
    conn: &rusqlite::Connection,
    device_id: &str,
    state_id: u64,
    batch_id: &str,
    batch: &UploadBatch,
    now: NaiveDateTime,
) -> Result<()> {
    conn.execute(
        "INSERT INTO upload_batches (device_id, state_id, batch_id, content, received_at, reads, up_to_seq, answer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            device_id,
            state_int(state_id),
            batch_id,
            batch.content.as_ref().map(|c| c.as_slice()),
            time_text(now),
            batch.reads as i64,
            batch.up_to_seq.map(state_int),
            batch.answer_json,
        ],
    )?;
    Ok(())
}

/// The answer already given to an upload batch, if this (device, state, batch id) was seen before
/// (inside the upload's savepoint).
pub(crate) fn upload_batch_in(
    conn: &rusqlite::Connection,
    device_id: &str,
    state_id: u64,
    batch_id: &str,
) -> Result<Option<UploadBatch>> {
    Ok(conn
        .query_row(
            "SELECT content, reads, up_to_seq, answer FROM upload_batches
              WHERE device_id = ?1 AND state_id = ?2 AND batch_id = ?3",
            params![device_id, state_int(state_id), batch_id],
            |r| {
                let content: Option<Vec<u8>> = r.get(0)?;
                Ok(UploadBatch {
                    content: content.and_then(|c| c.try_into().ok()),
                    reads: r.get::<_, i64>(1)? as u64,
                    up_to_seq: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    answer_json: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// A read the gateway did not store, as logged for a clerk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefusal<'a> {
    pub device_id: &'a str,
    pub state_id: u64,
    pub device_seq: Option<u64>,
    pub batch_id: Option<&'a str>,
    pub reason: RefusalReason,
    pub detail: &'a str,
    pub meter_id: &'a str,
    /// The read (or, for a batch conflict, the batch's reads) as received, as JSON.
    pub read_json: &'a str,
    pub content: &'a [u8; 32],
    /// The read already held under the sequence number (a sequence conflict).
    pub existing_read_id: Option<i64>,
}

/// Logs a refusal (inside the upload's savepoint); the same refusal again only counts it.
pub(crate) fn record_refusal(
    conn: &rusqlite::Connection,
    r: &NewRefusal<'_>,
    now: NaiveDateTime,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO refused_reads (device_id, state_id, device_seq, batch_id, reason, detail, meter_id,
                                    read_json, content, existing_read_id, first_at, last_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
         ON CONFLICT (device_id, state_id, reason, content)
         DO UPDATE SET times = times + 1, last_at = excluded.last_at, detail = excluded.detail",
    )?
    .execute(params![
        r.device_id,
        state_int(r.state_id),
        r.device_seq.and_then(|s| i64::try_from(s).ok()),
        r.batch_id,
        r.reason.as_str(),
        r.detail,
        r.meter_id,
        r.read_json,
        r.content.as_slice(),
        r.existing_read_id,
        time_text(now),
    ])?;
    Ok(())
}

/// The highest sequence number the gateway holds from a handheld state: stored or refused.
pub(crate) fn held_seq(conn: &rusqlite::Connection, device_id: &str, state_id: u64) -> Result<u64> {
    let state = state_int(state_id);
    let stored: Option<i64> = conn
        .prepare_cached(
            "SELECT max(device_seq) FROM field_reads WHERE device_id = ?1 AND device_state = ?2",
        )?
        .query_row(params![device_id, state], |r| r.get(0))?;
    let refused: Option<i64> = conn
        .prepare_cached(
            "SELECT max(device_seq) FROM refused_reads WHERE device_id = ?1 AND state_id = ?2",
        )?
        .query_row(params![device_id, state], |r| r.get(0))?;
    Ok(stored.max(refused).map_or(0, |v| v.max(0) as u64))
}

/// Whether a device is registered and not retired (inside a caller's transaction).
pub(crate) fn device_registered(conn: &rusqlite::Connection, device_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?1 AND retired = 0)",
        )?
        .query_row([device_id], |r| r.get(0))?)
}

/// How a handheld reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Serial,
    Http,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Serial => "serial",
            Via::Http => "http",
        }
    }
}

/// Notes that a handheld showed itself under a state id (its `Hello`, or an HTTP call).
pub(crate) fn note_device_state(
    conn: &rusqlite::Connection,
    device_id: &str,
    state_id: u64,
    via: Via,
    firmware: Option<&str>,
    now: NaiveDateTime,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO device_states (device_id, state_id, first_seen_at, last_seen_at, via, firmware_version)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5)
         ON CONFLICT (device_id, state_id) DO UPDATE SET last_seen_at = excluded.last_seen_at,
             via = excluded.via, firmware_version = COALESCE(excluded.firmware_version, firmware_version)",
    )?
    .execute(params![
        device_id,
        state_int(state_id),
        time_text(now),
        via.as_str(),
        firmware
    ])?;
    Ok(())
}
