// The field app's screens: pairing, the routes and their progress, the walk list, the keying screen.
// Storage is `db.js`, the device API `sync.js`, the day's limits `limits.js`. Every value from the
// gateway is put on the page as text (`textContent`), never as markup.

import { snapshot } from "./db.js";
import { inside, outsideKind, stopLimitsOn } from "./limits.js";
import {
  ApiError,
  NetworkError,
  dayOf,
  districtNow,
  localText,
  pair,
  sync,
  takeRead,
} from "./sync.js";
import { VERSION } from "./version.js";

const $ = (id) => document.getElementById(id);
const SCREENS = ["pair", "home", "walk", "key"];
const ORDER_KINDS = {
  reread: "Re-read",
  door_hanger: "Door hanger (48-hour notice) left",
  shut_off: "Shut off",
  turn_on: "Turn on",
  meter_change: "Meter change",
};
const TEXT_LIMIT = { note: 255, id: 32 };

/** What the keying screen holds between taps (never stored: a reading is stored when saved). */
const keying = {
  stopKey: null,
  // The first keying of a reading outside the day's limits, waiting to be keyed again.
  pending: null,
  codes: new Set(),
  busy: false,
};

let data = null; // the last snapshot of the phone's storage
let syncing = false;

// ---- helpers ------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function show(id, on = true) {
  $(id).hidden = !on;
}

function say(id, text) {
  const e = $(id);
  e.textContent = text || "";
  e.hidden = !text;
}

let flashTimer = null;
function flash(text) {
  say("flash", text);
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => say("flash", ""), 4000);
}

function screen(name) {
  for (const s of SCREENS) show(s, s === name);
  show("loading", false);
  document.body.dataset.screen = name;
}

function bytes(text) {
  return new TextEncoder().encode(text).length;
}

const stopKey = (route, stop) => `${route.cycle_id}|${route.route_id}|${stop.account_id}|${stop.meter_id}`;

function readsOf(key) {
  return data.reads.filter((r) => r.stop === key).sort((a, b) => a.seq - b.seq);
}

/** The stop's latest read that counts (refused reads do not). */
function latestRead(key) {
  return readsOf(key)
    .filter((r) => r.status !== "refused")
    .pop();
}

function unsent() {
  return data.reads.filter((r) => r.status === "waiting" || r.status === "sending").length;
}

function timeOf(read) {
  return read.read.read_time.slice(11, 16);
}

function describe(read) {
  const r = read.read;
  if (r.read_type === "skipped") return `Skipped (${r.skip_code || "no code"})`;
  const kind = r.read_type === "high_confirmed" ? " high, confirmed" : r.read_type === "low_confirmed" ? " low, confirmed" : "";
  return `Read ${r.reading}${kind}`;
}

function statusWords(read) {
  return {
    waiting: "not sent yet",
    sending: "being sent",
    received: "sent",
    refused: `refused by the office (${read.refusal ? read.refusal.reason : "?"})`,
  }[read.status];
}

function routeOf(id) {
  return data.routes.find((r) => r.route_id === id);
}

function progress(route) {
  let read = 0;
  for (const s of route.stops) if (latestRead(stopKey(route, s))) read += 1;
  return { read, left: route.stops.length - read };
}

function tokenRefused() {
  return data.sync && data.sync.status === 401;
}

// ---- the frame: network state, banner, sync status ----------------------------------------------

