"""The gateway wire protocol, without I/O: frames and message bodies.

A frame is a 32-byte header and a body (docs/protocol.md has the byte
diagram and the hex test vectors this module is tested against)::

     0..4   magic b"PRL1"        16..20 body_len u32
     4..6   version u16 = 1      20..24 reserved u32 = 0
     6..8   kind u16             24..28 body_checksum u32 = crc32c(body)
     8..16  request_id u64       28..32 header_checksum u32 = crc32c(header[0..28])

all little-endian. A body is the bincode 2 fixed-int little-endian encoding
of the message's fields: integers at their width, u128 as 16 bytes, a
``String`` or ``Vec`` as a u64 length then the items, an ``Option`` as u8 0
or u8 1 then the value, an enum as a u32 variant index then its fields.

``encode_*`` build the bodies a gateway sends; ``decode_body`` reads the
bodies a server sends; ``FrameReader`` cuts a byte stream into frames.
"""

import hashlib
import hmac
import struct

from . import types as t
from ._crc32c import crc32c
from .codes import ErrorCode, Status
from .errors import EncodeError, ProtocolError

MAGIC = b"PRL1"
VERSION = 1
HEADER_LEN = 32
FRAME_BYTES_MAX_DEFAULT = 1 << 20
FRAME_BYTES_MAX_CEILING = 16 << 20
BATCH_COMMANDS_MAX_DEFAULT = 8190
GATEWAY_NAME_BYTES_MAX = 64
QR_BATCH_MAX = 256
QR_PAYLOAD_BYTES_MAX = 2048
BACKUP_DIR_BYTES_MAX = 1024
POLICY_BYTES_MAX = 32768
ERROR_MESSAGE_BYTES_MAX = 256
STATUS_FIELDS_MAX = 512
STATUS_FIELD_NAME_BYTES_MAX = 64
HISTORY_PAGE_MAX = 1000
COMMAND_LEGS_MAX = 64
MOVEMENT_KIND_BYTES_MAX = 32
U64_MAX = (1 << 64) - 1


class Kind:
    """Message kind numbers, as found in the header. Never renumbered."""

    CHALLENGE = 1
    HELLO = 2
    WELCOME = 3
    SUBMIT = 10
    RESULTS = 11
    QUERY = 12
    QUERY_RESULTS = 13
    SUBMIT_QR = 14
    STATUS = 20
    STATUS_REPLY = 21
    HISTORY_QUERY = 30
    HISTORY_PAGE = 31
    TX_QUERY = 32
    TX_REPLY = 33
    BACKUP = 34
    BACKUP_REPLY = 35
    SET_RISK_POLICY = 40
    RISK_POLICY_SET = 41
    ERROR = 255


KIND_NAMES = {
    value: name.lower() for name, value in vars(Kind).items() if not name.startswith("_")
}

_HEADER_START = struct.Struct("<4sHHQIII")  # bytes 0..28
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<4sHHQIIII")
_M64 = U64_MAX


def frame(request_id, kind, body):
    """One whole frame: header and body."""
    body = bytes(body)
    start = _HEADER_START.pack(MAGIC, VERSION, kind, request_id, len(body), 0, crc32c(body))
    return start + _U32.pack(crc32c(start)) + body


def frame_with_checksum(request_id, kind, body, body_checksum):
    """``frame`` with the body's CRC32C computed beforehand (outside a lock)."""
    start = _HEADER_START.pack(MAGIC, VERSION, kind, request_id, len(body), 0, body_checksum)
    return b"".join((start, _U32.pack(crc32c(start)), body))


def proof(secret, nonce, gateway):
    """``HMAC-SHA256(secret, nonce || gateway)``, the proof sent in Hello."""
    return hmac.new(secret, bytes(nonce) + gateway.encode("utf-8"), hashlib.sha256).digest()


# --------------------------------------------------------------- encoding


def _pack(layout, *values):
    try:
        return layout.pack(*values)
    except struct.error as error:
        raise EncodeError(f"a value is out of its range: {error}") from None


def _string(value, field, maximum):
    data = value.encode("utf-8")
    if len(data) > maximum:
        raise EncodeError(f"{field} is {len(data)} bytes long, at most {maximum} allowed")
    return struct.pack("<Q", len(data)) + data


