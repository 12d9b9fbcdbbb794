//! What a reader likely meant when a keyed reading is far off: the usual slips of a thumb on a
//! keypad, each undone, and the one that lands where the account's use says the reading should be.
//!
//! Slips, most likely first (a less likely slip must land closer to the expected use; a reading is
//! named only when it stands out from every other candidate):
//! 1. two adjacent digits swapped (`43808` for `43088`), a digit keyed twice (`455210` for
//!    `45210`), one dial read one off (`14002` for `14012`: the tens dial just past 1, the units
//!    dial at 2; a dial is misread only by a digit's edge, so the meant reading's lower digits are
//!    within 3 tenths of the dial below passing 0);
//! 2. a digit left out (`4308` for `43088`);
//! 3. a neighbouring key pressed (`43788` for `43088`: 7 and 0 are neighbours on a phone-style
//!    keypad, 1-2-3 / 4-5-6 / 7-8-9 / 0 under 8).
//!
//! Pure, like the rest of `vee`.

use std::fmt;

/// A slip undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slip {
    /// The digits at these places (1 = leftmost) were swapped.
    Swapped { at: usize },
    /// This digit was keyed twice.
    Doubled { digit: u8 },
    /// The dial of this place value (1, 10, 100...) was read one off.
    DialOff { place: u64 },
    /// A digit was left out at this place (1 = leftmost of the intended reading).
    Dropped { at: usize },
    /// The key next to the meant one was pressed at this place (1 = leftmost).
    NeighbourKey { at: usize, keyed: u8, meant: u8 },
    /// Not a slip of the thumb: the reading was keyed under another meter's stop, and this
    /// meter's under that one's ([`super::swaps`]).
    OtherStop,
}

/// The keys around each digit on a phone-style keypad (1-2-3 / 4-5-6 / 7-8-9 / 0 under 8).
pub fn keypad_neighbours(digit: u8) -> &'static [u8] {
    match digit {
        0 => &[8, 7, 9],
        1 => &[2, 4],
        2 => &[1, 3, 5],
        3 => &[2, 6],
        4 => &[1, 5, 7],
        5 => &[2, 4, 6, 8],
        6 => &[3, 5, 9],
        7 => &[4, 8, 0],
        8 => &[5, 7, 9, 0],
        9 => &[6, 8, 0],
        _ => &[],
    }
}

impl fmt::Display for Slip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slip::Swapped { at } => write!(f, "digits {} and {} swapped", at, at + 1),
            Slip::Doubled { digit } => write!(f, "the {digit} keyed twice"),
            Slip::DialOff { place } => {
                let dial = match place {
                    1 => "units".to_string(),
                    10 => "tens".to_string(),
                    100 => "hundreds".to_string(),
                    1000 => "thousands".to_string(),
                    p => format!("{p}s"),
                };
                write!(f, "the {dial} dial read one off")
            }
            Slip::Dropped { at } => write!(f, "digit {at} left out"),
            Slip::NeighbourKey { at, keyed, meant } => {
                write!(f, "digit {at} keyed {keyed}, the key next to {meant}")
            }
            Slip::OtherStop => write!(f, "keyed at another meter's stop"),
        }
    }
}

/// The reading the reader likely meant, and the slip that explains what was keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intended {
    pub reading: u64,
    pub slip: Slip,
}

impl fmt::Display for Intended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "likely meant {}: {}", self.reading, self.slip)
    }
}

/// Every value a slip would explain `keyed` by, with its tier (1 most likely), for a register of
/// `dials` dials. `keyed` must be digits only.
pub fn candidates(keyed: &str, dials: u8) -> Vec<(u64, Slip, u8)> {
    let d: Vec<u8> = keyed
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if d.len() != keyed.len() || d.is_empty() {
        return Vec::new();
    }
    let max_len = usize::from(dials);
    let value = |ds: &[u8]| -> Option<u64> {
        if ds.is_empty() || ds.len() > max_len.max(1) {
            return None;
        }
        ds.iter().try_fold(0u64, |acc, &x| {
            acc.checked_mul(10)?.checked_add(u64::from(x))
        })
    };
    let mut out = Vec::new();
    let n = d.len();
    for i in 0..n.saturating_sub(1) {
        if d[i] != d[i + 1] {
            let mut s = d.clone();
            s.swap(i, i + 1);
            if let Some(v) = value(&s) {
                out.push((v, Slip::Swapped { at: i + 1 }, 1));
            }
        }
    }
    for i in 0..n.saturating_sub(1) {
        if d[i] == d[i + 1] && (i == 0 || d[i - 1] != d[i]) {
            let mut s = d.clone();
            s.remove(i);
            if let Some(v) = value(&s) {
                out.push((v, Slip::Doubled { digit: d[i] }, 1));
            }
        }
    }
    if let Some(v) = value(&d) {
        // A dial is read one off when its pointer sits by a digit's edge: the dial below it has
        // just passed 0 (read one low: the meant reading's lower digits are small) or is about to
        // (read one high: they are large). The units dial has no dial below it to mislead.
        let mut place = 10u64;
        for _ in 1..n {
            let edge = place / 10 * 3;
            if let Some(w) = v.checked_add(place) {
                if w % place < edge && w.to_string().len() <= max_len {
                    out.push((w, Slip::DialOff { place }, 1));
                }
            }
            if let Some(w) = v.checked_sub(place) {
                if w % place >= place - edge {
                    out.push((w, Slip::DialOff { place }, 1));
                }
            }
            place = place.saturating_mul(10);
        }
    }
    if n < max_len {
        for at in 0..=n {
            for x in 0..=9u8 {
                let mut s = d.clone();
                s.insert(at, x);
                if s[0] == 0 {
                    continue;
                }
                if let Some(v) = value(&s) {
                    out.push((v, Slip::Dropped { at: at + 1 }, 2));
                }
            }
        }
    }
    for i in 0..n {
        for &x in keypad_neighbours(d[i]) {
            if i == 0 && x == 0 && n > 1 {
                continue;
            }
            let mut s = d.clone();
            s[i] = x;
            if let Some(v) = value(&s) {
                out.push((
                    v,
                    Slip::NeighbourKey {
                        at: i + 1,
                        keyed: d[i],
                        meant: x,
                    },
                    3,
                ));
            }
        }
    }
    out
}

