//! The demo district: a deterministic, realistic district with planted problems and their ground truth.
//!
//! [`generate`] is pure (no IO, no clock): the same [`DemoParams`] always build the same [`District`].
//! The district is both the demo's data and the yardstick for validation: [`District::truth`] lists every
//! planted problem and trap with what a good validator must say about it, and [`score`] grades a
//! validator's flags against it. See `generate.rs` for what is planted and why each expectation is right.

mod generate;
mod names;
mod rng;
pub mod show;

use crate::domain::{
    Account, AccountStatus, Cycle, FieldRead, FlagKind, HistoryRead, MessageCode, Meter,
    ReadMethod, ReadType, Route,
};
use crate::store::{Store, StoreError};
use chrono::{NaiveDate, NaiveDateTime};
use firmware_protocol::message as msg;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use generate::{generate, HISTORY_MONTHS, WINDOW_OPENED_DAYS_AGO};

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoParams {
    pub accounts: u32,
    pub seed: u64,
    /// The day the demo runs ("today"). The open cycle is the one being read now: its read window
    /// opened [`WINDOW_OPENED_DAYS_AGO`] days before, every route has been read since (the last reads
    /// are from a few days ago), and it still runs for a few days. History covers the 36 cycles before.
    /// Nothing is dated on or after this day.
    pub as_of: NaiveDate,
}

/// A whole district: what the CIS would import, the open cycle, the reads the handhelds bring back,
/// and the ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct District {
    pub routes: Vec<Route>,
    pub accounts: Vec<Account>,
    pub meters: Vec<Meter>,
    /// Ordered by account, then date (a meter change's `final` before its `initial`).
    pub history: Vec<HistoryRead>,
    pub codes: Vec<MessageCode>,
    /// The current (open) cycle over every route.
    pub cycle: Cycle,
    /// The current cycle's reads, in the order the handhelds bring them back (per device by sequence).
    pub field_reads: Vec<FieldRead>,
    /// Ground truth for every planted problem and trap, one entry per affected meter.
    pub truth: Vec<Planted>,
}

/// One planted problem or trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planted {
    pub account_id: String,
    /// The meter whose read(s) carry the problem (for `Missing`, the meter with no read; for a read of an
    /// unknown meter, the id the reader keyed).
    pub meter_id: String,
    pub problem: Problem,
    pub expect: Expect,
    /// What was done, in numbers (for the demo's printout and for debugging a miss).
    pub detail: String,
    /// For a mis-keyed reading: the reading the reader meant; for a swapped meter: its own reading
    /// (keyed at the other stop).
    pub intended: Option<u64>,
}

/// What a good validator must say about a planted meter's read(s) this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// At least one exception flag among `kind` (the rule that should catch it) and `also` (other rules
    /// that legitimately catch the same problem) on any of the meter's reads this cycle.
    Exception { kind: FlagKind, also: Vec<FlagKind> },
    /// No exception flag on any of the meter's reads (informational flags such as `rollover` are fine).
    NotFlagged,
}

impl Expect {
    pub fn exception(kind: FlagKind) -> Expect {
        Expect::Exception {
            kind,
            also: Vec::new(),
        }
    }

    pub fn exception_or(kind: FlagKind, also: &[FlagKind]) -> Expect {
        Expect::Exception {
            kind,
            also: also.to_vec(),
        }
    }

    /// Whether `flags` (every flag on the meter's reads this cycle) meet this expectation.
    pub fn is_met_by(&self, flags: &[FlagKind]) -> bool {
        match self {
            Expect::Exception { kind, also } => flags
                .iter()
                .any(|f| f.is_exception() && (f == kind || also.contains(f))),
            Expect::NotFlagged => !flags.iter().any(|f| f.is_exception()),
        }
    }

    pub fn is_exception(&self) -> bool {
        matches!(self, Expect::Exception { .. })
    }
}

