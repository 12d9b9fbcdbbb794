//! Accounts and their plans: routes, readers, accounts, the structural traps and the problems built
//! into use, chosen before any use is simulated.

use super::*;

// ---- plans -------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct MeterChange {
    pub(super) on: NaiveDate,
    /// The monthly read (m) that ends the period in which the change happens.
    pub(super) period: i32,
    pub(super) new_register: Register,
    pub(super) old_to_inventory: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) class: Class,
    pub(super) status: AccountStatus,
    pub(super) route: usize,
    pub(super) half: usize,
    /// Position within its half-route day (for read times).
    pub(super) slot: usize,
    pub(super) base_gal: f64,
    pub(super) register: Register,
    pub(super) method: ReadMethod,
    pub(super) years_installed: f64,
    /// New service within the history window.
    pub(super) start: Option<NaiveDate>,
    /// Zero use after the read of this month.
    pub(super) inactive_after: Option<i32>,
    /// Final read at this month's read.
    pub(super) closed_at: Option<i32>,
    pub(super) change: Option<MeterChange>,
    /// Estimated months and how much of the real use each estimate caught.
    pub(super) estimates: Vec<(i32, f64)>,
    /// The register wraps through zero at this month's read (0: the current read).
    pub(super) wrap_at: Option<i32>,
    /// A structural trap (or a problem built into the use itself: a leak) chosen before simulation.
    pub(super) trap: Option<Problem>,
    /// Use in these months (0: the current period) multiplied by this factor: leaks, vacations,
    /// a new tenant, a second home, a trend.
    pub(super) use_factors: Vec<(i32, f64)>,
    pub(super) hazard: Option<&'static str>,
    /// Read every other month (in the months of the same parity as the current one).
    pub(super) bimonthly: bool,
}

/// The simulated current period of an account with an active (or inactive) meter.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) meter: usize,
    pub(super) register: Register,
    pub(super) prev_reading: u64,
    pub(super) prev_on: NaiveDate,
    pub(super) prev_kind: ReadKind,
    pub(super) on: NaiveDate,
    /// The true reading on `on`.
    pub(super) reading: u64,
    /// True use this period in register units.
    pub(super) use_units: u64,
    /// Model expectation for the period in register units (no noise).
    pub(super) expected: f64,
    /// For readings at other dates: volume at `prev_on` and `on`, and how volume maps to the register.
    pub(super) v_prev: f64,
    pub(super) v_now: f64,
    pub(super) v_base: f64,
    pub(super) units_base: u64,
    /// Class seasonal use this period over the mean of the three before (per day).
    pub(super) season_ratio: Option<f64>,
}

impl Current {
    pub(super) fn reading_at_volume(&self, v: f64) -> u64 {
        let g = gallons_per_unit(&self.register);
        let units = ((v - self.v_base) / g).floor().max(0.0) as u64 + self.units_base;
        units % self.register.modulus()
    }

    pub(super) fn expected_hcf(&self) -> f64 {
        self.expected / units_per_hcf(&self.register)
    }

    /// No plausible use could carry the register through zero.
    pub(super) fn far_from_rollover(&self) -> bool {
        let m = self.register.modulus() as f64;
        (self.prev_reading as f64) + 12.0 * self.expected + 20.0 * units_per_hcf(&self.register) < m
            && self.prev_reading as f64 > 2.0 * self.expected + 20.0 * units_per_hcf(&self.register)
    }
}

/// What a good validator must say about `value` keyed against a meter whose previous reading was
/// `prev`, when the period's expected use is `expected` register units; `None` when the read would be
/// plausible (not a fair test).
pub(super) fn classify(reg: &Register, prev: u64, value: u64, expected: f64) -> Option<Expect> {
    let per_hcf = units_per_hcf(reg);
    if !reg.fits(value) {
        return Some(Expect::exception_or(
            FlagKind::InvalidReading,
            &[FlagKind::High],
        ));
    }
    if value < prev {
        let wrapped = (reg.modulus() - prev + value) as f64;
        return (wrapped > 5.0 * expected + 30.0 * per_hcf)
            .then(|| Expect::exception_or(FlagKind::Negative, &[FlagKind::High]));
    }
    let used = (value - prev) as f64;
    if used >= 3.0 * expected && used - expected >= 8.0 * per_hcf {
        return Some(Expect::exception(FlagKind::High));
    }
    if used == 0.0 && expected >= 5.0 * per_hcf {
        return Some(Expect::exception_or(FlagKind::Zero, &[FlagKind::Low]));
    }
    if used <= 0.35 * expected && expected - used >= 6.0 * per_hcf {
        return Some(Expect::exception_or(FlagKind::Low, &[FlagKind::Zero]));
    }
    None
}