def _country(country):
    if not country:
        return b"\0\0"
    data = country.encode("ascii", "replace")
    if len(data) != 2:
        raise EncodeError(f"country {country!r} must be two letters (ISO 3166 alpha-2) or empty")
    return data


def _option_u64(value):
    if value is None:
        return b"\0"
    return _pack(_OPTION_SOME_U64, 1, value)


_OPTION_SOME_U64 = struct.Struct("<BQ")
_CONTEXT = "Qhh2sB"  # device, latitude, longitude, country, step_up_verified
_ID = "QQI"  # command id (u128 as two u64) and the kind's variant index

_OPEN_ACCOUNT = struct.Struct("<" + _ID + "QQIHBH")
_DEPOSIT = struct.Struct("<" + _ID + "QQH")
_TRANSFER = struct.Struct("<" + _ID + "QQQH" + _CONTEXT)
_WITHDRAW_HOLD = struct.Struct("<" + _ID + "QQHQ" + _CONTEXT)
_HOLD = struct.Struct("<" + _ID + "QQ")
_ACCOUNT = struct.Struct("<" + _ID + "Q")
_SET_KYC_TIER = struct.Struct("<" + _ID + "QB")
_REGISTER_MERCHANT_KEY = struct.Struct("<" + _ID + "QQQ")
_PAY_MERCHANT_QR = struct.Struct("<" + _ID + "Q" + "QQ" * 4 + "QQHH" + _CONTEXT)
_ISSUE_PAYMENT_CODE = struct.Struct("<" + _ID + "QQQ")
_CHARGE_PAYMENT_CODE = struct.Struct("<" + _ID + "QQQH" + _CONTEXT)
_REFUND = struct.Struct("<" + _ID + "QQQH")
_SET_BUDGET = struct.Struct("<" + _ID + "QB")
_SET_FX_RATE = struct.Struct("<" + _ID + "HHQBHQ8s")
_SET_FX_FLOOR = struct.Struct("<" + _ID + "HQ")
_FX_ORDER = "QQQI"
_FX_QUOTE = struct.Struct("<" + _ID + _FX_ORDER + "Q")
_FX_CONVERT_QUOTE = struct.Struct("<" + _ID + "QQQ")
_FX_CONVERT = struct.Struct("<" + _ID + _FX_ORDER)
_BIND_INSTRUMENT = struct.Struct("<" + _ID + "QII32s16s2s4sH")
_VERIFY_INSTRUMENT = struct.Struct("<" + _ID + "QIB")
_UNBIND_INSTRUMENT = struct.Struct("<" + _ID + "QI")
_DEPOSIT_FROM = struct.Struct("<" + _ID + "QQHQI")
_WITHDRAW_HOLD_TO = struct.Struct("<" + _ID + "QQHQ" + _CONTEXT + "QI")


def _split(value):
    """A u128 as (low, high) u64 halves; out of range fails in struct.pack."""
    return value & _M64, value >> 64


def _context(context):
    return (
        context.device,
        context.latitude_centidegrees,
        context.longitude_centidegrees,
        _country(context.country),
        1 if context.step_up_verified else 0,
    )


def _fx_source(source):
    data = source.encode("ascii", "replace")
    if len(data) > 8:
        raise EncodeError(f"FX source {source!r} is longer than 8 characters")
    return data


