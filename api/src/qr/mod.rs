//! EMVCo Merchant-Presented Mode (MPM) QR payloads: parse what a customer's
//! app scanned, generate what a merchant displays (docs/qr.md).
//!
//! This is edge code: the engine never parses a payload. The api turns a
//! scanned payload into a [`MerchantQr`], looks its [`MerchantQr::merchant_keys`]
//! up in the merchant directory and sends the ledger plain ids and minor units
//! ([`MerchantQr::amount_minor`]).
//!
//! # Layout
//! - [`parse`](parse()): payload text to [`MerchantQr`], or a precise [`QrError`].
//! - [`generate`](generate()): [`MerchantQr`] to payload text, in canonical order.
//! - [`render_terminal`]: a payload drawn as a QR code with Unicode half blocks.
//! - `tlv`: ID-length-value reading that counts characters, not bytes.
//! - [`crc16`]: CRC-16/CCITT-FALSE, the payload checksum.

mod crc;
mod error;
mod generate;
mod parse;
mod render;
mod tlv;

use payrail_engine::Currency;
use serde::Serialize;

/// Amounts in QR codes are decimals in the currency's major unit; re-exported
/// so callers need no direct dependency to build a [`MerchantQr`].
pub use rust_decimal::Decimal;

pub use crc::crc16;
pub use error::QrError;
pub use generate::generate;
pub use parse::parse;
pub use render::render_terminal;

/// Longest payload, in characters (EMVCo MPM: "shall not exceed 512").
pub const PAYLOAD_CHARS_MAX: usize = 512;

/// Longest value of any data object: its length is two decimal digits.
pub const VALUE_CHARS_MAX: usize = 99;

/// How the code is meant to be used (data object 01).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiation {
    /// "11": the same code for every payment; the payer usually types the amount.
    Static,
    /// "12": a code for one payment, usually carrying its amount.
    Dynamic,
}

/// A tip or convenience fee the code asks for (data objects 55, 56, 57).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Tip {
    /// "01": the payer's app prompts for a tip.
    Prompt,
    /// "02": a fixed convenience fee (56), in the transaction currency.
    FixedFee(Decimal),
    /// "03": a convenience fee as a percentage of the amount (57).
    PercentFee(Decimal),
}

/// A merchant account information template (data objects 26 to 51).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct MerchantAccountInfo {
    /// The data object ID, 26 to 51.
    pub tag: u8,
    /// Globally unique identifier of the scheme (sub-field 00): an AID such as
    /// "A000000677010111" (PromptPay) or a reverse domain name such as
    /// "br.gov.bcb.pix". Empty if the template has none (seen in the wild).
    pub gui: String,
    /// The scheme-specific sub-fields 01 to 99, in ascending sub-tag order.
    pub fields: Vec<(u8, String)>,
}

impl MerchantAccountInfo {
    /// The value of scheme-specific sub-field `tag`, if present.
    pub fn field(&self, tag: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, value)| value.as_str())
    }
}

/// Additional data field template (data object 62).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AdditionalData {
    /// 01
    pub bill_number: Option<String>,
    /// 02
    pub mobile_number: Option<String>,
    /// 03
    pub store_label: Option<String>,
    /// 04
    pub loyalty_number: Option<String>,
    /// 05: the payment reference most schemes use (PIX txid, QRIS, VietQR).
    pub reference_label: Option<String>,
    /// 06
    pub customer_label: Option<String>,
    /// 07
    pub terminal_label: Option<String>,
    /// 08
    pub purpose: Option<String>,
    /// 09: what the payer's app must ask for: "A" address, "M" mobile, "E" email.
    pub consumer_data_request: Option<String>,
    /// Sub-fields 00 and 10 to 99 (reserved, and payment system specific
    /// templates 50 to 99), raw, in ascending sub-tag order.
    pub other: Vec<(u8, String)>,
}

impl AdditionalData {
    /// Whether no sub-field is present (then data object 62 is absent).
    pub fn is_empty(&self) -> bool {
        self.named().iter().all(|(_, value)| value.is_none()) && self.other.is_empty()
    }

    /// The named sub-fields 01 to 09 with their sub-tags.
    pub(crate) fn named(&self) -> [(u8, &Option<String>); 9] {
        [
            (1, &self.bill_number),
            (2, &self.mobile_number),
            (3, &self.store_label),
            (4, &self.loyalty_number),
            (5, &self.reference_label),
            (6, &self.customer_label),
            (7, &self.terminal_label),
            (8, &self.purpose),
            (9, &self.consumer_data_request),
        ]
    }

