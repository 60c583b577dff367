//! The result status of every command: one flat, stable enum.
//!
//! Numbers are grouped in ranges by the stage that decides them and are never
//! renumbered or reused; new statuses take the next free number in their
//! range. docs/protocol.md lists them all.
//!
//! | range   | decided by |
//! |---------|------------|
//! | 0       | success    |
//! | 1-9     | idempotency |
//! | 10-39   | accounts   |
//! | 40-59   | amounts and balances |
//! | 60-79   | withdrawal holds |
//! | 80-99   | risk rules, spending categories and budgets |
//! | 100-119 | QR payments, payment codes, refunds |
//! | 120-139 | QR payloads refused at the edge |
//! | 140-169 | FX: rates, quotes, conversions, liquidity |
//! | 170-189 | funding instruments: bank cards and bank accounts |
//! | 900-999 | the pipeline around the ledger (log, shutdown) |

use std::fmt;

macro_rules! statuses {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $snake:literal, $text:literal; )*) => {
        /// Outcome of one command. Rejections are values, not errors.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum Status {
            $( $(#[doc = $doc])* $name = $code, )*
        }

        impl Status {
            /// Every status, in numeric order.
            pub const ALL: &'static [Status] = &[$(Status::$name,)*];

            /// The status with this wire code.
            pub fn from_code(code: u16) -> Option<Status> {
                match code {
                    $( $code => Some(Status::$name), )*
                    _ => None,
                }
            }

            /// Stable snake_case name, as used in JSON and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $( Status::$name => $snake, )*
                }
            }

            /// A sentence a person can read.
            pub fn description(self) -> &'static str {
                match self {
                    $( Status::$name => $text, )*
                }
            }
        }
    };
}

