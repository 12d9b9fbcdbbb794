//! Money outside metered use: an adjustment to an account's bill for a cycle (recorded and checked
//! by `billing`, stored by `store`).

use super::spelled_enum;
use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdjustmentKind {
    /// A high-bill (leak) credit under the District's policy.
    LeakCredit,
    Other,
}
spelled_enum!(AdjustmentKind, "adjustment kind", { LeakCredit => "leak_credit", Other => "other" });

/// One adjustment to an account's bill for a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub account_id: String,
    pub cycle_id: String,
    /// The read it is about (the confirmed high read of a leak), if any.
    pub read_id: Option<i64>,
    pub kind: AdjustmentKind,
    /// Money; negative is a credit to the customer.
    pub amount: Decimal,
    /// Billing units credited (a leak credit's water), if the adjustment is about water.
    pub units: Option<Decimal>,
    pub note: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}
