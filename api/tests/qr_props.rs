//! Properties of the QR parser and generator: whatever payrail generates
//! parses back to the same fields; no input makes the parser panic; any
//! change to a generated payload is caught.
#![allow(clippy::unwrap_used)]

use payrail_api::qr::{
    self, AdditionalData, Initiation, LanguageTemplate, MerchantAccountInfo, MerchantQr, QrError,
    Template, Tip,
};
use payrail_engine::Currency;
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Currencies with 0, 2 and 3 minor units.
const CURRENCIES: [&str; 9] = [
    "JPY", "VND", "USD", "SGD", "THB", "IDR", "MYR", "BRL", "BHD",
];

/// Free text: ASCII letters, digits and punctuation, and Thai (with a
/// combining mark), Chinese, Vietnamese and accented Latin letters, each
/// counted as one character however many bytes it takes.
fn free_text(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            proptest::char::range('A', 'Z'),
            proptest::char::range('a', 'z'),
            proptest::char::range('0', '9'),
            Just(' '),
            Just('.'),
            Just('-'),
            Just('ไ'),
            Just('ท'),
            Just('ย'),
            Just('้'),
            Just('中'),
            Just('文'),
            Just('ủ'),
            Just('đ'),
            Just('é'),
            Just('ñ'),
        ],
        1..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// An amount in `minor_units` decimals, at most 12 characters long.
fn amount(minor_units: u32) -> impl Strategy<Value = Decimal> {
    (0u64..100_000_000_000, 0..=minor_units).prop_map(|(mantissa, scale)| {
        Decimal::from_i128_with_scale(i128::from(mantissa % 10u64.pow(11 - scale)), scale)
    })
}

fn merchant_account(tag: u8) -> impl Strategy<Value = MerchantAccountInfo> {
    (
        proptest::string::string_regex("[A-Z0-9.]{1,20}").unwrap(),
        btree_map(1u8..=99, free_text(15), 1..=3),
    )
        .prop_map(move |(gui, fields)| MerchantAccountInfo {
            tag,
            gui,
            fields: fields.into_iter().collect(),
        })
}

fn tip(minor_units: u32) -> impl Strategy<Value = Option<Tip>> {
    prop_oneof![
        Just(None),
        Just(Some(Tip::Prompt)),
        amount(minor_units).prop_map(|fee| Some(Tip::FixedFee(fee))),
        (1i64..=9999).prop_map(|hundredths| Some(Tip::PercentFee(Decimal::new(hundredths, 2)))),
    ]
}

fn additional() -> impl Strategy<Value = AdditionalData> {
    (
        btree_map(1u8..=8, free_text(12), 0..=3),
        proptest::option::of(Just("AME".to_owned())),
        proptest::option::of((50u8..=99, free_text(10))),
    )
        .prop_map(|(named, request, other)| {
            let mut data = AdditionalData {
                consumer_data_request: request,
                other: other.into_iter().collect(),
                ..AdditionalData::default()
            };
            for (tag, value) in named {
                let slot = match tag {
                    1 => &mut data.bill_number,
                    2 => &mut data.mobile_number,
                    3 => &mut data.store_label,
                    4 => &mut data.loyalty_number,
                    5 => &mut data.reference_label,
                    6 => &mut data.customer_label,
                    7 => &mut data.terminal_label,
                    _ => &mut data.purpose,
                };
                *slot = Some(value);
            }
            data
        })
}

fn language() -> impl Strategy<Value = Option<LanguageTemplate>> {
    proptest::option::of(
        (
            prop_oneof![Just("ZH"), Just("TH"), Just("VI")],
            free_text(25),
            proptest::option::of(free_text(15)),
        )
            .prop_map(|(language, name, city)| LanguageTemplate {
                language: Some(language.to_owned()),
                name: Some(name),
                city,
                other: Vec::new(),
            }),
    )
}

