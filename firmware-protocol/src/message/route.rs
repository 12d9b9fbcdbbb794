//! `RouteData`: a route sent column by column, its stops' limits for each read day, and whole route
//! transfers (zlib-deflated when agreed).

use super::codec::{zigzag, Reader, Writer};
use super::{
    compress, limits, read_order, write_order, Message, MessageError, Route, RouteStop, Unit,
};
use alloc::string::String;
use alloc::vec::Vec;

/// A stop's hi/lo limits for one read day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayLimits {
    /// The stop has no limits: every reading of the register is accepted.
    Any,
    /// Register readings; when `high < low` the range wraps through zero.
    Range { low: u64, high: u64 },
}

impl DayLimits {
    /// Whether `reading` is inside, honouring a range that wraps through zero.
    pub fn contains(self, reading: u64) -> bool {
        match self {
            DayLimits::Any => true,
            DayLimits::Range { low, high } if low <= high => (low..=high).contains(&reading),
            DayLimits::Range { low, high } => reading >= low || reading <= high,
        }
    }
}

/// The limits of a stop for a read on `day`, from its limits on the window's first day
/// (`first = (low, high)`) and last day (`last`), as PROTOCOL.md §3.6 defines them: with `M` =
/// 10^dials, each pair becomes an offset from the previous reading `o_low = (low − prev) mod M`
/// taken in `(−M/2, M/2]`, and a span `(high − low) mod M`; a span of `M − 1` at either end means no
/// limits. For `k = clamp(day − from, 0, n)`, `n = to − from`, the day's offsets are
/// `o_low(first) + ⌊(o_low(last) − o_low(first))·k / n⌋` and, for the high end (`o_low + span`),
/// the same with `⌈ ⌉`; the limits are `prev + offset` mod `M`. `n = 0` gives the first-day limits.
/// The gateway judges a read's high/low with this same function, so a reading the handheld takes
/// without a prompt is never flagged high or low at the office for that day, and one outside is.
pub fn limits_on(
    dials: u8,
    previous_reading: u64,
    first: (u64, u64),
    last: (u64, u64),
    window: (u32, u32),
    day: u32,
) -> DayLimits {
    let m: i128 = 10i128.pow(u32::from(dials.clamp(1, 19)));
    let prev = i128::from(previous_reading) % m;
    let ends = |(low, high): (u64, u64)| -> Option<(i128, i128)> {
        let (low, high) = (i128::from(low) % m, i128::from(high) % m);
        let span = (high - low).rem_euclid(m);
        if span == m - 1 {
            return None;
        }
        let mut o_low = (low - prev).rem_euclid(m);
        if o_low > m / 2 {
            o_low -= m;
        }
        Some((o_low, o_low + span))
    };
    let (Some((lo1, hi1)), Some((lo2, hi2))) = (ends(first), ends(last)) else {
        return DayLimits::Any;
    };
    let (from, to) = window;
    let n = i128::from(to.saturating_sub(from));
    let k = i128::from(day.clamp(from, to.max(from)) - from);
    let (lo, hi) = if n == 0 {
        (lo1, hi1)
    } else {
        (
            lo1 + ((lo2 - lo1) * k).div_euclid(n),
            hi1 - ((hi1 - hi2) * k).div_euclid(n),
        )
    };
    let at = |o: i128| (prev + o).rem_euclid(m) as u64;
    DayLimits::Range {
        low: at(lo),
        high: at(hi.max(lo)),
    }
}

impl RouteStop {
    /// The stop's limits for a read on `day` (days since 1970) of a route whose window is
    /// `window = (window_from, window_to)`: see [`limits_on`].
    pub fn limits_on(&self, window: (u32, u32), day: u32) -> DayLimits {
        limits_on(
            self.dials,
            self.previous_reading,
            (self.low_limit, self.high_limit),
            (self.low_limit_last, self.high_limit_last),
            window,
            day,
        )
    }
}

/// Encodes a route for a route transfer: the RouteData message, zlib-deflated when `compressed`.
/// The length of the result is RouteOffer's `bytes`.
pub fn encode_route_transfer(route: &Route, compressed: bool) -> Vec<u8> {
    let plain = Message::RouteData(route.clone()).to_vec();
    if compressed {
        compress::deflate(&plain)
    } else {
        plain
    }
}

