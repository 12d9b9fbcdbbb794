//! Builds the demo district: a coastal-California water district with 36 months of history, an open
//! cycle, the reads the handhelds bring back, and planted problems with their ground truth.
//!
//! # The district
//! Routes of ~600 accounts (12 for the default 7,000), in walk order (sequence 10, 20... with gaps and
//! squeezed-in stops); residential 80%, multi-family 8%, commercial 7%, irrigation 5%; 2.5% inactive
//! (meter in place, no use since some month), 1.5% closed (final read, meter pulled). One reader and
//! handheld (`HH-01`...) per three routes; each route is read on two consecutive weekdays, routes
//! staggered over the first three weeks of a cycle's read window. ~4% of meters were changed during
//! the history (`final` + `initial`, old meter to inventory or retired); ~1% of monthly reads are
//! estimated.
//!
//! # The day the demo runs
//! Whatever day `as_of` is, the open cycle is the one being read then, near its end: its read window
//! opened [`WINDOW_OPENED_DAYS_AGO`] (25) days before `as_of` and runs a month (to 2–5 days after
//! `as_of`), every route has been read (the last reads at least two days before `as_of`), and the
//! handhelds bring all of it back. A real district on the 1st–3rd of a month is still reading, or
//! reviewing, the cycle whose window opened in the previous month; the demo's cycle is named for the
//! month its window opens in (on 3 December: `2026-11`, window 8 November – 7 December). Earlier
//! cycles' windows open on the same day of earlier months, so every period is about a month long
//! whatever the day. Nothing is dated on or after `as_of`: no read is ever after "now".
//!
//! # The model
//! Every account has a size (lognormal per rate class), a slow drift (a household grows, a shop changes
//! hands: a random walk of 1% a month in log space) and a seasonal profile (dry summer, wet winter:
//! irrigation ≈ 18× summer/winter, residential ≈ 1.7×). Use accrues *per day* along the seasonal curve,
//! so a period's use depends on its real length (read dates move ±3 days and skip weekends). A
//! district-wide weather factor per month (AR(1), σ 6%) scales outdoor use, irrigation fully, residential
//! by half. Each period then gets its own noise (lognormal σ: residential 8%, multi-family and
//! commercial 5%, irrigation 10%); with read dates moving ±3 days, a month's use swings 10–20% as
//! real ones do. Registers count whole units of their own unit and multiplier, so the
//! small integers of a 4-dial HCF register round like real ones. Normal reads this cycle come from the
//! very same model as the history: nothing about a normal read is special.
//!
//! # Planted problems (a good validator must flag them)
//! Each is planted on an account that is otherwise clean (no other problem or trap, not near a
//! rollover), and only where the effect is unmistakable against the model's expected use `E` for the
//! period: "high" means use ≥ 3·E and ≥ E + 8 HCF; "low" means use ≤ 0.35·E and ≤ E − 6 HCF; a backward
//! read must be far from a plausible rollover. `Expect` names the rule that should catch it (`kind`)
//! and other rules that legitimately catch the same read (`also`).
//!
//! | problem                 | what the field read looks like                                     | expect                          |
//! |-------------------------|--------------------------------------------------------------------|---------------------------------|
//! | `leak`                  | use 3–10× expected, regular read, `LK` on some                      | high                            |
//! | `confirmed_leak`        | same, read type high_confirmed, `LK`                                | high (a confirmed high is still a high bill to review) |
//! | `stuck_meter`           | reading = previous reading on an account that uses ≥ 5 HCF/period   | zero (also low)                 |
//! | `tampering`             | use 10–30% of expected, `TR` on some                                | low (also zero)                 |
//! | `mis_keyed_extra_digit` | a digit keyed twice (4521 → 45521); half on full-dial readings      | invalid_reading (also high) when it overflows the dials, else high (also invalid_reading) |
//! | `mis_keyed_digit`       | one digit keyed as its keypad neighbour                            | high, or negative (also high), or low |
//! | `transposed_digits`     | two adjacent digits swapped                                        | high, or negative (also high), or low |
//! | `swapped_meter`         | two neighbours' readings keyed against each other's meter (2 entries)| per meter: high / negative / low |
//! | `reverse_flow`          | reading below previous by 30–100% of a period's use, `RR` on some   | negative                        |
//! | `usage_on_inactive`     | an inactive account's meter moved 3–15 HCF                          | inactive_usage (also high)      |
//! | `pulled_meter_read`     | a radio read of a meter now in inventory (its endpoint still talks) | meter_mismatch                  |
//! | `unknown_meter`         | a read keyed for a meter id the district does not know              | meter_mismatch                  |
//! | `invalid_reading`       | raw reading not a number (`45O1`, `4,521`, `4521.5`, blank, `*`)    | invalid_reading                 |
//! | `duplicate_different`   | the meter read twice with different readings                       | duplicate                       |
//! | `out_of_window`         | read a few days before the window opened (never in the future)     | out_of_window                   |
//! | `skipped`               | read type skipped with a skip code (LG, NA, DG, CP, MC)             | missing                         |
//! | `missing`               | no read at all for an active meter                                  | missing                         |
//! | `dial_misread`          | one dial read one off at a digit's edge (`14002` for `14012`)       | high, low or negative, as the use says |
//!
//! Problems built into the use itself (chosen before the history is simulated, on otherwise plain
//! accounts large enough that doubling is not a unit's rounding; "norm" is the model's use without
//! the problem):
//!
//! | problem             | what happened                                                           | expect |
//! |---------------------|-------------------------------------------------------------------------|--------|
//! | `continuing_leak`   | a leak began last period (2.5–4× the norm) and continues (2.2–3.5×)      | high   |
//! | `moderate_leak`     | a household at 1.8–2.5× its norm this period                             | high   |
//! | `commercial_leak`   | a commercial or multi-family account, steady for years, at 1.7–2.5×      | high   |
//! | `gallon_meter_leak` | 1.8–2.5× on a meter counting gallons or cubic feet                       | high   |
//! | `commercial_low`    | a steady commercial or multi-family account at 30–50% of its norm        | low (also zero) |
//! | `bimonthly_leak`    | a household read every other month, at 1.8–2.5× its norm over the two    | high   |
//!
//! # Traps (normal reads a naive rule would flag; a good validator must not raise an exception)
//! | trap                      | why it is normal                                                  |
//! |---------------------------|-------------------------------------------------------------------|
//! | `seasonal_ramp_up`/`_drop`| class seasonal use this period vs the last three periods > 1.6× or < 0.625× (irrigation in spring/autumn) |
//! | `rollover`                | the register wrapped through zero with plausible use (`rollover` info flag is fine) |
//! | `meter_change_this_year`  | meter changed 1–11 months ago: `final` + `initial` the same day; history continues on the account |
//! | `meter_change_last_period`| meter changed since the last read: the previous reading is the new meter's `initial`, the period is short |
//! | `meter_change_new_unit`   | the new meter counts in another unit/multiplier (HCF → 10 gal) |
//! | `thin_history`            | service started within the last 12 months (as little as one period) |
//! | `inactive_no_use`         | inactive account, meter did not move: zero use is expected |
//! | `duplicate_same`          | the same reading sent twice minutes apart |
//! | `after_estimate`          | last period was estimated low (30–45% of real use); this read catches up. Use since the last *actual* read is normal |
//! | `vacation`                | one period 2–11 months ago at 10–30% of the norm (away); this read is normal |
//! | `small_user`              | 1–3 HCF a month, two periods of no use in the last year |
//! | `new_tenant`              | since 4–9 months ago the account uses 0.55–0.7× or 1.5–1.9× what it did; this read is at the new level |
//! | `second_home`             | lived in from May to October, 4–10% of the norm the rest of the year, every year |
//! | `trend`                   | use growing 1.5% a month for three years |
//! | `bimonthly`               | a household read every other month: two months of use since the previous read |
//!
//! Shares of the accounts: missing 1.2%, skipped 0.6%, out-of-window 0.5%, stuck 0.5%, moderate
//! leaks 0.6%, bimonthly households 2%, the others 0.2–0.4% each (at least 2 of each kind, so a
//! small demo district still carries every kind; the problems built into use and the life traps
//! from 400 accounts up).
//! A mis-keyed read's truth carries the reading meant, and a swapped meter's its own reading (keyed
//! at the other stop) (`Planted::intended`), so `vee_accuracy` can measure the likely readings
//! validation names.
//!
//! # Scoring
//! One truth entry per affected meter. A problem counts as caught when any of the meter's reads this
//! cycle carries an exception flag among `kind` ∪ `also` (a `missing` flag for a meter with no read).
//! A trap passes when none of its reads carries an exception flag (`rollover` is informational).
//! Every other meter with a read is a normal read: any exception flag on it is a false positive.
//! [`super::score`] does exactly this.

