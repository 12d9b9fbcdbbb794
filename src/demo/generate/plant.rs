//! The current cycle: the reads the handhelds bring back, with the planted problems and their truth.

use super::*;

// ---- the current cycle ---------------------------------------------------------------------------

/// A field read before it is timed and sequenced.
pub(super) struct Pending {
    pub(super) route: usize,
    pub(super) read: FieldRead,
}

pub(super) fn read_time(ctx_day: NaiveDate, slot: usize, rng: &mut Rng) -> NaiveDateTime {
    // 07:30 start, ~95 s a stop, a 30-minute lunch after 11:30.
    let mut secs = 7 * 3600 + 1800 + slot as i64 * 95 + rng.range(0, 40) as i64;
    if secs > 11 * 3600 + 1800 {
        secs += 1800;
    }
    let t = NaiveTime::from_num_seconds_from_midnight_opt((secs % 86_400) as u32, 0)
        .unwrap_or(NaiveTime::MIN);
    ctx_day.and_time(t)
}

pub(super) fn format_reading(value: u64, reg: &Register, method: ReadMethod) -> String {
    match method {
        // Radio endpoints send every dial.
        ReadMethod::Radio => format!("{value:0width$}", width = usize::from(reg.dials)),
        _ => value.to_string(),
    }
}

/// The district as simulated, which every planting step reads.
#[derive(Clone, Copy)]
pub(super) struct Field<'a> {
    pub(super) accounts: &'a [Account],
    pub(super) plans: &'a [Plan],
    pub(super) currents: &'a [Option<Current>],
    pub(super) meters: &'a [Meter],
    pub(super) history: &'a [HistoryRead],
    pub(super) ctx: &'a Ctx,
    pub(super) readers: &'a Readers,
}

impl Field<'_> {
    fn cur(&self, i: usize) -> Option<&Current> {
        self.currents[i].as_ref()
    }

    fn keyed(&self, i: usize) -> bool {
        self.plans[i].method == ReadMethod::Keyed
    }

    fn e_hcf(&self, i: usize) -> f64 {
        self.cur(i).map_or(0.0, Current::expected_hcf)
    }
}

/// Read values (and read types, codes) decided per account before any read is built.
type Values = HashMap<usize, (String, Expect, String)>;

/// Chooses the read-level problems, builds every field read and records the truth, in named steps
/// (the random draws in the same order as ever, so a district is the same for the same seed).
pub(super) fn plant_and_read(
    f: Field<'_>,
    ids: &mut MeterIds,
    truth: &mut Vec<Planted>,
    rng: &mut Rng,
) -> Vec<Pending> {
    let clean = clean_accounts(f, rng);
    let (mut plant, mut values, pool) = plant_read_values(f, &clean, rng);
    swap_neighbours(f, &pool, &mut plant, &mut values, rng);
    plant_inactive_use(f, &mut plant, rng);
    let mut reads = field_reads(f, &plant, &mut values, truth, rng);
    pulled_meter_reads(f, truth, &mut reads, rng);
    found_meters(f, &plant, ids, truth, &mut reads, rng);
    reads
}

/// Active accounts with no trap, far from a rollover, whose last read was actual: where a planted
/// problem is unmistakable. Shuffled.
fn clean_accounts(f: Field<'_>, rng: &mut Rng) -> Vec<usize> {
    let Field {
        plans, currents, ..
    } = f;
    let n = f.accounts.len();
    {
        let mut v: Vec<usize> = (0..n)
            .filter(|&i| {
                plans[i].status == AccountStatus::Active
                    && plans[i].trap.is_none()
                    && plans[i].wrap_at != Some(0)
                    && currents[i].as_ref().is_some_and(|c| {
                        c.far_from_rollover()
                            && c.prev_kind == ReadKind::Actual
                            && c.prev_reading < c.reading
                    })
            })
            .collect();
        rng.shuffle(&mut v);
        v
    }
}