/// Decodes the bytes of a complete route transfer (see [`encode_route_transfer`]). Inflation is
/// bounded by [`limits::ROUTE_DATA`]. Returns the message, which is `RouteData` from a conforming
/// dock; the caller decides what to do with anything else.
pub fn decode_route_transfer(bytes: &[u8], compressed: bool) -> Result<Message, MessageError> {
    if compressed {
        let plain = compress::inflate(bytes, limits::ROUTE_DATA)?;
        Message::decode(&plain)
    } else {
        Message::decode(bytes)
    }
}

/// RouteData is a table sent column by column: every stop's account id, then every stop's name, and
/// so on. Neighbouring stops share street names, id prefixes and number ranges, and deflate finds
/// far more of that when like sits next to like (measured on a realistic 2,000-stop route: 60 KB
/// deflated row by row, 44 KB column by column with front coding; see `examples/route_size.rs`).
pub(super) fn write_route(w: &mut Writer<'_>, r: &Route) {
    w.str(&r.route_id);
    w.str(&r.cycle_id);
    w.varint(u64::from(r.window_from));
    w.varint(u64::from(r.window_to));
    let stops = &r.stops;
    w.varint(stops.len() as u64);
    let mut prev = 0u32;
    for s in stops {
        w.i64(i64::from(s.sequence) - i64::from(prev));
        prev = s.sequence;
    }
    for field in STOP_TEXT {
        let mut prev = "";
        for s in stops {
            w.front_coded(prev, field.get(s));
            prev = field.get(s);
        }
    }
    stops.iter().for_each(|s| w.u8(s.dials));
    stops.iter().for_each(|s| w.u8(s.decimals));
    stops.iter().for_each(|s| w.varint(u64::from(s.multiplier)));
    stops.iter().for_each(|s| w.u8(s.unit.to_u8()));
    stops.iter().for_each(|s| w.varint(s.previous_reading));
    for s in stops {
        w.i64(i64::from(s.previous_read_date) - i64::from(r.window_from));
    }
    // Limits as offsets from the previous reading (wrapping): small numbers that deflate well,
    // where the limits themselves would be as random as the reading.
    for s in stops {
        w.i64(s.low_limit.wrapping_sub(s.previous_reading) as i64);
    }
    for s in stops {
        w.i64(s.high_limit.wrapping_sub(s.previous_reading) as i64);
    }
    let orders = stops.iter().map(|s| s.field_orders.len()).sum::<usize>();
    w.varint(orders as u64);
    for (index, s) in stops.iter().enumerate() {
        for o in &s.field_orders {
            w.record(|w| {
                w.varint(index as u64);
                write_order(w, o);
            });
        }
    }
    // Version 2: the limits for a read on the window's last day, coded as the first-day ones.
    for s in stops {
        w.i64(s.low_limit_last.wrapping_sub(s.previous_reading) as i64);
    }
    for s in stops {
        w.i64(s.high_limit_last.wrapping_sub(s.previous_reading) as i64);
    }
}

/// The fewest bytes one stop can take in RouteData version 2: six front-coded strings of two bytes,
/// eleven one-byte numbers (nine in version 1).
pub(super) const MIN_STOP_BYTES: usize = 6 * 2 + 11;

/// The text columns of RouteData, in wire order, with their limits.
struct TextField {
    name: &'static str,
    max: usize,
    get: fn(&RouteStop) -> &str,
    set: fn(&mut RouteStop, String),
}

impl TextField {
    fn get<'s>(&self, s: &'s RouteStop) -> &'s str {
        (self.get)(s)
    }
}

const STOP_TEXT: [TextField; 6] = [
    TextField {
        name: "account_id",
        max: limits::ID,
        get: |s| &s.account_id,
        set: |s, v| s.account_id = v,
    },
    TextField {
        name: "customer_name",
        max: limits::NAME,
        get: |s| &s.customer_name,
        set: |s, v| s.customer_name = v,
    },
    TextField {
        name: "service_address",
        max: limits::NAME,
        get: |s| &s.service_address,
        set: |s, v| s.service_address = v,
    },
    TextField {
        name: "meter_id",
        max: limits::ID,
        get: |s| &s.meter_id,
        set: |s, v| s.meter_id = v,
    },
    TextField {
        name: "location_note",
        max: limits::NOTE,
        get: |s| &s.location_note,
        set: |s, v| s.location_note = v,
    },
    TextField {
        name: "hazard_note",
        max: limits::NOTE,
        get: |s| &s.hazard_note,
        set: |s, v| s.hazard_note = v,
    },
];

