//! An account's read history turned into billing periods: consumption between consecutive closing
//! reads, in billing units, following the account across meter changes.

use crate::domain::{HistoryRead, ReadKind, Register};
use chrono::{Datelike, NaiveDate};

/// Use between two closing reads of an account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// HCF, whatever the meters' units (a meter change may switch HCF for 10-gallon registers).
    pub usage: f64,
    /// Starts or ends on an estimated reading: weaker evidence.
    pub estimated: bool,
    /// `from` and `to` as day numbers: expected use is overlap arithmetic on these, millions of times
    /// per cycle, and chrono's calendar dates are slow to subtract.
    start: i32,
    end: i32,
}

impl Period {
    pub fn new(from: NaiveDate, to: NaiveDate, usage: f64, estimated: bool) -> Period {
        Period {
            from,
            to,
            usage,
            estimated,
            start: from.num_days_from_ce(),
            end: to.num_days_from_ce(),
        }
    }

    pub fn days(&self) -> i64 {
        i64::from(self.end - self.start)
    }

    pub(crate) fn start_day(&self) -> i32 {
        self.start
    }

    pub(crate) fn end_day(&self) -> i32 {
        self.end
    }

    pub fn daily(&self) -> f64 {
        self.usage / self.days().max(1) as f64
    }
}

/// The last reading of a meter still in service: the base the next reading is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterBase {
    pub meter_id: String,
    pub reading: u64,
    pub read_on: NaiveDate,
    pub kind: ReadKind,
    /// The meter's last reading that was not an estimate (the same as `reading` unless `kind` is
    /// `estimated`): use is judged from here, since an estimate may have been far off.
    pub firm_reading: u64,
    pub firm_on: NaiveDate,
}

/// What validation needs from an account's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountHistory {
    /// In date order, not overlapping.
    pub periods: Vec<Period>,
    /// One per meter in service (a final reading removes its meter).
    pub bases: Vec<MeterBase>,
    /// Date of the last closing read: the next period starts here.
    pub period_start: Option<NaiveDate>,
    /// HCF used on meters pulled since `period_start` (old final − old previous): they belong to
    /// the next period, which ends on the new meter.
    pub carry: f64,
}

impl AccountHistory {
    /// Builds periods from an account's history in any order. `register_of` gives each meter's register
    /// (old, pulled meters included); a meter it does not know is taken as 12 dials, multiplier 1.
    ///
    /// A reading below the previous one counts as a rollover when wrapping is the shorter way round;
    /// otherwise the history is broken there (a data error) and the next period starts afresh.
    pub fn build(reads: &[HistoryRead], register_of: impl Fn(&str) -> Option<Register>) -> Self {
        let mut order: Vec<&HistoryRead> = reads.iter().collect();
        order.sort_by_key(|r| (r.read_on, r.kind.same_day_rank()));
        let mut h = AccountHistory {
            periods: Vec::with_capacity(reads.len()),
            ..AccountHistory::default()
        };
        let fallback = Register {
            dials: Register::MAX_DIALS,
            multiplier: 1,
            unit: crate::domain::Unit::Hcf,
        };
        let mut last_register: Option<(&str, Register)> = None;
        let mut i = 0;
        while i < order.len() {
            let day = order[i].read_on;
            let mut j = i;
            while j < order.len() && order[j].read_on == day {
                j += 1;
            }
            let (mut closing, mut closed, mut estimated, mut broken) = (0.0, false, false, false);
            for r in &order[i..j] {
                // Consecutive reads are mostly of one meter: look its register up once.
                let reg = match &last_register {
                    Some((id, reg)) if *id == r.meter_id => *reg,
                    _ => {
                        let reg = register_of(&r.meter_id).unwrap_or(fallback);
                        last_register = Some((r.meter_id.as_str(), reg));
                        reg
                    }
                };
                let base = h.bases.iter().position(|b| b.meter_id == r.meter_id);
                match r.kind {
                    ReadKind::Final => {
                        if let Some(b) = base {
                            match forward_use(&reg, h.bases[b].reading, r.reading) {
                                Some(u) => h.carry += u,
                                None => broken = true,
                            }
                            h.bases.swap_remove(b);
                        }
                    }
                    ReadKind::Initial => {
                        set_base(&mut h.bases, base, r);
                        if h.period_start.is_none() {
                            h.period_start = Some(day);
                        }
                    }
                    ReadKind::Actual | ReadKind::Estimated => {
                        match base {
                            Some(b) => match forward_use(&reg, h.bases[b].reading, r.reading) {
                                Some(u) => {
                                    closing += u;
                                    closed = true;
                                    estimated |= r.kind == ReadKind::Estimated
                                        || h.bases[b].kind == ReadKind::Estimated;
                                }
                                None => broken = true,
                            },
                            // A meter read with no base: the account's first read, or a meter change
                            // the CIS did not record with final/initial readings. Either way the use
                            // before it is unknown, so a new period starts here.
                            None => broken = true,
                        }
                        set_base(&mut h.bases, base, r);
                    }
                }
            }
            if broken {
                h.period_start = Some(day);
                h.carry = 0.0;
            } else if closed {
                if let Some(from) = h.period_start.filter(|s| *s < day) {
                    h.periods
                        .push(Period::new(from, day, closing + h.carry, estimated));
                }
                h.period_start = Some(day);
                h.carry = 0.0;
            }
            i = j;
        }
        h
    }

