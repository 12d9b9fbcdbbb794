// The field app's side of the HTTP device API (PROTOCOL.md §4): pairing, the state identity, taking
// reads, uploading them in batches exactly as protocol 2 says, and downloading routes and codes. It
// speaks only the documented API, so it is a second reference client beside `examples/handheld.rs`.
//
// - The state identity is made when the app's storage is initialised (pairing a phone that holds no
//   reads): 64 random bits from `crypto.getRandomValues`, never 0, as 16 hex digits. It goes with
//   every call; `device_seq` counts per state id and is raised above the gateway's `held_seq` at every
//   `hello` and receipt.
// - A read is written to the phone's storage (one durable transaction, with its sequence number)
//   before the app says it is saved, and stays there until the gateway acknowledges it.
// - Reads go up in batches of at most 250; a batch, once formed, is frozen (the same reads under the
//   same id) and sent again until answered, so a dropped connection, a crash or a second tap never
//   stores a read twice: the gateway answers a repeated batch id with its first answer. Its id is
//   derived from its content (64-bit FNV-1a of the state id and the reads' JSON), so two different
//   batches never share one; should the gateway still answer `batch_conflict`, the batch is formed
//   again under another id.
// - A read refused `seq_conflict` gets the next sequence number and goes up again in the same sync;
//   a read refused for another reason is not sent again (the office keeps what was sent).

import { tx, req, getMeta } from "./db.js";
import { VERSION } from "./version.js";

export const MAX_BATCH = 250;
/** Rounds of upload per sync: a read renumbered after a sequence conflict goes up in the next one. */
const ROUNDS = 4;
export const FIRMWARE = `field-app-${VERSION}`.slice(0, 32);

/** An answer of the gateway other than 2xx. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || null;
  }
}

/** The gateway could not be reached (offline, or the connection dropped before an answer). */
export class NetworkError extends Error {}

/** A device token as `meter-gateway device add` prints it: `DEVICE_ID.SECRET` (64 hex digits). */
export function parseToken(text) {
  const t = (text || "").trim();
  const dot = t.lastIndexOf(".");
  if (dot <= 0) return null;
  const device_id = t.slice(0, dot);
  const secret = t.slice(dot + 1);
  if (!/^[0-9a-fA-F]{64}$/.test(secret) || device_id.length > 32 || /\s/.test(device_id)) return null;
  return { device_id, token: `${device_id}.${secret.toLowerCase()}` };
}

/** A fresh state identity: 64 random bits, not 0, as 16 lower-case hex digits. */
export function newStateId() {
  const words = new Uint32Array(2);
  do {
    crypto.getRandomValues(words);
  } while (words[0] === 0 && words[1] === 0);
  return Array.from(words, (w) => w.toString(16).padStart(8, "0")).join("");
}

/** Fields kept as decimal strings on the phone and sent as JSON numbers (a register's readings may
 * have more digits than a JavaScript number holds exactly). */
const RAW_NUMBERS = new Set(["reading", "new_meter_initial"]);

/** JSON with the readings (decimal strings on the phone) written as plain JSON numbers. */
export function toJson(value) {
  return JSON.stringify(value, (k, v) =>
    RAW_NUMBERS.has(k) && typeof v === "string" && /^\d{1,20}$/.test(v) ? `\u0000raw:${v}` : v,
  ).replace(/"\\u0000raw:(\d+)"/g, "$1");
}

/** 64-bit FNV-1a of a string's UTF-8 bytes, as 16 hex digits. */
export function fnv1a64(text) {
  const bytes = new TextEncoder().encode(text);
  const prime = 0x100000001b3n;
  const mask = (1n << 64n) - 1n;
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * prime) & mask;
  }
  return h.toString(16).padStart(16, "0");
}

/** A batch's id: the device id and a hash of the state id, the salt and the reads as sent. */
export function batchId(deviceId, stateId, salt, reads) {
  return `${deviceId}-${fnv1a64(`${stateId}|${salt}|${toJson(reads)}`)}${salt ? `-${salt}` : ""}`;
}

/** The read as the API carries it (numbers in decimal strings written as JSON numbers by `toJson`). */
function wireRead(r) {
  return { ...r.read, device_seq: r.seq };
}