/// The read-level problems and their planted values, on clean accounts: (problem per account,
/// value per account, the clean accounts still free).
fn plant_read_values(
    f: Field<'_>,
    clean: &[usize],
    rng: &mut Rng,
) -> (HashMap<usize, Problem>, Values, Vec<usize>) {
    let n = f.accounts.len();
    let ctx = f.ctx;
    let mut plant: HashMap<usize, Problem> = HashMap::new();
    struct Want {
        problem: Problem,
        count: usize,
    }
    let wants = [
        Want {
            problem: Problem::Leak,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::ConfirmedLeak,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::StuckMeter,
            count: share(n, 0.005, 2),
        },
        Want {
            problem: Problem::Tampering,
            count: share(n, 0.003, 2),
        },
        Want {
            problem: Problem::MisKeyedExtraDigit,
            count: share(n, 0.003, 2),
        },
        Want {
            problem: Problem::MisKeyedDigit,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::TransposedDigits,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::DialMisread,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::ReverseFlow,
            count: share(n, 0.003, 2),
        },
        Want {
            problem: Problem::InvalidReading,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::DuplicateDifferent,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::DuplicateSame,
            count: share(n, 0.004, 2),
        },
        Want {
            problem: Problem::OutOfWindow,
            count: share(n, 0.005, 2),
        },
        Want {
            problem: Problem::Skipped,
            count: share(n, 0.006, 2),
        },
        Want {
            problem: Problem::Missing,
            count: share(n, 0.012, 2),
        },
    ];
    // Planted values: (field value or raw text, expectation, detail).
    let mut values: HashMap<usize, (String, Expect, String)> = HashMap::new();
    let mut pool = clean.to_vec();
    for want in &wants {
        let mut got = 0;
        // Half of the doubled keypresses go on registers whose reading already uses every dial, so
        // the extra digit overflows them (invalid_reading); the rest still fit (a high read).
        let strict_first = want.problem == Problem::MisKeyedExtraDigit;
        for strict in [strict_first, false] {
            let goal = if strict { want.count / 2 } else { want.count };
            let mut k = 0;
            while got < goal && k < pool.len() {
                let i = pool[k];
                let full_dials = f
                    .cur(i)
                    .is_some_and(|c| c.reading.to_string().len() == usize::from(c.register.dials));
                let candidate = f.cur(i).filter(|_| !strict || full_dials);
                match candidate.and_then(|c| {
                    plant_value(
                        want.problem,
                        c,
                        f.keyed(i),
                        f.e_hcf(i),
                        ctx.window_from,
                        rng,
                    )
                }) {
                    Some(v) => {
                        values.insert(i, v);
                        plant.insert(i, want.problem);
                        pool.swap_remove(k);
                        got += 1;
                    }
                    None => k += 1,
                }
            }
        }
    }
    (plant, values, pool)
}

/// Swapped meters: neighbours on the same route, both keyed, each keyed with the other's reading.
fn swap_neighbours(
    f: Field<'_>,
    pool: &[usize],
    plant: &mut HashMap<usize, Problem>,
    values: &mut Values,
    rng: &mut Rng,
) {
    let Field { plans, meters, .. } = f;
    let n = f.accounts.len();
    let keyed = |i: usize| f.keyed(i);
    let swap_pairs = share(n, 0.002, 1);
    let in_pool: HashSet<usize> = pool.iter().copied().collect();
    // Every eligible neighbour pair, in random order, so the swaps spread over the district.
    let mut candidates: Vec<usize> = (0..n.saturating_sub(1))
        .filter(|&i| {
            let j = i + 1;
            in_pool.contains(&i)
                && in_pool.contains(&j)
                && keyed(i)
                && keyed(j)
                && plans[i].route == plans[j].route
                && plans[i].half == plans[j].half
        })
        .collect();
    rng.shuffle(&mut candidates);
    let mut swapped = 0;
    for i in candidates {
        let j = i + 1;
        if swapped >= swap_pairs || plant.contains_key(&i) || plant.contains_key(&j) {
            continue;
        }
        let (Some(a), Some(b)) = (f.cur(i), f.cur(j)) else {
            continue;
        };
        let ea = classify(&a.register, a.prev_reading, b.reading, a.expected);
        let eb = classify(&b.register, b.prev_reading, a.reading, b.expected);
        if let (Some(ea), Some(eb)) = (ea, eb) {
            values.insert(
                i,
                (
                    b.reading.to_string(),
                    ea,
                    format!("keyed {}'s reading {}", meters[b.meter].id, b.reading),
                ),
            );
            values.insert(
                j,
                (
                    a.reading.to_string(),
                    eb,
                    format!("keyed {}'s reading {}", meters[a.meter].id, a.reading),
                ),
            );
            plant.insert(i, Problem::SwappedMeter);
            plant.insert(j, Problem::SwappedMeter);
            swapped += 1;
        }
    }
}

