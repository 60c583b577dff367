//! The risk policy: which rules are on, their parameters and what each does
//! when it fires.
//!
//! A policy is written in TOML (see docs/risk.md and
//! docs/risk-policy.example.toml) and parsed by [`RiskPolicy::from_toml`];
//! inside the engine it travels through the log as bincode, so a replay uses
//! the policy that was in force. Both ways in validate it: every list is
//! sorted, free of duplicates and within [`bounds`](super::bounds), so two
//! equal policies have equal encodings and equal digests.

use bincode::de::Decoder;
use bincode::error::DecodeError;
use bincode::{Decode, Encode};

use super::bounds;
use super::codes::{Action, RuleId};
use crate::command::AccountId;
use crate::currency::Currency;
use crate::limits;

/// An amount limit meaning "no limit" (written `"unlimited"` in TOML).
pub const UNLIMITED: u64 = u64::MAX;

/// What a rule does when it fires.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct Response {
    pub action: Action,
    /// Freeze the account as well ("freeze on suspicion"); only with
    /// [`Action::Decline`]. An operator unfreezes.
    pub freeze: bool,
}

impl Response {
    pub const DECLINE: Response = Response {
        action: Action::Decline,
        freeze: false,
    };
    pub const STEP_UP: Response = Response {
        action: Action::StepUp,
        freeze: false,
    };
    pub const FLAG: Response = Response {
        action: Action::Flag,
        freeze: false,
    };
}

/// One currency's limit per KYC tier, in minor units ([`UNLIMITED`] for none).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct TierLimits {
    pub currency: Currency,
    pub max: [u64; bounds::KYC_TIERS],
}

/// A limit on an amount (single payment) or a sum (daily, monthly outflow),
/// per currency and KYC tier. Currencies not listed have no limit.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Encode)]
pub struct LimitRule {
    pub response: Response,
    /// Sorted by currency, one row per currency.
    pub limits: Vec<TierLimits>,
}

impl LimitRule {
    /// The limit for this currency and tier, if the currency is listed.
    /// Tiers above the highest are read as the highest.
    #[inline]
    pub fn limit(&self, currency: Currency, kyc_tier: u8) -> Option<u64> {
        let tier = usize::from(kyc_tier).min(bounds::KYC_TIERS - 1);
        // A few currencies: a linear scan beats a binary search here.
        self.limits
            .iter()
            .find(|row| row.currency == currency)
            .map(|row| row.max[tier])
    }
}

/// At most `payments_max` committed payments in any window of `window_ns`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct VelocityRule {
    pub response: Response,
    /// 1..=RECENT_PAYMENTS_MAX.
    pub payments_max: u8,
    /// VELOCITY_WINDOW_NS_MIN..=VELOCITY_WINDOW_NS_MAX.
    pub window_ns: u64,
}

/// A sorted list of blocked values.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Encode)]
pub struct BlockList<T> {
    pub response: Response,
    /// Sorted, no duplicates, at most POLICY_LIST_ENTRIES_MAX.
    pub entries: Vec<T>,
}

impl<T: Ord> BlockList<T> {
    #[inline]
    pub fn contains(&self, value: &T) -> bool {
        self.entries.binary_search(value).is_ok()
    }
}

/// Fires on a payment from a device that is not among the customer's last
/// [`bounds::DEVICES_MAX`] devices seen on committed payments.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct NewDeviceRule {
    pub response: Response,
    /// With no device on record at all (a customer's first payment with a
    /// device id), trust the device (true: the rule does not fire and the
    /// device becomes known) or treat it as new (false: the rule fires).
    pub trust_first_device: bool,
}

/// Fires when the payment's location is more than `distance_m_min` from the
/// last committed payment's location and reaching it would take more than
/// `speed_kmh_max`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct ImpossibleTravelRule {
    pub response: Response,
    /// 1..=TRAVEL_SPEED_KMH_MAX.
    pub speed_kmh_max: u32,
    /// 0..=TRAVEL_DISTANCE_M_MAX: jumps shorter than this never fire (coarse
    /// locations jitter by a few kilometres).
    pub distance_m_min: u32,
}

/// Fires when the amount is more than `multiplier` times the average of the
/// customer's last `history` committed payments in the same currency, once
/// there are at least `history_min` of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct AmountAnomalyRule {
    pub response: Response,
    /// The multiplier in thousandths (5× = 5_000), 1×..=1,000×.
    pub multiplier_milli: u32,
    /// Payments averaged: 1..=RECENT_PAYMENTS_MAX.
    pub history: u8,
    /// Fewer same-currency payments than this: the rule does not apply.
    /// 1..=history.
    pub history_min: u8,
}