/// Planted problems (a good validator flags them) and traps (normal reads a naive rule would flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Problem {
    // Problems: `Expect::Exception`.
    /// Use 3–10× expected, regular read (`LK` on some): `high`.
    Leak,
    /// The same, read type `high_confirmed` with `LK`: still `high` (the clerk reviews the bill).
    ConfirmedLeak,
    /// Reading equals the previous one on an account using ≥ 5 HCF a period: `zero` (or `low`).
    StuckMeter,
    /// Use 10–30% of expected (`TR` on some): `low` (or `zero`).
    Tampering,
    /// A digit keyed twice: `invalid_reading` when it overflows the dials (or `high`), else `high`.
    MisKeyedExtraDigit,
    /// One digit wrong: `high`, `negative` (or `high`) or `low`, as `Planted::expect` says.
    MisKeyedDigit,
    /// Two adjacent digits swapped: as `MisKeyedDigit`.
    TransposedDigits,
    /// Two neighbours' readings keyed against each other's meters (one entry per meter).
    SwappedMeter,
    /// The register ran backwards: `negative` (or `high`).
    ReverseFlow,
    /// An inactive account's meter moved: `inactive_usage` (or `high`).
    UsageOnInactive,
    /// A radio read of a meter in inventory: `meter_mismatch`.
    PulledMeterRead,
    /// A read of a meter id the district does not know: `meter_mismatch`.
    UnknownMeter,
    /// The raw reading is not a number: `invalid_reading`.
    InvalidReading,
    /// Two different readings for one meter this cycle: `duplicate`.
    DuplicateDifferent,
    /// Read outside the cycle's window: `out_of_window`.
    OutOfWindow,
    /// Read type `skipped` with a skip code: `missing`.
    Skipped,
    /// No read at all: `missing`.
    Missing,
    /// A leak that began last period and continues (both periods 2–4× the norm): `high`.
    ContinuingLeak,
    /// A leak of 1.8–2.5× the account's seasonal norm: `high`.
    ModerateLeak,
    /// A commercial or multi-family account, steady for years, using 1.7–2.5× its norm: `high`.
    CommercialLeak,
    /// A moderate leak (1.8–2.5×) on a meter counting gallons or cubic feet: `high`.
    GallonMeterLeak,
    /// A commercial or multi-family account, steady for years, reading 30–50% of its norm: `low`.
    CommercialLow,
    /// One dial read one off (`14002` for `14012`): `low`, `high` or `negative`, as planted.
    DialMisread,
    /// A household read every other month, 1.8–2.5× its norm over the two months: `high`.
    BimonthlyLeak,
    // Traps: `Expect::NotFlagged`.
    /// Class seasonal use this period > 1.6× the last three periods (irrigation in spring).
    SeasonalRampUp,
    /// Class seasonal use this period < 0.625× the last three periods (irrigation in autumn).
    SeasonalDrop,
    /// The register wrapped through zero with plausible use (the `rollover` info flag is fine).
    Rollover,
    /// Meter changed 1–11 months ago (`final` + `initial` the same day).
    MeterChangeThisYear,
    /// Meter changed since the last read: the previous reading is the new meter's `initial`.
    MeterChangeLastPeriod,
    /// Meter changed this year to another unit or multiplier (HCF → 10 gal).
    MeterChangeNewUnit,
    /// Service started within the last year (as little as one period of history).
    ThinHistory,
    /// Inactive account, meter did not move.
    InactiveNoUse,
    /// The same reading sent twice minutes apart.
    DuplicateSame,
    /// The last period was estimated low; this read catches up.
    AfterEstimate,
    /// A period months ago with almost no use (away on vacation); this read is normal.
    Vacation,
    /// A small user (1–3 HCF a month) with two periods of no use in the last year.
    SmallUser,
    /// A new tenant 4–9 months ago uses 0.6× or 1.7× what the last one did; this read is at the new level.
    NewTenant,
    /// A second home, lived in from May to October, almost empty the rest of the year.
    SecondHome,
    /// Use growing 1.5% a month for three years.
    Trend,
    /// A household read every other month: two months of use since the previous read.
    Bimonthly,
}