def _encode_command(command):
    kind = type(command)
    low, high = _split(command.id)
    if kind is t.Transfer:
        c = command.context
        return _pack(
            _TRANSFER,
            low,
            high,
            2,
            command.from_,
            command.to,
            command.amount,
            command.currency,
            c.device,
            c.latitude_centidegrees,
            c.longitude_centidegrees,
            _country(c.country),
            1 if c.step_up_verified else 0,
        )
    if kind is t.Deposit:
        return _pack(_DEPOSIT, low, high, 1, command.account, command.amount, command.currency)
    if kind is t.OpenAccount:
        return _pack(
            _OPEN_ACCOUNT,
            low,
            high,
            0,
            command.account,
            command.owner,
            int(command.kind),
            command.currency,
            command.kyc_tier,
            command.mcc,
        )
    if kind is t.WithdrawHold:
        return _pack(
            _WITHDRAW_HOLD,
            low,
            high,
            3,
            command.account,
            command.amount,
            command.currency,
            command.timeout_ms,
            *_context(command.context),
        )
    if kind is t.WithdrawPost or kind is t.WithdrawVoid:
        variant = 4 if kind is t.WithdrawPost else 5
        return _pack(_HOLD, low, high, variant, *_split(command.hold))
    if kind is t.Freeze or kind is t.Unfreeze or kind is t.Close:
        variant = {t.Freeze: 6, t.Unfreeze: 7, t.Close: 8}[kind]
        return _pack(_ACCOUNT, low, high, variant, command.account)
    if kind is t.SetKycTier:
        return _pack(_SET_KYC_TIER, low, high, 9, command.account, command.tier)
    if kind is t.RegisterMerchantKey:
        return _pack(
            _REGISTER_MERCHANT_KEY, low, high, 10, command.merchant, *_split(command.key)
        )
    if kind is t.PayMerchantQr:
        keys = tuple(command.keys)
        if len(keys) > 4:
            raise EncodeError(f"a QR payment carries at most 4 merchant keys, not {len(keys)}")
        keys = keys + (0,) * (4 - len(keys))
        halves = [half for key in keys for half in _split(key)]
        return _pack(
            _PAY_MERCHANT_QR,
            low,
            high,
            11,
            command.payer,
            *halves,
            command.amount,
            command.fee,
            command.currency,
            command.mcc,
            *_context(command.context),
        )
    if kind is t.IssuePaymentCode:
        return _pack(
            _ISSUE_PAYMENT_CODE,
            low,
            high,
            12,
            command.customer,
            command.code,
            command.lifetime_ms,
        )
    if kind is t.ChargePaymentCode:
        return _pack(
            _CHARGE_PAYMENT_CODE,
            low,
            high,
            13,
            command.merchant,
            command.code,
            command.amount,
            command.currency,
            *_context(command.context),
        )
    if kind is t.Refund:
        return _pack(
            _REFUND, low, high, 14, *_split(command.payment), command.amount, command.currency
        )
    if kind is t.SetBudget:
        start = _pack(_SET_BUDGET, low, high, 15, command.account, command.category)
        return start + _option_u64(command.budget)
    if kind is t.SetFxRate:
        return _pack(
            _SET_FX_RATE,
            low,
            high,
            16,
            command.base,
            command.quote,
            command.mid.mantissa,
            command.mid.scale,
            command.spread_bps,
            command.valid_ms,
            _fx_source(command.source),
        )
    if kind is t.SetFxFloor:
        return _pack(_SET_FX_FLOOR, low, high, 17, command.currency, command.limit)
    if kind is t.FxQuote:
        order = command.order
        return _pack(
            _FX_QUOTE,
            low,
            high,
            18,
            order.from_,
            order.to,
            order.amount,
            int(order.side),
            command.ttl_ms,
        )
    if kind is t.FxConvertQuote:
        return _pack(_FX_CONVERT_QUOTE, low, high, 19, *_split(command.quote), command.from_)
    if kind is t.FxConvert:
        order = command.order
        return _pack(
            _FX_CONVERT, low, high, 20, order.from_, order.to, order.amount, int(order.side)
        )
    if kind is t.BindInstrument:
        return _pack(
            _BIND_INSTRUMENT,
            low,
            high,
            21,
            command.customer,
            command.number,
            int(command.kind),
            _instrument_text(command.token, "token", 32),
            _instrument_text(command.bank, "bank", 16),
            _instrument_country(command.country),
            _last_four(command.last_four),
            command.currency,
        )
    if kind is t.VerifyInstrument:
        i = command.instrument
        passed = 1 if command.passed else 0
        return _pack(_VERIFY_INSTRUMENT, low, high, 22, i.owner, i.number, passed)
    if kind is t.UnbindInstrument:
        i = command.instrument
        return _pack(_UNBIND_INSTRUMENT, low, high, 23, i.owner, i.number)
    if kind is t.DepositFrom:
        i = command.instrument
        return _pack(
            _DEPOSIT_FROM,
            low,
            high,
            24,
            command.account,
            command.amount,
            command.currency,
            i.owner,
            i.number,
        )
    if kind is t.WithdrawHoldTo:
        i = command.instrument
        return _pack(
            _WITHDRAW_HOLD_TO,
            low,
            high,
            25,
            command.account,
            command.amount,
            command.currency,
            command.timeout_ms,
            *_context(command.context),
            i.owner,
            i.number,
        )
    raise EncodeError(f"{command!r} is not a command")


