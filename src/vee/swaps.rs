//! Two meters read under each other's stops: the reader keyed the neighbour's reading at each of
//! two stops of a route (two meters side by side, or a route walked out of order). Each reading
//! is far off for its own meter, and each lands inside the other's limits: then what each meter
//! most likely reads is the reading keyed at the other's stop, and that beats any slip of a thumb.
//!
//! Judged over a batch of decisions (one read alone cannot see it), after [`super::validate`];
//! pure, like the rest of `vee`.

use super::rules::Decision;
use super::slips::{Intended, Slip};
use crate::domain::{FieldRead, FlagKind, ReadMethod};

/// One read of a batch as the pairing sees it, with its route (`None`: not a meter in service);
/// its decision is at the same place in the decisions.
pub struct StopRead<'a> {
    pub read: &'a FieldRead,
    pub route: Option<&'a str>,
}

/// A reading within limits given as readings (`high < low`: the range wraps through 0).
fn within(v: u64, low: u64, high: u64) -> bool {
    if low <= high {
        (low..=high).contains(&v)
    } else {
        v >= low || v <= high
    }
}

/// How many readings limits take in; limits that wrap through 0 count as all of them (such a
/// meter is never paired: its register's size is not known here).
fn span(low: u64, high: u64) -> u64 {
    if low <= high {
        high - low
    } else {
        u64::MAX
    }
}

/// Two readings farther apart than `by`: meters whose registers read close together (both near
/// 300) fit each other's limits without any swap.
fn apart(a: u64, b: u64, by: u64) -> bool {
    a.abs_diff(b) > by
}

/// The flags of a reading far off for its meter.
const OFF: &[FlagKind] = &[FlagKind::High, FlagKind::Low, FlagKind::Negative];

/// A keyed read flagged as far off (high, low or backwards), with its reading and its limits.
fn far_off(stop: &StopRead<'_>, d: &Decision) -> Option<(u64, u64, u64)> {
    if stop.read.method != ReadMethod::Keyed || stop.route.is_none() {
        return None;
    }
    if !d.flags.iter().any(|f| OFF.contains(&f.kind)) {
        return None;
    }
    Some((d.reading?, d.low_limit?, d.high_limit?))
}

