//! Inline risk checks: pure, deterministic rules evaluated in the shard, in
//! the same pass as the payment.
//!
//! The ledger calls [`evaluate`] with the policy in force, the customer's
//! [`CustomerRiskState`] and a [`PaymentContext`] built from the command; if
//! the [`Decision`] allows the payment and the payment commits, it calls
//! [`CustomerRiskState::record`]. Nothing here reads a clock, draws a random
//! number, iterates a hash map or uses floating point: time is the command's
//! timestamp, and replaying the log gives the same decisions and the same
//! digests on every machine. docs/risk.md describes every rule.
//!
//! # Layout
//! - [`bounds`]: every bound (state sizes, policy list lengths).
//! - [`policy`]: [`RiskPolicy`] and its rules; `policy_toml` reads TOML.
//! - [`state`]: [`CustomerRiskState`], what the rules remember per customer.
//! - [`instruments`]: what the instrument rules remember per instrument
//!   ([`InstrumentRisk`]) and per customer's binds ([`BindRing`]).
//! - [`rules`]: [`evaluate`] and [`Decision`].
//! - [`audit`]: the per-customer audit trail of non-approve decisions.
//! - [`books`]: [`RiskBooks`], the risk and budget state inside the ledger
//!   and the two calls around a payment.
//! - [`calendar`]: UTC days and months from timestamps.
//! - [`geo`]: integer great-circle distances for impossible travel.
//! - [`codes`]: [`RuleId`], [`Action`], [`Verdict`] with stable codes.

pub mod audit;
pub mod books;
pub mod bounds;
pub mod calendar;
pub mod codes;
pub mod geo;
pub mod instruments;
pub mod policy;
mod policy_toml;
pub mod rules;
pub mod state;

#[cfg(test)]
mod tests;

pub use audit::{AuditEntry, AuditLog, AuditRing};
pub use books::{RiskBooks, RiskCounters};
pub use calendar::{Day, Month};
pub use codes::{Action, RuleId, RuleSet, Verdict};
pub use geo::GeoPoint;
pub use instruments::{BindRing, InstrumentFacts, InstrumentRisk};
pub use policy::{PolicyError, Response, RiskPolicy, UNLIMITED};
pub use rules::{evaluate, evaluate_bind, Decision, RuleFigures};
pub use state::CustomerRiskState;

use crate::command::AccountId;
use crate::currency::Currency;

/// What the rules see of one outgoing payment. The ledger builds it from the
/// command (amount, currency, merchant and its MCC), the paying account (KYC
/// tier) and the fields the gateway sends (country, device, location,
/// step-up proof).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PaymentContext {
    /// The command's sequencer timestamp, ns since the Unix epoch.
    pub timestamp: u64,
    /// The paying customer's KYC tier (0..=KYC_TIER_MAX; higher reads as the
    /// highest).
    pub kyc_tier: u8,
    pub currency: Currency,
    /// Minor units.
    pub amount: u64,
    /// The receiving merchant account, for merchant payments.
    pub merchant: Option<AccountId>,
    /// The merchant's category code (ISO 18245).
    pub mcc: Option<u16>,
    /// Where the payment is made (ISO 3166 alpha-2, upper case ASCII).
    pub country: Option<[u8; 2]>,
    /// The gateway's id of the customer's device.
    pub device: Option<u64>,
    /// The device's coarse location.
    pub location: Option<GeoPoint>,
    /// The gateway verified a second factor for this payment (a re-submission
    /// after a step-up verdict).
    pub step_up_verified: bool,
    /// For a withdrawal hold to an instrument: the instrument's bind time
    /// and what was withdrawn to it (the instrument rules).
    pub instrument: Option<InstrumentFacts>,
}

impl PaymentContext {
    /// A payment with only the required fields; the rest is None / false.
    pub fn new(timestamp: u64, kyc_tier: u8, currency: Currency, amount: u64) -> PaymentContext {
        PaymentContext {
            timestamp,
            kyc_tier,
            currency,
            amount,
            merchant: None,
            mcc: None,
            country: None,
            device: None,
            location: None,
            step_up_verified: false,
            instrument: None,
        }
    }
}
