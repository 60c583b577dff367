//! What the CLI reads from and writes for people: decimal amounts, command
//! ids, durations and payment codes.

use std::str::FromStr;

use payrail_engine::limits::AMOUNT_MAX;
use payrail_engine::{AccountId, Currency};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// A decimal amount typed by a person ("12.50") in minor units of `currency`.
/// Refuses negatives, more decimals than the currency has, and amounts that
/// do not fit in a balance.
pub fn amount_minor(text: &str, currency: Currency) -> Result<u64, String> {
    let trimmed = text.trim();
    let code = currency.code();
    let units = currency.minor_units();
    if trimmed.starts_with('-') {
        return Err(format!("{trimmed} {code}: amounts cannot be negative"));
    }
    let well_formed = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '+')
        && trimmed.chars().any(|c| c.is_ascii_digit());
    if !well_formed {
        return Err(format!(
            "'{trimmed}' is not an amount: write it as a decimal number, like 12.50"
        ));
    }
    let too_large = || {
        format!(
            "{trimmed} {code} is too large: at most {} {code}",
            decimal_minor(i128::from(AMOUNT_MAX), currency)
        )
    };
    let decimal = match Decimal::from_str_exact(trimmed) {
        Ok(decimal) => decimal,
        Err(rust_decimal::Error::ExceedsMaximumPossibleValue) => return Err(too_large()),
        Err(rust_decimal::Error::Underflow) => return Err(places_error(trimmed, currency)),
        // Far more integer digits than any amount has.
        Err(_) if integer_digits(trimmed) > 20 => return Err(too_large()),
        Err(_) => {
            return Err(format!(
                "'{trimmed}' is not an amount: write it as a decimal number, like 12.50"
            ))
        }
    };
    if decimal.normalize().scale() > units {
        return Err(places_error(trimmed, currency));
    }
    let scale = Decimal::from(10u64.pow(units));
    let minor = decimal
        .checked_mul(scale)
        .and_then(|minor| minor.trunc().to_u64())
        .filter(|&minor| minor <= AMOUNT_MAX)
        .ok_or_else(too_large)?;
    Ok(minor)
}

fn places_error(text: &str, currency: Currency) -> String {
    let code = currency.code();
    let places = match currency.minor_units() {
        0 => "no decimal places".to_owned(),
        1 => "1 decimal place".to_owned(),
        n => format!("{n} decimal places"),
    };
    format!("{text} {code}: {code} has {places}")
}

fn integer_digits(text: &str) -> usize {
    text.split('.')
        .next()
        .map_or(0, |integer| integer.trim_start_matches(['+', '0']).len())
}

/// Minor units as a decimal string with the currency's places: 1250 CNY is
/// "12.50", 1250 JPY is "1250".
pub fn decimal_minor(minor: i128, currency: Currency) -> String {
    match Decimal::try_from_i128_with_scale(minor, currency.minor_units()) {
        Ok(decimal) => decimal.to_string(),
        // Only for values beyond 96 bits, which no balance reaches.
        Err(_) => format!("{minor}e-{}", currency.minor_units()),
    }
}

/// "12.50 CNY".
pub fn money(minor: i128, currency: Currency) -> String {
    format!("{} {}", decimal_minor(minor, currency), currency.code())
}

/// A command id: 32 hex digits (optionally after "0x"), or a decimal number.
pub fn command_id(text: &str) -> Result<u128, String> {
    let text = text.trim();
    let invalid = || {
        format!("'{text}' is not a command id: use 32 hex digits or a decimal number below 2^128")
    };
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 32 {
            return Err(invalid());
        }
        return u128::from_str_radix(hex, 16).map_err(|_| invalid());
    }
    if text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        return u128::from_str_radix(text, 16).map_err(|_| invalid());
    }
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid());
    }
    u128::from_str(text).map_err(|_| invalid())
}

/// A command id as the CLI prints it: 32 hex digits, which `command_id`
/// reads back as the same id.
pub fn format_command_id(id: u128) -> String {
    format!("{id:032x}")
}

