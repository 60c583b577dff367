//! Payload text to [`MerchantQr`].
//!
//! Order of checks, so every refusal is the first thing wrong in a fixed order:
//! 1. size: empty, or over 512 characters;
//! 2. integrity: if the payload ends in "6304" and four hex digits, the CRC
//!    must match before anything else is believed (a damaged payload says
//!    `crc_mismatch`, not whatever its damage happens to look like);
//! 3. framing: every top-level data object, then no duplicates, then the CRC
//!    present, last and well-formed;
//! 4. presence: 00, a merchant account (02-51), 53 and 58;
//! 5. values, currency first (amounts need its decimals), then by tag.
//!
//! Templates 26-51, 62 and 64 must hold well-formed sub-fields; an unreserved
//! template (80-99) that does not is kept raw (`MerchantQr::unreserved_raw`).

use payrail_engine::Currency;
use rust_decimal::Decimal;

use super::crc::{crc16, parse_hex4, CRC_HEADER};
use super::error::QrError;
use super::tlv::{Field, Fields};
use super::{
    AdditionalData, Initiation, LanguageTemplate, MerchantAccountInfo, MerchantQr, Template, Tip,
    PAYLOAD_CHARS_MAX,
};

const TAG_FORMAT_INDICATOR: u8 = 0;
const TAG_INITIATION: u8 = 1;
const TAG_MCC: u8 = 52;
const TAG_CURRENCY: u8 = 53;
const TAG_AMOUNT: u8 = 54;
const TAG_TIP: u8 = 55;
const TAG_FEE_FIXED: u8 = 56;
const TAG_FEE_PERCENT: u8 = 57;
const TAG_COUNTRY: u8 = 58;
const TAG_NAME: u8 = 59;
const TAG_CITY: u8 = 60;
const TAG_POSTAL_CODE: u8 = 61;
const TAG_ADDITIONAL: u8 = 62;
const TAG_CRC: u8 = 63;
const TAG_LANGUAGE: u8 = 64;

/// Longest value the parser accepts for the fixed-format data objects. Free
/// text (names, cities, references) may use the whole 99 characters: real
/// codes exceed EMVCo's 25-character name and 15-character city (docs/qr.md).
pub(crate) fn parse_chars_max(tag: u8) -> usize {
    match tag {
        TAG_FORMAT_INDICATOR | TAG_INITIATION | TAG_TIP | TAG_COUNTRY => 2,
        TAG_CURRENCY => 3,
        TAG_MCC | TAG_CRC => 4,
        TAG_FEE_PERCENT => 5,
        TAG_AMOUNT | TAG_FEE_FIXED => 13,
        _ => super::VALUE_CHARS_MAX,
    }
}