/// Fires on a withdrawal hold to an instrument bound less than `period_ns`
/// ago when the withdrawals to it since the bind, this one included, would
/// go above the limit of the customer's KYC tier in the currency.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct NewInstrumentRule {
    /// The limits (and the response) per currency and tier.
    pub limit: LimitRule,
    /// NEW_INSTRUMENT_PERIOD_NS_MIN..=NEW_INSTRUMENT_PERIOD_NS_MAX, whole hours.
    pub period_ns: u64,
}

/// Fires on a bind when the customer already bound `binds_max` instruments
/// in the last `window_ns` (this bind would be one more).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct InstrumentBindsRule {
    /// `decline` or `flag`: a bind carries no step-up proof.
    pub response: Response,
    /// 1..=BINDS_REMEMBERED_MAX.
    pub binds_max: u8,
    /// BIND_WINDOW_NS_MIN..=BIND_WINDOW_NS_MAX.
    pub window_ns: u64,
}

/// The first byte of a policy's encoding in version 2 (with the instrument
/// rules). Version 1, the encoding before them, has no version byte: it
/// starts with the option tag of `blocked_countries`, 0 or 1, so the first
/// byte tells the versions apart.
pub const POLICY_ENCODING_V2: u8 = 2;

/// The whole policy. A rule that is `None` is off.
///
/// Encoding (bincode, fields in declaration order): a policy without
/// instrument rules is written in version 1, the first ten options and
/// nothing else, exactly as before the instrument rules existed (so its bytes
/// and digest did not change); a policy with any is written in version 2,
/// [`POLICY_ENCODING_V2`] then all thirteen options. Decoding reads both.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RiskPolicy {
    pub blocked_countries: Option<BlockList<[u8; 2]>>,
    pub blocked_merchants: Option<BlockList<AccountId>>,
    pub blocked_mccs: Option<BlockList<u16>>,
    pub single_payment: Option<LimitRule>,
    pub daily_outflow: Option<LimitRule>,
    pub monthly_outflow: Option<LimitRule>,
    pub velocity: Option<VelocityRule>,
    pub new_device: Option<NewDeviceRule>,
    pub impossible_travel: Option<ImpossibleTravelRule>,
    pub amount_anomaly: Option<AmountAnomalyRule>,
    /// Version 2 on.
    pub new_instrument: Option<NewInstrumentRule>,
    pub instrument_daily: Option<LimitRule>,
    pub instrument_binds: Option<InstrumentBindsRule>,
}

/// Why a policy was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("risk policy is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("risk policy is not valid TOML for a policy: {0}")]
    Toml(String),
    #[error("risk policy: {field}: {message}")]
    Invalid { field: String, message: String },
}

impl PolicyError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The example policy of docs/risk.md, compiled in.
pub const EXAMPLE_POLICY_TOML: &str = include_str!("../../../docs/risk-policy.example.toml");

impl RiskPolicy {
    /// No rule on: every payment is approved.
    pub fn disabled() -> RiskPolicy {
        RiskPolicy {
            blocked_countries: None,
            blocked_merchants: None,
            blocked_mccs: None,
            single_payment: None,
            daily_outflow: None,
            monthly_outflow: None,
            velocity: None,
            new_device: None,
            impossible_travel: None,
            amount_anomaly: None,
            new_instrument: None,
            instrument_daily: None,
            instrument_binds: None,
        }
    }

    /// Whether a rule of version 2 is on (then the policy is written in
    /// version 2).
    pub fn has_instrument_rules(&self) -> bool {
        self.new_instrument.is_some()
            || self.instrument_daily.is_some()
            || self.instrument_binds.is_some()
    }

    /// The documented example policy (docs/risk-policy.example.toml).
    #[allow(clippy::panic)]
    pub fn example() -> RiskPolicy {
        match RiskPolicy::from_toml(EXAMPLE_POLICY_TOML) {
            Ok(policy) => policy,
            // The file is compiled in and parsed by a test: a failure here is
            // a build defect, not input.
            Err(error) => panic!("docs/risk-policy.example.toml: {error}"),
        }
    }

    /// Parses and validates a TOML policy. See docs/risk.md for the format.
    pub fn from_toml(text: &str) -> Result<RiskPolicy, PolicyError> {
        super::policy_toml::parse(text)
    }