/// Inactive accounts: illegal use on some, none on the rest.
fn plant_inactive_use(f: Field<'_>, plant: &mut HashMap<usize, Problem>, rng: &mut Rng) {
    let Field {
        plans, currents, ..
    } = f;
    let n = f.accounts.len();
    let mut inactive: Vec<usize> = (0..n)
        .filter(|&i| plans[i].status == AccountStatus::Inactive && currents[i].is_some())
        .collect();
    rng.shuffle(&mut inactive);
    let illegal = share(n, 0.004, 2).min(inactive.len());
    for &i in &inactive[..illegal] {
        plant.insert(i, Problem::UsageOnInactive);
    }
}

/// Every account's field read this cycle, with the planted problem's value, type, codes and truth.
fn field_reads(
    f: Field<'_>,
    plant: &HashMap<usize, Problem>,
    values: &mut Values,
    truth: &mut Vec<Planted>,
    rng: &mut Rng,
) -> Vec<Pending> {
    let Field {
        accounts,
        plans,
        meters,
        ctx,
        readers,
        ..
    } = f;
    let n = accounts.len();
    let mut reads: Vec<Pending> = Vec::with_capacity(n);
    for i in 0..n {
        let Some(c) = f.cur(i) else { continue };
        let plan = &plans[i];
        let account = &accounts[i];
        let meter_id = meters[c.meter].id.clone();
        let (reader, device) = readers.of(plan.route);
        let mut at = read_time(c.on, plan.slot, rng);
        let mut codes: Vec<String> = plan.hazard.map(|h| vec![h.to_string()]).unwrap_or_default();
        let mut note = None;
        let mut read_type = ReadType::Regular;
        let mut skip_code = None;
        let mut method = plan.method;
        let mut value = c.reading;
        let mut raw: Option<String> = None;
        let mut record = |problem: Problem, expect: Expect, detail: String| {
            truth.push(Planted {
                account_id: account.id.clone(),
                meter_id: meter_id.clone(),
                problem,
                expect,
                detail,
                intended: None,
            });
        };
        match plant.get(&i).copied() {
            Some(Problem::Missing) => {
                record(
                    Problem::Missing,
                    Expect::exception(FlagKind::Missing),
                    "no read came back".into(),
                );
                continue;
            }
            Some(Problem::UsageOnInactive) => {
                let units = (rng.uniform(3.0, 15.0) * units_per_hcf(&c.register))
                    .round()
                    .max(2.0) as u64;
                value = c.register.advance(c.prev_reading, units);
                record(
                    Problem::UsageOnInactive,
                    Expect::exception_or(FlagKind::InactiveUsage, &[FlagKind::High]),
                    format!(
                        "inactive account used {units} units (previous {})",
                        c.prev_reading
                    ),
                );
            }
            Some(Problem::Skipped) => {
                let code = *rng.choice(&["LG", "NA", "DG", "CP", "MC"]);
                read_type = ReadType::Skipped;
                skip_code = Some(code.to_string());
                raw = Some(String::new());
                method = ReadMethod::Keyed;
                record(
                    Problem::Skipped,
                    Expect::exception(FlagKind::Missing),
                    format!("skipped with {code}"),
                );
            }
            Some(Problem::OutOfWindow) => {
                // Read a few days before the window opened (early, or late for the last cycle) and
                // docked with this cycle's reads. Never after it closes: that is still to come.
                let d = prev_weekday(ctx.window_from - Duration::days(rng.range(0, 2) as i64));
                at = d.and_time(at.time());
                let span = ctx.c(plan.class, c.on) - ctx.c(plan.class, c.prev_on);
                let f = if span > 0.0 {
                    (ctx.c(plan.class, d) - ctx.c(plan.class, c.prev_on)) / span
                } else {
                    1.0
                };
                value = c.reading_at_volume(c.v_prev + (c.v_now - c.v_prev) * f);
                record(
                    Problem::OutOfWindow,
                    Expect::exception(FlagKind::OutOfWindow),
                    format!("read on {d}, window {}..{}", ctx.window_from, ctx.window_to),
                );
            }
            Some(Problem::DuplicateSame) | Some(Problem::DuplicateDifferent) => {
                let same = plant.get(&i) == Some(&Problem::DuplicateSame);
                let first = if same {
                    c.reading
                } else {
                    c.reading - rng.range(1, (c.use_units / 3).max(1))
                };
                let later = at + Duration::seconds(rng.range(90, 1_500) as i64);
                reads.push(Pending {
                    route: plan.route,
                    read: FieldRead {
                        meter_id: meter_id.clone(),
                        read_at: at,
                        raw_reading: format_reading(first, &c.register, method),
                        read_type: ReadType::Regular,
                        method,
                        reader: reader.to_string(),
                        codes: codes.clone(),
                        skip_code: None,
                        note: None,
                        device: Some(demo_device(device.clone())),
                    },
                });
                at = later;
                if same {
                    record(
                        Problem::DuplicateSame,
                        Expect::NotFlagged,
                        format!("{} sent twice", c.reading),
                    );
                } else {
                    note = Some("re-read".to_string());
                    record(
                        Problem::DuplicateDifferent,
                        Expect::exception(FlagKind::Duplicate),
                        format!("read {first} then {}", c.reading),
                    );
                }
            }
            Some(p) => {
                if let Some((text, expect, detail)) = values.remove(&i) {
                    raw = Some(text);
                    match p {
                        Problem::ConfirmedLeak => {
                            read_type = ReadType::HighConfirmed;
                            codes.push("LK".into());
                        }
                        Problem::Leak if rng.chance(0.3) => codes.push("LK".into()),
                        Problem::StuckMeter => {
                            if rng.chance(0.4) {
                                read_type = ReadType::LowConfirmed;
                            }
                            if rng.chance(0.3) {
                                codes.push("ST".into());
                            }
                        }
                        Problem::Tampering if rng.chance(0.5) => codes.push("TR".into()),
                        Problem::ReverseFlow if rng.chance(0.5) => codes.push("RR".into()),
                        _ => {}
                    }
                    if matches!(
                        p,
                        Problem::MisKeyedDigit
                            | Problem::MisKeyedExtraDigit
                            | Problem::TransposedDigits
                            | Problem::DialMisread
                            | Problem::SwappedMeter
                            | Problem::InvalidReading
                    ) {
                        method = ReadMethod::Keyed;
                    }
                    record(p, expect, detail);
                    if matches!(
                        p,
                        Problem::MisKeyedDigit
                            | Problem::MisKeyedExtraDigit
                            | Problem::TransposedDigits
                            | Problem::DialMisread
                            | Problem::SwappedMeter
                    ) {
                        // What the meter reads (a swapped meter's was keyed at the other stop).
                        if let Some(t) = truth.last_mut() {
                            t.intended = Some(c.reading);
                        }
                    }
                }
            }
            None => {
                // Everyday notes on normal reads.
                let x = rng.unit();
                if x < 0.015 {
                    codes.push("BX".into());
                } else if x < 0.019 {
                    codes.push("MC".into());
                } else if x < 0.021 {
                    codes.push("BL".into());
                } else if x < 0.023 {
                    codes.push("FL".into());
                } else if x < 0.0245 {
                    // Wet ground near the box, use normal: a follow-up, not a high read.
                    codes.push("LK".into());
                } else if x < 0.030 {
                    codes.push("NT".into());
                    note = Some(
                        (*rng.choice(&[
                            "new gate code",
                            "box behind hedge",
                            "car parked over box usually",
                            "call before visit",
                        ]))
                        .to_string(),
                    );
                }
            }
        }
        let raw_reading = raw.unwrap_or_else(|| format_reading(value, &c.register, method));
        reads.push(Pending {
            route: plan.route,
            read: FieldRead {
                meter_id,
                read_at: at,
                raw_reading,
                read_type,
                method,
                reader: reader.to_string(),
                codes,
                skip_code,
                note,
                device: Some(demo_device(device)),
            },
        });
    }

    reads
}