/// The reading a slip explains `keyed` by, when one stands out: `distance(reading)` says how far
/// its use would be from the expected use (0 at it, 1 at the edge of the acceptable range, `None`
/// outside the day's limits); a slip of tier 2 counts 1.5 times its distance, tier 3 twice (a less
/// likely slip must land closer). The best candidate within 1 is named when no other reading is, or when the
/// next best is at least twice as far: otherwise `None` (no guessing).
pub fn intended(keyed: &str, dials: u8, distance: impl Fn(u64) -> Option<f64>) -> Option<Intended> {
    let keyed = keyed.trim();
    let own: Option<u64> = keyed.parse().ok();
    let mut best: Option<(f64, Intended)> = None;
    let mut second = f64::INFINITY;
    for (reading, slip, tier) in candidates(keyed, dials) {
        if Some(reading) == own {
            continue;
        }
        let Some(d) = distance(reading).map(|d| d * (1.0 + 0.5 * f64::from(tier - 1))) else {
            continue;
        };
        if d > 1.0 {
            continue;
        }
        match &best {
            Some((b, i)) if i.reading == reading => {
                if d < *b {
                    best = Some((d, Intended { reading, slip }));
                }
            }
            Some((b, _)) if d < *b => {
                second = *b;
                best = Some((d, Intended { reading, slip }));
            }
            Some(_) => second = second.min(d),
            None => best = Some((d, Intended { reading, slip })),
        }
    }
    let (d, i) = best?;
    (second.is_infinite() || second >= 2.0 * d.max(0.05)).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance 0 at `center`, 1 at `half` away.
    fn around(center: u64, half: u64) -> impl Fn(u64) -> Option<f64> {
        move |v| {
            let d = v.abs_diff(center) as f64 / half.max(1) as f64;
            (d <= 1.0).then_some(d)
        }
    }

    #[test]
    fn each_slip_is_undone_and_named() {
        let i = intended("43808", 5, around(43090, 10)).unwrap();
        assert_eq!(i.reading, 43088);
        assert_eq!(i.to_string(), "likely meant 43088: digits 3 and 4 swapped");
        let i = intended("455210", 6, around(45215, 10)).unwrap();
        assert_eq!((i.reading, i.slip), (45210, Slip::Doubled { digit: 5 }));
        let i = intended("14002", 5, around(14013, 4)).unwrap();
        assert_eq!((i.reading, i.slip), (14012, Slip::DialOff { place: 10 }));
        assert_eq!(
            i.to_string(),
            "likely meant 14012: the tens dial read one off"
        );
        let i = intended("4308", 5, |v| (v == 43088).then_some(0.2)).unwrap();
        assert_eq!(i.reading, 43088);
        assert!(matches!(i.slip, Slip::Dropped { at: 4 }), "{:?}", i.slip);
        // A band that takes several readings a dropped digit could explain names none.
        assert_eq!(intended("4308", 5, around(43088, 30)), None);
    }

    #[test]
    fn two_readings_that_fit_are_no_suggestion() {
        assert_eq!(intended("12", 5, |_| Some(0.5)), None);
        assert_eq!(intended("43808", 5, |_| None), None);
    }

    #[test]
    fn a_more_likely_slip_wins_over_a_less_likely_one() {
        // The swap (tier 1) lands nearest; a dropped digit (tier 2) a little farther counts 1.5×
        // as far: the swap stands out and is named.
        let d = |v| match v {
            1302 => Some(0.2),
            10332 => Some(0.3),
            _ => None,
        };
        let i = intended("1032", 5, d).unwrap();
        assert_eq!(i.reading, 1302);
        // Two slips landing about as near: neither is named.
        assert_eq!(
            intended("1032", 5, |v| (v == 1302 || v == 1023).then_some(0.2)),
            None
        );
    }

    #[test]
    fn no_candidate_exceeds_the_dials_or_is_not_a_number() {
        assert!(candidates("12a4", 5).is_empty());
        assert!(candidates("99999", 5).iter().all(|(v, ..)| *v <= 99_999));
        assert!(candidates("", 5).is_empty());
    }
}