/** The District's local time now, from the gateway's clock (`server_time` at the last hello). */
export function districtNow(clock) {
  const offset = clock ? clock.offset_ms : -new Date().getTimezoneOffset() * 60000;
  return new Date(Date.now() + offset);
}

/** `YYYY-MM-DDTHH:MM:SS` of a District-local instant (as the API writes times). */
export function localText(d) {
  return d.toISOString().slice(0, 19);
}

/** Days since 1970-01-01 of a District-local instant. */
export function dayOf(d) {
  return Math.floor(d.getTime() / 86400000);
}

async function call(token, method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : toJson(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch (e) {
    throw new NetworkError(`the gateway cannot be reached (${e.message || e})`);
  }
  let answer = null;
  let text = "";
  try {
    text = await response.text();
    answer = text ? JSON.parse(text) : null;
  } catch (e) {
    if (response.ok) throw new NetworkError(`the answer was cut off (${e.message || e})`);
  }
  if (!response.ok) {
    const message = (answer && answer.error) || `HTTP ${response.status}`;
    throw new ApiError(response.status, message, answer && answer.code);
  }
  return answer;
}

/** `POST /api/v1/device/hello`: what the gateway holds from this state, and its clock. */
function callHello(device, state) {
  return call(device.token, "POST", "/api/v1/device/hello", {
    state_id: state.state_id,
    firmware_version: FIRMWARE,
  });
}

/** Applies a `Welcome` in a transaction over `meta`: the clock offset, the counter above `held_seq`. */
function applyWelcome(s, st, w) {
  st.next_seq = Math.max(st.next_seq, Number(w.held_seq) + 1);
  s.meta.put(st, "state");
  const at = Date.parse(`${w.server_time}Z`);
  if (!Number.isNaN(at)) s.meta.put({ offset_ms: at - Date.now(), server_time: w.server_time }, "clock");
}

async function hello(device, state) {
  const w = await callHello(device, state);
  await tx(["meta"], "readwrite", async (s) => applyWelcome(s, await req(s.meta.get("state")), w));
  return w;
}

/**
 * Pairs the app with a device token: checks it with a `hello`, keeps it (in this phone's storage only),
 * and makes the state identity when the storage holds none. Pairing again as the same handheld (a new
 * token after the office rotated it) keeps the state and every read; pairing as another handheld is
 * refused while reads wait to be sent, and otherwise starts a new state.
 */
export async function pair(tokenText, readerId) {
  const parsed = parseToken(tokenText);
  if (!parsed) {
    throw new Error("That is not a handheld token: it looks like HH-01.0123…cdef (64 hex digits after the dot).");
  }
  const reader = (readerId || "").trim();
  if (!reader || new TextEncoder().encode(reader).length > 32 || /[\u0000-\u001f]/.test(reader)) {
    throw new Error("Enter who reads: your initials or reader id, up to 32 characters.");
  }
  const before = await getMeta("device");
  let state = await getMeta("state");
  if (before && before.device_id !== parsed.device_id) {
    const unsent = await unsentCount();
    if (unsent > 0) {
      throw new Error(`${unsent} read(s) of ${before.device_id} are not sent yet: sync them before pairing as another handheld.`);
    }
    state = null;
  }
  const fresh = !state;
  if (fresh) state = { state_id: newStateId(), next_seq: 1, made_at: new Date().toISOString() };
  const device = { device_id: parsed.device_id, token: parsed.token, reader_id: reader, paired_at: new Date().toISOString() };
  // The gateway must accept the token before anything is kept.
  let welcome;
  try {
    welcome = await callHello(device, state);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      throw new Error("The gateway refused this token: check it, or ask the office for a new one.");
    }
    throw e;
  }
  await tx(["meta", "routes", "reads", "batches"], "readwrite", async (s) => {
    if (fresh) {
      // A new storage state: nothing of another handheld's day stays.
      s.routes.clear();
      s.reads.clear();
      s.batches.clear();
    }
    s.meta.put(device, "device");
    s.meta.delete("sync");
    applyWelcome(s, fresh ? state : (await req(s.meta.get("state"))) || state, welcome);
  });
  return device;
}