    pub(crate) fn named_mut(&mut self, tag: u8) -> Option<&mut Option<String>> {
        match tag {
            1 => Some(&mut self.bill_number),
            2 => Some(&mut self.mobile_number),
            3 => Some(&mut self.store_label),
            4 => Some(&mut self.loyalty_number),
            5 => Some(&mut self.reference_label),
            6 => Some(&mut self.customer_label),
            7 => Some(&mut self.terminal_label),
            8 => Some(&mut self.purpose),
            9 => Some(&mut self.consumer_data_request),
            _ => None,
        }
    }
}

/// Merchant information in an alternate language (data object 64).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct LanguageTemplate {
    /// 00: ISO 639 two-letter language code, such as "ZH" or "TH".
    pub language: Option<String>,
    /// 01: merchant name in that language.
    pub name: Option<String>,
    /// 02: merchant city in that language.
    pub city: Option<String>,
    /// Sub-fields 03 to 99 (reserved), raw, in ascending sub-tag order.
    pub other: Vec<(u8, String)>,
}

/// A template whose sub-fields payrail keeps raw: the unreserved templates
/// 80 to 99.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Template {
    pub tag: u8,
    /// All sub-fields, 00 included, in ascending sub-tag order.
    pub fields: Vec<(u8, String)>,
}

/// One decoded Merchant-Presented Mode QR code.
///
/// Lists are in ascending tag order whatever the payload's order, so two
/// payloads with the same data objects parse to equal values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct MerchantQr {
    /// 00: "01" in EMVCo MPM; other values (DuitNow uses "02") are kept as read.
    pub format_indicator: String,
    /// 01: static when absent.
    pub initiation: Initiation,
    /// 02 to 25: card network merchant accounts (Visa 02-03, Mastercard 04-05,
    /// EMVCo 06-08, Discover 09-10, Amex 11-12, JCB 13-14, UnionPay 15-16,
    /// EMVCo 17-25). Primitive values, not templates.
    pub network_accounts: Vec<(u8, String)>,
    /// 26 to 51: scheme merchant account templates (PIX, PromptPay, PayNow ...).
    pub merchant_accounts: Vec<MerchantAccountInfo>,
    /// 52: ISO 18245 merchant category code; absent in PromptPay and VietQR codes.
    pub mcc: Option<u16>,
    /// 53: transaction currency.
    #[serde(serialize_with = "serialize_currency")]
    pub currency: Currency,
    /// 54: amount in the currency's major unit, never with more decimals than
    /// the currency has.
    pub amount: Option<Decimal>,
    /// 55, with 56 or 57.
    pub tip: Option<Tip>,
    /// 58: ISO 3166-1 alpha-2 country code, as read.
    pub country: String,
    /// 59: merchant name; absent in PromptPay and VietQR codes.
    pub name: Option<String>,
    /// 60: merchant city; absent in PromptPay and VietQR codes.
    pub city: Option<String>,
    /// 61
    pub postal_code: Option<String>,
    /// 62: all `None` when absent.
    pub additional: AdditionalData,
    /// 64
    pub language: Option<LanguageTemplate>,
    /// 65 to 79: reserved for future use by EMVCo, raw.
    pub reserved: Vec<(u8, String)>,
    /// 80 to 99: unreserved templates whose value reads as sub-fields
    /// (ID-length-value, each ID once), sub-fields raw.
    pub unreserved: Vec<Template>,
    /// 80 to 99: unreserved templates whose value is not sub-fields, kept as
    /// read (DuitNow codes carry a signature in 82). Shown by `qr decode`,
    /// ignored for payment.
    pub unreserved_raw: Vec<(u8, String)>,
    /// 63: the checksum as read. [`generate`] ignores it and computes its own.
    pub crc: u16,
}

fn serialize_currency<S: serde::Serializer>(
    currency: &Currency,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(currency.code())
}

