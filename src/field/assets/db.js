// The field app's storage: one IndexedDB database on the phone, kept across reloads, closed tabs and
// restarts. Every write that holds a reading is one transaction with `durability: "strict"` (flushed
// to disk before it completes), so a reading the app says is saved survives a crash.
//
// Stores:
// - `meta`: out-of-line keys: `device` {device_id, token, reader_id, paired_at}; `state` {state_id
//   (16 hex digits, PROTOCOL.md §3.4), next_seq, made_at}; `clock` {offset_ms, server_time};
//   `codes` (the message-code table); `sync` (how the last sync went).
// - `routes`: route files as `GET /api/v1/device/route` gives them, by `route_id`.
// - `reads`: by `seq` (the read's `device_seq`): {seq, status, batch_id, stop, cycle_id, route_id,
//   read (the read as the API carries it, `reading` as a decimal string), taken_at, refusal}.
//   `status`: `waiting` (not in a batch yet; never sent), `sending` (in a frozen batch, sent or
//   about to be; kept until the gateway acknowledges it), `received` (acknowledged: kept only to show
//   the day's progress), `refused` (refused for good: the office keeps what was sent).
// - `batches`: by `batch_id`: {batch_id, salt, first_seq, seqs, reads}: a batch once formed is
//   frozen and sent again, the same reads under the same id, until it is answered.

const NAME = "meter-gateway-field";
const VERSION = 1;

let opening = null;

/** The database (opened once per page). */
export function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const rq = indexedDB.open(NAME, VERSION);
      rq.onupgradeneeded = () => {
        const db = rq.result;
        db.createObjectStore("meta");
        db.createObjectStore("routes", { keyPath: "route_id" });
        const reads = db.createObjectStore("reads", { keyPath: "seq" });
        reads.createIndex("status", "status");
        reads.createIndex("stop", "stop");
        db.createObjectStore("batches", { keyPath: "batch_id" });
      };
      rq.onsuccess = () => {
        const db = rq.result;
        // A newer app in another tab upgrades the database: let it.
        db.onversionchange = () => db.close();
        resolve(db);
      };
      rq.onerror = () => reject(rq.error);
      rq.onblocked = () => reject(new Error("close the field app's other tabs and reload"));
    });
    opening.catch(() => {
      opening = null;
    });
  }
  return opening;
}

/** A request's result as a promise. */
export function req(rq) {
  return new Promise((resolve, reject) => {
    rq.onsuccess = () => resolve(rq.result);
    rq.onerror = () => reject(rq.error);
  });
}

/**
 * Runs `work(stores)` in one transaction over `names` and resolves with what it returned once the
 * transaction has committed (for `readwrite`: durably, `durability: "strict"`). `work` may await only
 * requests of this transaction (`req(...)`); if it throws, the transaction is aborted and nothing of it
 * is written.
 */
export async function tx(names, mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(names, mode, { durability: "strict" });
    const stores = {};
    for (const n of names) stores[n] = t.objectStore(n);
    let result;
    let failed = null;
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(failed || t.error);
    t.onabort = () => reject(failed || t.error || new Error("the phone's storage refused the write"));
    Promise.resolve()
      .then(() => work(stores, t))
      .then(
        (r) => {
          result = r;
        },
        (e) => {
          failed = e;
          try {
            t.abort();
          } catch {
            reject(e);
          }
        },
      );
  });
}

/** One value of `meta`. */
export function getMeta(key) {
  return tx(["meta"], "readonly", (s) => req(s.meta.get(key)));
}

/** Every value of a store. */
export function all(store) {
  return tx([store], "readonly", (s) => req(s[store].getAll()));
}

/** Everything the screens show, read in one transaction. */
export function snapshot() {
  return tx(["meta", "routes", "reads", "batches"], "readonly", async (s) => ({
    device: await req(s.meta.get("device")),
    state: await req(s.meta.get("state")),
    clock: await req(s.meta.get("clock")),
    codes: (await req(s.meta.get("codes"))) || [],
    sync: await req(s.meta.get("sync")),
    routes: await req(s.routes.getAll()),
    reads: await req(s.reads.getAll()),
    batches: await req(s.batches.getAll()),
  }));
}
