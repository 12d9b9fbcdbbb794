//! `[review]` and `[paperwork]` settings: the desk's guardrails and the District's printed wording.

use rust_decimal::Decimal;
use serde::Deserialize;

/// `[review]`: guardrails on the clerk's decisions.
///
/// ```toml
/// [review]
/// accept_reason_above = 100        # accepting a read that changes the bill by more than $100 needs a reason
/// meter_change_days_around_window = 0  # a meter change may be dated this many days outside the cycle's window
/// meter_change_days_back = 45      # with no open cycle: at most this many days before today
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// Dollars of likely bill impact above which accepting a read needs a reason.
    #[serde(deserialize_with = "super::tariff::decimal")]
    pub accept_reason_above: Decimal,
    /// Days before the start or after the end of the open cycle's read window a meter change may be dated.
    pub meter_change_days_around_window: u32,
    /// For an account on no open cycle: how many days back a meter change may be dated.
    pub meter_change_days_back: u32,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            accept_reason_above: Decimal::from(100),
            meter_change_days_around_window: 0,
            meter_change_days_back: 45,
        }
    }
}

/// `[paperwork]`: what the District prints on door hangers, 48-hour notices and in/out tags.
///
/// ```toml
/// [paperwork]
/// district = "Coastside County Water District"
/// office = "766 Main Street · (650) 726-4405 · Mon–Fri 8:30–5:00"
/// door_hanger_text = "..."
/// notice_text = "..."
/// shut_off_after_days = 2          # a 48-hour notice: service is shut off 2 days after it is hung
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaperworkConfig {
    pub district: String,
    /// Where and when to pay or call, printed on every notice.
    pub office: String,
    pub door_hanger_text: String,
    pub notice_text: String,
    /// Days between a 48-hour notice and the shut-off date printed on it.
    pub shut_off_after_days: u32,
}

impl Default for PaperworkConfig {
    fn default() -> Self {
        PaperworkConfig {
            district: "Your Water District".into(),
            office: "Pay at the District office or call us during business hours".into(),
            door_hanger_text:
                "We called today about your water account. Your payment is past due. \
                Please pay the amount due by the date shown to avoid a shut-off notice."
                    .into(),
            notice_text: "FINAL NOTICE: your water service will be shut off on the date shown \
                unless the amount due is paid in full. A fee applies to restore service."
                .into(),
            shut_off_after_days: 2,
        }
    }
}