impl Problem {
    pub const ALL: &'static [Problem] = &[
        Problem::Leak,
        Problem::ConfirmedLeak,
        Problem::StuckMeter,
        Problem::Tampering,
        Problem::MisKeyedExtraDigit,
        Problem::MisKeyedDigit,
        Problem::TransposedDigits,
        Problem::SwappedMeter,
        Problem::ReverseFlow,
        Problem::UsageOnInactive,
        Problem::PulledMeterRead,
        Problem::UnknownMeter,
        Problem::InvalidReading,
        Problem::DuplicateDifferent,
        Problem::OutOfWindow,
        Problem::Skipped,
        Problem::Missing,
        Problem::ContinuingLeak,
        Problem::ModerateLeak,
        Problem::CommercialLeak,
        Problem::GallonMeterLeak,
        Problem::CommercialLow,
        Problem::DialMisread,
        Problem::BimonthlyLeak,
        Problem::SeasonalRampUp,
        Problem::SeasonalDrop,
        Problem::Rollover,
        Problem::MeterChangeThisYear,
        Problem::MeterChangeLastPeriod,
        Problem::MeterChangeNewUnit,
        Problem::ThinHistory,
        Problem::InactiveNoUse,
        Problem::DuplicateSame,
        Problem::AfterEstimate,
        Problem::Vacation,
        Problem::SmallUser,
        Problem::NewTenant,
        Problem::SecondHome,
        Problem::Trend,
        Problem::Bimonthly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Leak => "leak",
            Problem::ConfirmedLeak => "confirmed_leak",
            Problem::StuckMeter => "stuck_meter",
            Problem::Tampering => "tampering",
            Problem::MisKeyedExtraDigit => "mis_keyed_extra_digit",
            Problem::MisKeyedDigit => "mis_keyed_digit",
            Problem::TransposedDigits => "transposed_digits",
            Problem::SwappedMeter => "swapped_meter",
            Problem::ReverseFlow => "reverse_flow",
            Problem::UsageOnInactive => "usage_on_inactive",
            Problem::PulledMeterRead => "pulled_meter_read",
            Problem::UnknownMeter => "unknown_meter",
            Problem::InvalidReading => "invalid_reading",
            Problem::DuplicateDifferent => "duplicate_different",
            Problem::OutOfWindow => "out_of_window",
            Problem::Skipped => "skipped",
            Problem::Missing => "missing",
            Problem::SeasonalRampUp => "seasonal_ramp_up",
            Problem::SeasonalDrop => "seasonal_drop",
            Problem::Rollover => "rollover",
            Problem::MeterChangeThisYear => "meter_change_this_year",
            Problem::MeterChangeLastPeriod => "meter_change_last_period",
            Problem::MeterChangeNewUnit => "meter_change_new_unit",
            Problem::ThinHistory => "thin_history",
            Problem::InactiveNoUse => "inactive_no_use",
            Problem::DuplicateSame => "duplicate_same",
            Problem::AfterEstimate => "after_estimate",
            Problem::ContinuingLeak => "continuing_leak",
            Problem::ModerateLeak => "moderate_leak",
            Problem::CommercialLeak => "commercial_leak",
            Problem::GallonMeterLeak => "gallon_meter_leak",
            Problem::CommercialLow => "commercial_low",
            Problem::DialMisread => "dial_misread",
            Problem::Vacation => "vacation",
            Problem::SmallUser => "small_user",
            Problem::NewTenant => "new_tenant",
            Problem::SecondHome => "second_home",
            Problem::Trend => "trend",
            Problem::BimonthlyLeak => "bimonthly_leak",
            Problem::Bimonthly => "bimonthly",
        }
    }

    /// A trap is a normal read planted to catch over-eager rules.
    pub fn is_trap(self) -> bool {
        self >= Problem::SeasonalRampUp
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl District {
    /// Meter ids that carry a planted problem or trap.
    pub fn planted_meters(&self) -> BTreeSet<&str> {
        self.truth.iter().map(|p| p.meter_id.as_str()).collect()
    }

    /// The number of entries in `truth` per problem.
    pub fn planted_counts(&self) -> BTreeMap<Problem, usize> {
        let mut counts = BTreeMap::new();
        for p in &self.truth {
            *counts.entry(p.problem).or_insert(0) += 1;
        }
        counts
    }

    /// Opens the district's cycle (over all its routes) in `store`, where it was loaded.
    pub fn open_cycle(
        &self,
        store: &mut Store,
        at: NaiveDateTime,
    ) -> Result<Cycle, crate::cycles::CycleError> {
        let c = &self.cycle;
        crate::cycles::open_cycle(store, &c.id, c.window_from, c.window_to, &c.routes, at)
    }

    /// The route a field read was taken on: its meter's account's route, or, for a meter not in
    /// service or unknown to the district (a planted read), the route of the account where the
    /// reader keyed it.
    fn read_routes(&self) -> HashMap<&str, &str> {
        let route_of: HashMap<&str, &str> = self
            .accounts
            .iter()
            .map(|a| (a.id.as_str(), a.route_id.as_str()))
            .collect();
        let mut routes: HashMap<&str, &str> = HashMap::new();
        for t in &self.truth {
            if let Some(r) = route_of.get(t.account_id.as_str()) {
                routes.insert(t.meter_id.as_str(), r);
            }
        }
        for m in &self.meters {
            if let Some(r) = m.account_id.as_deref().and_then(|a| route_of.get(a)) {
                routes.insert(m.id.as_str(), r);
            }
        }
        routes
    }

    /// What the handhelds carrying `routes` bring back, as a district of its own for [`score`]: those
    /// routes, their accounts, meters and history, the reads taken on them (with the planted reads of
    /// meters not in service or unknown, keyed at their stops) and the truth about them. A reading that
    /// is not a number cannot be keyed on a handheld (it comes from files): such a read stays out
    /// ([`handheld_read`]), and so does its truth entry. The cycle and the message codes are the
    /// district's.
    pub fn on_handheld_routes(&self, routes: &[String]) -> District {
        let wanted: BTreeSet<&str> = routes.iter().map(String::as_str).collect();
        let read_routes = self.read_routes();
        let on = |meter: &str| read_routes.get(meter).is_some_and(|r| wanted.contains(r));
        let mut field_reads = Vec::new();
        let mut not_carried: BTreeSet<&str> = BTreeSet::new();
        for r in self.field_reads.iter().filter(|r| on(&r.meter_id)) {
            if handheld_read(r).is_some() {
                field_reads.push(r.clone());
            } else {
                not_carried.insert(r.meter_id.as_str());
            }
        }
        let accounts: Vec<Account> = self
            .accounts
            .iter()
            .filter(|a| wanted.contains(a.route_id.as_str()))
            .cloned()
            .collect();
        let account_ids: BTreeSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        let history: Vec<HistoryRead> = self
            .history
            .iter()
            .filter(|h| account_ids.contains(h.account_id.as_str()))
            .cloned()
            .collect();
        let served: BTreeSet<&str> = history.iter().map(|h| h.meter_id.as_str()).collect();
        District {
            routes: self
                .routes
                .iter()
                .filter(|r| wanted.contains(r.id.as_str()))
                .cloned()
                .collect(),
            meters: self
                .meters
                .iter()
                .filter(|m| {
                    m.account_id
                        .as_deref()
                        .is_some_and(|a| account_ids.contains(a))
                        || served.contains(m.id.as_str())
                })
                .cloned()
                .collect(),
            truth: self
                .truth
                .iter()
                .filter(|t| account_ids.contains(t.account_id.as_str()))
                .filter(|t| !not_carried.contains(t.meter_id.as_str()))
                .cloned()
                .collect(),
            accounts,
            history,
            codes: self.codes.clone(),
            cycle: self.cycle.clone(),
            field_reads,
        }
    }
}

/// A district field read as a handheld sends it over the wire protocol; `None` for a reading that is
/// not a number, which a handheld's numeric keypad cannot produce, and for an office estimate.
pub fn handheld_read(r: &FieldRead) -> Option<msg::Read> {
    let skipped = r.read_type == ReadType::Skipped;
    let reading = if skipped { 0 } else { r.reading()? };
    Some(msg::Read {
        device_seq: 0,
        meter_id: r.meter_id.clone(),
        reading,
        read_time: crate::sync::protocol_time(r.read_at),
        read_type: match r.read_type {
            ReadType::Regular => msg::ReadType::Regular,
            ReadType::HighConfirmed => msg::ReadType::HighConfirmed,
            ReadType::LowConfirmed => msg::ReadType::LowConfirmed,
            ReadType::Skipped => msg::ReadType::Skipped,
        },
        method: match r.method {
            ReadMethod::Keyed => msg::ReadMethod::Keyed,
            ReadMethod::Probe => msg::ReadMethod::Probe,
            ReadMethod::Radio => msg::ReadMethod::Radio,
            // The office's estimate: no handheld sends one.
            ReadMethod::Estimated => return None,
        },
        message_codes: r.codes.clone(),
        skip_code: r.skip_code.clone(),
        note: r.note.clone(),
        reader_id: r.reader.clone(),
        order: None,
    })
}

/// Every flag validation put on a meter this cycle, as `store` holds it: the flags of each of its
/// stored reads, and `missing` for a stop of the cycle with no usable read (what cycle close would
/// estimate, on `on`). What [`score`] grades, for a district loaded in `store` with its cycle open.
pub fn flags_in_store(
    store: &Store,
    config: &dyn crate::cycles::CycleSettings,
    cycle_id: &str,
    on: NaiveDate,
) -> Result<HashMap<String, Vec<FlagKind>>, crate::cycles::CycleError> {
    let mut flags: HashMap<String, Vec<FlagKind>> = HashMap::new();
    for r in store.cycle_reads(cycle_id)? {
        flags
            .entry(r.meter_id)
            .or_default()
            .extend(r.flags.iter().map(|f| f.kind));
    }
    for m in crate::cycles::missing_reads(store, config, cycle_id, on)? {
        flags.entry(m.meter_id).or_default().push(FlagKind::Missing);
    }
    Ok(flags)
}

/// How a validator did against a district's truth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// Per problem or trap: (entries, entries whose expectation was met).
    pub per_problem: BTreeMap<Problem, (usize, usize)>,
    /// Planted exceptions and how many got an acceptable exception flag.
    pub problems: usize,
    pub problems_caught: usize,
    /// Traps and how many were (rightly) left without an exception flag.
    pub traps: usize,
    pub traps_clean: usize,
    /// Meters with reads this cycle and no planted problem or trap, and how many of them got an
    /// exception flag (false positives).
    pub normal_meters: usize,
    pub normal_flagged: usize,
    /// The misses, for a report: (problem, meter id, flags seen).
    pub misses: Vec<(Problem, String, Vec<FlagKind>)>,
    /// The normal meters flagged, for a report: (meter id, flags seen).
    pub false_alarms: Vec<(String, Vec<FlagKind>)>,
}

