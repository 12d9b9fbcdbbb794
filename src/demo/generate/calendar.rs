//! The calendar: read days, windows, the seasonal curve and the weather over time (`Ctx`).

use super::*;

// ---- calendar ----------------------------------------------------------------------------------

pub(super) fn month_first(base: NaiveDate, offset: i32) -> NaiveDate {
    let m0 = base.year() * 12 + base.month0() as i32 + offset;
    NaiveDate::from_ymd_opt(m0.div_euclid(12), m0.rem_euclid(12) as u32 + 1, 1).unwrap_or(base)
}

pub(super) fn days_in_month(first: NaiveDate) -> u32 {
    let next = month_first(first, 1);
    (next - first).num_days() as u32
}

pub(super) fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// `d` moved by `months` calendar months, on the same day of the month (the month's last day when it
/// has fewer days): the read windows of successive cycles.
pub(super) fn months_after(d: NaiveDate, months: i32) -> NaiveDate {
    let shifted = if months >= 0 {
        d.checked_add_months(Months::new(months.unsigned_abs()))
    } else {
        d.checked_sub_months(Months::new(months.unsigned_abs()))
    };
    shifted.unwrap_or(d)
}

/// The weekday on or nearest after `d`, else before it, staying within `first..=last`.
pub(super) fn weekday_within(d: NaiveDate, first: NaiveDate, last: NaiveDate) -> NaiveDate {
    for step in [0i64, 1, 2, -1, -2, 3, -3] {
        let c = d + Duration::days(step);
        if c >= first && c <= last && !is_weekend(c) {
            return c;
        }
    }
    d
}

pub(super) fn next_weekday(d: NaiveDate) -> NaiveDate {
    let mut c = d + Duration::days(1);
    while is_weekend(c) {
        c += Duration::days(1);
    }
    c
}

pub(super) fn prev_weekday(d: NaiveDate) -> NaiveDate {
    let mut c = d - Duration::days(1);
    while is_weekend(c) {
        c -= Duration::days(1);
    }
    c
}

/// How many days before the day the demo runs its cycle's read window opened. With routes read over the
/// first three weeks of a window ([`READ_SPREAD_DAYS`], two weekdays each: the last read at most 22 days
/// in), every route has been read by the day before, and the window, a month long, still runs for a few
/// days after today (re-reads ordered today fall inside it).
pub const WINDOW_OPENED_DAYS_AGO: i64 = 25;
/// Routes' first read days are spread over this many days from the second day of each window.
pub(super) const READ_SPREAD_DAYS: f64 = 18.0;

/// Everything derived from the parameters that every account shares.
pub(super) struct Ctx {
    pub(super) as_of: NaiveDate,
    /// The open cycle's read window. Earlier cycles' windows open on the same day of earlier months.
    pub(super) window_from: NaiveDate,
    pub(super) window_to: NaiveDate,
    /// First day of the use tables.
    pub(super) t0: NaiveDate,
    /// Per class, cumulative seasonal×weather use (in "average months") from `t0` to the start of day i.
    pub(super) cum: [Vec<f64>; 4],
    /// Per route, per cycle (index m + 36, m = −36..=0), the two read days (first and second half).
    pub(super) read_days: Vec<Vec<[NaiveDate; 2]>>,
}

impl Ctx {
    pub(super) fn new(params: &DemoParams, routes: usize, rng: &mut Rng) -> Ctx {
        let window_from = params.as_of - Duration::days(WINDOW_OPENED_DAYS_AGO);
        let window_to = months_after(window_from, 1) - Duration::days(1);
        let t0 = month_first(window_from, -(HISTORY_MONTHS + 3));
        let t_end = month_first(window_from, 3);
        let n_days = (t_end - t0).num_days() as usize + 1;
        let n_months = (HISTORY_MONTHS + 6) as usize;
        // Weather: AR(1) in log space, one value per calendar month from t0.
        let mut weather = Vec::with_capacity(n_months);
        let mut x = 0.0;
        for _ in 0..n_months {
            x = 0.5 * x + 0.06 * rng.normal();
            weather.push(x);
        }
        let mut cum: [Vec<f64>; 4] = Default::default();
        for class in Class::ALL {
            let season = class.season();
            let sens = class.weather_sensitivity();
            let mut c = Vec::with_capacity(n_days + 1);
            let mut acc = 0.0;
            c.push(0.0);
            for i in 0..n_days {
                let d = t0 + Duration::days(i as i64);
                let rate = seasonal_rate(&season, d) * (sens * weather_at(&weather, t0, d)).exp();
                acc += rate / AVG_MONTH_DAYS;
                c.push(acc);
            }
            cum[class.idx()] = c;
        }
        let mut read_days = Vec::with_capacity(routes);
        for r in 0..routes {
            let mut per_month = Vec::with_capacity(HISTORY_MONTHS as usize + 1);
            for m in -HISTORY_MONTHS..=0 {
                let first = months_after(window_from, m);
                let last = months_after(window_from, m + 1) - Duration::days(1);
                let target = 1.0 + (r as f64 + 0.5) / routes as f64 * READ_SPREAD_DAYS;
                // The current cycle is read on schedule; history wanders ±3 days.
                let jitter = if m == 0 {
                    0
                } else {
                    rng.range(0, 6) as i64 - 3
                };
                let offset =
                    (target.round() as i64 + jitter).clamp(0, (last - first).num_days() - 2);
                let d1 = weekday_within(first + Duration::days(offset), first, last);
                let next = next_weekday(d1);
                let d2 = if next <= last { next } else { prev_weekday(d1) };
                per_month.push(if d2 < d1 { [d2, d1] } else { [d1, d2] });
            }
            read_days.push(per_month);
        }
        Ctx {
            as_of: params.as_of,
            window_from,
            window_to,
            t0,
            cum,
            read_days,
        }
    }

    /// Cumulative class use (average months) at the start of `d`.
    pub(super) fn c(&self, class: Class, d: NaiveDate) -> f64 {
        let table = &self.cum[class.idx()];
        let i = (d - self.t0).num_days().clamp(0, table.len() as i64 - 1) as usize;
        table[i]
    }

    pub(super) fn read_day(&self, route: usize, m: i32, half: usize) -> NaiveDate {
        self.read_days[route][(m + HISTORY_MONTHS) as usize][half]
    }

    /// The first day of cycle `m`'s read window (0: the open cycle).
    pub(super) fn window_start(&self, m: i32) -> NaiveDate {
        months_after(self.window_from, m)
    }

    /// The weekday nearest `d` within cycle `m`'s read window.
    pub(super) fn weekday_in_window(&self, m: i32, d: NaiveDate) -> NaiveDate {
        let last = self.window_start(m + 1) - Duration::days(1);
        weekday_within(d, self.window_start(m), last)
    }
}