pub(super) fn read_route(r: &mut Reader<'_>, version: u8) -> Result<Route, MessageError> {
    let route_id = r.str("route_id", limits::ID)?;
    let cycle_id = r.str("cycle_id", limits::ID)?;
    let window_from = r.u32("window_from")?;
    let window_to = r.u32("window_to")?;
    // Every stop takes at least one byte in each column, so `count` bounds the allocation by the
    // message's length as well as by the limit.
    let n = r.count("stops", limits::STOPS)?;
    // Tighter still: a stop takes at least one byte in each of its 15 columns (two in the six text
    // columns), so a count the message cannot hold is refused before the stops are allocated.
    let min_stop = if version >= 2 {
        MIN_STOP_BYTES
    } else {
        MIN_STOP_BYTES - 2
    };
    if n.saturating_mul(min_stop) > r.remaining() {
        return Err(MessageError::Truncated {
            field: "stops",
            at: r.at(),
        });
    }
    let mut stops: Vec<RouteStop> = (0..n).map(|_| RouteStop::empty()).collect();
    let mut prev = 0u32;
    for s in &mut stops {
        let delta = r.i64("sequence")?;
        s.sequence = offset_u32("sequence", prev, delta)?;
        prev = s.sequence;
    }
    for field in &STOP_TEXT {
        let mut prev = String::new();
        for s in &mut stops {
            let v = r.front_coded(field.name, field.max, &prev)?;
            prev.clone_from(&v);
            (field.set)(s, v);
        }
    }
    for s in &mut stops {
        s.dials = r.u8("dials")?;
    }
    for s in &mut stops {
        s.decimals = r.u8("decimals")?;
    }
    for s in &mut stops {
        s.multiplier = r.u32("multiplier")?;
    }
    for s in &mut stops {
        s.unit = Unit::from_u8(r.u8("unit")?);
    }
    for s in &mut stops {
        s.previous_reading = r.varint("previous_reading")?;
    }
    for s in &mut stops {
        let delta = r.i64("previous_read_date")?;
        s.previous_read_date = offset_u32("previous_read_date", window_from, delta)?;
    }
    for s in &mut stops {
        s.low_limit = s.previous_reading.wrapping_add(r.i64("low_limit")? as u64);
    }
    for s in &mut stops {
        s.high_limit = s.previous_reading.wrapping_add(r.i64("high_limit")? as u64);
    }
    let orders = r.count("field_orders", limits::ORDERS)?;
    for _ in 0..orders {
        let (index, order) = r.record("field_order", |r| {
            let index = r.varint("stop_index")?;
            Ok((index, read_order(r)?))
        })?;
        let stop = usize::try_from(index)
            .ok()
            .and_then(|i| stops.get_mut(i))
            .ok_or(MessageError::OutOfRange {
                field: "stop_index",
                value: index,
            })?;
        if stop.field_orders.len() >= limits::ORDERS_PER_STOP {
            return Err(MessageError::TooManyItems {
                field: "field_orders",
                count: stop.field_orders.len() as u64 + 1,
                max: limits::ORDERS_PER_STOP,
            });
        }
        stop.field_orders.push(order);
    }
    if version >= 2 {
        for s in &mut stops {
            s.low_limit_last = s
                .previous_reading
                .wrapping_add(r.i64("low_limit_last")? as u64);
        }
        for s in &mut stops {
            s.high_limit_last = s
                .previous_reading
                .wrapping_add(r.i64("high_limit_last")? as u64);
        }
    } else {
        for s in &mut stops {
            s.low_limit_last = s.low_limit;
            s.high_limit_last = s.high_limit;
        }
    }
    Ok(Route {
        route_id,
        cycle_id,
        window_from,
        window_to,
        stops,
    })
}

/// `base + delta` as a `u32`, or the field is out of range.
fn offset_u32(field: &'static str, base: u32, delta: i64) -> Result<u32, MessageError> {
    let v = i64::from(base).checked_add(delta);
    v.and_then(|v| u32::try_from(v).ok())
        .ok_or(MessageError::OutOfRange {
            field,
            value: zigzag(delta),
        })
}

impl RouteStop {
    fn empty() -> Self {
        RouteStop {
            sequence: 0,
            account_id: String::new(),
            customer_name: String::new(),
            service_address: String::new(),
            meter_id: String::new(),
            location_note: String::new(),
            hazard_note: String::new(),
            dials: 0,
            decimals: 0,
            multiplier: 0,
            unit: Unit::Unknown(0),
            previous_reading: 0,
            previous_read_date: 0,
            low_limit: 0,
            high_limit: 0,
            field_orders: Vec::new(),
            low_limit_last: 0,
            high_limit_last: 0,
        }
    }
}