def looks_like_card_number(text):
    """Whether ``text`` holds 13 to 19 consecutive digits (single spaces or
    dashes between them allowed) that pass the Luhn check, in any window of
    a run of digits: the server's check (docs/instruments.md), so a card
    number is refused before it leaves the gateway."""
    runs, run, after_separator = [], [], False
    data = text.encode("ascii", "replace")
    for position, byte in enumerate(data):
        if 0x30 <= byte <= 0x39:
            run.append(byte - 0x30)
            after_separator = False
            continue
        following = data[position + 1 : position + 2]
        if byte in b" -" and run and not after_separator and following.isdigit():
            after_separator = True
            continue
        runs.append(run)
        run, after_separator = [], False
    runs.append(run)
    return any(
        _passes_luhn(run[start : start + length])
        for run in runs
        for length in range(13, min(19, len(run)) + 1)
        for start in range(len(run) - length + 1)
    )


def _passes_luhn(digits):
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _instrument_text(text, field, maximum):
    """A token or bank: 1 to ``maximum`` printable ASCII characters, no
    space at either end, never something that looks like a card number."""
    data = text.encode("ascii", "replace")
    valid = (
        0 < len(data) <= maximum
        and all(0x20 <= byte < 0x7F for byte in data)
        and data == data.strip(b" ")
    )
    if not valid:
        raise EncodeError(
            f"an instrument's {field} is 1 to {maximum} printable ASCII characters, not {text!r}"
        )
    if looks_like_card_number(text):
        raise EncodeError(
            f"an instrument's {field} looks like a full card number: send the gateway's token"
        )
    return data


def _instrument_country(country):
    data = country.encode("ascii", "replace")
    if len(data) != 2 or not data.isalpha() or not data.isupper():
        raise EncodeError(f"an instrument's country is two capital letters, not {country!r}")
    return data


def _last_four(digits):
    data = digits.encode("ascii", "replace")
    if len(data) != 4 or not data.isdigit():
        raise EncodeError(f"last four digits, not {digits!r}")
    return data


_COUNT = struct.Struct("<Q")


def encode_hello(gateway, proof_bytes):
    if len(proof_bytes) != 32:
        raise EncodeError("a proof is 32 bytes")
    return _string(gateway, "the gateway name", GATEWAY_NAME_BYTES_MAX) + bytes(proof_bytes)


def encode_submit(commands):
    """The body of a ``Submit``."""
    parts = [_COUNT.pack(len(commands))]
    parts.extend(map(_encode_command, commands))
    return b"".join(parts)


def _encode_query(query):
    kind = type(query)
    if kind is t.BalanceQuery:
        return _pack(_QUERY_ACCOUNT, 0, query.account)
    if kind is t.CommandQuery:
        return _pack(_QUERY_ID, 1, *_split(query.id))
    if kind is t.RiskPolicyQuery:
        return _U32.pack(2)
    if kind is t.RiskAuditQuery:
        return _pack(_QUERY_AUDIT, 3, query.account, query.index)
    if kind is t.SpendingQuery:
        return _pack(_QUERY_SPENDING, 4, query.account, query.month, query.category)
    if kind is t.FxRateQuery:
        return _pack(_QUERY_ACCOUNT, 5, query.index)
    if kind is t.InstrumentQuery:
        return _pack(_QUERY_AUDIT, 6, query.account, query.index)
    raise EncodeError(f"{query!r} is not a query")


_QUERY_ACCOUNT = struct.Struct("<IQ")
_QUERY_ID = struct.Struct("<IQQ")
_QUERY_AUDIT = struct.Struct("<IQB")
_QUERY_SPENDING = struct.Struct("<IQIB")


def encode_query(queries):
    """The body of a ``Query``."""
    parts = [_COUNT.pack(len(queries))]
    parts.extend(map(_encode_query, queries))
    return b"".join(parts)


_QR_START = struct.Struct("<QQQ")