impl Score {
    pub fn recall(&self) -> f64 {
        ratio(self.problems_caught, self.problems)
    }

    pub fn trap_pass_rate(&self) -> f64 {
        ratio(self.traps_clean, self.traps)
    }

    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.normal_flagged, self.normal_meters)
    }

    /// For a person: planted problems flagged, traps left alone, normal reads flagged, then the misses
    /// and the normal meters flagged (at most ten of each), one a line.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut line = |what: &str, n: usize, of: usize| {
            let _ = writeln!(out, "  {what:<30} {n:>6} of {of}");
        };
        line(
            "planted problems flagged",
            self.problems_caught,
            self.problems,
        );
        line("traps left unflagged", self.traps_clean, self.traps);
        line(
            "normal reads flagged",
            self.normal_flagged,
            self.normal_meters,
        );
        let misses = self
            .misses
            .iter()
            .map(|(problem, meter, flags)| (format!("missed: {problem} on meter {meter}"), flags));
        list(&mut out, misses, self.misses.len(), "misses");
        let alarms = self
            .false_alarms
            .iter()
            .map(|(meter, flags)| (format!("normal meter flagged: {meter}"), flags));
        list(
            &mut out,
            alarms,
            self.false_alarms.len(),
            "normal meters flagged",
        );
        out
    }
}

