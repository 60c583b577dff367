//! Every bound of the risk engine and of budgets, in one place (the engine's
//! `limits.rs` style). Per-customer state is made of fixed-size arrays sized
//! by these constants, so its memory does not depend on how many payments a
//! customer makes; a policy bigger than these bounds is refused when it is
//! parsed or decoded.
//!
//! Changing a state bound changes the checkpoint encoding of
//! [`super::CustomerRiskState`] (fixed arrays): bump the checkpoint schema.

use crate::limits;

/// KYC tiers 0..=KYC_TIER_MAX: one limit per tier.
pub const KYC_TIERS: usize = limits::KYC_TIER_MAX as usize + 1;

/// Committed payments remembered per customer (timestamp, amount, currency):
/// the velocity rule's `payments_max` and the anomaly rule's `history` are at
/// most this.
pub const RECENT_PAYMENTS_MAX: usize = 32;

/// Distinct devices remembered per customer; the least recently used is
/// forgotten first.
pub const DEVICES_MAX: usize = 8;

/// Currencies whose daily and monthly outflow is tracked per customer at once.
pub const OUTFLOW_CURRENCIES_MAX: usize = 8;

/// Most entries in each blocked list (countries, merchants, MCCs).
pub const POLICY_LIST_ENTRIES_MAX: usize = 1_024;

/// Most currencies in each limit table.
pub const POLICY_CURRENCIES_MAX: usize = 64;

/// Longest velocity window: 31 days.
pub const VELOCITY_WINDOW_NS_MAX: u64 = 31 * 86_400 * 1_000_000_000;
/// Shortest velocity window: 1 second.
pub const VELOCITY_WINDOW_NS_MIN: u64 = 1_000_000_000;

/// Highest plausible-speed setting of the impossible-travel rule, km/h.
pub const TRAVEL_SPEED_KMH_MAX: u32 = 100_000;

/// Highest minimum-distance setting of the impossible-travel rule, metres
/// (half the Earth's circumference).
pub const TRAVEL_DISTANCE_M_MAX: u32 = 20_015_115;

/// The anomaly multiplier in thousandths: from 1× to 1,000×.
pub const ANOMALY_MULTIPLIER_MILLI_MIN: u32 = 1_000;
pub const ANOMALY_MULTIPLIER_MILLI_MAX: u32 = 1_000_000;

/// Binds remembered per customer for the `instrument_binds` rule (its
/// `binds_max` is below this: the rule looks at the `binds_max`-th newest).
pub const BINDS_REMEMBERED_MAX: usize = 16;

/// Window of the `instrument_binds` rule: 1 second to 31 days.
pub const BIND_WINDOW_NS_MIN: u64 = 1_000_000_000;
pub const BIND_WINDOW_NS_MAX: u64 = 31 * 86_400 * 1_000_000_000;

/// "First hours" of the `new_instrument` rule: 1 hour to 31 days.
pub const NEW_INSTRUMENT_PERIOD_NS_MIN: u64 = 3_600 * 1_000_000_000;
pub const NEW_INSTRUMENT_PERIOD_NS_MAX: u64 = 31 * 86_400 * 1_000_000_000;

/// Non-approve decisions kept per customer for audit; the oldest go first.
pub const AUDIT_ENTRIES_MAX: usize = 32;

/// Largest risk policy TOML file read.
pub const POLICY_TOML_BYTES_MAX: usize = 256 * 1024;

/// Largest bincode encoding of a valid policy (with any bincode config: the
/// fixed-int encoding is the larger). A `SetRiskPolicy` command fits in it.
pub const POLICY_ENCODED_BYTES_MAX: usize = 32 * 1024;

/// Months of spending kept per account: the current month and the
/// `BUDGET_MONTHS_KEPT - 1` before it.
pub const BUDGET_MONTHS_KEPT: usize = 6;

const _: () = assert!(RECENT_PAYMENTS_MAX <= u8::MAX as usize);
const _: () = assert!(DEVICES_MAX <= u8::MAX as usize);
const _: () = assert!(AUDIT_ENTRIES_MAX <= u8::MAX as usize);
const _: () = assert!(BINDS_REMEMBERED_MAX <= u8::MAX as usize);
const _: () = assert!(BIND_WINDOW_NS_MIN < BIND_WINDOW_NS_MAX);
const _: () = assert!(NEW_INSTRUMENT_PERIOD_NS_MIN < NEW_INSTRUMENT_PERIOD_NS_MAX);
const _: () = assert!(BUDGET_MONTHS_KEPT >= 2 && BUDGET_MONTHS_KEPT <= 24);
const _: () = assert!(VELOCITY_WINDOW_NS_MIN < VELOCITY_WINDOW_NS_MAX);
const _: () = assert!(ANOMALY_MULTIPLIER_MILLI_MIN < ANOMALY_MULTIPLIER_MILLI_MAX);
// Lists and tables of the largest policy, fixed-int encoding: 8 bytes a
// merchant, 2 an MCC, 2 a country, (2 + 8 × tiers) a currency row in each of
// five limit tables (single payment, daily, monthly, new instrument,
// instrument daily), plus headers.
const _: () = assert!(
    POLICY_LIST_ENTRIES_MAX * (8 + 2 + 2) + 5 * POLICY_CURRENCIES_MAX * (2 + 8 * KYC_TIERS) + 512
        <= POLICY_ENCODED_BYTES_MAX
);