def encode_submit_qr(payments):
    """The body of a ``SubmitQr``."""
    parts = [_COUNT.pack(len(payments))]
    for payment in payments:
        low, high = _split(payment.id)
        parts.append(_pack(_QR_START, low, high, payment.payer))
        parts.append(_option_u64(payment.amount))
        parts.append(_option_u64(payment.tip))
        parts.append(_pack(_CONTEXT_ONLY, *_context(payment.context)))
        parts.append(_string(payment.payload, "the QR payload", QR_PAYLOAD_BYTES_MAX))
    return b"".join(parts)


_CONTEXT_ONLY = struct.Struct("<" + _CONTEXT)
_HISTORY_QUERY = struct.Struct("<QQQQQI")


def encode_history_query(account, from_ns, to_ns, cursor, limit):
    return _pack(_HISTORY_QUERY, account, from_ns, to_ns, *_split(cursor), limit)


def encode_tx_query(command_id):
    return _pack(struct.Struct("<QQ"), *_split(command_id))


def encode_backup(directory):
    return _string(directory, "the backup directory", BACKUP_DIR_BYTES_MAX)


def _encode_response(response):
    return _pack(struct.Struct("<BB"), int(response.action), 1 if response.freeze else 0)


def _encode_list(entries, item):
    return _COUNT.pack(len(entries)) + b"".join(item(entry) for entry in entries)


def _encode_limit_rule(rule):
    rows = []
    for row in rule.limits:
        maxima = tuple(row.max)
        if len(maxima) != 4:
            raise EncodeError("a limit row has one maximum per KYC tier 0 to 3")
        rows.append(_pack(struct.Struct("<H4Q"), row.currency, *maxima))
    return _encode_response(rule.response) + _COUNT.pack(len(rows)) + b"".join(rows)


def encode_risk_policy(policy):
    """A ``RiskPolicy`` in its canonical encoding (what ``RiskPolicy::digest``
    hashes): ten options, in declaration order."""
    parts = []

    def option(rule, encode):
        if rule is None:
            parts.append(b"\0")
        else:
            parts.append(b"\1" + encode(rule))

    option(
        policy.blocked_countries,
        lambda rule: _encode_response(rule.response)
        + _encode_list(rule.entries, _country_entry),
    )
    option(
        policy.blocked_merchants,
        lambda rule: _encode_response(rule.response)
        + _encode_list(rule.entries, lambda entry: _pack(_COUNT, entry)),
    )
    option(
        policy.blocked_mccs,
        lambda rule: _encode_response(rule.response)
        + _encode_list(rule.entries, lambda entry: _pack(struct.Struct("<H"), entry)),
    )
    option(policy.single_payment, _encode_limit_rule)
    option(policy.daily_outflow, _encode_limit_rule)
    option(policy.monthly_outflow, _encode_limit_rule)
    option(
        policy.velocity,
        lambda rule: _encode_response(rule.response)
        + _pack(struct.Struct("<BQ"), rule.payments_max, rule.window_ns),
    )
    option(
        policy.new_device,
        lambda rule: _encode_response(rule.response) + (b"\1" if rule.trust_first_device else b"\0"),
    )
    option(
        policy.impossible_travel,
        lambda rule: _encode_response(rule.response)
        + _pack(struct.Struct("<II"), rule.speed_kmh_max, rule.distance_m_min),
    )
    option(
        policy.amount_anomaly,
        lambda rule: _encode_response(rule.response)
        + _pack(struct.Struct("<IBB"), rule.multiplier_milli, rule.history, rule.history_min),
    )
    return b"".join(parts)


def _country_entry(country):
    data = _country(country)
    if data == b"\0\0":
        raise EncodeError("a blocked country is two letters")
    return data


def encode_set_risk_policy(policy):
    """The body of ``SetRiskPolicy``: the policy's length as u64, then the policy."""
    encoded = encode_risk_policy(policy)
    if len(encoded) > POLICY_BYTES_MAX:
        raise EncodeError(
            f"the policy is {len(encoded)} bytes encoded, at most {POLICY_BYTES_MAX} allowed"
        )
    return _COUNT.pack(len(encoded)) + encoded


# --------------------------------------------------------------- decoding


