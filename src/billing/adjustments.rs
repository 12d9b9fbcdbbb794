//! Money outside metered use: leak (high-bill) credits and other adjustments, recorded against an
//! account and a cycle, carried by that cycle's billing batch in exact decimal money.

use super::BillingError;
pub use crate::domain::{Adjustment, AdjustmentKind};
use crate::store::billing as sql;

/// Money is cents-exact in every tariff the gateway knows; more places are a caller's rounding slip,
/// and a billing core would round them its own way.
const MONEY_SCALE: u32 = 2;

/// Records an adjustment (a leak credit, or another) for the cycle's billing batch; returns its id.
///
/// Refused: an unknown account or cycle, a closed cycle (reopen it first: its batch is frozen), a read
/// that is not the account's read in that cycle, a zero amount, money with more than two decimal
/// places, an empty `created_by`.
pub fn record_adjustment(conn: &rusqlite::Connection, a: &Adjustment) -> Result<i64, BillingError> {
    let bad = |reason: String| BillingError::BadAdjustment {
        account_id: a.account_id.clone(),
        reason,
    };
    if a.amount.is_zero() {
        return Err(bad("amount is zero".into()));
    }
    if a.amount.normalize().scale() > MONEY_SCALE {
        return Err(bad(format!(
            "amount {} has more than {MONEY_SCALE} decimal places",
            a.amount
        )));
    }
    if a.created_by.trim().is_empty() {
        return Err(bad("created_by is empty".into()));
    }
    match sql::cycle_status(conn, &a.cycle_id)?.as_deref() {
        None => return Err(BillingError::UnknownCycle(a.cycle_id.clone())),
        Some("closed") => return Err(BillingError::Closed(a.cycle_id.clone())),
        Some(_) => {}
    }
    if !sql::account_exists(conn, &a.account_id)? {
        return Err(BillingError::UnknownAccount(a.account_id.clone()));
    }
    if let Some(read_id) = a.read_id {
        match sql::read_owner(conn, read_id)? {
            Some((Some(account), cycle)) if account == a.account_id && cycle == a.cycle_id => {}
            Some(_) => {
                return Err(bad(format!(
                    "read {read_id} is not a read of this account in cycle {}",
                    a.cycle_id
                )))
            }
            None => return Err(bad(format!("no read {read_id}"))),
        }
    }
    Ok(sql::insert_adjustment(conn, a)?)
}

/// An account's adjustments with their ids, oldest first.
pub fn adjustments_of_account(
    conn: &rusqlite::Connection,
    account_id: &str,
) -> Result<Vec<(i64, Adjustment)>, BillingError> {
    Ok(sql::adjustments_of_account(conn, account_id)?)
}

/// [`record_adjustment`] in its own transaction on an open store (the CLI, examples, tests).
pub fn add_adjustment(
    store: &mut crate::store::Store,
    a: &Adjustment,
) -> Result<i64, BillingError> {
    store.write(|tx| record_adjustment(tx, a))
}