    /// The rules that are on (`outflow_currencies` goes with the daily and
    /// monthly limits).
    pub fn rules_on(&self) -> super::RuleSet {
        let mut rules = super::RuleSet::EMPTY;
        let on = [
            (RuleId::BlockedCountry, self.blocked_countries.is_some()),
            (RuleId::BlockedMerchant, self.blocked_merchants.is_some()),
            (RuleId::BlockedMcc, self.blocked_mccs.is_some()),
            (RuleId::SinglePayment, self.single_payment.is_some()),
            (RuleId::DailyOutflow, self.daily_outflow.is_some()),
            (RuleId::MonthlyOutflow, self.monthly_outflow.is_some()),
            (
                RuleId::OutflowCurrencies,
                self.daily_outflow.is_some() || self.monthly_outflow.is_some(),
            ),
            (RuleId::Velocity, self.velocity.is_some()),
            (RuleId::NewDevice, self.new_device.is_some()),
            (RuleId::ImpossibleTravel, self.impossible_travel.is_some()),
            (RuleId::AmountAnomaly, self.amount_anomaly.is_some()),
            (RuleId::NewInstrument, self.new_instrument.is_some()),
            (RuleId::InstrumentDaily, self.instrument_daily.is_some()),
            (RuleId::InstrumentBinds, self.instrument_binds.is_some()),
        ];
        for (rule, is_on) in on {
            if is_on {
                rules.insert(rule);
            }
        }
        rules
    }

    /// Whether every rule is off.
    pub fn is_disabled(&self) -> bool {
        *self == RiskPolicy::disabled()
    }

    /// Checks every bound and invariant (sorted lists, ranges, freeze only
    /// with decline). `from_toml` and bincode decoding call it; call it on a
    /// policy built in code before using it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Some(list) = &self.blocked_countries {
            validate_list("blocked_countries", list, |code| {
                code.iter().all(u8::is_ascii_uppercase)
            })?;
        }
        if let Some(list) = &self.blocked_merchants {
            validate_list("blocked_merchants", list, |id| !id.is_house())?;
        }
        if let Some(list) = &self.blocked_mccs {
            validate_list("blocked_mccs", list, |mcc| *mcc <= limits::MCC_MAX)?;
        }
        for (name, rule) in [
            ("single_payment", &self.single_payment),
            ("daily_outflow", &self.daily_outflow),
            ("monthly_outflow", &self.monthly_outflow),
        ] {
            if let Some(rule) = rule {
                validate_limits(name, rule)?;
            }
        }
        if let Some(rule) = &self.velocity {
            validate_response("velocity", rule.response)?;
            validate_range(
                "velocity.payments_max",
                u64::from(rule.payments_max),
                1,
                bounds::RECENT_PAYMENTS_MAX as u64,
            )?;
            validate_range(
                "velocity.window",
                rule.window_ns,
                bounds::VELOCITY_WINDOW_NS_MIN,
                bounds::VELOCITY_WINDOW_NS_MAX,
            )?;
        }
        if let Some(rule) = &self.new_device {
            validate_response("new_device", rule.response)?;
        }
        if let Some(rule) = &self.impossible_travel {
            validate_response("impossible_travel", rule.response)?;
            validate_range(
                "impossible_travel.speed_kmh_max",
                u64::from(rule.speed_kmh_max),
                1,
                u64::from(bounds::TRAVEL_SPEED_KMH_MAX),
            )?;
            validate_range(
                "impossible_travel.distance_m_min",
                u64::from(rule.distance_m_min),
                0,
                u64::from(bounds::TRAVEL_DISTANCE_M_MAX),
            )?;
        }
        if let Some(rule) = &self.amount_anomaly {
            validate_response("amount_anomaly", rule.response)?;
            validate_range(
                "amount_anomaly.multiplier_milli",
                u64::from(rule.multiplier_milli),
                u64::from(bounds::ANOMALY_MULTIPLIER_MILLI_MIN),
                u64::from(bounds::ANOMALY_MULTIPLIER_MILLI_MAX),
            )?;
            validate_range(
                "amount_anomaly.history",
                u64::from(rule.history),
                1,
                bounds::RECENT_PAYMENTS_MAX as u64,
            )?;
            validate_range(
                "amount_anomaly.history_min",
                u64::from(rule.history_min),
                1,
                u64::from(rule.history),
            )?;
        }
        if let Some(rule) = &self.new_instrument {
            validate_limits("new_instrument", &rule.limit)?;
            validate_range(
                "new_instrument.period",
                rule.period_ns,
                bounds::NEW_INSTRUMENT_PERIOD_NS_MIN,
                bounds::NEW_INSTRUMENT_PERIOD_NS_MAX,
            )?;
            if rule.period_ns % (3_600 * 1_000_000_000) != 0 {
                return Err(PolicyError::invalid(
                    "new_instrument.period",
                    "must be whole hours",
                ));
            }
        }
        if let Some(rule) = &self.instrument_daily {
            validate_limits("instrument_daily", rule)?;
        }
        if let Some(rule) = &self.instrument_binds {
            validate_response("instrument_binds", rule.response)?;
            if rule.response.action == Action::StepUp {
                return Err(PolicyError::invalid(
                    "instrument_binds.action",
                    "a bind carries no second factor: \"decline\" or \"flag\"",
                ));
            }
            validate_range(
                "instrument_binds.binds_max",
                u64::from(rule.binds_max),
                1,
                bounds::BINDS_REMEMBERED_MAX as u64,
            )?;
            validate_range(
                "instrument_binds.window",
                rule.window_ns,
                bounds::BIND_WINDOW_NS_MIN,
                bounds::BIND_WINDOW_NS_MAX,
            )?;
        }
        Ok(())
    }

    /// Feeds a canonical encoding of the policy to `hasher` (for the ledger
    /// digest): a tag, then the bincode encoding with fixed-width
    /// little-endian integers, length first. Validated policies have sorted
    /// lists, so equal policies hash equally.
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(b"payrail-risk-policy-v1");
        let bytes = self.encode_canonical();
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }

    /// BLAKE3 of [`Self::digest_into`]: names the policy in force, for
    /// operators and audit.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = crate::digest::DigestHasher::new();
        self.digest_into(&mut hasher);
        *hasher.finalize().as_bytes()
    }

    /// The bincode encoding with fixed-width little-endian integers.
    pub fn encode_canonical(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail: every field is plain data.
        bincode::encode_to_vec(self, canonical_config()).unwrap_or_default()
    }
}