async function unsentCount() {
  return tx(["reads"], "readonly", async (s) => {
    const waiting = await req(s.reads.index("status").count("waiting"));
    const sending = await req(s.reads.index("status").count("sending"));
    return waiting + sending;
  });
}

const orderOf = (read) => (read.order ? Number(read.order.order_id) : null);

/**
 * Keeps a read: gives it the next sequence number or, when the stop holds a read for the same purpose
 * (the same field order, or none) that was never sent (`waiting`), replaces that one's content under
 * its number: a reader's correction before the sync. Resolves once it is durably stored.
 */
export async function takeRead(stop, read) {
  return tx(["meta", "reads"], "readwrite", async (s) => {
    const previous = await req(s.reads.index("stop").getAll(stop.key));
    const open = previous
      .filter((r) => r.status === "waiting" && orderOf(r.read) === orderOf(read))
      .sort((a, b) => b.seq - a.seq)[0];
    let seq;
    if (open) {
      seq = open.seq;
    } else {
      const st = await req(s.meta.get("state"));
      seq = st.next_seq;
      st.next_seq += 1;
      s.meta.put(st, "state");
    }
    const record = {
      seq,
      status: "waiting",
      batch_id: null,
      stop: stop.key,
      cycle_id: stop.cycle_id,
      route_id: stop.route_id,
      read: { ...read, device_seq: seq },
      taken_at: new Date().toISOString(),
      refusal: null,
    };
    s.reads.put(record);
    return record;
  });
}

/** Freezes the waiting reads into batches (at most `MAX_BATCH` reads each), oldest first. */
async function formBatches(device) {
  await tx(["meta", "reads", "batches"], "readwrite", async (s) => {
    const st = await req(s.meta.get("state"));
    const waiting = (await req(s.reads.index("status").getAll("waiting"))).sort((a, b) => a.seq - b.seq);
    for (let i = 0; i < waiting.length; i += MAX_BATCH) {
      const chunk = waiting.slice(i, i + MAX_BATCH);
      const reads = chunk.map(wireRead);
      const id = batchId(device.device_id, st.state_id, 0, reads);
      s.batches.put({ batch_id: id, salt: 0, first_seq: chunk[0].seq, seqs: chunk.map((r) => r.seq), reads });
      for (const r of chunk) s.reads.put({ ...r, status: "sending", batch_id: id });
    }
  });
}

/** Applies a receipt (PROTOCOL.md §4.2): acknowledged reads are kept only for the day's progress. */
async function acknowledge(batch, receipt) {
  return tx(["meta", "reads", "batches"], "readwrite", async (s) => {
    const st = await req(s.meta.get("state"));
    st.next_seq = Math.max(st.next_seq, Number(receipt.held_seq) + 1);
    const refused = new Map(receipt.refused.map((r) => [Number(r.device_seq), r]));
    const upTo = receipt.up_to_seq === null ? 0 : Number(receipt.up_to_seq);
    let renumbered = 0;
    for (const seq of batch.seqs) {
      const r = await req(s.reads.get(seq));
      if (!r) continue;
      const why = refused.get(seq);
      if (seq > upTo) {
        // Not covered by this answer: formed into a new batch at the next round.
        s.reads.put({ ...r, status: "waiting", batch_id: null });
      } else if (why && why.reason === "seq_conflict") {
        // The gateway holds a different read under this number: the next number, sent again.
        const seqNew = st.next_seq;
        st.next_seq += 1;
        s.reads.delete(seq);
        s.reads.put({ ...r, seq: seqNew, status: "waiting", batch_id: null, read: { ...r.read, device_seq: seqNew } });
        renumbered += 1;
      } else if (why) {
        s.reads.put({ ...r, status: "refused", batch_id: null, refusal: { reason: why.reason, detail: why.detail } });
      } else {
        s.reads.put({ ...r, status: "received", batch_id: null });
      }
    }
    s.meta.put(st, "state");
    s.batches.delete(batch.batch_id);
    return renumbered;
  });
}

