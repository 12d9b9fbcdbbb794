//! The reads a cycle still lacks at a day, with their estimates.

use super::*;

/// A stop of an active account with no read this cycle (or only a skipped one), with its estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingRead {
    pub route_id: String,
    pub account_id: String,
    pub meter_id: String,
    /// The reader was there and left a skip code.
    pub skipped: bool,
    /// `None` when the meter has no previous reading or the account no usable history: a clerk must
    /// estimate by hand.
    pub estimate: Option<vee::Estimate>,
    pub flag: Flag,
}

/// Stops of the cycle's active accounts that have no usable read, each estimated for `on` (same period
/// last year, else average daily use × days): what cycle close turns into estimated reads.
pub fn missing_reads(
    store: &Store,
    config: &dyn CycleSettings,
    cycle_id: &str,
    on: NaiveDate,
) -> Result<Vec<MissingRead>> {
    let conn = store.conn();
    if sql::load_cycle(conn, cycle_id)?.is_none() {
        return Err(CycleError::UnknownCycle(cycle_id.to_string()));
    }
    let mut read: HashSet<String> = HashSet::new();
    let mut skipped: HashSet<String> = HashSet::new();
    for r in store.cycle_reads(cycle_id)? {
        if r.read_type == ReadType::Skipped {
            skipped.insert(r.meter_id);
        } else {
            read.insert(r.meter_id);
        }
    }
    let stops: Vec<MeterRow> = sql::route_stops(conn, cycle_id, None)?
        .into_iter()
        .filter(|m| {
            !read.contains(&m.meter_id)
                && m.account
                    .as_ref()
                    .is_some_and(|a| a.status == crate::domain::AccountStatus::Active)
        })
        .collect();
    let scope = sql::Scope::new(conn, stops.iter().filter_map(|m| m.account_id.clone()))?;
    let mut by_account: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in stops.iter().enumerate() {
        if let Some(a) = &m.account {
            by_account.entry(a.account_id.as_str()).or_default().push(i);
        }
    }
    let mut estimates: Vec<Option<vee::Estimate>> = vec![None; stops.len()];
    for_each_account_history(conn, &scope, |account, h| {
        for &i in by_account.get(account).into_iter().flatten() {
            let (m, class) = (&stops[i], stops[i].account.as_ref().map(|a| &a.rate_class));
            estimates[i] = class.and_then(|class| {
                vee::estimate(h, &m.meter_id, &m.register, class, on, config.validation())
            });
        }
        Ok(())
    })?;
    let mut out = Vec::with_capacity(stops.len());
    for (m, estimate) in stops.into_iter().zip(estimates) {
        let Some(a) = m.account else { continue };
        let was_skipped = skipped.contains(&m.meter_id);
        let explanation = match &estimate {
            Some(e) => format!(
                "{} this cycle; estimated {} {} to reading {} ({})",
                if was_skipped { "skipped" } else { "not read" },
                e.consumption,
                m.register.unit,
                e.reading,
                e.basis
            ),
            None => "not read this cycle; no history to estimate from: estimate by hand".into(),
        };
        out.push(MissingRead {
            route_id: a.route_id,
            account_id: a.account_id,
            meter_id: m.meter_id,
            skipped: was_skipped,
            estimate,
            flag: Flag {
                kind: FlagKind::Missing,
                quality: vee::quality::of(FlagKind::Missing).to_string(),
                explanation,
            },
        });
    }
    Ok(out)
}