class _Body:
    """Reads a body front to back; every length is checked against its limit
    and against the bytes left before anything is built from it."""

    __slots__ = ("data", "pos", "kind")

    def __init__(self, data, kind):
        self.data = data
        self.pos = 0
        self.kind = kind

    def fail(self, reason):
        return ProtocolError(f"malformed {KIND_NAMES.get(self.kind, self.kind)} body: {reason}")

    def take(self, layout):
        end = self.pos + layout.size
        if end > len(self.data):
            raise self.fail("the body ends early")
        values = layout.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def raw(self, count):
        end = self.pos + count
        if end > len(self.data):
            raise self.fail("the body ends early")
        value = bytes(self.data[self.pos : end])
        self.pos = end
        return value

    def u8(self):
        return self.take(_B)[0]

    def u16(self):
        return self.take(_H)[0]

    def u32(self):
        return self.take(_U32)[0]

    def u64(self):
        return self.take(_COUNT)[0]

    def u128(self):
        low, high = self.take(_QQ)
        return low | high << 64

    def length(self, field, maximum, entry_bytes_min):
        count = self.u64()
        if count > maximum:
            raise self.fail(f"{field} has {count} entries, at most {maximum} allowed")
        if count * entry_bytes_min > len(self.data) - self.pos:
            raise self.fail(f"{field} has {count} entries, more than the bytes left hold")
        return count

    def string(self, field, maximum):
        count = self.length(field, maximum, 1)
        try:
            return self.raw(count).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{field} is not UTF-8") from None

    def option_u64(self):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return self.u64()
        raise self.fail(f"option tag {tag}")

    def boolean(self):
        value = self.u8()
        if value > 1:
            raise self.fail(f"bool {value}")
        return value == 1

    def status(self):
        return self.code(Status, self.u16())

    def code(self, enum, value):
        try:
            return enum(value)
        except ValueError:
            raise self.fail(f"unknown {enum.__name__} code {value}") from None

    def finish(self):
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} bytes after the message")


_B = struct.Struct("<B")
_H = struct.Struct("<H")
_QQ = struct.Struct("<QQ")
_STATUS_DETAIL = struct.Struct("<HI")
_RISK = struct.Struct("<BBQQ")
_BUDGET = struct.Struct("<BQQ")
_FX_AMOUNTS = struct.Struct("<QQQHHQBBQ")
_ACCOUNT_VIEW = struct.Struct("<QQIHIBHqQQq")
_AUDIT_START = struct.Struct("<QQQHQB")
_AUDIT_END = struct.Struct("<QQBHHH")
_SPENDING = struct.Struct("<IBQ")
_FX_RATE_VIEW = struct.Struct("<HHQBH8sQQI")
_MOVEMENT = struct.Struct("<QQQQQQIqqHH")
_INSTRUMENT_VIEW = struct.Struct("<QII32s16s2s4sHIQQB")
_WELCOME = struct.Struct("<III")

_PLAIN_RESULTS = {int(status): t.CommandResult(status) for status in Status}


def _risk_detail(body):
    verdict, rule, limit, observed = body.take(_RISK)
    return t.RiskDetail(body.code(t.Verdict, verdict), body.code(t.RuleId, rule), limit, observed)


def _budget_detail(body):
    category, budget, spent = body.take(_BUDGET)
    return t.BudgetDetail(body.code(t.Category, category), budget, spent)


def _fx_amounts(body):
    pay, fee, receive, pay_currency, receive_currency, mantissa, scale, inverse, expires = (
        body.take(_FX_AMOUNTS)
    )
    if inverse > 1:
        raise body.fail(f"bool {inverse}")
    return t.FxAmounts(
        pay,
        fee,
        receive,
        pay_currency,
        receive_currency,
        t.FxMid(mantissa, scale),
        inverse == 1,
        expires,
    )


def _decode_results(body, batch_max):
    count = body.length("results", batch_max, 6)
    results = []
    append = results.append
    data = body.data
    unpack = _STATUS_DETAIL.unpack_from
    plain = _PLAIN_RESULTS
    for _ in range(count):
        if body.pos + 6 > len(data):
            raise body.fail("the body ends early")
        code, variant = unpack(data, body.pos)
        body.pos += 6
        if variant == 0:
            result = plain.get(code)
            if result is None:
                raise body.fail(f"unknown Status code {code}")
            append(result)
            continue
        status = body.code(Status, code)
        if variant == 1:
            append(t.CommandResult(status, risk=_risk_detail(body)))
        elif variant == 2:
            append(t.CommandResult(status, budget=_budget_detail(body)))
        elif variant == 3:
            risk = _risk_detail(body)
            append(t.CommandResult(status, risk=risk, budget=_budget_detail(body)))
        elif variant == 4:
            append(t.CommandResult(status, fx=_fx_amounts(body)))
        else:
            raise body.fail(f"unknown Detail variant {variant}")
    return t.Results(results)