pub(super) fn make_routes(n: usize) -> Vec<Route> {
    let width = if n > 99 { 3 } else { 2 };
    (0..n)
        .map(|r| {
            let area = ROUTE_AREAS[r % ROUTE_AREAS.len()];
            let name = if r < ROUTE_AREAS.len() {
                area.to_string()
            } else {
                format!("{area} {}", r / ROUTE_AREAS.len() + 1)
            };
            Route {
                id: format!("R{:0width$}", r + 1),
                name,
            }
        })
        .collect()
}

/// One reader (initials) and handheld per reader; each route belongs to one reader.
pub(super) struct Readers {
    pub(super) initials: Vec<String>,
    /// Reader index per route.
    pub(super) of_route: Vec<usize>,
}

impl Readers {
    pub(super) fn of(&self, route: usize) -> (&str, String) {
        let r = self.of_route[route];
        (&self.initials[r], format!("HH-{:02}", r + 1))
    }
}

pub(super) fn make_readers(routes: usize, rng: &mut Rng) -> Readers {
    let count = routes.div_ceil(3).max(1);
    let mut initials: Vec<String> = Vec::with_capacity(count);
    let mut taken = HashSet::new();
    while initials.len() < count {
        let f = rng.choice(FIRST_NAMES).chars().next().unwrap_or('X');
        let l = rng.choice(LAST_NAMES).chars().next().unwrap_or('X');
        let mut s = format!("{f}{l}");
        let mut k = 2;
        while taken.contains(&s) {
            s = format!("{f}{l}{k}");
            k += 1;
        }
        taken.insert(s.clone());
        initials.push(s);
    }
    Readers {
        initials,
        of_route: (0..routes).map(|r| r % count).collect(),
    }
}

pub(super) fn phone(rng: &mut Rng) -> String {
    let area = *rng.choice(&["831", "831", "805", "408"]);
    format!(
        "({area}) {}{:02}-{:04}",
        rng.range(2, 9),
        rng.range(0, 99),
        rng.range(0, 9999)
    )
}

pub(super) fn person(rng: &mut Rng) -> String {
    let last = rng.choice(LAST_NAMES);
    let first = rng.choice(FIRST_NAMES);
    if rng.chance(0.15) {
        let other = rng.choice(FIRST_NAMES);
        format!("{last}, {first} & {other}")
    } else {
        format!("{last}, {first}")
    }
}