/// Parses an EMVCo Merchant-Presented Mode payload (docs/qr.md).
///
/// Surrounding whitespace is ignored. Never panics, whatever the input.
pub fn parse(payload: &str) -> Result<MerchantQr, QrError> {
    let payload = payload.trim_matches(|c: char| c.is_ascii_whitespace());
    if payload.is_empty() {
        return Err(QrError::Empty);
    }
    // A payload of at most 512 bytes has at most 512 characters; only longer
    // ones need counting.
    if payload.len() > PAYLOAD_CHARS_MAX {
        let len = payload.chars().count();
        if len > PAYLOAD_CHARS_MAX {
            return Err(QrError::PayloadTooLong {
                len,
                max: PAYLOAD_CHARS_MAX,
            });
        }
    }
    check_crc_at_end(payload)?;

    // Framing: the top-level data objects, by tag.
    let mut fields: [Option<Field<'_>>; 100] = [None; 100];
    let mut last_tag = None;
    for field in Fields::new(payload, 0) {
        let field = field?;
        let slot = &mut fields[usize::from(field.tag)];
        if slot.is_some() {
            return Err(QrError::DuplicateTag { tag: field.tag });
        }
        *slot = Some(field);
        last_tag = Some(field.tag);
    }
    let crc_field = fields[usize::from(TAG_CRC)].ok_or(QrError::MissingCrc)?;
    if last_tag != Some(TAG_CRC) {
        return Err(QrError::CrcNotLast { at: crc_field.at });
    }
    let crc = parse_hex4(crc_field.value.as_bytes()).ok_or(QrError::BadCrc { at: crc_field.at })?;
    let get = |tag: u8| fields[usize::from(tag)];

    // Presence of what payrail cannot do without.
    for tag in [TAG_FORMAT_INDICATOR, TAG_CURRENCY, TAG_COUNTRY] {
        if get(tag).is_none() {
            return Err(QrError::MissingTag { tag });
        }
    }
    if !(2..=51).any(|tag| get(tag).is_some()) {
        return Err(QrError::MissingMerchantAccount);
    }
    for tag in 0..=99u8 {
        if let Some(field) = get(tag) {
            let max = parse_chars_max(tag);
            // A value of at most `max` bytes has at most `max` characters.
            if field.value.len() > max {
                let len = field.value.chars().count();
                if len > max {
                    return Err(QrError::ValueTooLong { tag, len, max });
                }
            }
        }
    }

    // Values: currency first, as amounts depend on its decimals.
    let currency = parse_currency(get(TAG_CURRENCY).map_or("", |f| f.value))?;
    let format_indicator = get(TAG_FORMAT_INDICATOR).map_or("", |f| f.value).to_owned();
    let initiation = match get(TAG_INITIATION).map(|f| f.value) {
        None | Some("11") => Initiation::Static,
        Some("12") => Initiation::Dynamic,
        Some(_) => return Err(QrError::BadInitiation),
    };

    let mut network_accounts = Vec::new();
    for tag in 2..=25u8 {
        if let Some(field) = get(tag) {
            network_accounts.push((tag, field.value.to_owned()));
        }
    }
    let mut merchant_accounts = Vec::new();
    for tag in 26..=51u8 {
        if let Some(field) = get(tag) {
            let mut sub_fields = parse_template(field)?;
            let gui = match sub_fields.first() {
                Some((0, _)) => sub_fields.remove(0).1,
                _ => String::new(),
            };
            merchant_accounts.push(MerchantAccountInfo {
                tag,
                gui,
                fields: sub_fields,
            });
        }
    }

    let mcc = get(TAG_MCC).map(|f| parse_mcc(f.value)).transpose()?;
    let amount = get(TAG_AMOUNT)
        .map(|f| parse_amount(f.value, TAG_AMOUNT, currency))
        .transpose()?;
    let tip = parse_tip(
        get(TAG_TIP).map(|f| f.value),
        get(TAG_FEE_FIXED).map(|f| f.value),
        get(TAG_FEE_PERCENT).map(|f| f.value),
        currency,
    )?;
    let country = get(TAG_COUNTRY).map_or("", |f| f.value);
    if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic())) {
        return Err(QrError::BadCountry);
    }
    let text = |tag: u8| get(tag).map(|f| f.value.to_owned());

    let additional = match get(TAG_ADDITIONAL) {
        None => AdditionalData::default(),
        Some(field) => {
            let mut additional = AdditionalData::default();
            for (tag, value) in parse_template(field)? {
                match additional.named_mut(tag) {
                    Some(slot) => *slot = Some(value),
                    None => additional.other.push((tag, value)),
                }
            }
            additional
        }
    };
    let language = get(TAG_LANGUAGE)
        .map(|field| -> Result<LanguageTemplate, QrError> {
            let mut language = LanguageTemplate::default();
            for (tag, value) in parse_template(field)? {
                match tag {
                    0 => language.language = Some(value),
                    1 => language.name = Some(value),
                    2 => language.city = Some(value),
                    _ => language.other.push((tag, value)),
                }
            }
            Ok(language)
        })
        .transpose()?;
    let mut reserved = Vec::new();
    for tag in 65..=79u8 {
        if let Some(field) = get(tag) {
            reserved.push((tag, field.value.to_owned()));
        }
    }
    // Unreserved templates belong to a payment system, which may put
    // anything in them (DuitNow: a signature). The top-level framing above
    // already proved where each one ends, so a value that is not sub-fields
    // is kept as read instead of refused.
    let mut unreserved = Vec::new();
    let mut unreserved_raw = Vec::new();
    for tag in 80..=99u8 {
        if let Some(field) = get(tag) {
            match parse_template(field) {
                Ok(fields) => unreserved.push(Template { tag, fields }),
                Err(_) => unreserved_raw.push((tag, field.value.to_owned())),
            }
        }
    }

    Ok(MerchantQr {
        format_indicator,
        initiation,
        network_accounts,
        merchant_accounts,
        mcc,
        currency,
        amount,
        tip,
        country: country.to_owned(),
        name: text(TAG_NAME),
        city: text(TAG_CITY),
        postal_code: text(TAG_POSTAL_CODE),
        additional,
        language,
        reserved,
        unreserved,
        unreserved_raw,
        crc,
    })
}