/// Reads of meters that are not on the route: a pulled meter's radio endpoint still answers.
fn pulled_meter_reads(
    f: Field<'_>,
    truth: &mut Vec<Planted>,
    reads: &mut Vec<Pending>,
    rng: &mut Rng,
) {
    let Field {
        accounts,
        plans,
        meters,
        history,
        ctx,
        readers,
        ..
    } = f;
    let n = accounts.len();
    let mut inventory: Vec<usize> = (0..meters.len())
        .filter(|&k| meters[k].status == MeterStatus::Inventory && meters[k].removed_on.is_some())
        .collect();
    rng.shuffle(&mut inventory);
    let by_id: HashMap<&str, usize> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    // The account a pulled meter last served, and its last reading (its `final`).
    let mut last_account: HashMap<&str, (&str, u64)> = HashMap::new();
    for h in history {
        last_account.insert(h.meter_id.as_str(), (h.account_id.as_str(), h.reading));
    }
    for &k in inventory.iter().take(share(n, 0.002, 1)) {
        let Some((acct_id, reading)) = last_account.get(meters[k].id.as_str()) else {
            continue;
        };
        let Some(&i) = by_id.get(acct_id) else {
            continue;
        };
        let plan = &plans[i];
        let (reader, device) = readers.of(plan.route);
        let day = ctx.read_day(plan.route, 0, plan.half);
        reads.push(Pending {
            route: plan.route,
            read: FieldRead {
                meter_id: meters[k].id.clone(),
                read_at: read_time(day, plan.slot, rng) + Duration::seconds(20),
                raw_reading: format_reading(*reading, &meters[k].register, ReadMethod::Radio),
                read_type: ReadType::Regular,
                method: ReadMethod::Radio,
                reader: reader.to_string(),
                codes: Vec::new(),
                skip_code: None,
                note: None,
                device: Some(demo_device(device)),
            },
        });
        truth.push(Planted {
            account_id: acct_id.to_string(),
            meter_id: meters[k].id.clone(),
            problem: Problem::PulledMeterRead,
            expect: Expect::exception(FlagKind::MeterMismatch),
            detail: format!(
                "meter pulled {} is in inventory; its radio endpoint still answers",
                meters[k]
                    .removed_on
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
            intended: None,
        });
    }
}

/// Found meters: keyed at a stop, unknown to the district.
fn found_meters(
    f: Field<'_>,
    plant: &HashMap<usize, Problem>,
    ids: &mut MeterIds,
    truth: &mut Vec<Planted>,
    reads: &mut Vec<Pending>,
    rng: &mut Rng,
) {
    let Field {
        accounts,
        plans,
        readers,
        ..
    } = f;
    let n = accounts.len();
    let mut found = 0;
    let target = share(n, 0.002, 1);
    let mut tries = 0;
    while found < target && tries < 20 * target && !accounts.is_empty() {
        tries += 1;
        let i = rng.index(n);
        if plans[i].status != AccountStatus::Active || plant.contains_key(&i) {
            continue;
        }
        let Some(c) = f.cur(i) else { continue };
        let reg = Register {
            dials: 5,
            multiplier: 1,
            unit: Unit::Hcf,
        };
        let id = ids.next(&reg, rng);
        let plan = &plans[i];
        let (reader, device) = readers.of(plan.route);
        reads.push(Pending {
            route: plan.route,
            read: FieldRead {
                meter_id: id.clone(),
                read_at: read_time(c.on, plan.slot, rng) + Duration::seconds(45),
                raw_reading: rng.range(10, 3_000).to_string(),
                read_type: ReadType::Regular,
                method: ReadMethod::Keyed,
                reader: reader.to_string(),
                codes: vec!["NT".to_string()],
                skip_code: None,
                note: Some("meter found, not on route".to_string()),
                device: Some(demo_device(device)),
            },
        });
        truth.push(Planted {
            account_id: accounts[i].id.clone(),
            meter_id: id,
            problem: Problem::UnknownMeter,
            expect: Expect::exception(FlagKind::MeterMismatch),
            detail: format!("found next to {}'s meter", accounts[i].id),
            intended: None,
        });
        found += 1;
    }
}

/// Planted value for a read-level problem on a clean account: (raw reading, expectation, detail).
pub(super) fn plant_value(
    problem: Problem,
    c: &Current,
    keyed: bool,
    e_hcf: f64,
    window_from: NaiveDate,
    rng: &mut Rng,
) -> Option<(String, Expect, String)> {
    let reg = &c.register;
    let prev = c.prev_reading;
    let e = c.expected;
    let check = |value: u64| classify(reg, prev, value, e);
    match problem {
        Problem::Leak | Problem::ConfirmedLeak => {
            if e_hcf < 4.0 {
                return None;
            }
            let factor = rng.uniform(3.2, 10.0);
            let units = (e * factor).round() as u64;
            let value = reg.advance(prev, units);
            let expect = check(value).filter(|x| *x == Expect::exception(FlagKind::High))?;
            Some((
                value.to_string(),
                expect,
                format!("use {units} units, {factor:.1}× the expected {e:.0}"),
            ))
        }
        Problem::StuckMeter => {
            if e_hcf < 5.0 {
                return None;
            }
            let expect = check(prev)?;
            Some((
                prev.to_string(),
                expect,
                format!("register stuck at {prev}, expected {e:.0} units of use"),
            ))
        }
        Problem::Tampering => {
            if e_hcf < 12.0 {
                return None;
            }
            let frac = rng.uniform(0.1, 0.3);
            let units = (e * frac).round() as u64;
            let value = reg.advance(prev, units);
            let expect = check(value)?;
            Some((
                value.to_string(),
                expect,
                format!(
                    "use {units} units, {:.0}% of the expected {e:.0}",
                    frac * 100.0
                ),
            ))
        }
        Problem::ReverseFlow => {
            let back = (e * rng.uniform(0.3, 1.0)).round().max(1.0) as u64;
            let value = prev.checked_sub(back)?;
            let expect = check(value).filter(|x| {
                matches!(
                    x,
                    Expect::Exception {
                        kind: FlagKind::Negative,
                        ..
                    }
                )
            })?;
            Some((
                value.to_string(),
                expect,
                format!("register ran back {back} units from {prev}"),
            ))
        }
        Problem::MisKeyedExtraDigit | Problem::MisKeyedDigit | Problem::TransposedDigits => {
            if !keyed {
                return None;
            }
            let digits: Vec<u8> = c.reading.to_string().bytes().collect();
            if digits.len() < 2 {
                return None;
            }
            for _ in 0..12 {
                let mut d = digits.clone();
                match problem {
                    Problem::MisKeyedExtraDigit => {
                        let j = rng.index(d.len());
                        d.insert(j, d[j]);
                    }
                    Problem::MisKeyedDigit => {
                        // A thumb on the key next to the meant one (phone-style keypad).
                        let j = rng.index(d.len());
                        let near = crate::vee::slips::keypad_neighbours(d[j] - b'0');
                        let x = b'0' + *rng.choice(near);
                        if j == 0 && x == b'0' {
                            continue;
                        }
                        d[j] = x;
                    }
                    _ => {
                        let j = rng.index(d.len() - 1);
                        if d[j] == d[j + 1] || (j == 0 && d[1] == b'0') {
                            continue;
                        }
                        d.swap(j, j + 1);
                    }
                }
                let text = String::from_utf8(d).ok()?;
                let value: u64 = text.parse().ok()?;
                if value == c.reading {
                    continue;
                }
                if let Some(mut expect) = check(value) {
                    if problem == Problem::MisKeyedExtraDigit {
                        if let Expect::Exception {
                            kind: FlagKind::High,
                            also,
                        } = &mut expect
                        {
                            also.push(FlagKind::InvalidReading);
                        }
                    }
                    return Some((text, expect, format!("keyed {value} for {}", c.reading)));
                }
            }
            None
        }
        Problem::DialMisread => {
            if !keyed {
                return None;
            }
            // One dial read one off: its pointer by a digit's edge (the dial below just past 0:
            // read one low; about to pass it: read one high), far enough to be called.
            let digits = c.reading.to_string().len() as u32;
            let mut options = Vec::new();
            for k in 1..digits {
                let place = 10u64.pow(k);
                let below = c.reading % place;
                let edge = place / 10 * 3;
                let slips = [
                    (below < edge)
                        .then(|| c.reading.checked_sub(place))
                        .flatten(),
                    (below >= place - edge)
                        .then(|| c.reading.checked_add(place))
                        .flatten(),
                ];
                for value in slips.into_iter().flatten() {
                    if value.to_string().len() == digits as usize {
                        if let Some(expect) = check(value) {
                            options.push((value, expect));
                        }
                    }
                }
            }
            if options.is_empty() {
                return None;
            }
            let (value, expect) = options.swap_remove(rng.index(options.len()));
            Some((
                value.to_string(),
                expect,
                format!("keyed {value} for {}: one dial off", c.reading),
            ))
        }
        Problem::InvalidReading => {
            if !keyed {
                return None;
            }
            let s = c.reading.to_string();
            let text = match rng.index(5) {
                0 if s.contains('0') => s.replacen('0', "O", 1),
                1 if s.len() > 3 => format!("{},{}", &s[..s.len() - 3], &s[s.len() - 3..]),
                2 => format!("{s}.5"),
                3 => String::new(),
                _ => format!("{}*", &s[..s.len().saturating_sub(1)]),
            };
            Some((
                text.clone(),
                Expect::exception(FlagKind::InvalidReading),
                format!("keyed `{text}` for {}", c.reading),
            ))
        }
        Problem::DuplicateDifferent => (c.use_units >= 3).then(|| {
            (
                String::new(),
                Expect::exception(FlagKind::Duplicate),
                String::new(),
            )
        }),
        // An out-of-window read is dated a few days before the window opened: well after the
        // previous read, so that its use is still a plausible share of the period's.
        Problem::OutOfWindow => ((window_from - c.prev_on).num_days() > 12)
            .then(|| (String::new(), Expect::NotFlagged, String::new())),
        Problem::DuplicateSame | Problem::Skipped | Problem::Missing => {
            Some((String::new(), Expect::NotFlagged, String::new()))
        }
        _ => None,
    }
}

/// Labels the traps that come from the data itself (rollovers, seasonal swings) and the structural
/// traps chosen in `plan_structure`, on meters that carry no planted problem.
pub(super) fn label_traps(
    accounts: &[Account],
    plans: &[Plan],
    currents: &[Option<Current>],
    meters: &[Meter],
    truth: &mut Vec<Planted>,
) {
    let planted: HashSet<String> = truth.iter().map(|p| p.meter_id.clone()).collect();
    for (i, c) in currents.iter().enumerate() {
        let Some(c) = c else { continue };
        let meter_id = &meters[c.meter].id;
        if planted.contains(meter_id) {
            continue;
        }
        let plan = &plans[i];
        let (problem, detail) = if plan.status == AccountStatus::Inactive {
            (
                Problem::InactiveNoUse,
                format!("inactive, reading stays {}", c.reading),
            )
        } else if let Some(trap) = plan.trap {
            let detail = match trap {
                Problem::ThinHistory => format!(
                    "service started {}",
                    plan.start.map(|d| d.to_string()).unwrap_or_default()
                ),
                Problem::AfterEstimate => format!(
                    "last read estimated at {}, real use {} units since",
                    c.prev_reading, c.use_units
                ),
                Problem::ContinuingLeak
                | Problem::ModerateLeak
                | Problem::CommercialLeak
                | Problem::GallonMeterLeak
                | Problem::CommercialLow
                | Problem::Vacation
                | Problem::SmallUser
                | Problem::NewTenant
                | Problem::SecondHome
                | Problem::Trend
                | Problem::BimonthlyLeak
                | Problem::Bimonthly => {
                    let factors: Vec<String> = plan
                        .use_factors
                        .iter()
                        .filter(|f| f.0 >= -1 || trap == Problem::Vacation)
                        .map(|(m, f)| format!("month {m} ×{f:.2}"))
                        .collect();
                    format!(
                        "use {} units, norm {:.1}; {}",
                        c.use_units,
                        c.expected,
                        factors.join(", ")
                    )
                }
                _ => format!(
                    "meter changed {}",
                    plan.change
                        .as_ref()
                        .map(|ch| ch.on.to_string())
                        .unwrap_or_default()
                ),
            };
            (trap, detail)
        } else if c.reading < c.prev_reading {
            (
                Problem::Rollover,
                format!(
                    "{} → {} on {} dials",
                    c.prev_reading, c.reading, c.register.dials
                ),
            )
        } else if let Some(r) = c.season_ratio.filter(|r| *r > 1.6 || *r < 0.625) {
            let p = if r > 1.0 {
                Problem::SeasonalRampUp
            } else {
                Problem::SeasonalDrop
            };
            (p, format!("class use {r:.2}× the last three periods"))
        } else {
            continue;
        };
        let expect = match problem {
            Problem::CommercialLow => Expect::exception_or(FlagKind::Low, &[FlagKind::Zero]),
            p if !p.is_trap() => Expect::exception(FlagKind::High),
            _ => Expect::NotFlagged,
        };
        truth.push(Planted {
            account_id: accounts[i].id.clone(),
            meter_id: meter_id.clone(),
            problem,
            expect,
            detail,
            intended: None,
        });
    }
}

/// Puts reads in the order handhelds return them (day by day, device by device) and numbers them per
/// device.
pub(super) fn order_reads(mut reads: Vec<Pending>) -> Vec<FieldRead> {
    reads.sort_by(|a, b| {
        let da = a.read.device.as_ref().map(|d| d.device_id.as_str());
        let db = b.read.device.as_ref().map(|d| d.device_id.as_str());
        (a.read.read_at.date(), da, a.read.read_at, a.route).cmp(&(
            b.read.read_at.date(),
            db,
            b.read.read_at,
            b.route,
        ))
    });
    let mut seq: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(reads.len());
    for p in reads {
        let mut r = p.read;
        let content = demo_content(&r);
        if let Some(dev) = r.device.as_mut() {
            let next = seq.entry(dev.device_id.clone()).or_insert(10_000);
            *next += 1;
            dev.seq = *next;
            dev.content = content;
        }
        out.push(r);
    }
    out
}

/// The state id of the demo district's handhelds (their reads of this month are loaded directly).
pub(super) const DEMO_STATE_ID: u64 = 0x0DE0_0DE0_0DE0_0DE0;

pub(super) fn demo_device(device_id: String) -> DeviceRef {
    DeviceRef {
        device_id,
        state_id: DEMO_STATE_ID,
        seq: 0,
        content: [0; 32],
    }
}

/// A digest of a demo read's fields, standing for the digest of what a handheld would have sent.
pub(super) fn demo_content(r: &FieldRead) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let text = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        r.meter_id,
        r.read_at,
        r.raw_reading,
        r.read_type,
        r.method,
        r.reader,
        r.codes.join(";")
    );
    Sha256::digest(text.as_bytes()).into()
}