pub(super) fn make_accounts(
    n: usize,
    routes: &[Route],
    rng: &mut Rng,
) -> (Vec<Account>, Vec<Plan>) {
    let mut accounts = Vec::with_capacity(n);
    let mut plans = Vec::with_capacity(n);
    // Route sizes vary ±15%.
    let weights: Vec<f64> = routes.iter().map(|_| rng.lognormal(1.0, 0.15)).collect();
    let total: f64 = weights.iter().sum();
    let mut bounds = Vec::with_capacity(routes.len() + 1);
    let mut acc = 0.0;
    bounds.push(0usize);
    for w in &weights {
        acc += w;
        bounds.push(((acc / total) * n as f64).round() as usize);
    }
    if let Some(last) = bounds.last_mut() {
        *last = n;
    }
    let class_weights: Vec<f64> = Class::ALL.iter().map(|c| c.weight()).collect();
    let mut idx = 0usize;
    for (r, route) in routes.iter().enumerate() {
        let size = bounds[r + 1] - bounds[r];
        let book = 100 + (r * 37) % 800;
        let mut seq = 0u32;
        let mut street_i = 0usize;
        let mut house = 0u32;
        let mut street = String::new();
        let mut parcel = 0u32;
        for pos in 0..size {
            if pos == 0 || rng.chance(1.0 / 45.0) {
                street_i += 1;
                street = format!(
                    "{} {}",
                    rng.choice(STREET_NAMES),
                    rng.choice(STREET_SUFFIXES)
                );
                house = rng.range(1, 40) as u32 * 10 + rng.range(0, 1) as u32;
                parcel = 0;
            }
            // Walk order with gaps (removed stops) and the odd inserted stop (15 between 10 and 20).
            seq += if rng.chance(0.03) {
                5
            } else if rng.chance(0.05) {
                20
            } else {
                10
            };
            house += 2 * rng.range(1, 6) as u32;
            parcel += rng.range(1, 3) as u32;
            let class = Class::ALL[rng.weighted(&class_weights)];
            let address = format!("{house} {street}");
            let name = match class {
                Class::Residential => person(rng),
                Class::MultiFamily => format!(
                    "{} {}",
                    street.split(' ').next().unwrap_or("Harbor"),
                    rng.choice(APARTMENT_KINDS)
                ),
                Class::Commercial => {
                    let owner = rng.choice(LAST_NAMES);
                    format!("{owner}'s {}", rng.choice(BUSINESS_KINDS))
                }
                Class::Irrigation => {
                    let site = rng.choice(IRRIGATION_SITES);
                    let place = street.split(' ').next().unwrap_or("Harbor");
                    format!("{place} {site}")
                }
            };
            let status = {
                let x = rng.unit();
                if x < 0.025 {
                    AccountStatus::Inactive
                } else if x < 0.04 {
                    AccountStatus::Closed
                } else {
                    AccountStatus::Active
                }
            };
            let (median, sigma) = class.size();
            let base_gal = rng
                .lognormal(median, sigma)
                .clamp(median / 6.0, median * 6.0)
                * GALLONS_PER_HCF;
            let regs = class.registers();
            let reg_w: Vec<f64> = regs.iter().map(|(w, _)| *w).collect();
            let register = regs[rng.weighted(&reg_w)].1;
            let method = match rng.weighted(&[0.55, 0.20, 0.25]) {
                0 => ReadMethod::Keyed,
                1 => ReadMethod::Probe,
                _ => ReadMethod::Radio,
            };
            let half = usize::from(pos >= size.div_ceil(2));
            let slot = if half == 0 {
                pos
            } else {
                pos - size.div_ceil(2)
            };
            let hazard = if rng.chance(0.04) {
                Some("DG")
            } else if rng.chance(0.004) {
                Some("BE")
            } else {
                None
            };
            // Account numbers are handed out as services start, not in walk order.
            let id = 1_000_000 + (idx as u64 * 7_001 + 313) % 9_000_000;
            accounts.push(Account {
                id: id.to_string(),
                name,
                service_address: address,
                status: AccountStatus::Active,
                rate_class: class.as_str().to_string(),
                route_id: route.id.clone(),
                sequence: seq,
                apn: format!(
                    "{book:03}-{:03}-{:03}",
                    (street_i * 10) % 1000,
                    parcel % 1000
                ),
                phone: phone(rng),
            });
            plans.push(Plan {
                class,
                status,
                route: r,
                half,
                slot,
                base_gal,
                register,
                method,
                years_installed: rng.uniform(1.0, 25.0),
                start: None,
                inactive_after: None,
                closed_at: None,
                change: None,
                estimates: Vec::new(),
                wrap_at: None,
                trap: None,
                use_factors: Vec::new(),
                hazard,
                bimonthly: false,
            });
            idx += 1;
        }
    }
    (accounts, plans)
}

/// A weekday strictly between `a` and `b` (at least one day from each), if there is one.
pub(super) fn day_between(a: NaiveDate, b: NaiveDate, rng: &mut Rng) -> Option<NaiveDate> {
    let span = (b - a).num_days();
    if span < 3 {
        return None;
    }
    for _ in 0..8 {
        let d = a + Duration::days(rng.range(1, span as u64 - 1) as i64);
        if !is_weekend(d) {
            return Some(d);
        }
    }
    None
}

pub(super) fn upgraded(reg: &Register, new_unit: bool) -> Register {
    if new_unit {
        return if reg.unit == Unit::Gal {
            // Back to a plain HCF register.
            Register {
                dials: 5,
                multiplier: 1,
                unit: Unit::Hcf,
            }
        } else {
            // AMR upgrade: a 10-gallon register on a home, 100-gallon on a large service.
            Register {
                dials: 7,
                multiplier: if reg.dials >= 6 || reg.multiplier >= 100 && reg.dials >= 5 {
                    100
                } else {
                    10
                },
                unit: Unit::Gal,
            }
        };
    }
    Register {
        dials: (reg.dials + 1).min(6),
        ..*reg
    }
}

