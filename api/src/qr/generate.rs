//! [`MerchantQr`] to payload text.
//!
//! payrail generates strict EMVCo codes, whatever the parser tolerates: data
//! objects in ascending ID order (00 first, the CRC last), sub-fields in
//! ascending order, 52, 59 and 60 present, EMVCo's maximum lengths (name 25,
//! city 15, additional data 25 ...), lengths counted in characters.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::crc::{crc16, CRC_HEADER};
use super::error::QrError;
use super::{Initiation, MerchantQr, Tip, PAYLOAD_CHARS_MAX, VALUE_CHARS_MAX};

/// EMVCo's maximum length of each top-level data object.
fn emvco_chars_max(tag: u8) -> usize {
    match tag {
        0 | 1 | 55 | 58 => 2,
        53 => 3,
        52 => 4,
        57 => 5,
        61 => 10,
        54 | 56 => 13,
        60 => 15,
        59 => 25,
        _ => VALUE_CHARS_MAX,
    }
}

/// EMVCo's maximum length of a sub-field of the additional data template (62).
fn additional_chars_max(tag: u8) -> usize {
    match tag {
        1..=8 => 25,
        9 => 3,
        _ => VALUE_CHARS_MAX,
    }
}

/// EMVCo's maximum length of a sub-field of the language template (64).
fn language_chars_max(tag: u8) -> usize {
    match tag {
        0 => 2,
        1 => 25,
        2 => 15,
        _ => VALUE_CHARS_MAX,
    }
}

/// Longest globally unique identifier (sub-field 00 of 26-51).
const GUI_CHARS_MAX: usize = 32;

/// Encodes `qr` as a payload with its CRC (`qr.crc` is ignored).
///
/// Refuses, with the error the parser would give for the same fault, what
/// cannot be encoded or what payrail does not emit: empty values, values over
/// EMVCo's maximum length, duplicate or out-of-range tags, more decimals than
/// the currency has, no merchant account, no 52, 59 or 60, a payload over 512
/// characters.
pub fn generate(qr: &MerchantQr) -> Result<String, QrError> {
    let mut out = String::with_capacity(256);
    put(&mut out, 0, &qr.format_indicator, emvco_chars_max(0))?;
    let initiation = match qr.initiation {
        Initiation::Static => "11",
        Initiation::Dynamic => "12",
    };
    put(&mut out, 1, initiation, 2)?;

    if qr.network_accounts.is_empty() && qr.merchant_accounts.is_empty() {
        return Err(QrError::MissingMerchantAccount);
    }
    for (tag, value) in sorted_unique(&qr.network_accounts, 2..=25, None)? {
        put(&mut out, tag, value, VALUE_CHARS_MAX)?;
    }
    let mut accounts: Vec<_> = qr.merchant_accounts.iter().collect();
    accounts.sort_by_key(|account| account.tag);
    let mut previous = None;
    for account in accounts {
        if !(26..=51).contains(&account.tag) {
            return Err(QrError::TagOutOfRange { tag: account.tag });
        }
        if previous == Some(account.tag) {
            return Err(QrError::DuplicateTag { tag: account.tag });
        }
        previous = Some(account.tag);
        let mut template = String::new();
        if !account.gui.is_empty() {
            put(&mut template, 0, &account.gui, GUI_CHARS_MAX)?;
        }
        for (tag, value) in sorted_unique(&account.fields, 1..=99, Some(account.tag))? {
            put(&mut template, tag, value, VALUE_CHARS_MAX)?;
        }
        put(&mut out, account.tag, &template, VALUE_CHARS_MAX)?;
    }

    let mcc = qr.mcc.ok_or(QrError::MissingTag { tag: 52 })?;
    if mcc > payrail_engine::limits::MCC_MAX {
        return Err(QrError::BadMcc);
    }
    put(&mut out, 52, &format!("{mcc:04}"), 4)?;
    if !qr.currency.is_valid() {
        return Err(QrError::UnknownCurrency(qr.currency.numeric()));
    }
    put(&mut out, 53, &format!("{:03}", qr.currency.numeric()), 3)?;
    if let Some(amount) = qr.amount {
        put_amount(&mut out, 54, amount, qr)?;
    }
    match qr.tip {
        None => {}
        Some(Tip::Prompt) => put(&mut out, 55, "01", 2)?,
        Some(Tip::FixedFee(fee)) => {
            put(&mut out, 55, "02", 2)?;
            put_amount(&mut out, 56, fee, qr)?;
        }
        Some(Tip::PercentFee(percent)) => {
            put(&mut out, 55, "03", 2)?;
            if percent.is_sign_negative() || percent > Decimal::ONE_HUNDRED {
                return Err(QrError::BadPercentage);
            }
            put(&mut out, 57, &percent.to_string(), emvco_chars_max(57))?;
        }
    }
    if !(qr.country.len() == 2 && qr.country.bytes().all(|b| b.is_ascii_alphabetic())) {
        return Err(QrError::BadCountry);
    }
    put(&mut out, 58, &qr.country, 2)?;
    let name = qr.name.as_deref().ok_or(QrError::MissingTag { tag: 59 })?;
    put(&mut out, 59, name, emvco_chars_max(59))?;
    let city = qr.city.as_deref().ok_or(QrError::MissingTag { tag: 60 })?;
    put(&mut out, 60, city, emvco_chars_max(60))?;
    if let Some(postal_code) = &qr.postal_code {
        put(&mut out, 61, postal_code, emvco_chars_max(61))?;
    }

    if !qr.additional.is_empty() {
        let mut template = String::new();
        let mut sub_fields: Vec<(u8, &str)> = qr
            .additional
            .named()
            .into_iter()
            .filter_map(|(tag, value)| value.as_deref().map(|value| (tag, value)))
            .collect();
        for (tag, value) in &qr.additional.other {
            if (1..=9).contains(tag) {
                return Err(QrError::DuplicateSubTag {
                    template: 62,
                    tag: *tag,
                });
            }
            sub_fields.push((*tag, value));
        }
        for (tag, value) in sorted_unique_refs(sub_fields, 0..=99, 62)? {
            put(&mut template, tag, value, additional_chars_max(tag))?;
        }
        put(&mut out, 62, &template, VALUE_CHARS_MAX)?;
    }
    if let Some(language) = &qr.language {
        let mut sub_fields: Vec<(u8, &str)> = [
            (0, &language.language),
            (1, &language.name),
            (2, &language.city),
        ]
        .into_iter()
        .filter_map(|(tag, value)| value.as_deref().map(|value| (tag, value)))
        .collect();
        for (tag, value) in &language.other {
            if (0..=2).contains(tag) {
                return Err(QrError::DuplicateSubTag {
                    template: 64,
                    tag: *tag,
                });
            }
            sub_fields.push((*tag, value));
        }
        let mut template = String::new();
        for (tag, value) in sorted_unique_refs(sub_fields, 0..=99, 64)? {
            put(&mut template, tag, value, language_chars_max(tag))?;
        }
        put(&mut out, 64, &template, VALUE_CHARS_MAX)?;
    }
    for (tag, value) in sorted_unique(&qr.reserved, 65..=79, None)? {
        put(&mut out, tag, value, VALUE_CHARS_MAX)?;
    }
    // Unreserved templates, with sub-fields or raw, in one ascending run.
    let mut templates: Vec<(u8, String)> =
        Vec::with_capacity(qr.unreserved.len() + qr.unreserved_raw.len());
    for unreserved in &qr.unreserved {
        let mut template = String::new();
        for (tag, value) in sorted_unique(&unreserved.fields, 0..=99, Some(unreserved.tag))? {
            put(&mut template, tag, value, VALUE_CHARS_MAX)?;
        }
        templates.push((unreserved.tag, template));
    }
    templates.extend(qr.unreserved_raw.iter().cloned());
    for (tag, value) in sorted_unique(&templates, 80..=99, None)? {
        put(&mut out, tag, value, VALUE_CHARS_MAX)?;
    }

    out.push_str(CRC_HEADER);
    let crc = crc16(out.as_bytes());
    // Writing to a String cannot fail.
    let _ = write!(out, "{crc:04X}");
    let len = out.chars().count();
    if len > PAYLOAD_CHARS_MAX {
        return Err(QrError::PayloadTooLong {
            len,
            max: PAYLOAD_CHARS_MAX,
        });
    }
    Ok(out)
}