/// An account as the CLI prints it: its number, or for a house account its
/// role and currency (`house:settlement:CNY`), whichever shard part it is.
pub fn account_label(id: AccountId) -> String {
    match id.house_role() {
        Some((role, currency)) => format!("house:{}:{}", role.name(), currency.code()),
        None => id.0.to_string(),
    }
}

/// A duration such as "15m", "30s", "2h", "1d" or "1500ms", in milliseconds.
pub fn duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let invalid =
        || format!("'{text}' is not a duration: use a number and a unit, like 90s, 15m, 2h or 1d");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("'{text}' is too long a duration"))
}

/// A user-presented payment code: exactly 18 decimal digits (spaces, as
/// people group them when reading one out, are ignored).
pub fn payment_code(text: &str) -> Result<u64, String> {
    let digits: String = text.chars().filter(|c| *c != ' ').collect();
    if digits.len() != 18 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "'{}' is not a payment code: payment codes are 18 decimal digits",
            text.trim()
        ));
    }
    match digits.parse::<u64>() {
        Ok(code) if code >= payrail_engine::limits::PAYMENT_CODE_MIN => Ok(code),
        _ => Err(format!(
            "'{}' is not a payment code: payment codes are 18 decimal digits, not starting with 0",
            text.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_currency_minor_units() {
        let table: &[(&str, Currency, Result<u64, &str>)] = &[
            ("12.50", Currency::CNY, Ok(1_250)),
            ("12.5", Currency::CNY, Ok(1_250)),
            ("12", Currency::CNY, Ok(1_200)),
            ("0.01", Currency::CNY, Ok(1)),
            ("12.500", Currency::CNY, Ok(1_250)),
            (".5", Currency::CNY, Ok(50)),
            ("0", Currency::CNY, Ok(0)),
            ("1500", Currency::JPY, Ok(1_500)),
            ("1.234", Currency::BHD, Ok(1_234)),
            (
                "12.345",
                Currency::CNY,
                Err("12.345 CNY: CNY has 2 decimal places"),
            ),
            (
                "1.5",
                Currency::JPY,
                Err("1.5 JPY: JPY has no decimal places"),
            ),
            (
                "-1",
                Currency::CNY,
                Err("-1 CNY: amounts cannot be negative"),
            ),
            ("abc", Currency::CNY, Err("'abc' is not an amount")),
            ("1,000", Currency::CNY, Err("'1,000' is not an amount")),
            ("1e3", Currency::CNY, Err("'1e3' is not an amount")),
            ("", Currency::CNY, Err("'' is not an amount")),
            ("92233720368547758.07", Currency::CNY, Ok(AMOUNT_MAX)),
            ("92233720368547758.08", Currency::CNY, Err("is too large")),
            ("9223372036854775808", Currency::JPY, Err("is too large")),
            (
                "99999999999999999999999999999999",
                Currency::CNY,
                Err("is too large"),
            ),
        ];
        for (text, currency, expected) in table {
            let got = amount_minor(text, *currency);
            match (expected, &got) {
                (Ok(minor), Ok(got_minor)) => assert_eq!(minor, got_minor, "{text}"),
                (Err(needle), Err(message)) => {
                    assert!(message.contains(needle), "{text}: {message}")
                }
                _ => panic!("{text} {currency}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn minor_units_format_back_to_decimals() {
        assert_eq!(decimal_minor(1_250, Currency::CNY), "12.50");
        assert_eq!(decimal_minor(5, Currency::CNY), "0.05");
        assert_eq!(decimal_minor(-5, Currency::CNY), "-0.05");
        assert_eq!(decimal_minor(0, Currency::CNY), "0.00");
        assert_eq!(decimal_minor(1_250, Currency::JPY), "1250");
        assert_eq!(decimal_minor(1_250, Currency::BHD), "1.250");
        assert_eq!(
            money(i128::from(i64::MIN), Currency::CNY),
            "-92233720368547758.08 CNY"
        );
    }

    #[test]
    fn command_ids_round_trip() {
        for id in [
            0,
            1,
            42,
            u128::MAX,
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ] {
            assert_eq!(command_id(&format_command_id(id)), Ok(id));
        }
        assert_eq!(command_id("42"), Ok(42));
        assert_eq!(command_id("0x2a"), Ok(42));
        assert!(command_id("-1").is_err());
        assert!(command_id("0x").is_err());
        assert!(command_id("12g").is_err());
        assert!(command_id("340282366920938463463374607431768211456").is_err());
    }

    #[test]
    fn payment_codes() {
        assert_eq!(
            payment_code("123456789012345678"),
            Ok(123_456_789_012_345_678)
        );
        assert_eq!(
            payment_code("123456 789012 345678"),
            Ok(123_456_789_012_345_678)
        );
        assert!(payment_code("12345678901234567").is_err());
        assert!(payment_code("1234567890123456789").is_err());
        assert!(payment_code("012345678901234567").is_err());
        assert!(payment_code("12345678901234567x").is_err());
        assert!(payment_code("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("15m"), Ok(900_000));
        assert_eq!(duration_ms("30s"), Ok(30_000));
        assert_eq!(duration_ms("30"), Ok(30_000));
        assert_eq!(duration_ms("1500ms"), Ok(1_500));
        assert_eq!(duration_ms("2h"), Ok(7_200_000));
        assert_eq!(duration_ms("1d"), Ok(86_400_000));
        assert!(duration_ms("m").is_err());
        assert!(duration_ms("5w").is_err());
        assert!(duration_ms("99999999999999999999d").is_err());
    }
}

/// A cursor as `payrail history` prints it: 32 hex digits.
pub fn cursor(text: &str) -> Result<u128, String> {
    u128::from_str_radix(text.trim(), 16).map_err(|_| {
        format!("{text:?} is not a history cursor (32 hex digits, as printed under a page)")
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A time as ns since the epoch: ns as a number, a UTC date `YYYY-MM-DD`,
/// or `YYYY-MM-DDTHH:MM:SS` (a trailing `Z` is allowed).
pub fn time_ns(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ns) = text.parse::<u64>() {
        return Ok(ns);
    }
    let bad = || {
        format!(
            "{text:?} is not a time: use 2026-11-22, 2026-11-22T08:30:00Z or ns since the epoch"
        )
    };
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let number = |part: &str, min: i64, max: i64| -> Result<i64, String> {
        match part.parse::<i64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(bad()),
        }
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = parts[..] else {
        return Err(bad());
    };
    let days = days_from_civil(
        number(year, 1970, 2262)?,
        number(month, 1, 12)?,
        number(day, 1, 31)?,
    );
    let mut seconds = days * 86_400;
    if let Some(time) = time {
        let parts: Vec<&str> = time.split(':').collect();
        let [hours, minutes, secs] = parts[..] else {
            return Err(bad());
        };
        seconds +=
            number(hours, 0, 23)? * 3_600 + number(minutes, 0, 59)? * 60 + number(secs, 0, 59)?;
    }
    u64::try_from(seconds)
        .ok()
        .and_then(|seconds| seconds.checked_mul(1_000_000_000))
        .ok_or_else(bad)
}

/// `2026-11-22 08:30:00.123` (UTC) of ns since the epoch.
pub fn format_time(ns: u64) -> String {
    let seconds = (ns / 1_000_000_000) as i64;
    let millis = (ns / 1_000_000) % 1_000;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn times_parse_and_format_in_utc() {
        assert_eq!(time_ns("1970-01-01"), Ok(0));
        assert_eq!(
            time_ns("2026-11-22T08:30:05Z"),
            Ok(1_795_336_205_000_000_000)
        );
        assert_eq!(time_ns("42"), Ok(42));
        assert_eq!(
            format_time(1_795_336_205_123_000_000),
            "2026-11-22 08:30:05.123"
        );
        assert!(time_ns("2026-13-01").is_err());
        assert!(time_ns("yesterday").is_err());
        assert_eq!(cursor("ff"), Ok(255));
    }
}