pub(crate) fn canonical_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

fn validate_response(field: &str, response: Response) -> Result<(), PolicyError> {
    if response.freeze && response.action != Action::Decline {
        return Err(PolicyError::invalid(
            format!("{field}.freeze"),
            format!(
                "freeze = true needs action = \"decline\" (found \"{}\"): a frozen account \
                 cannot step up, and a flagged payment goes through",
                response.action
            ),
        ));
    }
    Ok(())
}

fn validate_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), PolicyError> {
    if value < min || value > max {
        return Err(PolicyError::invalid(
            field,
            format!("{value} is out of range {min}..={max}"),
        ));
    }
    Ok(())
}

fn validate_list<T: Ord + std::fmt::Debug>(
    name: &str,
    list: &BlockList<T>,
    valid: impl Fn(&T) -> bool,
) -> Result<(), PolicyError> {
    validate_response(name, list.response)?;
    if list.entries.len() > bounds::POLICY_LIST_ENTRIES_MAX {
        return Err(PolicyError::invalid(
            name,
            format!(
                "{} entries; at most {} are allowed",
                list.entries.len(),
                bounds::POLICY_LIST_ENTRIES_MAX
            ),
        ));
    }
    if let Some(bad) = list.entries.iter().find(|entry| !valid(entry)) {
        return Err(PolicyError::invalid(name, format!("invalid entry {bad:?}")));
    }
    if list.entries.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(PolicyError::invalid(
            name,
            "entries must be sorted and unique",
        ));
    }
    Ok(())
}

fn validate_limits(name: &str, rule: &LimitRule) -> Result<(), PolicyError> {
    validate_response(name, rule.response)?;
    if rule.limits.len() > bounds::POLICY_CURRENCIES_MAX {
        return Err(PolicyError::invalid(
            format!("{name}.max"),
            format!(
                "{} currencies; at most {} are allowed",
                rule.limits.len(),
                bounds::POLICY_CURRENCIES_MAX
            ),
        ));
    }
    for row in &rule.limits {
        if !row.currency.is_valid() {
            return Err(PolicyError::invalid(
                format!("{name}.max"),
                format!("{:?} is not a currency with minor units", row.currency),
            ));
        }
        if let Some(bad) = row
            .max
            .iter()
            .find(|&&max| max != UNLIMITED && max > limits::AMOUNT_MAX)
        {
            return Err(PolicyError::invalid(
                format!("{name}.max.{}", row.currency.code()),
                format!("{bad} minor units is more than any amount"),
            ));
        }
    }
    if rule
        .limits
        .windows(2)
        .any(|pair| pair[0].currency >= pair[1].currency)
    {
        return Err(PolicyError::invalid(
            format!("{name}.max"),
            "rows must be sorted by currency and unique",
        ));
    }
    Ok(())
}