fn merchant_qr() -> impl Strategy<Value = MerchantQr> {
    (0..CURRENCIES.len()).prop_flat_map(|index| {
        let currency: Currency = CURRENCIES[index].parse().unwrap();
        let minor_units = currency.minor_units();
        let accounts = btree_set(26u8..=51, 1..=3)
            .prop_flat_map(|tags| tags.into_iter().map(merchant_account).collect::<Vec<_>>());
        (
            (
                prop_oneof![Just("01"), Just("02")],
                prop_oneof![Just(Initiation::Static), Just(Initiation::Dynamic)],
                proptest::option::of((2u8..=25, "[0-9]{8,16}")),
                accounts,
                0u16..=9999,
                proptest::option::of(amount(minor_units)),
                tip(minor_units),
            ),
            (
                "[A-Z]{2}",
                free_text(25),
                free_text(15),
                proptest::option::of("[0-9]{5,10}"),
                additional(),
                language(),
                proptest::option::of((80u8..=89, btree_map(0u8..=99, free_text(10), 1..=2))),
                // A raw unreserved template, like DuitNow's signature in 82:
                // base64 text starting with a letter, so not sub-fields.
                proptest::option::of((90u8..=99, "[A-Za-z][A-Za-z0-9+/=]{0,60}")),
            ),
        )
            .prop_map(
                move |(
                    (format, initiation, network, accounts, mcc, amount, tip),
                    (country, name, city, postal_code, additional, language, unreserved, raw),
                )| MerchantQr {
                    format_indicator: format.to_owned(),
                    initiation,
                    network_accounts: network.into_iter().collect(),
                    merchant_accounts: accounts,
                    mcc: Some(mcc),
                    currency,
                    amount,
                    tip,
                    country,
                    name: Some(name),
                    city: Some(city),
                    postal_code,
                    additional,
                    language,
                    reserved: Vec::new(),
                    unreserved: unreserved
                        .map(|(tag, fields)| Template {
                            tag,
                            fields: fields.into_iter().collect(),
                        })
                        .into_iter()
                        .collect(),
                    unreserved_raw: raw.into_iter().collect(),
                    crc: 0,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_payloads_parse_back_to_the_same_fields(qr in merchant_qr()) {
        let payload = match qr::generate(&qr) {
            Ok(payload) => payload,
            // Many long fields together can pass 512 characters; that is
            // refused, not truncated.
            Err(QrError::PayloadTooLong { len, max }) => {
                prop_assert!(len > max);
                return Ok(());
            }
            Err(error) => return Err(TestCaseError::fail(format!("{error}"))),
        };
        prop_assert!(payload.chars().count() <= qr::PAYLOAD_CHARS_MAX);
        let parsed = qr::parse(&payload).unwrap();
        prop_assert_eq!(&MerchantQr { crc: parsed.crc, ..qr.clone() }, &parsed);
        prop_assert_eq!(format!("{:04X}", parsed.crc), &payload[payload.len() - 4..]);
        // Canonical: generating again gives the same text.
        prop_assert_eq!(qr::generate(&parsed).unwrap(), payload);
        // The amount converts exactly to minor units.
        if let Some(amount) = qr.amount {
            let minor = parsed.amount_minor().unwrap();
            let scale = Decimal::from(10u64.pow(qr.currency.minor_units()));
            prop_assert_eq!(Decimal::from(minor), amount * scale);
        }
        prop_assert_eq!(parsed.merchant_keys().len(), qr.network_accounts.len() + qr.merchant_accounts.len());
    }

    #[test]
    fn any_ascii_change_before_the_crc_is_caught(
        qr in merchant_qr(),
        position in any::<proptest::sample::Index>(),
        replacement in proptest::char::range('!', '~'),
    ) {
        let Ok(payload) = qr::generate(&qr) else { return Ok(()) };
        let chars: Vec<char> = payload.chars().collect();
        let index = position.index(chars.len() - 8);
        prop_assume!(chars[index].is_ascii() && chars[index] != replacement);
        let mut damaged = chars;
        damaged[index] = replacement;
        let damaged: String = damaged.into_iter().collect();
        let result = qr::parse(&damaged);
        prop_assert!(
            matches!(result, Err(QrError::CrcMismatch { .. })),
            "{:?}", result
        );
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,600}") {
        let _ = qr::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_damaged_payloads(
        qr in merchant_qr(),
        cuts in vec((any::<proptest::sample::Index>(), "\\PC{0,3}"), 1..4),
        recompute_crc in any::<bool>(),
    ) {
        let Ok(payload) = qr::generate(&qr) else { return Ok(()) };
        let mut chars: Vec<char> = payload.chars().collect();
        // Replace, insert or delete a few characters anywhere.
        for (position, insert) in cuts {
            let index = position.index(chars.len() + 1);
            let end = (index + 1).min(chars.len());
            chars.splice(index..end, insert.chars());
        }
        let mut damaged: String = chars.into_iter().collect();
        if recompute_crc && damaged.len() >= 8 && damaged.is_char_boundary(damaged.len() - 4) {
            // Damage that the CRC does not catch must still be framed safely.
            damaged.truncate(damaged.len() - 4);
            let crc = qr::crc16(damaged.as_bytes());
            damaged.push_str(&format!("{crc:04X}"));
        }
        if let Ok(parsed) = qr::parse(&damaged) {
            // Whatever parses also regenerates or is refused by the
            // stricter generator, without panicking either way.
            let _ = qr::generate(&parsed);
            let _ = parsed.amount_minor();
            let _ = parsed.merchant_keys();
        }
    }
}