/// If the payload ends with a CRC data object ("6304" and four hex digits),
/// checks it over every byte before those four digits.
fn check_crc_at_end(payload: &str) -> Result<(), QrError> {
    let bytes = payload.as_bytes();
    let Some(tail_start) = bytes.len().checked_sub(8) else {
        return Ok(());
    };
    let tail = &bytes[tail_start..];
    if !tail.starts_with(CRC_HEADER.as_bytes()) {
        return Ok(());
    }
    let Some(found) = parse_hex4(&tail[4..]) else {
        return Ok(());
    };
    let expected = crc16(&bytes[..tail_start + 4]);
    if expected != found {
        return Err(QrError::CrcMismatch { expected, found });
    }
    Ok(())
}

/// The sub-fields of a template, in ascending sub-tag order.
fn parse_template(template: Field<'_>) -> Result<Vec<(u8, String)>, QrError> {
    let mut seen = [false; 100];
    let mut sub_fields = Vec::new();
    // Sub-fields start after the template's four header characters.
    for field in Fields::new(template.value, template.at + 4) {
        let field = field?;
        let seen_before = &mut seen[usize::from(field.tag)];
        if *seen_before {
            return Err(QrError::DuplicateSubTag {
                template: template.tag,
                tag: field.tag,
            });
        }
        *seen_before = true;
        sub_fields.push((field.tag, field.value.to_owned()));
    }
    sub_fields.sort_by_key(|(tag, _)| *tag);
    Ok(sub_fields)
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

fn parse_mcc(value: &str) -> Result<u16, QrError> {
    if value.len() != 4 || !all_digits(value) {
        return Err(QrError::BadMcc);
    }
    value.parse().map_err(|_| QrError::BadMcc)
}

fn parse_currency(value: &str) -> Result<Currency, QrError> {
    if value.len() != 3 || !all_digits(value) {
        return Err(QrError::BadCurrency);
    }
    let numeric: u16 = value.parse().map_err(|_| QrError::BadCurrency)?;
    Currency::from_numeric(numeric).ok_or(QrError::UnknownCurrency(numeric))
}

/// A non-negative decimal: digits, optionally a '.' and more digits ("12",
/// "12.5", "12." and "12.50" are accepted; ".5", "-1", "1,5" and "1e3" are not).
/// Returns the value and its number of decimals.
fn parse_decimal(value: &str) -> Option<(Decimal, usize)> {
    let (integer, fraction) = value.split_once('.').unwrap_or((value, ""));
    if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) {
        return None;
    }
    // At most 13 characters (checked before), so the digits fit in u64.
    let mut mantissa: u64 = 0;
    for byte in integer.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    let scale = u32::try_from(fraction.len()).ok()?;
    let decimal = Decimal::try_from_i128_with_scale(i128::from(mantissa), scale).ok()?;
    Some((decimal, fraction.len()))
}

fn parse_amount(value: &str, tag: u8, currency: Currency) -> Result<Decimal, QrError> {
    let (amount, decimals) = parse_decimal(value).ok_or(QrError::BadAmount { tag })?;
    let max = currency.minor_units() as usize;
    if decimals > max {
        return Err(QrError::TooManyDecimals { tag, decimals, max });
    }
    Ok(amount)
}

fn parse_tip(
    indicator: Option<&str>,
    fee_fixed: Option<&str>,
    fee_percent: Option<&str>,
    currency: Currency,
) -> Result<Option<Tip>, QrError> {
    let unexpected = |fixed_allowed: bool, percent_allowed: bool| {
        if fee_fixed.is_some() && !fixed_allowed {
            return Err(QrError::UnexpectedFee { tag: TAG_FEE_FIXED });
        }
        if fee_percent.is_some() && !percent_allowed {
            return Err(QrError::UnexpectedFee {
                tag: TAG_FEE_PERCENT,
            });
        }
        Ok(())
    };
    match indicator {
        None => {
            unexpected(false, false)?;
            Ok(None)
        }
        Some("01") => {
            unexpected(false, false)?;
            Ok(Some(Tip::Prompt))
        }
        Some("02") => {
            unexpected(true, false)?;
            let fee = fee_fixed.ok_or(QrError::MissingTag { tag: TAG_FEE_FIXED })?;
            Ok(Some(Tip::FixedFee(parse_amount(
                fee,
                TAG_FEE_FIXED,
                currency,
            )?)))
        }
        Some("03") => {
            unexpected(false, true)?;
            let fee = fee_percent.ok_or(QrError::MissingTag {
                tag: TAG_FEE_PERCENT,
            })?;
            let (percent, _) = parse_decimal(fee).ok_or(QrError::BadPercentage)?;
            if percent > Decimal::ONE_HUNDRED {
                return Err(QrError::BadPercentage);
            }
            Ok(Some(Tip::PercentFee(percent)))
        }
        Some(_) => Err(QrError::BadTipIndicator),
    }
}