/// Decodes a length-prefixed sequence (as bincode encodes a `Vec`), refusing
/// a length above `max` before allocating anything.
fn decode_bounded_vec<T: Decode<Context>, Context, D: Decoder<Context = Context>>(
    decoder: &mut D,
    max: usize,
) -> Result<Vec<T>, DecodeError> {
    let len = u64::decode(decoder)?;
    if len > max as u64 {
        return Err(DecodeError::OtherString(format!(
            "risk policy list of {len} entries; at most {max}"
        )));
    }
    let mut items = Vec::with_capacity(len as usize);
    for _ in 0..len {
        items.push(T::decode(decoder)?);
    }
    Ok(items)
}

impl<Context> Decode<Context> for LimitRule {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Ok(LimitRule {
            response: Response::decode(decoder)?,
            limits: decode_bounded_vec(decoder, bounds::POLICY_CURRENCIES_MAX)?,
        })
    }
}
bincode::impl_borrow_decode!(LimitRule);

impl<Context, T: Decode<Context>> Decode<Context> for BlockList<T> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Ok(BlockList {
            response: Response::decode(decoder)?,
            entries: decode_bounded_vec(decoder, bounds::POLICY_LIST_ENTRIES_MAX)?,
        })
    }
}

impl<'de, Context, T: Decode<Context>> bincode::BorrowDecode<'de, Context> for BlockList<T> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        <Self as Decode<Context>>::decode(decoder)
    }
}

impl Encode for RiskPolicy {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        let version_2 = self.has_instrument_rules();
        if version_2 {
            POLICY_ENCODING_V2.encode(encoder)?;
        }
        // Version 1: the ten rules before the instrument rules, in order.
        self.blocked_countries.encode(encoder)?;
        self.blocked_merchants.encode(encoder)?;
        self.blocked_mccs.encode(encoder)?;
        self.single_payment.encode(encoder)?;
        self.daily_outflow.encode(encoder)?;
        self.monthly_outflow.encode(encoder)?;
        self.velocity.encode(encoder)?;
        self.new_device.encode(encoder)?;
        self.impossible_travel.encode(encoder)?;
        self.amount_anomaly.encode(encoder)?;
        if version_2 {
            self.new_instrument.encode(encoder)?;
            self.instrument_daily.encode(encoder)?;
            self.instrument_binds.encode(encoder)?;
        }
        Ok(())
    }
}

/// Decoding reads version 1 (no version byte) and version 2, and validates:
/// a policy read from the log or a checkpoint is held to the same rules as
/// one parsed from TOML.
impl<Context> Decode<Context> for RiskPolicy {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        // Version 1 starts with blocked_countries' option tag (0 or 1).
        let first = u8::decode(decoder)?;
        let (version_2, blocked_countries) = match first {
            0 => (false, None),
            1 => (false, Some(BlockList::decode(decoder)?)),
            POLICY_ENCODING_V2 => (true, Decode::decode(decoder)?),
            other => {
                return Err(DecodeError::OtherString(format!(
                    "risk policy: unknown encoding version byte {other}"
                )))
            }
        };
        let mut policy = RiskPolicy {
            blocked_countries,
            blocked_merchants: Decode::decode(decoder)?,
            blocked_mccs: Decode::decode(decoder)?,
            single_payment: Decode::decode(decoder)?,
            daily_outflow: Decode::decode(decoder)?,
            monthly_outflow: Decode::decode(decoder)?,
            velocity: Decode::decode(decoder)?,
            new_device: Decode::decode(decoder)?,
            impossible_travel: Decode::decode(decoder)?,
            amount_anomaly: Decode::decode(decoder)?,
            new_instrument: None,
            instrument_daily: None,
            instrument_binds: None,
        };
        if version_2 {
            policy.new_instrument = Decode::decode(decoder)?;
            policy.instrument_daily = Decode::decode(decoder)?;
            policy.instrument_binds = Decode::decode(decoder)?;
            // One policy, one encoding: version 2 only with a rule of its own.
            if !policy.has_instrument_rules() {
                return Err(DecodeError::OtherString(
                    "risk policy: version 2 encoding without instrument rules".into(),
                ));
            }
        }
        policy
            .validate()
            .map_err(|error| DecodeError::OtherString(error.to_string()))?;
        Ok(policy)
    }
}
bincode::impl_borrow_decode!(RiskPolicy);