def _audit_entry(body):
    timestamp, command_low, command_high, currency, amount, verdict = body.take(_AUDIT_START)
    rule = body.u8()
    if rule == 1:
        rule = body.code(t.RuleId, body.u8())
    elif rule == 0:
        rule = None
    else:
        raise body.fail(f"option tag {rule}")
    limit, observed, freeze, fired, flags, stepped_up = body.take(_AUDIT_END)
    if freeze > 1:
        raise body.fail(f"bool {freeze}")
    return t.AuditEntry(
        timestamp,
        command_low | command_high << 64,
        currency,
        amount,
        body.code(t.Verdict, verdict),
        rule,
        limit,
        observed,
        freeze == 1,
        fired,
        flags,
        stepped_up,
    )


def _source_text(raw):
    return raw.rstrip(b"\0").decode("ascii", "replace")


def _query_reply(body):
    variant = body.u32()
    if variant == 0:
        values = list(body.take(_ACCOUNT_VIEW))
        values[2] = body.code(t.AccountKind, values[2])
        values[4] = body.code(t.AccountStatus, values[4])
        return t.AccountView(*values)
    if variant == 1:
        return t.CommandOutcome(body.status())
    if variant == 2:
        return t.Refused(body.status())
    if variant == 3:
        digest = body.raw(32)
        return t.RiskPolicyReply(digest, body.u16())
    if variant == 4:
        entries = body.u8()
        return t.RiskAuditReply(entries, _audit_entry(body))
    if variant == 5:
        month, category, spent = body.take(_SPENDING)
        return t.SpendingReply(month, category, spent, body.option_u64())
    if variant == 6:
        base, quote, mantissa, scale, spread, source, set_at, valid_until, total = body.take(
            _FX_RATE_VIEW
        )
        return t.FxRateView(
            base,
            quote,
            t.FxMid(mantissa, scale),
            spread,
            _source_text(source),
            set_at,
            valid_until,
            total,
        )
    if variant == 7:
        (
            owner,
            number,
            kind,
            token,
            bank,
            country,
            last_four,
            currency,
            state,
            bound_at,
            changed_at,
            total,
        ) = body.take(_INSTRUMENT_VIEW)
        return t.InstrumentView(
            t.InstrumentId(owner, number),
            body.code(t.InstrumentKind, kind),
            _source_text(token),
            _source_text(bank),
            country.decode("ascii", "replace"),
            last_four.decode("ascii", "replace"),
            currency,
            body.code(t.InstrumentState, state),
            bound_at,
            changed_at,
            total,
        )
    raise body.fail(f"unknown QueryReply variant {variant}")


def _movement_instrument(body):
    """A movement's instrument: an option; a valid bank and digits."""
    tag = body.u8()
    if tag == 0:
        return None
    if tag != 1:
        raise body.fail(f"movement.instrument: option tag {tag}")
    number = body.u32()
    bank_bytes = body.raw(16).rstrip(b"\0")
    digits = body.raw(4)
    bank = bank_bytes.decode("ascii", "replace")
    valid_bank = (
        0 < len(bank_bytes)
        and all(0x20 <= b < 0x7F for b in bank_bytes)
        and bank == bank.strip()
        and b"\0" not in bank_bytes
    )
    if not valid_bank or not digits.isdigit():
        raise body.fail("movement.instrument: bank or last four digits malformed")
    return t.MovementInstrument(number, bank, digits.decode("ascii"))


def _movements(body, field, maximum):
    count = body.length(field, maximum, 81)
    movements = []
    for _ in range(count):
        (
            account,
            counterparty,
            command_low,
            command_high,
            sequence,
            timestamp,
            position,
            amount,
            balance,
            currency,
            mcc,
        ) = body.take(_MOVEMENT)
        kind = body.string("movement.kind", MOVEMENT_KIND_BYTES_MAX)
        instrument = _movement_instrument(body)
        movements.append(
            t.Movement(
                account,
                counterparty,
                command_low | command_high << 64,
                sequence,
                timestamp,
                position,
                amount,
                balance,
                currency,
                mcc,
                kind,
                instrument,
            )
        )
    return movements