impl MerchantQr {
    /// A static code for one merchant account: the payer types the amount.
    /// Fill in the other fields (additional data, language ...) as needed.
    pub fn static_code(
        account: MerchantAccountInfo,
        mcc: u16,
        currency: Currency,
        country: &str,
        name: &str,
        city: &str,
    ) -> MerchantQr {
        MerchantQr {
            format_indicator: "01".to_owned(),
            initiation: Initiation::Static,
            network_accounts: Vec::new(),
            merchant_accounts: vec![account],
            mcc: Some(mcc),
            currency,
            amount: None,
            tip: None,
            country: country.to_owned(),
            name: Some(name.to_owned()),
            city: Some(city.to_owned()),
            postal_code: None,
            additional: AdditionalData::default(),
            language: None,
            reserved: Vec::new(),
            unreserved: Vec::new(),
            unreserved_raw: Vec::new(),
            crc: 0,
        }
    }

    /// A dynamic code for one payment of `amount` (major units, such as 12.50).
    pub fn dynamic_code(
        account: MerchantAccountInfo,
        mcc: u16,
        currency: Currency,
        country: &str,
        name: &str,
        city: &str,
        amount: Decimal,
    ) -> MerchantQr {
        MerchantQr {
            initiation: Initiation::Dynamic,
            amount: Some(amount),
            ..MerchantQr::static_code(account, mcc, currency, country, name, city)
        }
    }

    /// The amount in minor units of its currency (12.50 SGD is 1250), if the
    /// code has an amount and it converts exactly. `parse` guarantees it does.
    pub fn amount_minor(&self) -> Option<u64> {
        to_minor(self.amount?, self.currency)
    }

    /// The keys a merchant's onboarding registers to map a scanned code to
    /// its account: one (GUI, merchant id) pair per merchant account.
    ///
    /// The GUI is upper-cased (real codes write "br.gov.bcb.pix" and
    /// "BR.GOV.BCB.PIX"). The merchant id is the first scheme-specific
    /// sub-field (the lowest sub-tag from 01), except for schemes whose first
    /// sub-field does not identify the merchant:
    /// - PIX (`BR.GOV.BCB.PIX`): the key, 01 (or the URL, 25, of a dynamic code);
    /// - PayNow (`SG.PAYNOW`): proxy type and proxy, 01 and 02, as "2:201403121W";
    /// - DuitNow (`A0000006150001`): acquirer and merchant id, 01 and 02;
    /// - QRIS (`ID.CO.QRIS.WWW`): the national merchant id, 02.
    ///
    /// Card network accounts (02 to 25) give ("EMVCO:nn", value), nn being
    /// the data object ID; so does a template without a GUI (seen in Thai bill
    /// payment codes). A template without any scheme-specific sub-field gives
    /// no key.
    pub fn merchant_keys(&self) -> Vec<(String, String)> {
        let mut keys =
            Vec::with_capacity(self.network_accounts.len() + self.merchant_accounts.len());
        for (tag, value) in &self.network_accounts {
            keys.push((format!("EMVCO:{tag:02}"), value.clone()));
        }
        for account in &self.merchant_accounts {
            let gui = if account.gui.is_empty() {
                format!("EMVCO:{:02}", account.tag)
            } else {
                account.gui.to_ascii_uppercase()
            };
            if let Some(id) = merchant_id(&gui, account) {
                keys.push((gui, id));
            }
        }
        keys
    }
}

/// The merchant id of one account template (see [`MerchantQr::merchant_keys`]).
fn merchant_id(gui: &str, account: &MerchantAccountInfo) -> Option<String> {
    let joined = |tags: &[u8]| -> Option<String> {
        let parts: Vec<&str> = tags.iter().filter_map(|&tag| account.field(tag)).collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(":"))
        }
    };
    match gui {
        "BR.GOV.BCB.PIX" => account
            .field(1)
            .or_else(|| account.field(25))
            .map(str::to_owned),
        "SG.PAYNOW" | "A0000006150001" => joined(&[1, 2]),
        "ID.CO.QRIS.WWW" => account.field(2).map(str::to_owned),
        _ => account.fields.first().map(|(_, value)| value.clone()),
    }
}

/// `amount` in minor units of `currency`, if it is non-negative, has no more
/// decimals than the currency and fits in u64.
pub(crate) fn to_minor(amount: Decimal, currency: Currency) -> Option<u64> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return None;
    }
    let scale = Decimal::from(10u64.checked_pow(currency.minor_units())?);
    let minor = amount.checked_mul(scale)?;
    if !minor.fract().is_zero() {
        return None;
    }
    u64::try_from(minor.trunc()).ok()
}
