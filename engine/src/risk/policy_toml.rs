//! TOML form of the risk policy: serde reads the text into loose "raw"
//! structs (unknown keys refused), then each value is converted and checked
//! with a message naming its key. Amounts are in major units of their
//! currency, written as strings (`"5000.00"`) or integers (`5000`): floats
//! are refused because they are not exact.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::bounds;
use super::codes::Action;
use super::policy::{
    AmountAnomalyRule, BlockList, ImpossibleTravelRule, InstrumentBindsRule, LimitRule,
    NewDeviceRule, NewInstrumentRule, PolicyError, Response, RiskPolicy, TierLimits, VelocityRule,
    UNLIMITED,
};
use crate::command::AccountId;
use crate::currency::Currency;
use crate::limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    blocked_countries: Option<RawBlockedCountries>,
    blocked_merchants: Option<RawBlockedMerchants>,
    blocked_mccs: Option<RawBlockedMccs>,
    single_payment: Option<RawLimit>,
    daily_outflow: Option<RawLimit>,
    monthly_outflow: Option<RawLimit>,
    velocity: Option<RawVelocity>,
    new_device: Option<RawNewDevice>,
    impossible_travel: Option<RawImpossibleTravel>,
    amount_anomaly: Option<RawAmountAnomaly>,
    new_instrument: Option<RawNewInstrument>,
    instrument_daily: Option<RawLimit>,
    instrument_binds: Option<RawInstrumentBinds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewInstrument {
    action: String,
    #[serde(default)]
    freeze: bool,
    /// The "first hours" after the bind.
    hours: i64,
    max: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstrumentBinds {
    action: String,
    #[serde(default)]
    freeze: bool,
    binds_max: i64,
    window_seconds: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlockedCountries {
    action: String,
    #[serde(default)]
    freeze: bool,
    countries: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlockedMerchants {
    action: String,
    #[serde(default)]
    freeze: bool,
    merchants: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlockedMccs {
    action: String,
    #[serde(default)]
    freeze: bool,
    mccs: Vec<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    action: String,
    #[serde(default)]
    freeze: bool,
    /// Currency code -> one amount per KYC tier.
    max: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVelocity {
    action: String,
    #[serde(default)]
    freeze: bool,
    payments_max: i64,
    window_seconds: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewDevice {
    action: String,
    #[serde(default)]
    freeze: bool,
    trust_first_device: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImpossibleTravel {
    action: String,
    #[serde(default)]
    freeze: bool,
    speed_kmh_max: i64,
    distance_km_min: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmountAnomaly {
    action: String,
    #[serde(default)]
    freeze: bool,
    multiplier: toml::Value,
    history: i64,
    history_min: i64,
}

pub(super) fn parse(text: &str) -> Result<RiskPolicy, PolicyError> {
    if text.len() > bounds::POLICY_TOML_BYTES_MAX {
        return Err(PolicyError::TooLarge {
            size: text.len(),
            max: bounds::POLICY_TOML_BYTES_MAX,
        });
    }
    let raw: RawPolicy =
        toml::from_str(text).map_err(|error| PolicyError::Toml(error.to_string()))?;
    let policy = RiskPolicy {
        blocked_countries: raw.blocked_countries.map(convert_countries).transpose()?,
        blocked_merchants: raw.blocked_merchants.map(convert_merchants).transpose()?,
        blocked_mccs: raw.blocked_mccs.map(convert_mccs).transpose()?,
        single_payment: convert_limit("single_payment", raw.single_payment)?,
        daily_outflow: convert_limit("daily_outflow", raw.daily_outflow)?,
        monthly_outflow: convert_limit("monthly_outflow", raw.monthly_outflow)?,
        velocity: raw.velocity.map(convert_velocity).transpose()?,
        new_device: raw
            .new_device
            .map(|raw| {
                Ok::<_, PolicyError>(NewDeviceRule {
                    response: response("new_device", &raw.action, raw.freeze)?,
                    trust_first_device: raw.trust_first_device,
                })
            })
            .transpose()?,
        impossible_travel: raw.impossible_travel.map(convert_travel).transpose()?,
        amount_anomaly: raw.amount_anomaly.map(convert_anomaly).transpose()?,
        new_instrument: raw.new_instrument.map(convert_new_instrument).transpose()?,
        instrument_daily: convert_limit("instrument_daily", raw.instrument_daily)?,
        instrument_binds: raw.instrument_binds.map(convert_binds).transpose()?,
    };
    // Ranges and freeze-with-decline are checked in one place for TOML and
    // bincode alike.
    policy.validate()?;
    Ok(policy)
}

fn response(rule: &str, action: &str, freeze: bool) -> Result<Response, PolicyError> {
    let action = Action::from_name(action).ok_or_else(|| {
        PolicyError::invalid(
            format!("{rule}.action"),
            format!("\"{action}\" is not one of \"decline\", \"step_up\", \"flag\""),
        )
    })?;
    Ok(Response { action, freeze })
}

fn integer_in(field: &str, value: i64, min: i64, max: i64) -> Result<i64, PolicyError> {
    if value < min || value > max {
        return Err(PolicyError::invalid(
            field,
            format!("{value} is out of range {min}..={max}"),
        ));
    }
    Ok(value)
}

fn check_list_len(field: &str, len: usize) -> Result<(), PolicyError> {
    if len > bounds::POLICY_LIST_ENTRIES_MAX {
        return Err(PolicyError::invalid(
            field,
            format!(
                "{len} entries; at most {} are allowed",
                bounds::POLICY_LIST_ENTRIES_MAX
            ),
        ));
    }
    Ok(())
}

fn sorted_unique<T: Ord>(mut entries: Vec<T>) -> Vec<T> {
    entries.sort_unstable();
    entries.dedup();
    entries
}

fn convert_countries(raw: RawBlockedCountries) -> Result<BlockList<[u8; 2]>, PolicyError> {
    let field = "blocked_countries.countries";
    check_list_len(field, raw.countries.len())?;
    let mut entries = Vec::with_capacity(raw.countries.len());
    for text in &raw.countries {
        let bytes = text.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(PolicyError::invalid(
                field,
                format!("\"{text}\" is not an ISO 3166 alpha-2 country code such as \"KP\""),
            ));
        }
        entries.push([bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()]);
    }
    Ok(BlockList {
        response: response("blocked_countries", &raw.action, raw.freeze)?,
        entries: sorted_unique(entries),
    })
}

/// A merchant id: a TOML integer, or a string (decimal or 0x hex) for ids
/// above i64::MAX, which TOML integers cannot hold.
fn merchant_id(value: &toml::Value) -> Option<u64> {
    match value {
        toml::Value::Integer(id) => u64::try_from(*id).ok(),
        toml::Value::String(text) => {
            let text = text.trim();
            match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
                None => text.replace('_', "").parse().ok(),
            }
        }
        _ => None,
    }
}

fn convert_merchants(raw: RawBlockedMerchants) -> Result<BlockList<AccountId>, PolicyError> {
    let field = "blocked_merchants.merchants";
    check_list_len(field, raw.merchants.len())?;
    let mut entries = Vec::with_capacity(raw.merchants.len());
    for value in &raw.merchants {
        let id = merchant_id(value)
            .map(AccountId)
            .filter(|id| !id.is_house());
        let id = id.ok_or_else(|| {
            PolicyError::invalid(
                field,
                format!("{value} is not a merchant account id (an integer, or a string for ids above 2^63)"),
            )
        })?;
        entries.push(id);
    }
    Ok(BlockList {
        response: response("blocked_merchants", &raw.action, raw.freeze)?,
        entries: sorted_unique(entries),
    })
}

fn convert_mccs(raw: RawBlockedMccs) -> Result<BlockList<u16>, PolicyError> {
    let field = "blocked_mccs.mccs";
    check_list_len(field, raw.mccs.len())?;
    let mut entries = Vec::with_capacity(raw.mccs.len());
    for &mcc in &raw.mccs {
        // In range 0..=9999, so the cast is exact.
        entries.push(integer_in(field, mcc, 0, i64::from(limits::MCC_MAX))? as u16);
    }
    Ok(BlockList {
        response: response("blocked_mccs", &raw.action, raw.freeze)?,
        entries: sorted_unique(entries),
    })
}

/// An amount in major units of `currency` to minor units.
fn amount(field: &str, value: &toml::Value, currency: Currency) -> Result<u64, PolicyError> {
    let decimal = match value {
        toml::Value::String(text) if text.trim() == "unlimited" => return Ok(UNLIMITED),
        toml::Value::String(text) => Decimal::from_str_exact(text.trim()).map_err(|_| {
            PolicyError::invalid(
                field,
                format!("\"{text}\" is not an amount such as \"5000.00\" or \"unlimited\""),
            )
        })?,
        toml::Value::Integer(major) => Decimal::from(*major),
        toml::Value::Float(_) => {
            return Err(PolicyError::invalid(
                field,
                format!(
                    "{value} is a float; write amounts as strings (\"5000.00\") or integers: floats are not exact"
                ),
            ))
        }
        _ => {
            return Err(PolicyError::invalid(
                field,
                format!("{value} is not an amount"),
            ))
        }
    };
    let minor_units = currency.minor_units();
    let decimal = decimal.normalize();
    if decimal.is_sign_negative() && !decimal.is_zero() {
        return Err(PolicyError::invalid(
            field,
            format!("{decimal} is negative"),
        ));
    }
    if decimal.scale() > minor_units {
        return Err(PolicyError::invalid(
            field,
            format!(
                "{decimal} has more decimals than {} has minor units ({minor_units})",
                currency.code()
            ),
        ));
    }
    let too_large = || {
        PolicyError::invalid(
            field,
            format!("{decimal} {} is more than any amount", currency.code()),
        )
    };
    let minor = decimal
        .mantissa()
        .checked_mul(10i128.pow(minor_units - decimal.scale()))
        .ok_or_else(too_large)?;
    let minor = u64::try_from(minor).map_err(|_| too_large())?;
    if minor > limits::AMOUNT_MAX {
        return Err(too_large());
    }
    Ok(minor)
}

fn convert_limit(name: &str, raw: Option<RawLimit>) -> Result<Option<LimitRule>, PolicyError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.max.len() > bounds::POLICY_CURRENCIES_MAX {
        return Err(PolicyError::invalid(
            format!("{name}.max"),
            format!(
                "{} currencies; at most {} are allowed",
                raw.max.len(),
                bounds::POLICY_CURRENCIES_MAX
            ),
        ));
    }
    let mut limits = Vec::with_capacity(raw.max.len());
    for (code, values) in &raw.max {
        let field = format!("{name}.max.{code}");
        let currency = Currency::from_code(code).ok_or_else(|| {
            PolicyError::invalid(
                &field,
                format!("\"{code}\" is not an ISO 4217 currency with minor units"),
            )
        })?;
        if values.len() != bounds::KYC_TIERS {
            return Err(PolicyError::invalid(
                &field,
                format!(
                    "{} amounts; one per KYC tier 0..={} ({}) is needed",
                    values.len(),
                    limits::KYC_TIER_MAX,
                    bounds::KYC_TIERS
                ),
            ));
        }
        let mut max = [0u64; bounds::KYC_TIERS];
        for (tier, value) in values.iter().enumerate() {
            max[tier] = amount(&format!("{field}[{tier}]"), value, currency)?;
        }
        limits.push(TierLimits { currency, max });
    }
    limits.sort_unstable_by_key(|row| row.currency);
    if limits
        .windows(2)
        .any(|pair| pair[0].currency == pair[1].currency)
    {
        return Err(PolicyError::invalid(
            format!("{name}.max"),
            "a currency is listed twice (codes are case-insensitive)",
        ));
    }
    Ok(Some(LimitRule {
        response: response(name, &raw.action, raw.freeze)?,
        limits,
    }))
}

fn convert_new_instrument(raw: RawNewInstrument) -> Result<NewInstrumentRule, PolicyError> {
    let hours_ns = 3_600 * 1_000_000_000;
    let hours = integer_in(
        "new_instrument.hours",
        raw.hours,
        (bounds::NEW_INSTRUMENT_PERIOD_NS_MIN / hours_ns) as i64,
        (bounds::NEW_INSTRUMENT_PERIOD_NS_MAX / hours_ns) as i64,
    )?;
    let limit = convert_limit(
        "new_instrument",
        Some(RawLimit {
            action: raw.action,
            freeze: raw.freeze,
            max: raw.max,
        }),
    )?;
    let limit = limit.ok_or_else(|| PolicyError::invalid("new_instrument", "no limits"))?;
    Ok(NewInstrumentRule {
        limit,
        // Range checked above: the cast is exact and the product fits.
        period_ns: hours as u64 * hours_ns,
    })
}

fn convert_binds(raw: RawInstrumentBinds) -> Result<InstrumentBindsRule, PolicyError> {
    let binds_max = integer_in(
        "instrument_binds.binds_max",
        raw.binds_max,
        1,
        bounds::BINDS_REMEMBERED_MAX as i64,
    )?;
    let window_seconds = integer_in(
        "instrument_binds.window_seconds",
        raw.window_seconds,
        (bounds::BIND_WINDOW_NS_MIN / 1_000_000_000) as i64,
        (bounds::BIND_WINDOW_NS_MAX / 1_000_000_000) as i64,
    )?;
    Ok(InstrumentBindsRule {
        response: response("instrument_binds", &raw.action, raw.freeze)?,
        // Ranges checked above: the casts are exact and the product fits.
        binds_max: binds_max as u8,
        window_ns: window_seconds as u64 * 1_000_000_000,
    })
}

fn convert_velocity(raw: RawVelocity) -> Result<VelocityRule, PolicyError> {
    let payments_max = integer_in(
        "velocity.payments_max",
        raw.payments_max,
        1,
        bounds::RECENT_PAYMENTS_MAX as i64,
    )?;
    let window_seconds = integer_in(
        "velocity.window_seconds",
        raw.window_seconds,
        (bounds::VELOCITY_WINDOW_NS_MIN / 1_000_000_000) as i64,
        (bounds::VELOCITY_WINDOW_NS_MAX / 1_000_000_000) as i64,
    )?;
    Ok(VelocityRule {
        response: response("velocity", &raw.action, raw.freeze)?,
        // Ranges checked above: the casts are exact and the product fits.
        payments_max: payments_max as u8,
        window_ns: window_seconds as u64 * 1_000_000_000,
    })
}

fn convert_travel(raw: RawImpossibleTravel) -> Result<ImpossibleTravelRule, PolicyError> {
    let speed_kmh_max = integer_in(
        "impossible_travel.speed_kmh_max",
        raw.speed_kmh_max,
        1,
        i64::from(bounds::TRAVEL_SPEED_KMH_MAX),
    )?;
    let distance_km_min = integer_in(
        "impossible_travel.distance_km_min",
        raw.distance_km_min,
        0,
        i64::from(bounds::TRAVEL_DISTANCE_M_MAX / 1_000),
    )?;
    Ok(ImpossibleTravelRule {
        response: response("impossible_travel", &raw.action, raw.freeze)?,
        speed_kmh_max: speed_kmh_max as u32,
        distance_m_min: distance_km_min as u32 * 1_000,
    })
}

fn convert_anomaly(raw: RawAmountAnomaly) -> Result<AmountAnomalyRule, PolicyError> {
    let field = "amount_anomaly.multiplier";
    let multiplier = match &raw.multiplier {
        toml::Value::String(text) => Decimal::from_str(text.trim()).ok(),
        toml::Value::Integer(value) => Some(Decimal::from(*value)),
        _ => None,
    }
    .ok_or_else(|| {
        PolicyError::invalid(
            field,
            format!(
                "{} is not a multiplier such as \"4.5\" (a string) or 5",
                raw.multiplier
            ),
        )
    })?;
    let milli = multiplier
        .checked_mul(Decimal::from(1_000))
        .map(|milli| milli.normalize());
    let milli = match milli {
        Some(milli) if milli.scale() == 0 => milli.mantissa(),
        _ => {
            return Err(PolicyError::invalid(
                field,
                format!("{multiplier} has more than 3 decimals"),
            ))
        }
    };
    let (min, max) = (
        i128::from(bounds::ANOMALY_MULTIPLIER_MILLI_MIN),
        i128::from(bounds::ANOMALY_MULTIPLIER_MILLI_MAX),
    );
    if milli < min || milli > max {
        return Err(PolicyError::invalid(
            field,
            format!(
                "{multiplier} is out of range {}..={}",
                min / 1_000,
                max / 1_000
            ),
        ));
    }
    let history = integer_in(
        "amount_anomaly.history",
        raw.history,
        1,
        bounds::RECENT_PAYMENTS_MAX as i64,
    )?;
    let history_min = integer_in("amount_anomaly.history_min", raw.history_min, 1, history)?;
    Ok(AmountAnomalyRule {
        response: response("amount_anomaly", &raw.action, raw.freeze)?,
        multiplier_milli: milli as u32,
        history: history as u8,
        history_min: history_min as u8,
    })
}
