//! Why a QR payload was refused (or could not be generated), each reason
//! with a sentence and a stable snake_case code.

/// Why a payload was refused by [`parse`](super::parse), or why
/// [`generate`](super::generate) could not encode a [`MerchantQr`](super::MerchantQr).
///
/// Positions (`at`) count characters, not bytes, from the first character of
/// the payload (after surrounding whitespace is trimmed), and point at the ID
/// of the data object concerned, also inside nested templates.
/// Tags are the two-digit data object IDs as numbers (`tag: 59` is "59").
/// [`QrError::code`] names never change once published.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    #[error("the QR payload is empty")]
    Empty,
    #[error("the QR payload is {len} characters long; EMVCo allows at most {max}")]
    PayloadTooLong { len: usize, max: usize },
    #[error("the data object at character {at} does not start with a two-digit ID")]
    NonDigitId { at: usize },
    #[error(
        "the length of data object {tag:02} at character {at} is not two digits from 01 to 99"
    )]
    BadLength { tag: u8, at: usize },
    #[error(
        "the data object at character {at} runs past the end of the payload or of its template"
    )]
    Truncated { at: usize },
    #[error("data object {tag:02} appears more than once")]
    DuplicateTag { tag: u8 },
    #[error("sub-field {tag:02} appears more than once in template {template:02}")]
    DuplicateSubTag { template: u8, tag: u8 },
    #[error("data object {tag:02} is {len} characters long; at most {max} are allowed")]
    ValueTooLong { tag: u8, len: usize, max: usize },
    #[error("data object {tag:02} has an empty value, which cannot be encoded")]
    EmptyValue { tag: u8 },
    #[error("ID {tag:02} is not allowed where it was used")]
    TagOutOfRange { tag: u8 },
    #[error("the payload has no CRC (data object 63)")]
    MissingCrc,
    #[error("the CRC (data object 63, at character {at}) is not the last data object")]
    CrcNotLast { at: usize },
    #[error("the CRC (data object 63, at character {at}) is not four hexadecimal digits")]
    BadCrc { at: usize },
    #[error(
        "the CRC does not match: the payload says {found:04X}, its content gives {expected:04X}"
    )]
    CrcMismatch { expected: u16, found: u16 },
    #[error("mandatory data object {tag:02} is missing")]
    MissingTag { tag: u8 },
    #[error("the payload has no merchant account information (data objects 02 to 51)")]
    MissingMerchantAccount,
    #[error("the point of initiation method (01) is neither 11 (static) nor 12 (dynamic)")]
    BadInitiation,
    #[error("the merchant category code (52) is not four digits")]
    BadMcc,
    #[error("the transaction currency (53) is not a three-digit ISO 4217 numeric code")]
    BadCurrency,
    #[error("the transaction currency (53) {0:03} is not an ISO 4217 currency payrail can hold money in")]
    UnknownCurrency(u16),
    #[error("data object {tag:02} is not an amount: digits with at most one '.' are expected, and no sign")]
    BadAmount { tag: u8 },
    #[error("data object {tag:02} has {decimals} decimals; its currency allows at most {max}")]
    TooManyDecimals {
        tag: u8,
        decimals: usize,
        max: usize,
    },
    #[error("the tip or convenience indicator (55) is not 01, 02 or 03")]
    BadTipIndicator,
    #[error("data object {tag:02} (a convenience fee) does not go with the tip or convenience indicator (55)")]
    UnexpectedFee { tag: u8 },
    #[error("the percentage convenience fee (57) is not a number from 0 to 100")]
    BadPercentage,
    #[error("the country code (58) is not two letters")]
    BadCountry,
    #[error("the payload does not fit in a QR code symbol")]
    Unrenderable,
}

impl QrError {
    /// Stable snake_case name, for logs, metrics and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            QrError::Empty => "empty",
            QrError::PayloadTooLong { .. } => "payload_too_long",
            QrError::NonDigitId { .. } => "non_digit_id",
            QrError::BadLength { .. } => "bad_length",
            QrError::Truncated { .. } => "truncated",
            QrError::DuplicateTag { .. } => "duplicate_tag",
            QrError::DuplicateSubTag { .. } => "duplicate_sub_tag",
            QrError::ValueTooLong { .. } => "value_too_long",
            QrError::EmptyValue { .. } => "empty_value",
            QrError::TagOutOfRange { .. } => "tag_out_of_range",
            QrError::MissingCrc => "missing_crc",
            QrError::CrcNotLast { .. } => "crc_not_last",
            QrError::BadCrc { .. } => "bad_crc",
            QrError::CrcMismatch { .. } => "crc_mismatch",
            QrError::MissingTag { .. } => "missing_tag",
            QrError::MissingMerchantAccount => "missing_merchant_account",
            QrError::BadInitiation => "bad_initiation",
            QrError::BadMcc => "bad_mcc",
            QrError::BadCurrency => "bad_currency",
            QrError::UnknownCurrency(_) => "unknown_currency",
            QrError::BadAmount { .. } => "bad_amount",
            QrError::TooManyDecimals { .. } => "too_many_decimals",
            QrError::BadTipIndicator => "bad_tip_indicator",
            QrError::UnexpectedFee { .. } => "unexpected_fee",
            QrError::BadPercentage => "bad_percentage",
            QrError::BadCountry => "bad_country",
            QrError::Unrenderable => "unrenderable",
        }
    }
}
