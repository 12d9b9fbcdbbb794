//! Route files: what a handheld loads for a route — stops in walk order with the previous read and the
//! hi/lo limits as register readings, open field orders, and the message-code table.

use super::CycleSettings;
use super::{for_each_account_history, CycleError, Result};
use crate::domain::{AccountStatus, MessageCode, WindowLimits};
use crate::store::basis;
use crate::store::cycles as sql;
use crate::store::Store;
use crate::vee::{self, AccountHistory};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteFile {
    pub cycle_id: String,
    pub route_id: String,
    pub route_name: String,
    #[schema(value_type = String, format = Date)]
    pub window_from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub window_to: NaiveDate,
    pub stops: Vec<RouteStop>,
    pub message_codes: Vec<RouteCode>,
}

/// One meter to read, in walk order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteStop {
    pub sequence: u32,
    pub account_id: String,
    pub customer_name: String,
    pub service_address: String,
    pub account_status: String,
    pub meter_id: String,
    pub dials: u8,
    pub multiplier: u32,
    pub unit: String,
    pub previous_reading: Option<u64>,
    #[schema(value_type = Option<String>, format = Date)]
    pub previous_read_on: Option<NaiveDate>,
    /// Register readings; `None` when there is no history to set them from.
    pub limits: Option<StopLimits>,
    pub field_orders: Vec<RouteOrder>,
}

/// Hi/lo limits as readings the handheld compares the keyed number with, for a read on the window's
/// first day and on its last day; for a day between they move linearly (PROTOCOL.md §3.6,
/// `domain::WindowLimits::on_day`), and the office judges a read's high/low with the same limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StopLimits {
    pub first_day: LimitRange,
    pub last_day: LimitRange,
}

/// A range of register readings. Near rollover it wraps through zero: then `high < low` and `wraps`
/// is true (a reading passes if it is ≥ low OR ≤ high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitRange {
    pub low: u64,
    pub high: u64,
    pub wraps: bool,
}

impl LimitRange {
    fn new((low, high): (u64, u64)) -> Self {
        LimitRange {
            low,
            high,
            wraps: high < low,
        }
    }
}

impl From<WindowLimits> for StopLimits {
    fn from(w: WindowLimits) -> Self {
        StopLimits {
            first_day: LimitRange::new(w.first),
            last_day: LimitRange::new(w.last),
        }
    }
}