function renderFrame() {
  const online = navigator.onLine;
  const net = $("net");
  net.textContent = online ? "Online" : "Offline";
  net.classList.toggle("offline", !online);
  const banner = $("banner");
  banner.replaceChildren();
  if (data && data.device && tokenRefused()) {
    banner.append(
      el("span", { text: "This handheld's token was refused: ask the office to pair it again. Your reads stay on this phone until then." }),
      el("button", { type: "button", id: "banner-pair", onclick: () => go("#pair") }, "Pair again"),
    );
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

function syncStatusText() {
  const n = unsent();
  const s = data.sync;
  const last = s ? ` Last sync ${new Date(s.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` : "";
  if (syncing) return `Syncing… ${n} read(s) to send.`;
  if (s && !s.ok && s.error) {
    const why = s.offline
      ? "The gateway could not be reached"
      : s.status === 401
        ? "The token was refused"
        : `The gateway answered: ${s.error}`;
    return `${n} read(s) waiting to be sent. ${why}; every read is kept on this phone.${last}`;
  }
  if (n > 0) return `${n} read(s) waiting to be sent.${last}`;
  return `All reads sent.${last}`;
}

// ---- screens ------------------------------------------------------------------------------------

function renderPair() {
  screen("pair");
  $("reader").value = (data.device && data.device.reader_id) || $("reader").value;
  $("token").focus();
}

function renderHome() {
  screen("home");
  say("sync-status", syncStatusText());
  $("sync").disabled = syncing;
  const list = $("routes");
  list.replaceChildren();
  const routes = [...data.routes].sort((a, b) => a.route_id.localeCompare(b.route_id));
  for (const route of routes) {
    const p = progress(route);
    list.append(
      el(
        "li",
        {},
        el(
          "button",
          { type: "button", class: "route", "data-route": route.route_id, onclick: () => go(`#route/${encodeURIComponent(route.route_id)}`) },
          el("span", { class: "name", text: `${route.route_id} ${route.route_name}`.trim() }),
          el("span", { class: "count", text: `${p.read} read, ${p.left} left of ${route.stops.length} (cycle ${route.cycle_id})` }),
        ),
      ),
    );
  }
  show("no-routes", routes.length === 0);
  // Service workers need a secure context (HTTPS, or the gateway's own machine).
  show("not-offline", !("serviceWorker" in navigator));
  $("device-id").textContent = data.device.device_id;
  $("reader-id").textContent = data.device.reader_id;
  $("state-id").textContent = data.state ? data.state.state_id : "";
  $("app-version").textContent = VERSION;
}

function renderWalk(route) {
  screen("walk");
  const p = progress(route);
  $("walk-title").textContent = `${route.route_id} ${route.route_name}`.trim();
  $("walk-progress").textContent = `${p.read} read, ${p.left} left of ${route.stops.length}`;
  const list = $("stops");
  list.replaceChildren();
  route.stops.forEach((stop, i) => {
    const key = stopKey(route, stop);
    const latest = latestRead(key);
    const open = openOrders(stop, key);
    const state = latest ? `${describe(latest)} · ${statusWords(latest)}` : "Not read";
    const cls = latest ? (latest.read.read_type === "skipped" ? "skipped" : "read") : "todo";
    list.append(
      el(
        "li",
        { class: cls },
        el(
          "button",
          { type: "button", "data-stop": i, onclick: () => go(`#stop/${encodeURIComponent(route.route_id)}/${i}`) },
          el("span", { class: "addr", text: `${stop.sequence}. ${stop.service_address}` }),
          el("span", { class: "who", text: `${stop.customer_name} · meter ${stop.meter_id}` }),
          open.length ? el("span", { class: "tag", text: `${open.length} order${open.length > 1 ? "s" : ""}` }) : null,
          stop.hazard_note ? el("span", { class: "tag", text: "Hazard" }) : null,
          el("span", { class: "state", text: state }),
        ),
      ),
    );
  });
}

/** The stop's field orders that no read on this phone completes yet. */
function openOrders(stop, key) {
  const done = new Set(
    readsOf(key)
      .filter((r) => r.status !== "refused" && r.read.order)
      .map((r) => Number(r.read.order.order_id)),
  );
  return (stop.field_orders || []).filter((o) => !done.has(Number(o.order_id)));
}

function nextUnread(route, from) {
  const n = route.stops.length;
  for (let step = 1; step <= n; step += 1) {
    const i = (from + step) % n;
    if (!latestRead(stopKey(route, route.stops[i]))) return i;
  }
  return -1;
}

function renderKey(route, index) {
  const stop = route.stops[index];
  const key = stopKey(route, stop);
  if (keying.stopKey !== key) {
    keying.stopKey = key;
    keying.pending = null;
    keying.codes = new Set();
    $("reading").value = "";
    $("note").value = "";
    $("new-meter").value = "";
    $("new-initial").value = "";
    $("extras").open = false;
    say("key-message", "");
  }
  screen("key");
  $("key-pos").textContent = `Stop ${index + 1} of ${route.stops.length}`;
  $("key-address").textContent = stop.service_address;
  $("key-customer").textContent = `${stop.customer_name} · account ${stop.account_id}`;
  $("key-meter").textContent = stop.meter_id;
  $("key-dials").textContent = `${stop.dials} dials${stop.unit ? `, ${stop.unit}` : ""}${stop.multiplier > 1 ? ` ×${stop.multiplier}` : ""}`;
  say("key-hazard", stop.hazard_note ? `Hazard: ${stop.hazard_note}` : "");
  say("key-location", stop.location_note ? `Meter location: ${stop.location_note}` : "");
  say("key-status", stop.account_status && stop.account_status !== "active" ? `Account ${stop.account_status}: any use is asked to be confirmed.` : "");
  $("reading").maxLength = stop.dials;

  const latest = latestRead(key);
  if (latest) {
    const again = latest.status === "waiting" ? "Saving again replaces it." : "Saving again sends another read; the office chooses.";
    say("key-done", `${describe(latest)} at ${timeOf(latest)}, ${statusWords(latest)}. ${again}`);
  } else {
    say("key-done", "");
  }
  const refusedHere = readsOf(key).filter((r) => r.status === "refused").pop();
  if (refusedHere && !latest) say("key-done", `The office refused this stop's read (${refusedHere.refusal.reason}): it has what was sent.`);

  renderOrders(stop, key);
  renderConfirm(stop);
  renderCodes();
  renderSkipCodes();
  $("save").disabled = false;
  $("key-prev").disabled = index === 0;
  $("key-next").disabled = index === route.stops.length - 1;
}

function renderOrders(stop, key) {
  const box = $("key-orders");
  box.replaceChildren();
  const all = stop.field_orders || [];
  const open = openOrders(stop, key);
  if (all.length === 0) {
    box.hidden = true;
    showMeterChange(null);
    return;
  }
  box.hidden = false;
  box.append(el("h3", { text: "Field orders" }));
  for (const o of all) {
    if (!open.includes(o)) {
      box.append(el("p", { class: "done-order", text: `Done: ${ORDER_KINDS[o.kind] || o.kind} (order ${o.order_id})` }));
    }
  }
  if (open.length === 0) {
    showMeterChange(null);
    return;
  }
  const picked = box.dataset.stop === key && box.dataset.picked ? box.dataset.picked : String(open[0].order_id);
  box.dataset.stop = key;
  box.dataset.picked = picked;
  const choice = (value, text, detail) =>
    el(
      "label",
      {},
      el("input", {
        type: "radio",
        name: "order",
        value,
        checked: value === picked,
        onchange: () => {
          box.dataset.picked = value;
          showMeterChange(pickedOrder(stop, key));
        },
      }),
      el("span", {}, el("strong", { text }), detail ? el("span", { text: ` ${detail}` }) : null),
    );
  box.append(el("p", { text: "This read completes:" }));
  for (const o of open) {
    box.append(choice(String(o.order_id), ORDER_KINDS[o.kind] || o.kind, o.instructions ? `— ${o.instructions}` : ""));
  }
  box.append(choice("none", "No order (a plain read)"));
  showMeterChange(pickedOrder(stop, key));
}

function pickedOrder(stop, key) {
  const box = $("key-orders");
  if (box.hidden || box.dataset.stop !== key) return null;
  const picked = box.dataset.picked;
  return openOrders(stop, key).find((o) => String(o.order_id) === picked) || null;
}

function showMeterChange(order) {
  const change = order && order.kind === "meter_change";
  show("meter-change", change);
  $("reading-label").textContent = change ? "Old meter's final reading" : "Reading";
}

function renderConfirm(stop) {
  if (!keying.pending) {
    say("confirm", "");
    $("save").textContent = "Save reading";
    return;
  }
  const high = keying.pending.kind === "high_confirmed";
  say(
    "confirm",
    `${high ? "HIGH" : "LOW"} reading: ${high ? "more" : "less"} use than expected at ${stop.meter_id}. Check the dials, then key the reading again to confirm it.`,
  );
  $("save").textContent = "Confirm reading";
}

function renderCodes() {
  const box = $("codes");
  box.replaceChildren();
  const codes = data.codes.filter((c) => c.category !== "skip");
  for (const c of codes) {
    box.append(
      el(
        "button",
        {
          type: "button",
          "data-code": c.code,
          title: c.description,
          "aria-pressed": keying.codes.has(c.code) ? "true" : "false",
          onclick: (e) => {
            if (keying.codes.has(c.code)) keying.codes.delete(c.code);
            else if (keying.codes.size < 8) keying.codes.add(c.code);
            else say("key-message", "At most 8 message codes on one read.");
            e.currentTarget.setAttribute("aria-pressed", keying.codes.has(c.code) ? "true" : "false");
            renderExtrasSummary();
          },
        },
        el("b", { text: c.code }),
        el("span", { text: c.description }),
      ),
    );
  }
  box.parentElement.hidden = codes.length === 0;
  renderExtrasSummary();
}

/** The codes-and-note box says what it holds while closed. */
function renderExtrasSummary() {
  const n = keying.codes.size;
  const note = $("note").value.trim() !== "";
  const parts = [];
  if (n) parts.push(`${[...keying.codes].join(", ")}`);
  if (note) parts.push("a note");
  $("extras-summary").textContent = parts.length ? `Message codes and note: ${parts.join(" and ")}` : "Message codes and note";
}

function renderSkipCodes() {
  const select = $("skip-code");
  const skip = data.codes.filter((c) => c.category === "skip");
  const wanted = skip.length ? skip : data.codes;
  const before = select.value;
  select.replaceChildren(...wanted.map((c) => el("option", { value: c.code, text: `${c.code} ${c.description}` })));
  if (wanted.some((c) => c.code === before)) select.value = before;
}

// ---- keying -------------------------------------------------------------------------------------

function current() {
  const m = /^#stop\/([^/]+)\/(\d+)$/.exec(location.hash);
  if (!m) return null;
  const route = routeOf(decodeURIComponent(m[1]));
  const index = Number(m[2]);
  if (!route || !route.stops[index]) return null;
  return { route, index, stop: route.stops[index] };
}

/** The note and codes as the read carries them, or an error message. */
function extras() {
  const note = $("note").value.trim();
  if (bytes(note) > TEXT_LIMIT.note) return { error: "The note is too long (255 bytes at most)." };
  if (/[\u0000-\u0008\u000b-\u001f]/.test(note)) return { error: "The note has a control character." };
  return { note: note || null, message_codes: [...keying.codes] };
}

async function save(readType, reading, order, skipCode) {
  const at = current();
  const clock = data.clock;
  const now = districtNow(clock);
  const x = extras();
  if (x.error) {
    say("key-message", x.error);
    return false;
  }
  const read = {
    meter_id: at.stop.meter_id,
    reading,
    read_time: localText(now),
    read_type: readType,
    method: "keyed",
    message_codes: x.message_codes,
    skip_code: skipCode,
    note: x.note,
    reader_id: data.device.reader_id,
    order,
  };
  const key = stopKey(at.route, at.stop);
  await takeRead({ key, cycle_id: at.route.cycle_id, route_id: at.route.route_id }, read);
  keying.stopKey = null;
  data = await snapshot();
  const next = nextUnread(at.route, at.index);
  flash(`Saved: ${readType === "skipped" ? `${at.stop.meter_id} skipped` : `${at.stop.meter_id} ${reading}`}`);
  if (next < 0) {
    flash(`Saved. Route ${at.route.route_id} is complete: sync when you are online.`);
    go(`#route/${encodeURIComponent(at.route.route_id)}`);
  } else {
    go(`#stop/${encodeURIComponent(at.route.route_id)}/${next}`);
  }
  if (navigator.onLine && !syncing) backgroundSync();
  return true;
}

async function onSave(event) {
  event.preventDefault();
  if (keying.busy) return;
  keying.busy = true;
  $("save").disabled = true;
  try {
    await keyReading();
  } catch (e) {
    say("key-message", `Not saved: ${e.message || e}. Try again.`);
  } finally {
    keying.busy = false;
    $("save").disabled = false;
  }
}

async function keyReading() {
  const at = current();
  if (!at) return;
  const { route, stop } = at;
  const key = stopKey(route, stop);
  say("key-message", "");
  const digits = $("reading").value.trim();
  if (!/^\d+$/.test(digits)) {
    say("key-message", "Key the reading: digits only.");
    $("reading").focus();
    return;
  }
  if (digits.length > stop.dials) {
    say("key-message", `This register has ${stop.dials} dials: at most ${stop.dials} digits.`);
    return;
  }
  const reading = BigInt(digits).toString();
  const order = pickedOrder(stop, key);
  let completion = null;
  if (order) {
    completion = { order_id: Number(order.order_id) };
    if (order.kind === "meter_change") {
      const newMeter = $("new-meter").value.trim();
      const initial = $("new-initial").value.trim();
      if (!newMeter || bytes(newMeter) > TEXT_LIMIT.id || /\s/.test(newMeter)) {
        say("key-message", "Key the new meter's number (up to 32 characters, no spaces).");
        return;
      }
      if (!/^\d{1,19}$/.test(initial)) {
        say("key-message", "Key the new meter's initial reading: digits only.");
        return;
      }
      completion = { ...completion, new_meter_id: newMeter, new_meter_initial: BigInt(initial).toString() };
    }
  }
  const day = dayOf(districtNow(data.clock));
  const limits = stopLimitsOn(stop, route.window_from, route.window_to, day);
  let readType = "regular";
  if (!inside(limits, reading)) {
    const kind = outsideKind(stop.dials, stop.previous_reading ?? 0, limits, reading);
    if (!keying.pending || keying.pending.stopKey !== key || keying.pending.reading !== reading) {
      // First keying outside the limits (or a different number): key it again to confirm.
      keying.pending = { stopKey: key, reading, kind };
      $("reading").value = "";
      renderConfirm(stop);
      $("reading").focus();
      return;
    }
    readType = kind;
  }
  keying.pending = null;
  await save(readType, reading, completion, null);
}

async function onSkip() {
  if (keying.busy) return;
  const at = current();
  if (!at) return;
  const code = $("skip-code").value;
  if (!code) {
    say("key-message", "Pick why the meter cannot be read.");
    return;
  }
  keying.busy = true;
  $("skip").disabled = true;
  try {
    keying.pending = null;
    await save("skipped", "0", null, code);
  } catch (e) {
    say("key-message", `Not saved: ${e.message || e}. Try again.`);
  } finally {
    keying.busy = false;
    $("skip").disabled = false;
  }
}

// ---- sync ---------------------------------------------------------------------------------------

async function runSync({ quiet = false } = {}) {
  if (syncing) return;
  syncing = true;
  render();
  try {
    const r = await sync();
    const parts = [`${r.sent} read(s) sent`];
    if (r.already) parts.push(`${r.already} already at the office`);
    if (r.renumbered) parts.push(`${r.renumbered} renumbered and sent again`);
    if (r.refused - r.renumbered > 0) parts.push(`${r.refused - r.renumbered} refused (the office has them)`);
    if (!quiet || r.sent) flash(`Synced: ${parts.join(", ")}; ${r.routes} route(s) loaded.`);
  } catch (e) {
    if (!quiet) {
      if (e instanceof NetworkError) flash("Offline: your reads are kept on this phone and go up at the next sync.");
      else if (e instanceof ApiError && e.status === 401) flash("The token was refused.");
      else flash(`Sync stopped: ${e.message || e}`);
    }
  } finally {
    syncing = false;
    data = await snapshot();
    render();
  }
}

function backgroundSync() {
  if (!data || !data.device || tokenRefused() || syncing) return;
  runSync({ quiet: true });
}

// ---- navigation ---------------------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function render() {
  if (!data) return;
  renderFrame();
  if (!data.device || location.hash === "#pair") {
    renderPair();
    return;
  }
  const h = location.hash;
  let m = /^#route\/([^/]+)$/.exec(h);
  if (m) {
    const route = routeOf(decodeURIComponent(m[1]));
    if (route) return renderWalk(route);
  }
  m = /^#stop\/([^/]+)\/(\d+)$/.exec(h);
  if (m) {
    const route = routeOf(decodeURIComponent(m[1]));
    const i = Number(m[2]);
    if (route && route.stops[i]) return renderKey(route, i);
  }
  renderHome();
}

async function onPair(event) {
  event.preventDefault();
  const button = $("pair-button");
  if (button.disabled) return;
  button.disabled = true;
  say("pair-message", "");
  try {
    const token = $("token").value;
    await pair(token, $("reader").value);
    $("token").value = "";
    if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
    data = await snapshot();
    await runSync();
    go("#home");
  } catch (e) {
    const offline = e instanceof NetworkError ? "The gateway cannot be reached: pair where the phone reaches it. " : "";
    say("pair-message", `${offline}${e.message || e}`);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  $("pair-form").addEventListener("submit", onPair);
  $("key-form").addEventListener("submit", onSave);
  $("skip").addEventListener("click", onSkip);
  $("sync").addEventListener("click", () => runSync());
  $("note").addEventListener("input", renderExtrasSummary);
  $("repair").addEventListener("click", () => go("#pair"));
  $("walk-back").addEventListener("click", () => go("#home"));
  $("key-list").addEventListener("click", () => {
    const at = current();
    go(at ? `#route/${encodeURIComponent(at.route.route_id)}` : "#home");
  });
  $("key-prev").addEventListener("click", () => {
    const at = current();
    if (at && at.index > 0) go(`#stop/${encodeURIComponent(at.route.route_id)}/${at.index - 1}`);
  });
  $("key-next").addEventListener("click", () => {
    const at = current();
    if (at && at.index + 1 < at.route.stops.length) go(`#stop/${encodeURIComponent(at.route.route_id)}/${at.index + 1}`);
  });
  $("next-unread").addEventListener("click", () => {
    const m = /^#route\/([^/]+)$/.exec(location.hash);
    const route = m && routeOf(decodeURIComponent(m[1]));
    if (!route) return;
    const i = nextUnread(route, -1);
    if (i < 0) flash("Every stop of this route is read.");
    else go(`#stop/${encodeURIComponent(route.route_id)}/${i}`);
  });
  window.addEventListener("hashchange", render);
  window.addEventListener("online", () => {
    renderFrame();
    backgroundSync();
  });
  window.addEventListener("offline", renderFrame);
  // Another tab took reads or synced: show what is stored now.
  document.addEventListener("visibilitychange", async () => {
    if (document.visibilityState === "visible") {
      data = await snapshot();
      render();
    }
  });

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/field/sw.js", { scope: "/field/" }).catch((e) => {
      flash(`This phone's browser will not keep the app offline: ${e.message || e}`);
    });
  }
  data = await snapshot();
  render();
  if (navigator.onLine && data.device && data.reads.some((r) => r.status === "waiting" || r.status === "sending")) {
    backgroundSync();
  }
  // Reads taken while the gateway was out of reach go up once it is back.
  setInterval(() => {
    if (navigator.onLine && data && data.reads.some((r) => r.status === "waiting" || r.status === "sending")) backgroundSync();
  }, 120000);
}

start().catch((e) => {
  show("loading", true);
  $("loading").textContent = `The app could not start: ${e.message || e}`;
});