def decode_body(kind, body, batch_max=BATCH_COMMANDS_MAX_DEFAULT):
    """The message a server sent in a frame of ``kind``. The whole body must
    be used; anything malformed is a ``ProtocolError``."""
    reader = _Body(memoryview(body), kind)
    if kind == Kind.RESULTS:
        message = _decode_results(reader, batch_max)
    elif kind == Kind.QUERY_RESULTS:
        count = reader.length("replies", batch_max, 6)
        message = t.QueryResults([_query_reply(reader) for _ in range(count)])
    elif kind == Kind.CHALLENGE:
        message = t.Challenge(reader.raw(32))
    elif kind == Kind.WELCOME:
        message = t.Limits(*reader.take(_WELCOME))
    elif kind == Kind.STATUS_REPLY:
        count = reader.length("fields", STATUS_FIELDS_MAX, 16)
        fields = {}
        for _ in range(count):
            name = reader.string("field name", STATUS_FIELD_NAME_BYTES_MAX)
            fields[name] = reader.u64()
        message = t.StatusReply(fields)
    elif kind == Kind.HISTORY_PAGE:
        entries = _movements(reader, "entries", HISTORY_PAGE_MAX)
        message = t.HistoryPage(entries, reader.u128())
    elif kind == Kind.TX_REPLY:
        source = reader.code(t.TxSource, reader.u8())
        status = reader.status()
        message = t.TxReply(source, status, _movements(reader, "legs", COMMAND_LEGS_MAX))
    elif kind == Kind.BACKUP_REPLY:
        message = t.BackupReply(reader.u64())
    elif kind == Kind.RISK_POLICY_SET:
        status = reader.status()
        message = t.RiskPolicySet(status, reader.raw(32))
    elif kind == Kind.ERROR:
        code = reader.code(ErrorCode, reader.u16())
        message = t.ErrorReply(code, reader.string("message", ERROR_MESSAGE_BYTES_MAX))
    else:
        raise ProtocolError(
            f"a {KIND_NAMES.get(kind, kind)} message is not one a server sends"
        )
    reader.finish()
    return message


class FrameReader:
    """Cuts a byte stream into frames, checking each header as soon as its
    32 bytes are there (magic, version, header checksum, reserved, length,
    kind) and each body's checksum when it is complete."""

    def __init__(self, frame_bytes_max=FRAME_BYTES_MAX_DEFAULT):
        self.buffer = bytearray()
        self.frame_bytes_max = min(frame_bytes_max, FRAME_BYTES_MAX_CEILING)

    def feed(self, data):
        self.buffer += data

    def next(self):
        """The next whole frame as ``(request_id, kind, body)``, or None if it
        is not all there yet."""
        buffer = self.buffer
        if len(buffer) < HEADER_LEN:
            return None
        magic, version, kind, request_id, body_len, reserved, body_crc, header_crc = (
            _HEADER.unpack_from(buffer)
        )
        if magic != MAGIC:
            raise ProtocolError(f"bad magic {bytes(magic)!r}, expected b'PRL1'")
        if version != VERSION:
            raise ProtocolError(f"protocol version {version}, this client speaks {VERSION}")
        if crc32c(memoryview(buffer)[:28]) != header_crc:
            raise ProtocolError("the header checksum does not match the header")
        if reserved != 0:
            raise ProtocolError("the reserved header field is not zero")
        if HEADER_LEN + body_len > self.frame_bytes_max:
            raise ProtocolError(
                f"a frame of {HEADER_LEN + body_len} bytes, at most {self.frame_bytes_max} accepted"
            )
        if kind not in KIND_NAMES:
            raise ProtocolError(f"unknown message kind {kind}")
        end = HEADER_LEN + body_len
        if len(buffer) < end:
            return None
        body = bytes(buffer[HEADER_LEN:end])
        del buffer[:end]
        if crc32c(body) != body_crc:
            raise ProtocolError("the body checksum does not match the body")
        return request_id, kind, body
