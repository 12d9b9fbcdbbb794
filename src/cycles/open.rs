//! Opening a read cycle (which writes its judging basis) and its progress per route.

use super::*;

/// Opens cycle `id` over `routes` (every route when empty). Refuses an unknown route, an inverted
/// window, an existing id, and a route already in another open cycle (a route is read once at a time).
pub fn open_cycle(
    store: &mut Store,
    id: &str,
    from: NaiveDate,
    to: NaiveDate,
    routes: &[String],
    now: NaiveDateTime,
) -> Result<Cycle> {
    let id = id.trim();
    if id.is_empty() || id.len() > 40 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CycleError::BadCycleId(id.to_string()));
    }
    if to < from {
        return Err(CycleError::InvertedWindow { from, to });
    }
    store.write(|tx| {
        if sql::load_cycle(tx, id)?.is_some() {
            return Err(CycleError::DuplicateCycle(id.to_string()));
        }
        let known = sql::route_ids(tx)?;
        let mut chosen: Vec<String> = if routes.is_empty() {
            known.clone()
        } else {
            let mut v: Vec<String> = routes.iter().map(|r| r.trim().to_string()).collect();
            v.sort();
            v.dedup();
            v
        };
        chosen.retain(|r| !r.is_empty());
        if chosen.is_empty() {
            return Err(CycleError::NoRoutes);
        }
        if let Some(r) = chosen.iter().find(|r| known.binary_search(r).is_err()) {
            return Err(CycleError::UnknownRoute(r.clone()));
        }
        let busy = sql::routes_in_open_cycles(tx)?;
        if let Some((route, cycle)) = busy.into_iter().find(|(r, _)| chosen.contains(r)) {
            return Err(CycleError::RouteBusy { route, cycle });
        }
        let cycle = Cycle {
            id: id.to_string(),
            window_from: from,
            window_to: to,
            routes: chosen,
            status: CycleStatus::Open,
        };
        sql::insert_cycle(tx, &cycle, now)?;
        prepare_judging(tx, &cycle.routes)?;
        Ok(cycle)
    })
}

/// Writes the judging basis (`store::basis`) of every meter in service on `routes` that has none (a
/// row that exists is current), so that reads docked during the cycle are judged from one row each.
/// Returns how many it wrote.
pub fn prepare_judging(conn: &rusqlite::Connection, routes: &[String]) -> Result<usize> {
    let routes: HashSet<&str> = routes.iter().map(String::as_str).collect();
    let meters = sql::meters_without_basis(conn, &routes)?;
    if meters.is_empty() {
        return Ok(0);
    }
    let scope = sql::Scope::new(
        conn,
        meters
            .iter()
            .filter_map(|m| m.account_id.clone())
            .collect::<Vec<_>>(),
    )?;
    let empty = AccountHistory::default();
    // Meters are in account order, as history streams by: walked alongside it.
    let mut next = 0;
    let mut written = 0;
    let mut write_until = |account: Option<&str>, history: &AccountHistory| -> Result<()> {
        let before = |m: &MeterRow| match (m.account_id.as_deref(), account) {
            (Some(a), Some(b)) => a < b,
            _ => true,
        };
        let start = next;
        while next < meters.len() && before(&meters[next]) {
            next += 1;
        }
        // Accounts passed without history: their meters are judged on no history.
        written += basis::write_bases(conn, meters[start..next].iter().map(|m| (m, &empty)))?;
        let start = next;
        while next < meters.len() && meters[next].account_id.as_deref() == account {
            next += 1;
        }
        written += basis::write_bases(conn, meters[start..next].iter().map(|m| (m, history)))?;
        Ok(())
    };
    for_each_account_history(conn, &scope, |account, history| {
        write_until(Some(account), history)
    })?;
    write_until(None, &empty)?;
    Ok(written)
}

/// [`prepare_judging`] for the routes of every open cycle: after a change to the district (a CIS
/// import, a reopened cycle) took some rows away. A store error.
pub fn prepare_judging_for_open_cycles(conn: &rusqlite::Connection) -> Result<usize, StoreError> {
    let routes: Vec<String> = sql::routes_in_open_cycles(conn)?
        .into_iter()
        .map(|(route, _)| route)
        .collect();
    prepare_judging(conn, &routes).map_err(|e| match e {
        CycleError::Store(e) => e,
        other => StoreError::Invalid(other.to_string()),
    })
}

/// Where one route of a cycle stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteProgress {
    pub route_id: String,
    /// Stops to read: active meters of the route's accounts.
    pub expected: u64,
    /// Stops with at least one read.
    pub read_in: u64,
    /// Reads awaiting a clerk.
    pub flagged: u64,
    pub resolved: u64,
    /// Stops with no read yet.
    pub missing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CycleProgress {
    pub cycle_id: String,
    pub status: String,
    pub window_from: NaiveDate,
    pub window_to: NaiveDate,
    pub routes: Vec<RouteProgress>,
    /// Reads for meters not on any of the cycle's routes (unknown meters, other routes).
    pub unassigned_reads: u64,
}

pub fn cycle_status(store: &Store, cycle_id: &str) -> Result<CycleProgress> {
    cycle_status_in(store.conn(), cycle_id)
}

/// [`cycle_status`] on any connection (a read-only one for the clerk pages).
pub fn cycle_status_in(conn: &rusqlite::Connection, cycle_id: &str) -> Result<CycleProgress> {
    let cycle = crate::store::load_cycle(conn, cycle_id)?
        .ok_or_else(|| CycleError::UnknownCycle(cycle_id.to_string()))?;
    let mut routes: Vec<RouteProgress> = sql::expected_stops(conn, cycle_id)?
        .into_iter()
        .map(|(route_id, expected)| RouteProgress {
            route_id,
            expected,
            ..RouteProgress::default()
        })
        .collect();
    let stops: HashSet<(String, String)> = sql::route_stops(conn, cycle_id, None)?
        .into_iter()
        .filter_map(|m| Some((m.account.as_ref()?.route_id.clone(), m.meter_id)))
        .collect();
    let mut read_meters: HashSet<(String, String)> = HashSet::new();
    let mut unassigned = 0;
    for r in sql::cycle_reads(conn, cycle_id)? {
        let key = (r.route_id.clone().unwrap_or_default(), r.meter_id.clone());
        let Some(p) = routes
            .iter_mut()
            .find(|p| Some(&p.route_id) == r.route_id.as_ref())
        else {
            unassigned += 1;
            continue;
        };
        match r.status {
            // A superseded read is no open exception (its replacement is the meter's read).
            ReadStatus::Flagged | ReadStatus::Held if r.superseded_by.is_none() => p.flagged += 1,
            ReadStatus::Resolved => p.resolved += 1,
            _ => {}
        }
        if stops.contains(&key) && r.status != ReadStatus::Estimated && read_meters.insert(key) {
            p.read_in += 1;
        }
    }
    for p in &mut routes {
        p.missing = p.expected.saturating_sub(p.read_in);
    }
    Ok(CycleProgress {
        cycle_id: cycle.id,
        status: cycle.status.to_string(),
        window_from: cycle.window_from,
        window_to: cycle.window_to,
        routes,
        unassigned_reads: unassigned,
    })
}