impl StopLimits {
    /// As the domain's window limits.
    pub fn window(&self) -> WindowLimits {
        WindowLimits {
            first: (self.first_day.low, self.first_day.high),
            last: (self.last_day.low, self.last_day.high),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteOrder {
    pub order_id: i64,
    pub kind: String,
    pub meter_id: Option<String>,
    pub instructions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteCode {
    pub code: String,
    pub category: String,
    pub description: String,
    pub requires_follow_up: bool,
}

impl From<&MessageCode> for RouteCode {
    fn from(c: &MessageCode) -> Self {
        RouteCode {
            code: c.code.clone(),
            category: c.category.clone(),
            description: c.description.clone(),
            requires_follow_up: c.requires_follow_up,
        }
    }
}

/// The route file of one route of a cycle.
pub fn route_file(
    store: &Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    route_id: &str,
) -> Result<RouteFile> {
    let mut files = build(store, config, cycle_id, Some(route_id))?;
    files.pop().ok_or_else(|| CycleError::RouteNotInCycle {
        cycle: cycle_id.to_string(),
        route: route_id.to_string(),
    })
}

/// Every route file of a cycle, from bulk queries: one pass over the history of the cycle's accounts.
pub fn route_files(
    store: &Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
) -> Result<Vec<RouteFile>> {
    build(store, config, cycle_id, None)
}

fn build(
    store: &Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    only: Option<&str>,
) -> Result<Vec<RouteFile>> {
    let conn = store.conn();
    let cycle = sql::load_cycle(conn, cycle_id)?
        .ok_or_else(|| CycleError::UnknownCycle(cycle_id.to_string()))?;
    let names: HashMap<String, String> = store
        .routes()?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    if let Some(r) = only {
        if !names.contains_key(r) {
            return Err(CycleError::UnknownRoute(r.to_string()));
        }
        if !cycle.routes.iter().any(|c| c == r) {
            return Err(CycleError::RouteNotInCycle {
                cycle: cycle_id.to_string(),
                route: r.to_string(),
            });
        }
    }
    let stops = sql::route_stops(conn, cycle_id, only)?;
    // Previous reading and limits per stop, computed as each account's history streams by.
    type Judged = (Option<(u64, NaiveDate)>, Option<StopLimits>);
    let judge = |s: &sql::MeterRow, history: &AccountHistory| -> Judged {
        let Some(a) = &s.account else {
            return (None, None);
        };
        let base = history.base_of(&s.meter_id).map(|b| (b.reading, b.read_on));
        // No use is expected on an inactive account: any movement asks the reader to confirm.
        let limits = vee::stop_limits(
            history,
            &s.meter_id,
            &s.register,
            &a.rate_class,
            a.status == AccountStatus::Active,
            cycle.window_from,
            cycle.window_to,
            config.validation(),
        )
        .map(StopLimits::from);
        (base, limits)
    };
    let mut by_account: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in stops.iter().enumerate() {
        if let Some(a) = &s.account {
            by_account.entry(a.account_id.as_str()).or_default().push(i);
        }
    }
    let mut judged: Vec<Judged> = vec![(None, None); stops.len()];
    // One route (a handheld's download): its meters' judging basis, one range, where they have one.
    let mut from_basis = vec![false; stops.len()];
    if let Some(route) = only {
        let wanted: HashMap<&str, usize> = stops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.meter_id.as_str(), i))
            .collect();
        for (i, b) in basis::bases_on_route(conn, route, &wanted)? {
            // An account with no history has nothing to set a previous reading or limits from.
            if b.history != AccountHistory::default() {
                judged[i] = judge(&stops[i], &b.history);
            }
            from_basis[i] = true;
        }
    }
    let scope = sql::Scope::new(
        conn,
        stops
            .iter()
            .zip(&from_basis)
            .filter(|(_, done)| !**done)
            .filter_map(|(s, _)| s.account_id.clone()),
    )?;
    for_each_account_history(conn, &scope, |account, history| {
        for &i in by_account.get(account).into_iter().flatten() {
            if !from_basis[i] {
                judged[i] = judge(&stops[i], history);
            }
        }
        Ok(())
    })?;
    let mut orders: HashMap<String, Vec<RouteOrder>> = HashMap::new();
    for o in sql::open_orders(conn, cycle_id, only)? {
        orders.entry(o.account_id).or_default().push(RouteOrder {
            order_id: o.order_id,
            kind: o.kind,
            meter_id: o.meter_id,
            instructions: o.instructions,
        });
    }
    let codes: Vec<RouteCode> = store.codes(false)?.iter().map(RouteCode::from).collect();
    let mut files: Vec<RouteFile> = cycle
        .routes
        .iter()
        .filter(|r| only.is_none_or(|o| o == r.as_str()))
        .map(|r| RouteFile {
            cycle_id: cycle.id.clone(),
            route_id: r.clone(),
            route_name: names.get(r).cloned().unwrap_or_default(),
            window_from: cycle.window_from,
            window_to: cycle.window_to,
            stops: Vec::new(),
            message_codes: codes.clone(),
        })
        .collect();
    let index: HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.route_id.clone(), i))
        .collect();

    for (s, (base, limits)) in stops.iter().zip(judged) {
        let Some(a) = &s.account else { continue };
        let Some(&fi) = index.get(&a.route_id) else {
            continue;
        };
        files[fi].stops.push(RouteStop {
            sequence: a.sequence,
            account_id: a.account_id.clone(),
            customer_name: a.name.clone(),
            service_address: a.service_address.clone(),
            account_status: a.status.to_string(),
            meter_id: s.meter_id.clone(),
            dials: s.register.dials,
            multiplier: s.register.multiplier,
            unit: s.register.unit.to_string(),
            previous_reading: base.map(|b| b.0),
            previous_read_on: base.map(|b| b.1),
            limits,
            field_orders: orders.get(&a.account_id).cloned().unwrap_or_default(),
        });
    }
    Ok(files)
}
