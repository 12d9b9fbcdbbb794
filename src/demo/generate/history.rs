//! An account's history: its meters and monthly (or every other month's) reads over the history
//! window, and the current period.

use super::*;

/// Simulates one account over the history window and the current period. Pushes its meters and
/// history; returns the current period for accounts that still have a meter in service.
pub(super) fn simulate(
    account: &Account,
    plan: &Plan,
    ctx: &Ctx,
    rng: &mut Rng,
    ids: &mut MeterIds,
    meters: &mut Vec<Meter>,
    history: &mut Vec<HistoryRead>,
) -> Option<Current> {
    let class = plan.class;
    // Monthly read points that exist for this account.
    let mut points: Vec<(i32, NaiveDate)> = Vec::with_capacity(HISTORY_MONTHS as usize + 1);
    for m in -HISTORY_MONTHS..=0 {
        if plan.bimonthly && m % 2 != 0 {
            continue;
        }
        let d = ctx.read_day(plan.route, m, plan.half);
        if let Some(s) = plan.start {
            if d < s + Duration::days(7) {
                continue;
            }
        }
        if let Some(c) = plan.closed_at {
            if m > c {
                break;
            }
        }
        points.push((m, d));
    }
    // Volume (gallons) at each point, and drift.
    let mut vols = Vec::with_capacity(points.len());
    let mut drift = 0.0f64;
    let mut prev_date = plan.start.unwrap_or(points.first().map(|p| p.1)?);
    let mut v = 0.0f64;
    let mut expected_now = 0.0;
    for &(m, d) in &points {
        drift += 0.01 * rng.normal();
        let noise = rng.lognormal(1.0, class.noise());
        let mean = plan.base_gal * drift.exp() * (ctx.c(class, d) - ctx.c(class, prev_date));
        let dead = plan.inactive_after.is_some_and(|after| m > after);
        let used = if dead || (plan.start.is_none() && vols.is_empty()) {
            0.0
        } else {
            let factor: f64 = plan
                .use_factors
                .iter()
                .filter(|f| f.0 == m)
                .map(|f| f.1)
                .product();
            mean * noise * factor
        };
        if m == 0 {
            expected_now = mean;
        }
        v += used;
        vols.push(v);
        prev_date = d;
    }
    let volume_at = |d: NaiveDate| -> f64 {
        // Interpolate along the class curve between the surrounding points.
        let mut prev = (plan.start.unwrap_or(points[0].1), 0.0);
        for (k, &(_, pd)) in points.iter().enumerate() {
            if pd >= d {
                let span = ctx.c(class, pd) - ctx.c(class, prev.0);
                let f = if span > 0.0 {
                    (ctx.c(class, d) - ctx.c(class, prev.0)) / span
                } else {
                    0.0
                };
                return prev.1 + (vols[k] - prev.1) * f.clamp(0.0, 1.0);
            }
            prev = (pd, vols[k]);
        }
        prev.1
    };

    // Meters.
    let old_reg = plan.register;
    let g_old = gallons_per_unit(&old_reg);
    let m_old = old_reg.modulus();
    let annual_units = plan.base_gal * 12.0 / g_old;
    let mut old_offset = if plan.start.is_some() {
        0
    } else {
        (plan.years_installed * annual_units * rng.uniform(0.7, 1.1)) as u64 % m_old
    };
    if let (Some(at), None) = (plan.wrap_at, &plan.change) {
        if let Some(k) = points.iter().position(|p| p.0 == at).filter(|&k| k > 0) {
            let u_prev = (vols[k - 1] / g_old).floor() as u64;
            let u_now = (vols[k] / g_old).floor() as u64;
            if u_now >= u_prev + 2 {
                let short = rng.range(1, u_now - u_prev - 1);
                old_offset = (m_old - short % m_old + m_old - u_prev % m_old) % m_old;
            }
        }
    }
    let old_installed = plan.start.unwrap_or_else(|| {
        ctx.window_from - Duration::days((plan.years_installed * 365.25) as i64 + 1_100)
    });
    let old_id = ids.next(&old_reg, rng);
    let old_idx = meters.len();
    meters.push(Meter {
        id: old_id.clone(),
        account_id: Some(account.id.clone()),
        status: MeterStatus::Active,
        register: old_reg,
        installed_on: Some(old_installed),
        removed_on: None,
    });
    let change = plan.change.as_ref().filter(|c| {
        points.first().is_some_and(|p| p.0 < c.period) && points.iter().any(|p| p.0 == c.period)
    });
    let new_meter = change.map(|c| {
        let id = ids.next(&c.new_register, rng);
        let v_c = volume_at(c.on);
        let start_units = rng.range(0, 2);
        meters[old_idx].account_id = None;
        meters[old_idx].status = if c.old_to_inventory {
            MeterStatus::Inventory
        } else {
            MeterStatus::Retired
        };
        meters[old_idx].removed_on = Some(c.on);
        meters.push(Meter {
            id: id.clone(),
            account_id: Some(account.id.clone()),
            status: MeterStatus::Active,
            register: c.new_register,
            installed_on: Some(c.on),
            removed_on: None,
        });
        (meters.len() - 1, id, v_c, start_units)
    });

    // History rows. Unwrapped register units per meter; readings are taken modulo the dials.
    let units_old = |v: f64| (v / g_old).floor() as u64 + old_offset;
    let push =
        |history: &mut Vec<HistoryRead>, meter: &str, on: NaiveDate, units: u64, m: u64, kind| {
            history.push(HistoryRead {
                account_id: account.id.clone(),
                meter_id: meter.to_string(),
                read_on: on,
                reading: units % m,
                kind,
            });
        };
    if let Some(s) = plan.start {
        push(history, &old_id, s, old_offset, m_old, ReadKind::Initial);
    }
    let mut reported = old_offset; // last reported unwrapped units on the meter in service
    let mut reported_on = plan.start.unwrap_or(points[0].1);
    let mut reported_kind = ReadKind::Initial;
    let mut on_new = false;
    let mut current = None;
    for (k, &(m, d)) in points.iter().enumerate() {
        if let (Some(c), Some((_, new_id, v_c, start))) = (change, new_meter.as_ref()) {
            if !on_new && m == c.period {
                push(
                    history,
                    &old_id,
                    c.on,
                    units_old(*v_c),
                    m_old,
                    ReadKind::Final,
                );
                push(
                    history,
                    new_id,
                    c.on,
                    *start,
                    c.new_register.modulus(),
                    ReadKind::Initial,
                );
                on_new = true;
                reported = *start;
                reported_on = c.on;
                reported_kind = ReadKind::Initial;
            }
        }
        let (meter_idx, reg, units_true, v_base, units_base) = match (on_new, new_meter.as_ref()) {
            (true, Some((idx, _, v_c, start))) => {
                let reg = meters[*idx].register;
                let g = gallons_per_unit(&reg);
                (
                    *idx,
                    reg,
                    ((vols[k] - v_c) / g).floor().max(0.0) as u64 + start,
                    *v_c,
                    *start,
                )
            }
            _ => (old_idx, old_reg, units_old(vols[k]), 0.0, old_offset),
        };
        let modulus = reg.modulus();
        if m == 0 {
            if k == 0 {
                break;
            }
            let g = gallons_per_unit(&reg);
            let from = if reported_kind == ReadKind::Initial && on_new {
                reported_on
            } else {
                points[k - 1].1
            };
            let expected = if reported_kind == ReadKind::Initial && on_new {
                expected_now * (ctx.c(class, d) - ctx.c(class, from))
                    / (ctx.c(class, d) - ctx.c(class, points[k - 1].1)).max(1e-9)
            } else {
                expected_now
            };
            let season_ratio = (k >= 4).then(|| {
                let per_day = |a: NaiveDate, b: NaiveDate| {
                    (ctx.c(class, b) - ctx.c(class, a)) / ((b - a).num_days().max(1) as f64)
                };
                per_day(points[k - 1].1, d) / per_day(points[k - 4].1, points[k - 1].1)
            });
            let v_prev = if on_new && reported_kind == ReadKind::Initial {
                v_base
            } else {
                vols[k - 1]
            };
            current = Some(Current {
                meter: meter_idx,
                register: reg,
                prev_reading: reported % modulus,
                prev_on: reported_on,
                prev_kind: reported_kind,
                on: d,
                reading: units_true % modulus,
                use_units: units_true.saturating_sub(reported),
                expected: expected / g,
                v_prev,
                v_now: vols[k],
                v_base,
                units_base,
                season_ratio,
            });
            break;
        }
        let closing = plan.closed_at == Some(m);
        let estimate = plan.estimates.iter().find(|e| e.0 == m).map(|e| e.1);
        let (units, kind) = match estimate {
            Some(frac) if !closing && k > 0 => {
                let caught = ((units_true - reported) as f64 * frac).round() as u64;
                (reported + caught, ReadKind::Estimated)
            }
            _ if closing => (units_true, ReadKind::Final),
            _ => (units_true, ReadKind::Actual),
        };
        push(
            history,
            &meters[meter_idx].id.clone(),
            d,
            units,
            modulus,
            kind,
        );
        reported = units;
        reported_on = d;
        reported_kind = kind;
        if closing {
            meters[meter_idx].account_id = None;
            meters[meter_idx].status = if rng.chance(0.6) {
                MeterStatus::Inventory
            } else {
                MeterStatus::Retired
            };
            meters[meter_idx].removed_on = Some(d);
        }
    }
    current
}