/// Finds pairs of far-off keyed reads on one route, each inside the other's limits, and names for
/// each the reading keyed at the other's stop as the one it likely meant (replacing a slip named
/// before). A read that fits more than one other is left alone: no guessing. Returns the pairs.
pub fn mark_swapped(stops: &[StopRead<'_>], decisions: &mut [Decision]) -> Vec<(usize, usize)> {
    debug_assert_eq!(stops.len(), decisions.len());
    let off: Vec<(usize, (u64, u64, u64))> = stops
        .iter()
        .zip(decisions.iter())
        .enumerate()
        .filter_map(|(i, (s, d))| far_off(s, d).map(|x| (i, x)))
        .collect();
    // Each far-off read's partners: same route, its reading in their limits and theirs in its.
    let mut partners: Vec<Vec<usize>> = vec![Vec::new(); off.len()];
    for a in 0..off.len() {
        for b in a + 1..off.len() {
            let ((i, (ri, li, hi)), (j, (rj, lj, hj))) = (off[a], off[b]);
            if stops[i].route == stops[j].route
                && stops[i].read.meter_id != stops[j].read.meter_id
                && apart(ri, rj, span(li, hi).saturating_add(span(lj, hj)))
                && within(ri, lj, hj)
                && within(rj, li, hi)
            {
                partners[a].push(b);
                partners[b].push(a);
            }
        }
    }
    let mut pairs = Vec::new();
    for a in 0..off.len() {
        let [b] = partners[a][..] else { continue };
        if b < a || partners[b].len() != 1 {
            continue;
        }
        for (me, other) in [(a, b), (b, a)] {
            let ((me, _), (other, (keyed_there, ..))) = (off[me], off[other]);
            name(&mut decisions[me], keyed_there, &stops[other].read.meter_id);
        }
        pairs.push((off[a].0, off[b].0));
    }
    pairs
}

/// Puts "likely meant N: the readings of this meter and meter M look swapped" on `d`'s far-off
/// flag, in place of a slip named before.
fn name(d: &mut Decision, meant: u64, other_meter: &str) {
    let Some(at) = d.flags.iter().position(|f| OFF.contains(&f.kind)) else {
        return;
    };
    if let Some(before) = d.intended.take() {
        let text = format!("; {before}");
        for f in &mut d.flags {
            if let Some(kept) = f.explanation.strip_suffix(&text) {
                f.explanation = kept.to_string();
            }
        }
    }
    d.flags[at].explanation.push_str(&format!(
        "; likely meant {meant}: the readings of this meter and meter {other_meter} look swapped (each fits the other)"
    ));
    d.intended = Some(Intended {
        reading: meant,
        slip: Slip::OtherStop,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Flag, ReadStatus};

    fn read(meter: &str, raw: &str) -> FieldRead {
        crate::vee::tests::field(meter, "2026-09-03", raw)
    }

    /// A decision for `reading` judged against limits `low..=high`, flagged `kind` (or not).
    fn judged(reading: u64, low: u64, high: u64, kind: Option<FlagKind>) -> Decision {
        Decision {
            reading: Some(reading),
            previous_reading: Some(low.saturating_sub(1)),
            previous_read_on: None,
            consumption: None,
            expected_use: None,
            expected_basis: None,
            low_limit: Some(low),
            high_limit: Some(high),
            flags: kind
                .map(|kind| Flag {
                    kind,
                    quality: String::new(),
                    explanation: format!("{kind} use"),
                })
                .into_iter()
                .collect(),
            status: ReadStatus::Flagged,
            intended: None,
        }
    }

    #[test]
    fn two_readings_keyed_under_each_others_stops_are_each_named_the_other() {
        // M1 runs about 5200, M2 about 880; the reader keyed 885 at M1 and 5208 at M2.
        let reads = [read("M1", "885"), read("M2", "5208"), read("M3", "300")];
        let stops: Vec<StopRead<'_>> = reads
            .iter()
            .map(|read| StopRead {
                read,
                route: Some("R01"),
            })
            .collect();
        let mut decisions = vec![
            judged(885, 5_203, 5_215, Some(FlagKind::Negative)),
            judged(5_208, 878, 890, Some(FlagKind::High)),
            judged(300, 296, 305, None),
        ];
        // A slip named before gives way.
        decisions[0].intended = Some(Intended {
            reading: 5_885,
            slip: Slip::Dropped { at: 1 },
        });
        decisions[0].flags[0].explanation += "; likely meant 5885: digit 1 left out";
        assert_eq!(mark_swapped(&stops, &mut decisions), vec![(0, 1)]);
        assert_eq!(decisions[0].intended.map(|i| i.reading), Some(5_208));
        assert_eq!(decisions[1].intended.map(|i| i.reading), Some(885));
        assert_eq!(
            decisions[0].flags[0].explanation,
            "negative use; likely meant 5208: the readings of this meter and meter M2 look swapped (each fits the other)"
        );
        assert_eq!(decisions[2].intended, None);
    }

    #[test]
    fn no_pair_across_routes_between_close_registers_or_with_a_third_that_fits() {
        let reads = [read("M1", "885"), read("M2", "5208"), read("M4", "5209")];
        let pair = |routes: [&'static str; 3], d: &mut Vec<Decision>| {
            let stops: Vec<StopRead<'_>> = reads
                .iter()
                .zip(routes)
                .map(|(read, r)| StopRead {
                    read,
                    route: Some(r),
                })
                .collect();
            mark_swapped(&stops, d)
        };
        let flagged = || {
            vec![
                judged(885, 5_203, 5_215, Some(FlagKind::Negative)),
                judged(5_208, 878, 890, Some(FlagKind::High)),
                judged(5_209, 700, 720, Some(FlagKind::High)),
            ]
        };
        // On different routes: two readings that happen to fit each other's meters.
        let mut d = flagged();
        assert!(pair(["R01", "R02", "R03"], &mut d).is_empty());
        assert!(d.iter().all(|d| d.intended.is_none()));
        // M4 also fits M1 both ways: which one was swapped is a guess, so neither is named.
        let mut d = flagged();
        d[2] = judged(5_209, 880, 889, Some(FlagKind::High));
        assert!(pair(["R01", "R01", "R01"], &mut d).is_empty());
        // Registers that read close together (both near 300) fit each other's limits unswapped.
        let mut d = vec![
            judged(299, 305, 312, Some(FlagKind::Negative)),
            judged(307, 296, 302, Some(FlagKind::High)),
            judged(5_209, 700, 720, Some(FlagKind::High)),
        ];
        assert!(pair(["R01", "R01", "R01"], &mut d).is_empty());
    }
}
