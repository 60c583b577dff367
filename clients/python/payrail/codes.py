"""Stable numeric codes: the statuses of command results and query replies,
and the codes of protocol ``Error`` frames (docs/protocol.md, "Command
statuses" and "Error codes"; never renumbered or reused).

Members are named as the protocol names them (``Status.insufficient_funds``,
``ErrorCode.too_many_in_flight``), so a name in a log, a test or the
documentation is the same everywhere. ``describe()`` gives the sentence.
"""

import enum

class ErrorCode(enum.IntEnum):
    bad_magic = 1
    unsupported_version = 2
    header_checksum = 3
    body_checksum = 4
    frame_too_large = 5
    unknown_message_kind = 6
    malformed_body = 7
    batch_too_large = 8
    empty_batch = 9
    reserved_not_zero = 10
    unexpected_message = 11
    unknown_gateway = 20
    bad_proof = 21
    handshake_required = 22
    not_permitted = 23
    too_many_connections = 30
    too_many_in_flight = 31
    read_timeout = 32
    idle_timeout = 33
    overloaded = 34
    shutting_down = 35
    gateway_too_many_connections = 36
    gateway_too_many_in_flight = 37
    backup_failed = 40
    not_available = 41
    internal = 99

class Status(enum.IntEnum):
    ok = 0
    id_reused_with_different_fields = 1
    unknown_command = 2
    account_exists = 10
    unknown_account = 11
    unknown_debit_account = 12
    unknown_credit_account = 13
    account_frozen = 14
    account_closed = 15
    account_not_frozen = 16
    account_already_frozen = 17
    account_not_empty = 18
    account_has_holds = 19
    reserved_account_id = 20
    house_account_not_allowed = 21
    not_a_customer = 22
    invalid_kyc_tier = 23
    invalid_account_kind = 24
    unknown_currency = 25
    invalid_mcc = 26
    ledger_full = 27
    amount_must_be_positive = 40
    amount_too_large = 41
    currency_mismatch = 42
    insufficient_funds = 43
    overflow = 44
    same_account = 45
    hold_not_found = 60
    hold_expired = 61
    hold_already_posted = 62
    hold_already_voided = 63
    timeout_out_of_range = 64
    too_many_holds = 65
    risk_declined = 80
    step_up_required = 81
    risk_frozen = 82
    invalid_risk_context = 83
    unknown_category = 84
    month_not_kept = 85
    unknown_merchant = 100
    merchant_key_taken = 101
    not_a_merchant = 102
    unknown_payment_code = 103
    payment_code_expired = 104
    payment_code_used = 105
    too_many_payment_codes = 106
    payment_code_taken = 107
    invalid_payment_code = 108
    lifetime_out_of_range = 109
    payment_not_found = 110
    refund_exceeds_payment = 111
    payment_code_throttled = 112
    qr_malformed = 120
    qr_crc_mismatch = 121
    qr_duplicate_tag = 122
    qr_value_too_long = 123
    qr_missing_tag = 124
    qr_bad_field = 125
    qr_unknown_currency = 126
    qr_amount_required = 127
    qr_amount_mismatch = 128
    qr_no_merchant_account = 129
    qr_tip_not_allowed = 130
    fx_rate_unknown = 140
    fx_rate_stale = 141
    fx_rate_invalid = 142
    fx_spread_out_of_range = 143
    fx_validity_out_of_range = 144
    fx_same_currency = 145
    fx_not_same_owner = 146
    fx_quote_not_found = 147
    fx_quote_expired = 148
    fx_quote_used = 149
    fx_quote_not_yours = 150
    fx_too_many_quotes = 151
    fx_quote_ttl_out_of_range = 152
    fx_liquidity_floor = 153
    fx_amount_too_small = 154
    fx_too_many_rates = 155
    fx_invalid_source = 156
    unknown_instrument = 170
    instrument_unverified = 171
    instrument_not_yours = 172
    instrument_unbound = 173
    instrument_currency_mismatch = 174
    instruments_full = 175
    too_many_instruments = 176
    looks_like_card_number = 177
    instrument_exists = 178
    instrument_required = 179
    invalid_instrument = 180
    instrument_already_verified = 181
    storage_failed = 900
    unavailable = 901