    /// How many of the last `n` actual periods had no use although the same dates a year earlier had
    /// at least `min_daily` HCF a day (or no history to tell): a vacation home's empty months count, an
    /// irrigation account's dry winters do not.
    pub fn unexpected_zero_periods(&self, n: usize, min_daily: f64) -> usize {
        let year = chrono::Duration::days(365);
        self.last_zero_periods(n)
            .filter(|p| {
                rate_over(&self.periods, p.from - year, p.to - year, 1.0)
                    .is_none_or(|(rate, _)| rate >= min_daily)
            })
            .count()
    }

    /// The periods without use among the last `n` actual periods.
    fn last_zero_periods(&self, n: usize) -> impl Iterator<Item = &Period> {
        self.periods
            .iter()
            .rev()
            .filter(|p| !p.estimated)
            .take(n)
            .filter(|p| p.usage <= 0.0)
    }

    /// How many of the last `n` actual periods had no use at all.
    pub fn zero_periods(&self, n: usize) -> usize {
        self.last_zero_periods(n).count()
    }

    pub fn base_of(&self, meter_id: &str) -> Option<&MeterBase> {
        self.bases.iter().find(|b| b.meter_id == meter_id)
    }

    /// Periods that count as the account's own evidence (estimated ones count as `estimated_weight`).
    pub fn usable_periods(&self, estimated_weight: f64) -> f64 {
        self.periods
            .iter()
            .map(|p| if p.estimated { estimated_weight } else { 1.0 })
            .sum()
    }
}

fn set_base(bases: &mut Vec<MeterBase>, at: Option<usize>, r: &HistoryRead) {
    match at {
        // Updated in place: no new meter id string per read.
        Some(i) => {
            let b = &mut bases[i];
            if r.kind != ReadKind::Estimated {
                (b.firm_reading, b.firm_on) = (r.reading, r.read_on);
            }
            (b.reading, b.read_on, b.kind) = (r.reading, r.read_on, r.kind);
        }
        None => bases.push(MeterBase {
            meter_id: r.meter_id.clone(),
            reading: r.reading,
            read_on: r.read_on,
            kind: r.kind,
            firm_reading: r.reading,
            firm_on: r.read_on,
        }),
    }
}

/// HCF between two readings of one register, or `None` if the register went backwards.
fn forward_use(reg: &Register, previous: u64, current: u64) -> Option<f64> {
    use crate::domain::RegisterDelta;
    let units = match reg.delta(previous, current) {
        RegisterDelta::Forward(d) => d,
        RegisterDelta::Below { wrapped, back } if wrapped < back => wrapped,
        RegisterDelta::Below { .. } => return None,
    };
    Some(reg.to_billing(units) as f64 * hcf_per_billing_unit(reg))
}

/// HCF in one billing unit (register unit × multiplier) of `reg`: validation works in HCF so that
/// history on meters of different units adds up.
pub fn hcf_per_billing_unit(reg: &Register) -> f64 {
    reg.unit.gallons() / crate::domain::Unit::Hcf.gallons()
}

/// Daily use over `[from, to)` from the periods that overlap it, weighted by overlap days (estimated
/// periods by `estimated_weight`). Returns the daily rate and the fraction of the span covered.
pub fn rate_over(
    periods: &[Period],
    from: NaiveDate,
    to: NaiveDate,
    estimated_weight: f64,
) -> Option<(f64, f64)> {
    rate_over_days(
        periods,
        from.num_days_from_ce(),
        to.num_days_from_ce(),
        estimated_weight,
    )
}

