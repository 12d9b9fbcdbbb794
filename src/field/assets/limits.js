// A stop's high/low limits for a read day, exactly as PROTOCOL.md §3.6 defines them (the gateway judges
// a read high or low by the same limits: `firmware_protocol::message::limits_on`). All arithmetic is on
// BigInt, so nothing is rounded whatever the register (up to 19 dials); ⌊ ⌋ and ⌈ ⌉ round toward −∞
// and +∞ (BigInt `/` truncates toward zero, like C). Tested against `vectors/limits.txt` by the field
// app's browser test.

const big = (n) => (typeof n === "bigint" ? n : BigInt(n));

/** `a mod m`, always in 0…m−1 (m > 0). */
export function mod(a, m) {
  const r = a % m;
  return r < 0n ? r + m : r;
}

/** ⌊a / b⌋ for b > 0. */
export function floorDiv(a, b) {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}

/** ⌈a / b⌉ for b > 0. */
export function ceilDiv(a, b) {
  const q = a / b;
  return a % b !== 0n && a > 0n ? q + 1n : q;
}

/** 10^dials, with dials clamped to 1…19 as the gateway does. */
export function modulus(dials) {
  const d = Math.min(Math.max(Number(dials) || 0, 1), 19);
  return 10n ** BigInt(d);
}

/**
 * The limits for a read on `day` (days since 1970-01-01, District local date).
 *
 * - `dials`: digits on the register; `previous`: the previous reading;
 * - `first`, `last`: `[low, high]` register readings for a read on the window's first and last day;
 * - `window`: `[window_from, window_to]` as day numbers.
 *
 * Returns `null` when the stop has no limits that day (every reading passes), else
 * `{ low, high }` as BigInt register readings; when `high < low` the range wraps through zero.
 */
export function limitsOn(dials, previous, first, last, window, day) {
  const m = modulus(dials);
  const prev = mod(big(previous), m);
  const ends = ([low, high]) => {
    const lo = mod(big(low), m);
    const hi = mod(big(high), m);
    const span = mod(hi - lo, m);
    if (span === m - 1n) return null;
    let oLow = mod(lo - prev, m);
    if (oLow > m / 2n) oLow -= m;
    return [oLow, oLow + span];
  };
  const a = ends(first);
  const b = ends(last);
  if (a === null || b === null) return null;
  const from = big(window[0]);
  const to = big(window[1]) < from ? from : big(window[1]);
  const d = big(day);
  const n = to - from;
  const k = (d < from ? from : d > to ? to : d) - from;
  let lo;
  let hi;
  if (n === 0n) {
    [lo, hi] = a;
  } else {
    lo = a[0] + floorDiv((b[0] - a[0]) * k, n);
    hi = a[1] + ceilDiv((b[1] - a[1]) * k, n);
  }
  if (hi < lo) hi = lo;
  return { low: mod(prev + lo, m), high: mod(prev + hi, m) };
}

/** Whether `reading` is inside `limits` (`null`: no limits), honouring a range that wraps. */
export function inside(limits, reading) {
  if (limits === null) return true;
  const r = big(reading);
  const { low, high } = limits;
  return low <= high ? low <= r && r <= high : r >= low || r <= high;
}

/**
 * How a reading outside the limits is confirmed: `high_confirmed` when it means more use than the
 * high limit allows, `(r − prev) mod M > (high − prev) mod M`, else `low_confirmed`.
 */
export function outsideKind(dials, previous, limits, reading) {
  const m = modulus(dials);
  const prev = mod(big(previous), m);
  const used = mod(big(reading) - prev, m);
  const allowed = mod(limits.high - prev, m);
  return used > allowed ? "high_confirmed" : "low_confirmed";
}

/** Days since 1970-01-01 of an ISO date `YYYY-MM-DD` (or the date part of a date-time). */
export function dayNumber(isoDate) {
  const [y, mo, d] = isoDate.slice(0, 10).split("-").map(Number);
  return Math.floor(Date.UTC(y, mo - 1, d) / 86400000);
}

/**
 * A route stop's limits for `day`: the stop as the route file carries it (`limits` absent when the
 * stop has no history to set them from: every reading passes), the route's window dates.
 */
export function stopLimitsOn(stop, windowFrom, windowTo, day) {
  if (!stop.limits) return null;
  const f = stop.limits.first_day;
  const l = stop.limits.last_day;
  return limitsOn(
    stop.dials,
    stop.previous_reading ?? 0,
    [f.low, f.high],
    [l.low, l.high],
    [dayNumber(windowFrom), dayNumber(windowTo)],
    day,
  );
}