statuses! {
    /// The command was applied (or, for a query, answered).
    Ok = 0, "ok", "done";
    /// The command id was used before for a command with different fields.
    IdReusedWithDifferentFields = 1, "id_reused_with_different_fields", "this command id was already used for a different command";
    /// No command with this id is remembered (never seen, or past retention).
    UnknownCommand = 2, "unknown_command", "no command with this id is known";

    /// An account with this id already exists.
    AccountExists = 10, "account_exists", "an account with this id already exists";
    /// No account has this id.
    UnknownAccount = 11, "unknown_account", "no account has this id";
    /// A transfer's paying account does not exist.
    UnknownDebitAccount = 12, "unknown_debit_account", "the paying account does not exist";
    /// A transfer's receiving account does not exist.
    UnknownCreditAccount = 13, "unknown_credit_account", "the receiving account does not exist";
    /// The account is frozen: no money moves in or out.
    AccountFrozen = 14, "account_frozen", "the account is frozen";
    /// The account is closed.
    AccountClosed = 15, "account_closed", "the account is closed";
    /// Unfreeze of an account that is not frozen.
    AccountNotFrozen = 16, "account_not_frozen", "the account is not frozen";
    /// Freeze of an account that is already frozen.
    AccountAlreadyFrozen = 17, "account_already_frozen", "the account is already frozen";
    /// Close of an account whose balance is not zero.
    AccountNotEmpty = 18, "account_not_empty", "the account's balance is not zero";
    /// Close of an account with pending withdrawal holds.
    AccountHasHolds = 19, "account_has_holds", "the account has pending withdrawal holds";
    /// The account id is in the range reserved for house accounts.
    ReservedAccountId = 20, "reserved_account_id", "account ids from 0xFF00000000000000 up are reserved for house accounts";
    /// House accounts are moved only by the engine itself.
    HouseAccountNotAllowed = 21, "house_account_not_allowed", "house accounts cannot be used in this command";
    /// The command applies to customer accounts only.
    NotACustomer = 22, "not_a_customer", "the account is not a customer account";
    /// KYC tier out of range.
    InvalidKycTier = 23, "invalid_kyc_tier", "the KYC tier is out of range";
    /// Accounts can be opened as customer or merchant only.
    InvalidAccountKind = 24, "invalid_account_kind", "accounts can be opened as customer or merchant only";
    /// Not an ISO 4217 currency with minor units.
    UnknownCurrency = 25, "unknown_currency", "not an ISO 4217 currency with minor units";
    /// Merchant category code out of range, or given for a customer.
    InvalidMcc = 26, "invalid_mcc", "the merchant category code is invalid";
    /// The ledger holds as many accounts as it may.
    LedgerFull = 27, "ledger_full", "the ledger holds as many accounts as it may";

    /// Amounts must be at least one minor unit.
    AmountMustBePositive = 40, "amount_must_be_positive", "the amount must be positive";
    /// The amount does not fit in a balance.
    AmountTooLarge = 41, "amount_too_large", "the amount is too large";
    /// The command's currency differs from an account's currency.
    CurrencyMismatch = 42, "currency_mismatch", "the currency does not match the account's currency";
    /// The paying account's available balance is below the amount.
    InsufficientFunds = 43, "insufficient_funds", "insufficient funds";
    /// The receiving balance would overflow.
    Overflow = 44, "overflow", "the balance would overflow";
    /// A transfer from an account to itself.
    SameAccount = 45, "same_account", "the paying and the receiving account are the same";

    /// No withdrawal hold has this id.
    HoldNotFound = 60, "hold_not_found", "no withdrawal hold has this id";
    /// The hold timed out before it was posted or voided; the money is released.
    HoldExpired = 61, "hold_expired", "the withdrawal hold expired";
    /// The hold was posted already.
    HoldAlreadyPosted = 62, "hold_already_posted", "the withdrawal hold was already posted";
    /// The hold was voided already.
    HoldAlreadyVoided = 63, "hold_already_voided", "the withdrawal hold was already voided";
    /// The hold timeout is out of range.
    TimeoutOutOfRange = 64, "timeout_out_of_range", "the hold timeout is out of range";
    /// The account has as many pending holds as it may.
    TooManyHolds = 65, "too_many_holds", "the account has too many pending holds";

    /// A risk rule declined the payment; the result's detail names the rule.
    RiskDeclined = 80, "risk_declined", "a risk rule declined the payment";
    /// A risk rule asks for a second factor: re-submit with a new id and the
    /// step-up flag once the customer passed it.
    StepUpRequired = 81, "step_up_required", "the payment needs a second factor; re-submit with step-up proof";
    /// A risk rule declined the payment and froze the account until an
    /// operator unfreezes it.
    RiskFrozen = 82, "risk_frozen", "a risk rule declined the payment and froze the account";
    /// The device, location or country sent with the payment is out of range.
    InvalidRiskContext = 83, "invalid_risk_context", "the payment's device, location or country is invalid";
    /// No spending category has this code.
    UnknownCategory = 84, "unknown_category", "no spending category has this code";
    /// Spending of that month is no longer kept (six months are).
    MonthNotKept = 85, "month_not_kept", "spending of that month is no longer kept";

    /// No merchant is registered under any key the QR code carries.
    UnknownMerchant = 100, "unknown_merchant", "the QR code's merchant is not registered with payrail";
    /// The merchant key is registered to another account.
    MerchantKeyTaken = 101, "merchant_key_taken", "this merchant key is registered to another account";
    /// The account is not a merchant account.
    NotAMerchant = 102, "not_a_merchant", "the account is not a merchant account";
    /// No live or recent payment code has this number.
    UnknownPaymentCode = 103, "unknown_payment_code", "no payment code has this number";
    /// The payment code's lifetime is over.
    PaymentCodeExpired = 104, "payment_code_expired", "the payment code has expired";
    /// The payment code was charged already (codes are single use).
    PaymentCodeUsed = 105, "payment_code_used", "the payment code was already used";
    /// The customer has as many live payment codes as they may.
    TooManyPaymentCodes = 106, "too_many_payment_codes", "the customer has too many live payment codes";
    /// The code number is live or recently used by someone; draw another.
    PaymentCodeTaken = 107, "payment_code_taken", "this payment code number is taken; draw another";
    /// Payment codes are exactly 18 decimal digits.
    InvalidPaymentCode = 108, "invalid_payment_code", "payment codes are 18 decimal digits";
    /// The payment code lifetime is out of range.
    LifetimeOutOfRange = 109, "lifetime_out_of_range", "the payment code lifetime is out of range";
    /// No payment has this id (never, not a payment, or past retention).
    PaymentNotFound = 110, "payment_not_found", "no refundable payment has this id";
    /// Refunds would exceed what was paid.
    RefundExceedsPayment = 111, "refund_exceeds_payment", "the refunds would exceed the amount paid";
    /// Too many unknown payment codes from this gateway: charging is paused.
    PaymentCodeThrottled = 112, "payment_code_throttled", "too many unknown payment codes from this gateway; retry later";

    /// The QR payload's structure is broken: truncated, bad lengths, bad tags.
    QrMalformed = 120, "qr_malformed", "the QR payload is malformed";
    /// The QR payload's CRC (tag 63) does not match its contents.
    QrCrcMismatch = 121, "qr_crc_mismatch", "the QR payload's checksum does not match";
    /// The QR payload repeats a tag.
    QrDuplicateTag = 122, "qr_duplicate_tag", "the QR payload repeats a tag";
    /// A QR field is longer than the specification allows.
    QrValueTooLong = 123, "qr_value_too_long", "a QR field is too long";
    /// A mandatory QR field is missing.
    QrMissingTag = 124, "qr_missing_tag", "the QR payload lacks a mandatory field";
    /// A QR field has an invalid value (MCC, amount, tip, country ...).
    QrBadField = 125, "qr_bad_field", "a QR field has an invalid value";
    /// The QR currency (tag 53) is not an ISO 4217 currency with minor units.
    QrUnknownCurrency = 126, "qr_unknown_currency", "the QR code's currency is unknown";
    /// A static code needs the amount from the payer.
    QrAmountRequired = 127, "qr_amount_required", "this static QR code needs an amount from the payer";
    /// The payer's amount differs from the dynamic code's amount.
    QrAmountMismatch = 128, "qr_amount_mismatch", "the amount differs from the amount in the QR code";
    /// The code names no merchant account (tags 26-51).
    QrNoMerchantAccount = 129, "qr_no_merchant_account", "the QR code names no merchant account";
    /// A tip was given for a code that does not ask for one.
    QrTipNotAllowed = 130, "qr_tip_not_allowed", "this QR code does not take a tip";

    /// No FX rate is set for the pair, in either direction.
    FxRateUnknown = 140, "fx_rate_unknown", "no FX rate is set for this currency pair";
    /// The pair's rate is older than its validity: set a fresh one.
    FxRateStale = 141, "fx_rate_stale", "the FX rate is older than its validity";
    /// A rate must be positive, with at most 18 decimal places.
    FxRateInvalid = 142, "fx_rate_invalid", "the FX rate must be positive with at most 18 decimal places";
    /// The spread is above the most the engine allows.
    FxSpreadOutOfRange = 143, "fx_spread_out_of_range", "the FX spread is out of range";
    /// The rate's validity period is out of range.
    FxValidityOutOfRange = 144, "fx_validity_out_of_range", "the FX rate's validity period is out of range";
    /// A rate or conversion between a currency and itself.
    FxSameCurrency = 145, "fx_same_currency", "a conversion needs two different currencies";
    /// Conversions move value between accounts of one owner only.
    FxNotSameOwner = 146, "fx_not_same_owner", "both accounts of a conversion must belong to the same owner";
    /// No quote has this id (never, or forgotten after its expiry).
    FxQuoteNotFound = 147, "fx_quote_not_found", "no FX quote has this id";
    /// The quote's lifetime is over.
    FxQuoteExpired = 148, "fx_quote_expired", "the FX quote has expired";
    /// The quote was converted already (quotes are single use).
    FxQuoteUsed = 149, "fx_quote_used", "the FX quote was already converted";
    /// The quote was made for another paying account.
    FxQuoteNotYours = 150, "fx_quote_not_yours", "the FX quote belongs to another account";
    /// The account has as many open quotes as it may, or the table is full.
    FxTooManyQuotes = 151, "fx_too_many_quotes", "too many open FX quotes";
    /// The quote lifetime is out of range.
    FxQuoteTtlOutOfRange = 152, "fx_quote_ttl_out_of_range", "the FX quote lifetime is out of range";
    /// The conversion would take a house FX liquidity account below its floor.
    FxLiquidityFloor = 153, "fx_liquidity_floor", "the conversion would take the house FX liquidity below its floor";
    /// After the spread and rounding the customer would receive nothing.
    FxAmountTooSmall = 154, "fx_amount_too_small", "the amount is too small to convert";
    /// The rate table holds as many pairs as it may.
    FxTooManyRates = 155, "fx_too_many_rates", "the FX rate table is full";
    /// A rate source is 1 to 8 printable ASCII characters.
    FxInvalidSource = 156, "fx_invalid_source", "the FX rate source must be 1 to 8 printable ASCII characters";

    /// The customer has no instrument with this number (never bound, or
    /// unbound and forgotten since).
    UnknownInstrument = 170, "unknown_instrument", "the customer has no funding instrument with this number";
    /// The instrument's verification has not passed (not reported yet, or failed).
    InstrumentUnverified = 171, "instrument_unverified", "the funding instrument is not verified";
    /// The instrument belongs to another customer than the account's.
    InstrumentNotYours = 172, "instrument_not_yours", "the funding instrument belongs to another customer";
    /// The instrument was unbound.
    InstrumentUnbound = 173, "instrument_unbound", "the funding instrument was unbound";
    /// A withdrawal goes to an instrument of the account's currency only.
    InstrumentCurrencyMismatch = 174, "instrument_currency_mismatch", "the funding instrument's currency differs from the account's";
    /// The ledger's instrument table is full.
    InstrumentsFull = 175, "instruments_full", "the ledger holds as many funding instruments as it may";
    /// The customer has as many bound instruments as they may.
    TooManyInstruments = 176, "too_many_instruments", "the customer has too many bound funding instruments";
    /// A field of the bind looks like a full card number: payrail takes the
    /// gateway's token, never the number.
    LooksLikeCardNumber = 177, "looks_like_card_number", "a field looks like a full card number; send the gateway's token instead";
    /// The customer already has an instrument with this number.
    InstrumentExists = 178, "instrument_exists", "the customer already has a funding instrument with this number";
    /// The customer has bound instruments: top-ups and withdrawals must name one.
    InstrumentRequired = 179, "instrument_required", "the customer has bound funding instruments; name one";
    /// Token, bank, country or last four digits malformed.
    InvalidInstrument = 180, "invalid_instrument", "the instrument's token, bank, country or last four digits are invalid";
    /// Verification of an instrument already verified.
    InstrumentAlreadyVerified = 181, "instrument_already_verified", "the funding instrument is already verified";

    /// The command could not be made durable (disk full, I/O error); it was not applied.
    StorageFailed = 900, "storage_failed", "the command could not be written to the log and was not applied";
    /// The engine is shutting down or has stopped accepting writes.
    Unavailable = 901, "unavailable", "the engine is not accepting writes";
}

impl Status {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl bincode::Encode for Status {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.code().encode(encoder)
    }
}

impl<Context> bincode::Decode<Context> for Status {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let code = u16::decode(decoder)?;
        Status::from_code(code).ok_or_else(|| {
            bincode::error::DecodeError::OtherString(format!("unknown status code {code}"))
        })
    }
}
bincode::impl_borrow_decode!(Status);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case() {
        for status in Status::ALL {
            let name = status.name();
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(Status::InsufficientFunds.name(), "insufficient_funds");
        assert_eq!(Status::Ok.name(), "ok");
    }

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &status in Status::ALL {
            assert!(seen.insert(status.code()), "{status:?} reuses a code");
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
        assert_eq!(Status::from_code(3), None);
    }
}