/// Up to ten `(what, flags)` lines of a report, then how many more of `all` there are.
fn list<'a>(
    out: &mut String,
    items: impl Iterator<Item = (String, &'a Vec<FlagKind>)>,
    all: usize,
    more: &str,
) {
    use std::fmt::Write as _;
    for (what, flags) in items.take(10) {
        let flags: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
        let flags = if flags.is_empty() {
            "none".to_string()
        } else {
            flags.join(", ")
        };
        let _ = writeln!(out, "  {what} (flags: {flags})");
    }
    if all > 10 {
        let _ = writeln!(out, "  ... and {} more {more}", all - 10);
    }
}

/// When a simulated handheld starts walking its route in the demo, one stop a minute: yesterday at
/// 07:30 (no earlier than the cycle's first day), so that a route of up to 900 stops (a route is about 600) is walked
/// inside the read window and before `now`, when it docks.
pub fn walk_start(cycle: &Cycle, now: NaiveDateTime) -> NaiveDateTime {
    let day = (now.date() - chrono::Duration::days(1)).max(cycle.window_from);
    let morning = chrono::NaiveTime::from_hms_opt(7, 30, 0).unwrap_or_default();
    day.and_time(morning)
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// Grades a validator: `flags_of(meter_id)` returns every flag the validator put on that meter's reads
/// this cycle (including a `missing` flag for a meter with no read).
pub fn score(district: &District, mut flags_of: impl FnMut(&str) -> Vec<FlagKind>) -> Score {
    let mut s = Score::default();
    for p in &district.truth {
        let flags = flags_of(&p.meter_id);
        let met = p.expect.is_met_by(&flags);
        let entry = s.per_problem.entry(p.problem).or_insert((0, 0));
        entry.0 += 1;
        if met {
            entry.1 += 1;
        }
        if p.expect.is_exception() {
            s.problems += 1;
            s.problems_caught += usize::from(met);
        } else {
            s.traps += 1;
            s.traps_clean += usize::from(met);
        }
        if !met {
            s.misses.push((p.problem, p.meter_id.clone(), flags));
        }
    }
    let planted = district.planted_meters();
    let normal: BTreeSet<&str> = district
        .field_reads
        .iter()
        .map(|r| r.meter_id.as_str())
        .filter(|m| !planted.contains(m))
        .collect();
    for m in normal {
        s.normal_meters += 1;
        let flags = flags_of(m);
        if flags.iter().any(|f| f.is_exception()) {
            s.normal_flagged += 1;
            s.false_alarms.push((m.to_string(), flags));
        }
    }
    s
}

/// The largest demo district: account and meter ids stay unique well past it, and it is twice the
/// largest US water utility.
pub const MAX_ACCOUNTS: u32 = 2_000_000;

/// Rows written by [`load`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub routes: usize,
    pub accounts: usize,
    pub meters: usize,
    pub history: usize,
    pub codes: usize,
}