mod calendar;
mod history;
mod model;
mod plans;
mod plant;

pub use calendar::WINDOW_OPENED_DAYS_AGO;
use calendar::*;
use history::*;
use model::*;
use plans::*;
use plant::*;

use super::names::{
    APARTMENT_KINDS, BUSINESS_KINDS, FIRST_NAMES, IRRIGATION_SITES, LAST_NAMES, ROUTE_AREAS,
    STREET_NAMES, STREET_SUFFIXES,
};
use super::rng::Rng;
use super::{DemoParams, District, Expect, Planted, Problem};
use crate::domain::{
    Account, AccountStatus, Cycle, CycleStatus, DeviceRef, FieldRead, FlagKind, HistoryRead,
    MessageCode, Meter, MeterStatus, ReadKind, ReadMethod, ReadType, Register, Route, Unit,
};
use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use std::collections::{HashMap, HashSet};

/// Monthly history reads before the open cycle.
pub const HISTORY_MONTHS: i32 = 36;
const AVG_MONTH_DAYS: f64 = 30.436_875;
/// Accounts per route (a reader walks ~300 a day; a route is two days).
const ACCOUNTS_PER_ROUTE: u32 = 600;
const GALLONS_PER_HCF: f64 = 748.052;

// ---- the generator -----------------------------------------------------------------------------