/** The same reads under another id, after a `batch_conflict`. */
async function reform(batch, device) {
  await tx(["meta", "reads", "batches"], "readwrite", async (s) => {
    const st = await req(s.meta.get("state"));
    const salt = batch.salt + 1;
    const id = batchId(device.device_id, st.state_id, salt, batch.reads);
    s.batches.delete(batch.batch_id);
    s.batches.put({ ...batch, batch_id: id, salt });
    for (const seq of batch.seqs) {
      const r = await req(s.reads.get(seq));
      if (r) s.reads.put({ ...r, batch_id: id });
    }
  });
}

async function recordSync(outcome) {
  await tx(["meta"], "readwrite", (s) => {
    s.meta.put({ ...outcome, at: new Date().toISOString() }, "sync");
  });
}

/** `GET /api/v1/device/route` and `/codes` into the phone's storage. */
async function download(device) {
  const { routes } = await call(device.token, "GET", "/api/v1/device/route");
  const { codes } = await call(device.token, "GET", "/api/v1/device/codes");
  await tx(["meta", "routes", "reads"], "readwrite", async (s) => {
    const reads = await req(s.reads.getAll());
    const unsent = new Set(reads.filter((r) => r.status === "waiting" || r.status === "sending").map((r) => r.route_id));
    const kept = new Set(routes.map((r) => `${r.cycle_id}|${r.route_id}`));
    for (const old of await req(s.routes.getAll())) {
      // A route no longer assigned goes, unless reads of it still have to go up.
      if (!routes.some((r) => r.route_id === old.route_id) && !unsent.has(old.route_id)) s.routes.delete(old.route_id);
    }
    for (const r of routes) s.routes.put({ ...r, downloaded_at: new Date().toISOString() });
    // Acknowledged reads of routes the phone no longer holds are of no more use to the day's progress.
    for (const r of reads) {
      if ((r.status === "received" || r.status === "refused") && !kept.has(`${r.cycle_id}|${r.route_id}`)) s.reads.delete(r.seq);
    }
    s.meta.put(codes, "codes");
  });
  return routes.length;
}

/**
 * One sync: `hello`, every unacknowledged read up (batches, renumbering after sequence conflicts),
 * then the routes and codes down. Resolves with a summary; rejects with `NetworkError` (offline: every
 * read is kept) or `ApiError` (401: the token was refused; the reads are kept).
 */
export async function sync({ download: wantRoutes = true } = {}) {
  const run = async () => {
    const device = await getMeta("device");
    if (!device) throw new Error("not paired");
    const summary = { sent: 0, stored: 0, already: 0, refused: 0, renumbered: 0, routes: 0 };
    try {
      let state = await getMeta("state");
      await hello(device, state);
      for (let round = 0; round < ROUNDS; round += 1) {
        await formBatches(device);
        const batches = (await tx(["batches"], "readonly", (s) => req(s.batches.getAll()))).sort(
          (a, b) => a.first_seq - b.first_seq,
        );
        if (batches.length === 0) break;
        state = await getMeta("state");
        for (const batch of batches) {
          let receipt;
          try {
            receipt = await call(device.token, "POST", "/api/v1/device/reads", {
              state_id: state.state_id,
              batch_id: batch.batch_id,
              reads: batch.reads,
            });
          } catch (e) {
            if (e instanceof ApiError && e.status === 409 && e.code === "batch_conflict") {
              await reform(batch, device);
              continue;
            }
            throw e;
          }
          summary.sent += batch.reads.length;
          summary.stored += receipt.stored;
          summary.already += receipt.already_received;
          summary.refused += receipt.refused.length;
          summary.renumbered += await acknowledge(batch, receipt);
        }
      }
      if (wantRoutes) summary.routes = await download(device);
      const left = await unsentCount();
      await recordSync({ ok: left === 0, left, summary, error: null, status: null });
      return { ...summary, left };
    } catch (e) {
      await recordSync({
        ok: false,
        left: await unsentCount(),
        summary,
        error: e.message || String(e),
        status: e instanceof ApiError ? e.status : null,
        offline: e instanceof NetworkError,
      });
      throw e;
    }
  };
  // One sync at a time, across the app's tabs too.
  if (navigator.locks) return navigator.locks.request("meter-gateway-field-sync", run);
  return run();
}