/// History rows per transaction: large enough to amortise the commit's fsync, small enough that a
/// 100,000-account district never holds one huge write transaction.
const HISTORY_CHUNK: usize = 50_000;

/// Writes the district's reference data (routes, accounts, meters, history, message codes) into the
/// store. The cycle and the field reads are not written here: they go through the cycle machinery.
pub fn load(store: &mut Store, district: &District) -> Result<LoadReport, StoreError> {
    let mut report = LoadReport {
        routes: store.upsert_routes(&district.routes)?,
        accounts: store.upsert_accounts(&district.accounts)?,
        meters: store.upsert_meters(&district.meters)?,
        ..LoadReport::default()
    };
    for chunk in district.history.chunks(HISTORY_CHUNK) {
        report.history += store.upsert_history(chunk)?;
    }
    report.codes = store.upsert_codes(&district.codes)?;
    Ok(report)
}

/// A plain-text account of what the demo built.
pub fn summary(district: &District, params: &DemoParams) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Demo district (seed {}, as of {}): {} accounts on {} routes, {} meters, {} history reads.",
        params.seed,
        params.as_of,
        district.accounts.len(),
        district.routes.len(),
        district.meters.len(),
        district.history.len()
    );
    let mut by_class: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for a in &district.accounts {
        let row = by_class.entry(a.rate_class.as_str()).or_default();
        row[match a.status {
            AccountStatus::Active => 0,
            AccountStatus::Inactive => 1,
            AccountStatus::Closed => 2,
        }] += 1;
    }
    let _ = writeln!(
        out,
        "  {:<14} {:>7} {:>9} {:>7}",
        "class", "active", "inactive", "closed"
    );
    for (class, [a, i, c]) in &by_class {
        let _ = writeln!(out, "  {class:<14} {a:>7} {i:>9} {c:>7}");
    }
    let mut per_route: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for a in &district.accounts {
        per_route.entry(a.route_id.as_str()).or_default().0 += 1;
    }
    let meter_route: BTreeMap<&str, &str> = {
        let route_of: BTreeMap<&str, &str> = district
            .accounts
            .iter()
            .map(|a| (a.id.as_str(), a.route_id.as_str()))
            .collect();
        district
            .meters
            .iter()
            .filter_map(|m| {
                let r = route_of.get(m.account_id.as_deref()?)?;
                Some((m.id.as_str(), *r))
            })
            .collect()
    };
    for r in &district.field_reads {
        if let Some(route) = meter_route.get(r.meter_id.as_str()) {
            per_route
                .entry(route)
                .or_default()
                .1
                .insert(r.reader.as_str());
        }
    }
    let names: BTreeMap<&str, &str> = district
        .routes
        .iter()
        .map(|r| (r.id.as_str(), r.name.as_str()))
        .collect();
    let _ = writeln!(out, "  routes:");
    for (route, (count, readers)) in &per_route {
        let readers: Vec<&str> = readers.iter().copied().collect();
        let _ = writeln!(
            out,
            "    {route} {:<22} {count:>6} accounts  reader {}",
            names.get(route).copied().unwrap_or(""),
            readers.join(",")
        );
    }
    let _ = writeln!(
        out,
        "Open cycle {} ({}..{}) over {} routes: {} field reads taken on them so far.",
        district.cycle.id,
        district.cycle.window_from,
        district.cycle.window_to,
        district.cycle.routes.len(),
        district.field_reads.len()
    );
    let _ = writeln!(out, "Planted problems (a validator must flag them):");
    let counts = district.planted_counts();
    for (p, n) in counts.iter().filter(|(p, _)| !p.is_trap()) {
        let _ = writeln!(out, "    {:<24} {n:>5}", p.as_str());
    }
    let _ = writeln!(out, "Traps (normal reads a naive rule would flag):");
    for (p, n) in counts.iter().filter(|(p, _)| p.is_trap()) {
        let _ = writeln!(out, "    {:<24} {n:>5}", p.as_str());
    }
    out
}

#[cfg(test)]
mod tests;