/// How many of a planted kind: a share of the accounts, at least `min` (so small demo districts still
/// carry every kind).
fn share(n: usize, rate: f64, min: usize) -> usize {
    ((n as f64 * rate).round() as usize).max(min)
}

/// Builds the district. Pure: the same parameters always give the same district.
pub fn generate(params: &DemoParams) -> District {
    let n = params.accounts as usize;
    let master = Rng::new(params.seed);
    let routes_n = (params.accounts.div_ceil(ACCOUNTS_PER_ROUTE)).max(1) as usize;
    let mut rng_ctx = master.fork(1);
    let ctx = Ctx::new(params, routes_n, &mut rng_ctx);
    // Named for the month its window opens in.
    let cycle_id = format!(
        "{:04}-{:02}",
        ctx.window_from.year(),
        ctx.window_from.month()
    );

    let routes = make_routes(routes_n);
    let readers = make_readers(routes_n, &mut master.fork(2));
    let (mut accounts, mut plans) = make_accounts(n, &routes, &mut master.fork(3));
    plan_structure(&mut plans, &ctx, &mut master.fork(4));

    // Meters and history, account by account.
    let mut meters: Vec<Meter> = Vec::with_capacity(n + n / 10);
    let mut history: Vec<HistoryRead> = Vec::with_capacity(n * (HISTORY_MONTHS as usize + 1));
    let mut currents: Vec<Option<Current>> = Vec::with_capacity(n);
    let mut ids = MeterIds::new();
    for (i, (account, plan)) in accounts.iter().zip(&plans).enumerate() {
        let mut rng = master.fork(1_000 + i as u64);
        currents.push(simulate(
            account,
            plan,
            &ctx,
            &mut rng,
            &mut ids,
            &mut meters,
            &mut history,
        ));
    }
    // New stock in the warehouse, never installed.
    let mut stock_rng = master.fork(5);
    for _ in 0..share(n, 0.004, 1) {
        let reg = *stock_rng.choice(&[
            Register {
                dials: 5,
                multiplier: 1,
                unit: Unit::Hcf,
            },
            Register {
                dials: 6,
                multiplier: 10,
                unit: Unit::Gal,
            },
        ]);
        meters.push(Meter {
            id: ids.next(&reg, &mut stock_rng),
            account_id: None,
            status: MeterStatus::Inventory,
            register: reg,
            installed_on: None,
            removed_on: None,
        });
    }

    let mut truth: Vec<Planted> = Vec::new();
    let field = Field {
        accounts: &accounts,
        plans: &plans,
        currents: &currents,
        meters: &meters,
        history: &history,
        ctx: &ctx,
        readers: &readers,
    };
    let reads = plant_and_read(field, &mut ids, &mut truth, &mut master.fork(6));
    label_traps(&accounts, &plans, &currents, &meters, &mut truth);
    let field_reads = order_reads(reads);

    // Inactive accounts keep their status; closed accounts already lost their meter in `simulate`.
    for (a, p) in accounts.iter_mut().zip(&plans) {
        a.status = p.status;
    }
    truth.sort_by(|a, b| {
        (a.problem, &a.account_id, &a.meter_id).cmp(&(b.problem, &b.account_id, &b.meter_id))
    });

    District {
        cycle: Cycle {
            id: cycle_id,
            window_from: ctx.window_from,
            window_to: ctx.window_to,
            routes: routes.iter().map(|r| r.id.clone()).collect(),
            status: CycleStatus::Open,
        },
        routes,
        accounts,
        meters,
        history,
        codes: message_codes(),
        field_reads,
        truth,
    }
}