/// Chooses the structural traps and the background life of accounts (new services, closures, meter
/// changes, estimates) before any use is simulated.
pub(super) fn plan_structure(plans: &mut [Plan], ctx: &Ctx, rng: &mut Rng) {
    let n = plans.len();
    let month_day = |plan: &Plan, m: i32| ctx.read_day(plan.route, m, plan.half);
    let mut active: Vec<usize> = (0..n)
        .filter(|&i| plans[i].status == AccountStatus::Active)
        .collect();
    rng.shuffle(&mut active);
    let mut take = |count: usize| -> Vec<usize> {
        let k = count.min(active.len());
        active.drain(..k).collect()
    };
    let thin = take(share(n, 0.004, 2));
    let change_last = take(share(n, 0.003, 2));
    let change_unit = take(share(n, 0.003, 2));
    let change_year = take(share(n, 0.006, 2));
    let after_est = take(share(n, 0.006, 3));
    let rollover = take(share(n, 0.004, 2));
    let history_wrap = take(share(n, 0.006, 1));
    // Problems built into the use itself, and traps of the account's own life (taken from accounts
    // large enough that a doubling is not a unit's rounding).
    let leak_kinds = [
        (Problem::ContinuingLeak, 0.004),
        (Problem::ModerateLeak, 0.006),
        (Problem::CommercialLeak, 0.003),
        (Problem::GallonMeterLeak, 0.003),
        (Problem::CommercialLow, 0.003),
        (Problem::BimonthlyLeak, 0.003),
    ];
    let mut built_in: Vec<(Problem, Vec<usize>)> = Vec::new();
    // A district of a few dozen accounts keeps its accounts for the read-level problems.
    let least = if n >= 400 { 2 } else { 0 };
    for (kind, rate) in leak_kinds {
        let want = share(n, rate, least);
        let fits = |p: &Plan| {
            let hcf = p.base_gal / GALLONS_PER_HCF;
            match kind {
                Problem::CommercialLeak | Problem::CommercialLow => {
                    matches!(p.class, Class::Commercial | Class::MultiFamily) && hcf >= 8.0
                }
                Problem::GallonMeterLeak => {
                    p.class != Class::Irrigation && p.register.unit != Unit::Hcf && hcf >= 5.0
                }
                _ => p.class == Class::Residential && hcf >= 5.0,
            }
        };
        let picked: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| fits(&plans[i]))
            .take(want)
            .collect();
        active.retain(|i| !picked.contains(i));
        built_in.push((kind, picked));
    }
    let life_traps = [
        Problem::Vacation,
        Problem::SmallUser,
        Problem::NewTenant,
        Problem::SecondHome,
        Problem::Trend,
        Problem::Bimonthly,
    ];
    for kind in life_traps {
        // Households read every other month: a district reads a few of its routes so.
        let rate = if kind == Problem::Bimonthly {
            0.02
        } else {
            0.004
        };
        let want = share(n, rate, least);
        let picked: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| plans[i].class == Class::Residential)
            .take(want)
            .collect();
        active.retain(|i| !picked.contains(i));
        built_in.push((kind, picked));
    }
    let mut take = |count: usize| -> Vec<usize> {
        let k = count.min(active.len());
        active.drain(..k).collect()
    };
    let background_change = take(share(n, 0.03, 0));
    let background_start = take(share(n, 0.03, 0));
    // Structural traps.
    for (kind, picked) in built_in {
        for i in picked {
            let away: Vec<i32> = (-HISTORY_MONTHS..=0)
                .filter(|&m| !(5..=10).contains(&month_day(&plans[i], m).month()))
                .collect();
            let plan = &mut plans[i];
            plan.trap = Some(kind);
            let f = &mut plan.use_factors;
            match kind {
                Problem::ContinuingLeak => {
                    f.push((-1, rng.uniform(2.5, 4.0)));
                    f.push((0, rng.uniform(2.2, 3.5)));
                }
                Problem::ModerateLeak | Problem::GallonMeterLeak => {
                    f.push((0, rng.uniform(1.8, 2.5)))
                }
                Problem::BimonthlyLeak => {
                    // The current read's two months together.
                    plan.bimonthly = true;
                    f.push((0, rng.uniform(1.8, 2.5)));
                }
                Problem::Bimonthly => plan.bimonthly = true,
                Problem::CommercialLeak => f.push((0, rng.uniform(1.7, 2.5))),
                Problem::CommercialLow => f.push((0, rng.uniform(0.3, 0.5))),
                Problem::Vacation => f.push((-(rng.range(2, 11) as i32), rng.uniform(0.1, 0.3))),
                Problem::SmallUser => {
                    plan.base_gal = rng.uniform(1.0, 3.0) * GALLONS_PER_HCF;
                    let a = -(rng.range(2, 12) as i32);
                    let mut b = -(rng.range(2, 12) as i32);
                    if b == a {
                        b = if a == -2 { -3 } else { a + 1 };
                    }
                    f.extend([(a, 0.0), (b, 0.0)]);
                }
                Problem::NewTenant => {
                    let from = -(rng.range(4, 9) as i32);
                    let level = if rng.chance(0.5) {
                        rng.uniform(0.55, 0.7)
                    } else {
                        rng.uniform(1.5, 1.9)
                    };
                    f.extend((from..=0).map(|m| (m, level)));
                }
                Problem::SecondHome => {
                    let empty = rng.uniform(0.04, 0.1);
                    f.extend(away.iter().map(|&m| (m, empty)));
                }
                Problem::Trend => {
                    f.extend((-HISTORY_MONTHS..=0).map(|m| (m, 1.015f64.powi(m + HISTORY_MONTHS))))
                }
                _ => {}
            }
        }
    }
    for &i in &thin {
        let m = -(rng.range(2, 4) as i32);
        let first = ctx.window_start(m);
        let before_read = month_day(&plans[i], m) - Duration::days(10);
        let d = first + Duration::days(rng.range(0, 6) as i64);
        plans[i].start = Some(ctx.weekday_in_window(m, d.min(before_read.max(first))));
        plans[i].trap = Some(Problem::ThinHistory);
    }
    for &i in &background_start {
        let m = -(rng.range(13, 34) as i32);
        let first = ctx.window_start(m);
        plans[i].start =
            Some(ctx.weekday_in_window(m, first + Duration::days(rng.range(0, 20) as i64)));
    }
    let change = |plan: &mut Plan, period: i32, new_unit: bool, rng: &mut Rng| -> bool {
        let a = month_day(plan, period - 1);
        let b = month_day(plan, period);
        // Leave a few days before the next read: the crew changes the meter, the reader comes later.
        // A change this period is already in the CIS by the day the demo runs, when that is possible.
        let b = if period == 0 {
            (b - Duration::days(4)).min(ctx.as_of.max(a + Duration::days(4)))
        } else {
            b
        };
        let Some(on) = day_between(a, b, rng) else {
            return false;
        };
        plan.change = Some(MeterChange {
            on,
            period,
            new_register: upgraded(&plan.register, new_unit),
            old_to_inventory: rng.chance(0.7),
        });
        true
    };
    for &i in &change_last {
        if change(&mut plans[i], 0, false, rng) {
            plans[i].trap = Some(Problem::MeterChangeLastPeriod);
        }
    }
    for &i in &change_unit {
        let period = -(rng.range(1, 11) as i32);
        if change(&mut plans[i], period, true, rng) {
            plans[i].trap = Some(Problem::MeterChangeNewUnit);
        }
    }
    for &i in &change_year {
        let period = -(rng.range(1, 11) as i32);
        if change(&mut plans[i], period, false, rng) {
            plans[i].trap = Some(Problem::MeterChangeThisYear);
        }
    }
    for &i in &background_change {
        let period = -(rng.range(13, 35) as i32);
        change(&mut plans[i], period, false, rng);
    }
    for &i in &after_est {
        plans[i].estimates.push((-1, rng.uniform(0.30, 0.45)));
        plans[i].trap = Some(Problem::AfterEstimate);
    }
    for &i in &rollover {
        plans[i].wrap_at = Some(0);
    }
    for &i in &history_wrap {
        plans[i].wrap_at = Some(-(rng.range(1, 35) as i32));
    }
    // Background: inactive and closed accounts, scattered estimates.
    for plan in plans.iter_mut() {
        match plan.status {
            AccountStatus::Inactive => plan.inactive_after = Some(-(rng.range(2, 30) as i32)),
            AccountStatus::Closed => plan.closed_at = Some(-(rng.range(1, 34) as i32)),
            AccountStatus::Active => {}
        }
        if plan.trap.is_none() && plan.wrap_at.is_none() {
            for m in -HISTORY_MONTHS + 1..=-2 {
                if rng.chance(0.008) {
                    plan.estimates.push((m, rng.uniform(0.6, 0.95)));
                }
            }
        }
    }
}

/// Meter ids: a make letter and seven digits, unique through a fixed permutation of a counter.
pub(super) struct MeterIds {
    pub(super) next: u64,
}

impl MeterIds {
    pub(super) fn new() -> MeterIds {
        MeterIds { next: 0 }
    }

    pub(super) fn next(&mut self, reg: &Register, rng: &mut Rng) -> String {
        let k = self.next;
        self.next += 1;
        let make = match reg.unit {
            Unit::Gal => *rng.choice(&['B', 'N']),
            _ => *rng.choice(&['S', 'S', 'N', 'I']),
        };
        format!("{make}{:07}", (k * 7_919 + 1_234_567) % 10_000_000)
    }
}