/// Appends one data object.
fn put(out: &mut String, tag: u8, value: &str, max: usize) -> Result<(), QrError> {
    let len = value.chars().count();
    if len == 0 {
        return Err(QrError::EmptyValue { tag });
    }
    if len > max {
        return Err(QrError::ValueTooLong { tag, len, max });
    }
    let _ = write!(out, "{tag:02}{len:02}");
    out.push_str(value);
    Ok(())
}

/// An amount (54) or fixed fee (56) in the code's currency.
fn put_amount(out: &mut String, tag: u8, amount: Decimal, qr: &MerchantQr) -> Result<(), QrError> {
    if amount.is_sign_negative() {
        return Err(QrError::BadAmount { tag });
    }
    let decimals = amount.scale() as usize;
    let max = qr.currency.minor_units() as usize;
    if decimals > max {
        return Err(QrError::TooManyDecimals { tag, decimals, max });
    }
    put(out, tag, &amount.to_string(), emvco_chars_max(tag))
}

/// `fields` sorted by tag, refusing tags outside `range` and duplicates
/// (reported as sub-tags of `template` if given, else as top-level tags).
fn sorted_unique(
    fields: &[(u8, String)],
    range: std::ops::RangeInclusive<u8>,
    template: Option<u8>,
) -> Result<Vec<(u8, &str)>, QrError> {
    let refs = fields
        .iter()
        .map(|(tag, value)| (*tag, value.as_str()))
        .collect();
    match template {
        Some(template) => sorted_unique_refs(refs, range, template),
        None => {
            let sorted = sort_checked(refs, &range)?;
            for pair in sorted.windows(2) {
                if pair[0].0 == pair[1].0 {
                    return Err(QrError::DuplicateTag { tag: pair[0].0 });
                }
            }
            Ok(sorted)
        }
    }
}

fn sorted_unique_refs(
    fields: Vec<(u8, &str)>,
    range: std::ops::RangeInclusive<u8>,
    template: u8,
) -> Result<Vec<(u8, &str)>, QrError> {
    let sorted = sort_checked(fields, &range)?;
    for pair in sorted.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(QrError::DuplicateSubTag {
                template,
                tag: pair[0].0,
            });
        }
    }
    Ok(sorted)
}

fn sort_checked<'a>(
    mut fields: Vec<(u8, &'a str)>,
    range: &std::ops::RangeInclusive<u8>,
) -> Result<Vec<(u8, &'a str)>, QrError> {
    if let Some((tag, _)) = fields.iter().find(|(tag, _)| !range.contains(tag)) {
        return Err(QrError::TagOutOfRange { tag: *tag });
    }
    fields.sort_by_key(|(tag, _)| *tag);
    Ok(fields)
}