fn message_codes() -> Vec<MessageCode> {
    let c =
        |code: &str, category: &str, description: &str, follow: bool, retired: bool| MessageCode {
            code: code.to_string(),
            category: category.to_string(),
            description: description.to_string(),
            requires_follow_up: follow,
            retired,
        };
    vec![
        c(
            "LK",
            "trouble",
            "Leak seen at meter or service",
            true,
            false,
        ),
        c(
            "TR",
            "trouble",
            "Tampering suspected (bypass, broken seal)",
            true,
            false,
        ),
        c(
            "RR",
            "trouble",
            "Register reading reversed (running backwards)",
            true,
            false,
        ),
        c(
            "ST",
            "trouble",
            "Meter stopped, dials not moving",
            true,
            false,
        ),
        c("DM", "trouble", "Meter damaged", true, false),
        c("BL", "trouble", "Box lid broken or missing", true, false),
        c("BX", "trouble", "Box needs cleaning", false, false),
        c("FL", "trouble", "Box flooded", false, false),
        c(
            "MC",
            "skip",
            "Meter covered (dirt, plants, debris)",
            false,
            false,
        ),
        c("LG", "skip", "Locked gate", false, false),
        c("NA", "skip", "No access", false, false),
        c("CP", "skip", "Car parked over box", false, false),
        c("DG", "hazard", "Dog in yard", false, false),
        c("BE", "hazard", "Bees in box", false, false),
        c("NT", "note", "See note", false, false),
        c("VC", "note", "Premises appear vacant", false, false),
        c("CR", "note", "Customer requested call", false, false),
        c("99", "note", "Miscellaneous (old code)", false, true),
    ]
}