_ERROR_DESCRIPTIONS = {
    1: 'The frame does not start with the magic bytes "PRL1".',
    2: 'The frame uses a protocol version this server does not speak.',
    3: 'The header checksum does not match the header.',
    4: 'The body checksum does not match the body.',
    5: 'The frame is larger than the receiver accepts.',
    6: "The frame's message kind is unknown.",
    7: "The frame's body does not decode as the message its kind names.",
    8: 'The batch holds more entries than the receiver accepts.',
    9: 'The batch is empty.',
    10: 'The reserved header field is not zero.',
    11: 'The message is not expected at this point of the conversation.',
    20: 'No gateway with this name is configured.',
    21: "The proof in Hello does not match the gateway's secret and the challenge.",
    22: 'The connection must complete the handshake before sending requests.',
    23: 'The gateway is not permitted to make this request.',
    30: 'The server has as many connections as it accepts.',
    31: 'The connection has as many requests in flight as it may.',
    32: 'A frame took too long to arrive.',
    33: 'The connection was idle for too long.',
    34: 'The server is overloaded; retry later.',
    35: 'The server is shutting down.',
    36: 'The gateway has as many connections as it may open.',
    37: 'The gateway has as many commands in flight as it may.',
    40: 'The backup could not be written.',
    41: 'The server cannot answer this request.',
    99: 'The server failed internally.',
}
_STATUS_DESCRIPTIONS = {
    0: 'done',
    1: 'this command id was already used for a different command',
    2: 'no command with this id is known',
    10: 'an account with this id already exists',
    11: 'no account has this id',
    12: 'the paying account does not exist',
    13: 'the receiving account does not exist',
    14: 'the account is frozen',
    15: 'the account is closed',
    16: 'the account is not frozen',
    17: 'the account is already frozen',
    18: "the account's balance is not zero",
    19: 'the account has pending withdrawal holds',
    20: 'account ids from 0xFF00000000000000 up are reserved for house accounts',
    21: 'house accounts cannot be used in this command',
    22: 'the account is not a customer account',
    23: 'the KYC tier is out of range',
    24: 'accounts can be opened as customer or merchant only',
    25: 'not an ISO 4217 currency with minor units',
    26: 'the merchant category code is invalid',
    27: 'the ledger holds as many accounts as it may',
    40: 'the amount must be positive',
    41: 'the amount is too large',
    42: "the currency does not match the account's currency",
    43: 'insufficient funds',
    44: 'the balance would overflow',
    45: 'the paying and the receiving account are the same',
    60: 'no withdrawal hold has this id',
    61: 'the withdrawal hold expired',
    62: 'the withdrawal hold was already posted',
    63: 'the withdrawal hold was already voided',
    64: 'the hold timeout is out of range',
    65: 'the account has too many pending holds',
    80: 'a risk rule declined the payment',
    81: 'the payment needs a second factor; re-submit with step-up proof',
    82: 'a risk rule declined the payment and froze the account',
    83: "the payment's device, location or country is invalid",
    84: 'no spending category has this code',
    85: 'spending of that month is no longer kept',
    100: "the QR code's merchant is not registered with payrail",
    101: 'this merchant key is registered to another account',
    102: 'the account is not a merchant account',
    103: 'no payment code has this number',
    104: 'the payment code has expired',
    105: 'the payment code was already used',
    106: 'the customer has too many live payment codes',
    107: 'this payment code number is taken; draw another',
    108: 'payment codes are 18 decimal digits',
    109: 'the payment code lifetime is out of range',
    110: 'no refundable payment has this id',
    111: 'the refunds would exceed the amount paid',
    112: 'too many unknown payment codes from this gateway; retry later',
    120: 'the QR payload is malformed',
    121: "the QR payload's checksum does not match",
    122: 'the QR payload repeats a tag',
    123: 'a QR field is too long',
    124: 'the QR payload lacks a mandatory field',
    125: 'a QR field has an invalid value',
    126: "the QR code's currency is unknown",
    127: 'this static QR code needs an amount from the payer',
    128: 'the amount differs from the amount in the QR code',
    129: 'the QR code names no merchant account',
    130: 'this QR code does not take a tip',
    140: 'no FX rate is set for this currency pair',
    141: 'the FX rate is older than its validity',
    142: 'the FX rate must be positive with at most 18 decimal places',
    143: 'the FX spread is out of range',
    144: "the FX rate's validity period is out of range",
    145: 'a conversion needs two different currencies',
    146: 'both accounts of a conversion must belong to the same owner',
    147: 'no FX quote has this id',
    148: 'the FX quote has expired',
    149: 'the FX quote was already converted',
    150: 'the FX quote belongs to another account',
    151: 'too many open FX quotes',
    152: 'the FX quote lifetime is out of range',
    153: 'the conversion would take the house FX liquidity below its floor',
    154: 'the amount is too small to convert',
    155: 'the FX rate table is full',
    156: 'the FX rate source must be 1 to 8 printable ASCII characters',
    170: 'the customer has no funding instrument with this number',
    171: 'the funding instrument is not verified',
    172: 'the funding instrument belongs to another customer',
    173: 'the funding instrument was unbound',
    174: "the funding instrument's currency differs from the account's",
    175: 'the ledger holds as many funding instruments as it may',
    176: 'the customer has too many bound funding instruments',
    177: "a field looks like a full card number; send the gateway's token instead",
    178: 'the customer already has a funding instrument with this number',
    179: 'the customer has bound funding instruments; name one',
    180: "the instrument's token, bank, country or last four digits are invalid",
    181: 'the funding instrument is already verified',
    900: 'the command could not be written to the log and was not applied',
    901: 'the engine is not accepting writes',
}

def _describe(self):
    """A sentence a person can read."""
    table = _STATUS_DESCRIPTIONS if isinstance(self, Status) else _ERROR_DESCRIPTIONS
    return table[int(self)]


def _str(self):
    return self.name


for _enum in (Status, ErrorCode):
    _enum.describe = _describe
    _enum.__str__ = _str
del _enum
