package payrail.client;

/**
 * The outcome of one command or query: {@code ok}, or why the ledger refused it. A command's
 * rejection is not an error of the protocol: it is a status in the results and the rest of the
 * batch is unaffected. Codes are never renumbered or reused (docs/protocol.md, "Command statuses").
 */
public enum Status {
    /** done */
    OK(0, "ok", "done"),
    /** this command id was already used for a different command */
    ID_REUSED_WITH_DIFFERENT_FIELDS(1, "id_reused_with_different_fields", "this command id was already used for a different command"),
    /** no command with this id is known */
    UNKNOWN_COMMAND(2, "unknown_command", "no command with this id is known"),
    /** an account with this id already exists */
    ACCOUNT_EXISTS(10, "account_exists", "an account with this id already exists"),
    /** no account has this id */
    UNKNOWN_ACCOUNT(11, "unknown_account", "no account has this id"),
    /** the paying account does not exist */
    UNKNOWN_DEBIT_ACCOUNT(12, "unknown_debit_account", "the paying account does not exist"),
    /** the receiving account does not exist */
    UNKNOWN_CREDIT_ACCOUNT(13, "unknown_credit_account", "the receiving account does not exist"),
    /** the account is frozen */
    ACCOUNT_FROZEN(14, "account_frozen", "the account is frozen"),
    /** the account is closed */
    ACCOUNT_CLOSED(15, "account_closed", "the account is closed"),
    /** the account is not frozen */
    ACCOUNT_NOT_FROZEN(16, "account_not_frozen", "the account is not frozen"),
    /** the account is already frozen */
    ACCOUNT_ALREADY_FROZEN(17, "account_already_frozen", "the account is already frozen"),
    /** the account's balance is not zero */
    ACCOUNT_NOT_EMPTY(18, "account_not_empty", "the account's balance is not zero"),
    /** the account has pending withdrawal holds */
    ACCOUNT_HAS_HOLDS(19, "account_has_holds", "the account has pending withdrawal holds"),
    /** account ids from 0xFF00000000000000 up are reserved for house accounts */
    RESERVED_ACCOUNT_ID(20, "reserved_account_id", "account ids from 0xFF00000000000000 up are reserved for house accounts"),
    /** house accounts cannot be used in this command */
    HOUSE_ACCOUNT_NOT_ALLOWED(21, "house_account_not_allowed", "house accounts cannot be used in this command"),
    /** the account is not a customer account */
    NOT_A_CUSTOMER(22, "not_a_customer", "the account is not a customer account"),
    /** the KYC tier is out of range */
    INVALID_KYC_TIER(23, "invalid_kyc_tier", "the KYC tier is out of range"),
    /** accounts can be opened as customer or merchant only */
    INVALID_ACCOUNT_KIND(24, "invalid_account_kind", "accounts can be opened as customer or merchant only"),
    /** not an ISO 4217 currency with minor units */
    UNKNOWN_CURRENCY(25, "unknown_currency", "not an ISO 4217 currency with minor units"),
    /** the merchant category code is invalid */
    INVALID_MCC(26, "invalid_mcc", "the merchant category code is invalid"),
    /** the ledger holds as many accounts as it may */
    LEDGER_FULL(27, "ledger_full", "the ledger holds as many accounts as it may"),
    /** the amount must be positive */
    AMOUNT_MUST_BE_POSITIVE(40, "amount_must_be_positive", "the amount must be positive"),
    /** the amount is too large */
    AMOUNT_TOO_LARGE(41, "amount_too_large", "the amount is too large"),
    /** the currency does not match the account's currency */
    CURRENCY_MISMATCH(42, "currency_mismatch", "the currency does not match the account's currency"),
    /** insufficient funds */
    INSUFFICIENT_FUNDS(43, "insufficient_funds", "insufficient funds"),
    /** the balance would overflow */
    OVERFLOW(44, "overflow", "the balance would overflow"),
    /** the paying and the receiving account are the same */
    SAME_ACCOUNT(45, "same_account", "the paying and the receiving account are the same"),
    /** no withdrawal hold has this id */
    HOLD_NOT_FOUND(60, "hold_not_found", "no withdrawal hold has this id"),
    /** the withdrawal hold expired */
    HOLD_EXPIRED(61, "hold_expired", "the withdrawal hold expired"),
    /** the withdrawal hold was already posted */
    HOLD_ALREADY_POSTED(62, "hold_already_posted", "the withdrawal hold was already posted"),
    /** the withdrawal hold was already voided */
    HOLD_ALREADY_VOIDED(63, "hold_already_voided", "the withdrawal hold was already voided"),
    /** the hold timeout is out of range */
    TIMEOUT_OUT_OF_RANGE(64, "timeout_out_of_range", "the hold timeout is out of range"),
    /** the account has too many pending holds */
    TOO_MANY_HOLDS(65, "too_many_holds", "the account has too many pending holds"),
    /** a risk rule declined the payment */
    RISK_DECLINED(80, "risk_declined", "a risk rule declined the payment"),
    /** the payment needs a second factor; re-submit with step-up proof */
    STEP_UP_REQUIRED(81, "step_up_required", "the payment needs a second factor; re-submit with step-up proof"),
    /** a risk rule declined the payment and froze the account */
    RISK_FROZEN(82, "risk_frozen", "a risk rule declined the payment and froze the account"),
    /** the payment's device, location or country is invalid */
    INVALID_RISK_CONTEXT(83, "invalid_risk_context", "the payment's device, location or country is invalid"),
    /** no spending category has this code */
    UNKNOWN_CATEGORY(84, "unknown_category", "no spending category has this code"),
    /** spending of that month is no longer kept */
    MONTH_NOT_KEPT(85, "month_not_kept", "spending of that month is no longer kept"),
    /** the QR code's merchant is not registered with payrail */
    UNKNOWN_MERCHANT(100, "unknown_merchant", "the QR code's merchant is not registered with payrail"),
    /** this merchant key is registered to another account */
    MERCHANT_KEY_TAKEN(101, "merchant_key_taken", "this merchant key is registered to another account"),
    /** the account is not a merchant account */
    NOT_A_MERCHANT(102, "not_a_merchant", "the account is not a merchant account"),
    /** no payment code has this number */
    UNKNOWN_PAYMENT_CODE(103, "unknown_payment_code", "no payment code has this number"),
    /** the payment code has expired */
    PAYMENT_CODE_EXPIRED(104, "payment_code_expired", "the payment code has expired"),
    /** the payment code was already used */
    PAYMENT_CODE_USED(105, "payment_code_used", "the payment code was already used"),
    /** the customer has too many live payment codes */
    TOO_MANY_PAYMENT_CODES(106, "too_many_payment_codes", "the customer has too many live payment codes"),
    /** this payment code number is taken; draw another */
    PAYMENT_CODE_TAKEN(107, "payment_code_taken", "this payment code number is taken; draw another"),
    /** payment codes are 18 decimal digits */
    INVALID_PAYMENT_CODE(108, "invalid_payment_code", "payment codes are 18 decimal digits"),
    /** the payment code lifetime is out of range */
    LIFETIME_OUT_OF_RANGE(109, "lifetime_out_of_range", "the payment code lifetime is out of range"),
    /** no refundable payment has this id */
    PAYMENT_NOT_FOUND(110, "payment_not_found", "no refundable payment has this id"),
    /** the refunds would exceed the amount paid */
    REFUND_EXCEEDS_PAYMENT(111, "refund_exceeds_payment", "the refunds would exceed the amount paid"),
    /** too many unknown payment codes from this gateway; retry later */
    PAYMENT_CODE_THROTTLED(112, "payment_code_throttled", "too many unknown payment codes from this gateway; retry later"),
    /** the QR payload is malformed */
    QR_MALFORMED(120, "qr_malformed", "the QR payload is malformed"),
    /** the QR payload's checksum does not match */
    QR_CRC_MISMATCH(121, "qr_crc_mismatch", "the QR payload's checksum does not match"),
    /** the QR payload repeats a tag */
    QR_DUPLICATE_TAG(122, "qr_duplicate_tag", "the QR payload repeats a tag"),
    /** a QR field is too long */
    QR_VALUE_TOO_LONG(123, "qr_value_too_long", "a QR field is too long"),
    /** the QR payload lacks a mandatory field */
    QR_MISSING_TAG(124, "qr_missing_tag", "the QR payload lacks a mandatory field"),
    /** a QR field has an invalid value */
    QR_BAD_FIELD(125, "qr_bad_field", "a QR field has an invalid value"),
    /** the QR code's currency is unknown */
    QR_UNKNOWN_CURRENCY(126, "qr_unknown_currency", "the QR code's currency is unknown"),
    /** this static QR code needs an amount from the payer */
    QR_AMOUNT_REQUIRED(127, "qr_amount_required", "this static QR code needs an amount from the payer"),
    /** the amount differs from the amount in the QR code */
    QR_AMOUNT_MISMATCH(128, "qr_amount_mismatch", "the amount differs from the amount in the QR code"),
    /** the QR code names no merchant account */
    QR_NO_MERCHANT_ACCOUNT(129, "qr_no_merchant_account", "the QR code names no merchant account"),
    /** this QR code does not take a tip */
    QR_TIP_NOT_ALLOWED(130, "qr_tip_not_allowed", "this QR code does not take a tip"),
    /** no FX rate is set for this currency pair */
    FX_RATE_UNKNOWN(140, "fx_rate_unknown", "no FX rate is set for this currency pair"),
    /** the FX rate is older than its validity */
    FX_RATE_STALE(141, "fx_rate_stale", "the FX rate is older than its validity"),
    /** the FX rate must be positive with at most 18 decimal places */
    FX_RATE_INVALID(142, "fx_rate_invalid", "the FX rate must be positive with at most 18 decimal places"),
    /** the FX spread is out of range */
    FX_SPREAD_OUT_OF_RANGE(143, "fx_spread_out_of_range", "the FX spread is out of range"),
    /** the FX rate's validity period is out of range */
    FX_VALIDITY_OUT_OF_RANGE(144, "fx_validity_out_of_range", "the FX rate's validity period is out of range"),
    /** a conversion needs two different currencies */
    FX_SAME_CURRENCY(145, "fx_same_currency", "a conversion needs two different currencies"),
    /** both accounts of a conversion must belong to the same owner */
    FX_NOT_SAME_OWNER(146, "fx_not_same_owner", "both accounts of a conversion must belong to the same owner"),
    /** no FX quote has this id */
    FX_QUOTE_NOT_FOUND(147, "fx_quote_not_found", "no FX quote has this id"),
    /** the FX quote has expired */
    FX_QUOTE_EXPIRED(148, "fx_quote_expired", "the FX quote has expired"),
    /** the FX quote was already converted */
    FX_QUOTE_USED(149, "fx_quote_used", "the FX quote was already converted"),
    /** the FX quote belongs to another account */
    FX_QUOTE_NOT_YOURS(150, "fx_quote_not_yours", "the FX quote belongs to another account"),
    /** too many open FX quotes */
    FX_TOO_MANY_QUOTES(151, "fx_too_many_quotes", "too many open FX quotes"),
    /** the FX quote lifetime is out of range */
    FX_QUOTE_TTL_OUT_OF_RANGE(152, "fx_quote_ttl_out_of_range", "the FX quote lifetime is out of range"),
    /** the conversion would take the house FX liquidity below its floor */
    FX_LIQUIDITY_FLOOR(153, "fx_liquidity_floor", "the conversion would take the house FX liquidity below its floor"),
    /** the amount is too small to convert */
    FX_AMOUNT_TOO_SMALL(154, "fx_amount_too_small", "the amount is too small to convert"),
    /** the FX rate table is full */
    FX_TOO_MANY_RATES(155, "fx_too_many_rates", "the FX rate table is full"),
    /** the FX rate source must be 1 to 8 printable ASCII characters */
    FX_INVALID_SOURCE(156, "fx_invalid_source", "the FX rate source must be 1 to 8 printable ASCII characters"),
    /** the customer has no funding instrument with this number */
    UNKNOWN_INSTRUMENT(170, "unknown_instrument", "the customer has no funding instrument with this number"),
    /** the funding instrument is not verified */
    INSTRUMENT_UNVERIFIED(171, "instrument_unverified", "the funding instrument is not verified"),
    /** the funding instrument belongs to another customer */
    INSTRUMENT_NOT_YOURS(172, "instrument_not_yours", "the funding instrument belongs to another customer"),
    /** the funding instrument was unbound */
    INSTRUMENT_UNBOUND(173, "instrument_unbound", "the funding instrument was unbound"),
    /** the funding instrument's currency differs from the account's */
    INSTRUMENT_CURRENCY_MISMATCH(174, "instrument_currency_mismatch", "the funding instrument's currency differs from the account's"),
    /** the ledger holds as many funding instruments as it may */
    INSTRUMENTS_FULL(175, "instruments_full", "the ledger holds as many funding instruments as it may"),
    /** the customer has too many bound funding instruments */
    TOO_MANY_INSTRUMENTS(176, "too_many_instruments", "the customer has too many bound funding instruments"),
    /** a field looks like a full card number; send the gateway's token instead */
    LOOKS_LIKE_CARD_NUMBER(177, "looks_like_card_number", "a field looks like a full card number; send the gateway's token instead"),
    /** the customer already has a funding instrument with this number */
    INSTRUMENT_EXISTS(178, "instrument_exists", "the customer already has a funding instrument with this number"),
    /** the customer has bound funding instruments; name one */
    INSTRUMENT_REQUIRED(179, "instrument_required", "the customer has bound funding instruments; name one"),
    /** the instrument's token, bank, country or last four digits are invalid */
    INVALID_INSTRUMENT(180, "invalid_instrument", "the instrument's token, bank, country or last four digits are invalid"),
    /** the funding instrument is already verified */
    INSTRUMENT_ALREADY_VERIFIED(181, "instrument_already_verified", "the funding instrument is already verified"),
    /** the command could not be written to the log and was not applied */
    STORAGE_FAILED(900, "storage_failed", "the command could not be written to the log and was not applied"),
    /** the engine is not accepting writes */
    UNAVAILABLE(901, "unavailable", "the engine is not accepting writes");

    private static final Status[] BY_CODE = new Status[1000];

    static {
        for (Status status : values()) {
            BY_CODE[status.code] = status;
        }
    }

    private final int code;
    private final String wireName;
    private final String description;

    Status(int code, String wireName, String description) {
        this.code = code;
        this.wireName = wireName;
        this.description = description;
    }

    /** The numeric code on the wire (u16). */
    public int code() {
        return code;
    }

    /** The stable name, for example {@code insufficient_funds}. */
    public String wireName() {
        return wireName;
    }

    /** A short description in English. */
    public String description() {
        return description;
    }

    /** Whether this is {@link #OK}. */
    public boolean isOk() {
        return this == OK;
    }

    /** The status with this code, or null if this client does not know it. */
    public static Status fromCode(int code) {
        return code >= 0 && code < BY_CODE.length ? BY_CODE[code] : null;
    }

    @Override
    public String toString() {
        return wireName;
    }
}