/// [`rate_over`] on day numbers (`NaiveDate::num_days_from_ce`).
pub(crate) fn rate_over_days(
    periods: &[Period],
    from: i32,
    to: i32,
    estimated_weight: f64,
) -> Option<(f64, f64)> {
    let span = to - from;
    if span <= 0 {
        return None;
    }
    let first = periods.partition_point(|p| p.end <= from);
    let (mut use_w, mut days_w, mut covered) = (0.0, 0.0, 0i32);
    for p in periods[first..].iter().take_while(|p| p.start < to) {
        let overlap = p.end.min(to) - p.start.max(from);
        if overlap <= 0 {
            continue;
        }
        let w = if p.estimated { estimated_weight } else { 1.0 };
        use_w += p.daily() * overlap as f64 * w;
        days_w += overlap as f64 * w;
        covered += overlap;
    }
    if days_w <= 0.0 {
        return None;
    }
    Some((use_w / days_w, covered as f64 / span as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Unit;

    pub(crate) fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn read(meter: &str, on: &str, reading: u64, kind: ReadKind) -> HistoryRead {
        HistoryRead {
            account_id: "A1".into(),
            meter_id: meter.into(),
            read_on: d(on),
            reading,
            kind,
        }
    }

    fn reg4(_: &str) -> Option<Register> {
        Some(Register {
            dials: 4,
            multiplier: 1,
            unit: Unit::Hcf,
        })
    }

    #[test]
    fn a_period_spanning_a_meter_change_adds_the_old_and_new_meters_use() {
        let reads = vec![
            read("OLD", "2026-01-01", 1_000, ReadKind::Actual),
            read("OLD", "2026-01-15", 1_004, ReadKind::Final),
            read("NEW", "2026-01-15", 0, ReadKind::Initial),
            read("NEW", "2026-02-01", 6, ReadKind::Actual),
        ];
        let h = AccountHistory::build(&reads, reg4);
        assert_eq!(h.periods.len(), 1);
        assert_eq!(h.periods[0].usage, 10.0);
        assert_eq!(h.periods[0].from, d("2026-01-01"));
        assert_eq!(h.base_of("NEW").unwrap().reading, 6);
        assert!(h.base_of("OLD").is_none());
    }

    #[test]
    fn a_meter_changed_since_the_last_read_carries_the_old_meters_use() {
        let reads = vec![
            read("OLD", "2026-01-01", 500, ReadKind::Actual),
            read("OLD", "2026-01-20", 507, ReadKind::Final),
            read("NEW", "2026-01-20", 3, ReadKind::Initial),
        ];
        let h = AccountHistory::build(&reads, reg4);
        assert!(h.periods.is_empty());
        assert_eq!(h.carry, 7.0);
        assert_eq!(h.period_start, Some(d("2026-01-01")));
        assert_eq!(h.base_of("NEW").unwrap().reading, 3);
    }

    #[test]
    fn a_history_rollover_is_use_and_a_backwards_read_breaks_the_history() {
        let reads = vec![
            read("M", "2026-01-01", 9_990, ReadKind::Actual),
            read("M", "2026-02-01", 5, ReadKind::Actual),
            read("M", "2026-03-01", 2, ReadKind::Actual),
            read("M", "2026-04-01", 12, ReadKind::Actual),
        ];
        let h = AccountHistory::build(&reads, reg4);
        let usage: Vec<f64> = h.periods.iter().map(|p| p.usage).collect();
        assert_eq!(usage, vec![15.0, 10.0]);
        assert_eq!(h.periods[1].from, d("2026-03-01"));
    }

    #[test]
    fn periods_next_to_an_estimated_read_are_marked_estimated() {
        let reads = vec![
            read("M", "2026-01-01", 100, ReadKind::Actual),
            read("M", "2026-02-01", 110, ReadKind::Estimated),
            read("M", "2026-03-01", 130, ReadKind::Actual),
            read("M", "2026-04-01", 140, ReadKind::Actual),
        ];
        let h = AccountHistory::build(&reads, reg4);
        let est: Vec<bool> = h.periods.iter().map(|p| p.estimated).collect();
        assert_eq!(est, vec![true, true, false]);
        assert!((h.usable_periods(0.5) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn rate_over_weights_periods_by_overlapping_days() {
        let p = |from, to, usage| Period::new(d(from), d(to), usage, false);
        let periods = vec![
            p("2026-01-01", "2026-01-11", 10.0),
            p("2026-01-11", "2026-01-21", 30.0),
        ];
        let (rate, cover) = rate_over(&periods, d("2026-01-06"), d("2026-01-16"), 0.5).unwrap();
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
        assert!((cover - 1.0).abs() < 1e-9);
        let (_, cover) = rate_over(&periods, d("2026-01-16"), d("2026-02-05"), 0.5).unwrap();
        assert!((cover - 0.25).abs() < 1e-9);
        assert!(rate_over(&periods, d("2026-03-01"), d("2026-04-01"), 0.5).is_none());
    }
}
