"""The values a gateway sends and receives: commands, queries, their
results and replies, as typed objects. Replies are immutable; commands and
queries are plain dataclasses (a frozen one takes ten times as long to
build, and a gateway builds many).

Field names and order follow docs/protocol.md ("Command", "CommandResult",
"Query and QueryReply", "History, tx and backup", "SubmitQr",
"SetRiskPolicy"). Python keywords get a trailing underscore (``from_``).
Amounts are integers in the currency's minor units; currencies are ISO 4217
numeric codes (``CNY`` = 156 below).
"""

import enum
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .codes import Status

# A few ISO 4217 numeric codes, for readability; any code with minor units works.
CNY = 156
JPY = 392
USD = 840
EUR = 978
HKD = 344
SGD = 702
THB = 764
BHD = 48

# "No location" in RiskContext.
NO_LOCATION = -32768


def new_id():
    """A fresh random 128-bit command id from the operating system's CSPRNG.
    Keep it with the command: sending the same id again is a safe retry."""
    return int.from_bytes(os.urandom(16), "little")


class AccountKind(enum.IntEnum):
    customer = 0
    merchant = 1
    house = 2

    def __str__(self):
        return self.name


class AccountStatus(enum.IntEnum):
    active = 0
    frozen = 1
    closed = 2

    def __str__(self):
        return self.name


class FxSide(enum.IntEnum):
    """Which amount of a conversion the customer fixes: ``pay`` (what
    ``from_`` pays) or ``receive`` (what ``to`` receives)."""

    pay = 0
    receive = 1

    def __str__(self):
        return self.name


class Verdict(enum.IntEnum):
    """Outcome of a risk evaluation, in increasing severity."""

    approve = 0
    flag = 1
    step_up = 2
    decline = 3

    def __str__(self):
        return self.name


class RuleId(enum.IntEnum):
    """A risk rule (docs/risk.md)."""

    blocked_country = 1
    blocked_merchant = 2
    blocked_mcc = 3
    single_payment = 4
    daily_outflow = 5
    monthly_outflow = 6
    outflow_currencies = 7
    velocity = 8
    new_device = 9
    impossible_travel = 10
    amount_anomaly = 11
    new_instrument = 12
    instrument_daily = 13
    instrument_binds = 14

    def __str__(self):
        return self.name


class Action(enum.IntEnum):
    """What a risk rule does when it fires."""

    decline = 1
    step_up = 2
    flag = 3

    def __str__(self):
        return self.name


class Category(enum.IntEnum):
    """Spending categories of budgets (docs/risk.md)."""

    food_and_drink = 1
    groceries = 2
    transport = 3
    travel = 4
    shopping = 5
    entertainment = 6
    utilities_and_bills = 7
    health = 8
    education = 9
    cash_and_transfers = 10
    other = 11

    def __str__(self):
        return self.name


class TxSource(enum.IntEnum):
    """Where the status in a ``TxReply`` comes from."""

    unknown = 0
    record = 1
    history = 2

    def __str__(self):
        return self.name


def rule_names(bits):
    """The rules in a u16 rule set (bit ``1 << code`` per rule), in code order."""
    return [rule for rule in RuleId if bits & (1 << int(rule))]


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class RiskContext:
    """What the gateway knows about a customer's payment, for the inline
    risk rules. Every field has a "not sent" value (the defaults)."""

    device: int = 0
    latitude_centidegrees: int = NO_LOCATION
    longitude_centidegrees: int = NO_LOCATION
    country: str = ""
    step_up_verified: bool = False


RiskContext.NONE = RiskContext()


@dataclass(frozen=True)
class FxMid:
    """An FX mid rate: ``mantissa / 10**scale`` (150.25 is ``FxMid(15025, 2)``)."""

    mantissa: int
    scale: int


@dataclass(frozen=True)
class FxOrder:
    """A conversion between two accounts of one owner."""

    from_: int
    to: int
    amount: int
    side: FxSide = FxSide.pay


@dataclass
class OpenAccount:
    id: int
    account: int
    owner: int
    kind: AccountKind
    currency: int
    kyc_tier: int = 0
    mcc: int = 0


@dataclass
class Deposit:
    id: int
    account: int
    amount: int
    currency: int


@dataclass
class Transfer:
    id: int
    from_: int
    to: int
    amount: int
    currency: int
    context: RiskContext = RiskContext.NONE


@dataclass
class WithdrawHold:
    id: int
    account: int
    amount: int
    currency: int
    timeout_ms: int
    context: RiskContext = RiskContext.NONE


class InstrumentKind(enum.IntEnum):
    """What a funding instrument is (docs/instruments.md)."""

    card = 0
    bank_account = 1

    def __str__(self):
        return self.name


class InstrumentState(enum.IntEnum):
    """Where a funding instrument is in its life."""

    unverified = 0
    verified = 1
    failed = 2
    unbound = 3

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class InstrumentId:
    """A customer's funding instrument: the customer's owner id (as in
    ``OpenAccount.owner``) and the gateway's number for it. Prints and
    parses as ``owner/number``."""

    owner: int
    number: int

    def __str__(self):
        return f"{self.owner}/{self.number}"

    @classmethod
    def parse(cls, text):
        owner, _, number = text.partition("/")
        if not _ or not owner.strip().isdigit() or not number.strip().isdigit():
            raise ValueError(f"an instrument is owner/number, not {text!r}")
        return cls(int(owner), int(number))


@dataclass
class BindInstrument:
    """Binds a bank card or bank account to the customer holding
    ``customer`` (any of their accounts), unverified until
    ``VerifyInstrument``. Never a card number: ``token`` is the gateway's
    token for it (printable ASCII, at most 32), ``bank`` the issuing bank
    (at most 16), ``country`` ISO 3166 alpha-2, ``last_four`` four digits.
    The client refuses a token or bank that looks like a card number before
    sending it (``EncodeError``)."""

    id: int
    customer: int
    number: int
    kind: InstrumentKind
    token: str
    bank: str
    country: str
    last_four: str
    currency: int


@dataclass
class VerifyInstrument:
    """The outcome of the gateway's check of an instrument."""

    id: int
    instrument: InstrumentId
    passed: bool = True


@dataclass
class UnbindInstrument:
    id: int
    instrument: InstrumentId


@dataclass
class DepositFrom:
    """A top-up from a verified instrument of the account's customer."""

    id: int
    account: int
    amount: int
    currency: int
    instrument: InstrumentId


@dataclass
class WithdrawHoldTo:
    """A withdrawal hold to a verified instrument of the account's customer,
    in the account's currency; posted or voided like ``WithdrawHold``."""

    id: int
    account: int
    amount: int
    currency: int
    timeout_ms: int
    instrument: InstrumentId
    context: RiskContext = RiskContext.NONE


@dataclass
class WithdrawPost:
    id: int
    hold: int


@dataclass
class WithdrawVoid:
    id: int
    hold: int


@dataclass
class Freeze:
    id: int
    account: int


@dataclass
class Unfreeze:
    id: int
    account: int


@dataclass
class Close:
    id: int
    account: int


@dataclass
class SetKycTier:
    id: int
    account: int
    tier: int


@dataclass
class RegisterMerchantKey:
    id: int
    merchant: int
    key: int


@dataclass
class PayMerchantQr:
    """A QR payment parsed by the gateway itself; ``keys`` are up to four
    merchant keys (u128; unused places 0). ``SubmitQr`` lets the server parse
    the raw payload instead."""

    id: int
    payer: int
    keys: Tuple[int, ...]
    amount: int
    fee: int
    currency: int
    mcc: int = 0
    context: RiskContext = RiskContext.NONE


@dataclass
class IssuePaymentCode:
    id: int
    customer: int
    code: int
    lifetime_ms: int


@dataclass
class ChargePaymentCode:
    id: int
    merchant: int
    code: int
    amount: int
    currency: int
    context: RiskContext = RiskContext.NONE


@dataclass
class Refund:
    id: int
    payment: int
    amount: int
    currency: int


@dataclass
class SetBudget:
    """``budget=None`` removes the category's budget."""

    id: int
    account: int
    category: int
    budget: Optional[int]


@dataclass
class SetFxRate:
    """``source``: 1 to 8 printable ASCII characters ("ECB")."""

    id: int
    base: int
    quote: int
    mid: FxMid
    spread_bps: int
    valid_ms: int
    source: str


@dataclass
class SetFxFloor:
    id: int
    currency: int
    limit: int


@dataclass
class FxQuote:
    """The quote's id is this command's id."""

    id: int
    order: FxOrder
    ttl_ms: int


@dataclass
class FxConvertQuote:
    id: int
    quote: int
    from_: int


@dataclass
class FxConvert:
    id: int
    order: FxOrder


@dataclass
class QrPayment:
    """A merchant-presented QR payment as the payer's app scanned it
    (``SubmitQr``): the server parses ``payload``."""

    id: int
    payer: int
    payload: str
    amount: Optional[int] = None
    tip: Optional[int] = None
    context: RiskContext = RiskContext.NONE


# Variant index of each command kind on the wire, in declaration order.
COMMAND_KINDS = (
    OpenAccount,
    Deposit,
    Transfer,
    WithdrawHold,
    WithdrawPost,
    WithdrawVoid,
    Freeze,
    Unfreeze,
    Close,
    SetKycTier,
    RegisterMerchantKey,
    PayMerchantQr,
    IssuePaymentCode,
    ChargePaymentCode,
    Refund,
    SetBudget,
    SetFxRate,
    SetFxFloor,
    FxQuote,
    FxConvertQuote,
    FxConvert,
)

# ----------------------------------------------------------------- results


@dataclass(frozen=True)
class RiskDetail:
    """A risk rule refused or flagged the payment; what ``limit`` and
    ``observed`` mean per rule is in docs/risk.md."""

    verdict: Verdict
    rule: RuleId
    limit: int
    observed: int


@dataclass(frozen=True)
class BudgetDetail:
    """The payment took a category's spending this month above its budget."""

    category: Category
    budget: int
    spent: int


@dataclass(frozen=True)
class FxAmounts:
    pay: int
    fee: int
    receive: int
    pay_currency: int
    receive_currency: int
    mid: FxMid
    inverse: bool
    expires_at: int


@dataclass(frozen=True)
class CommandResult:
    """One command's result: its status and what it has to say beyond it
    (``risk`` and ``budget`` may both be set; ``fx`` for conversions)."""

    status: Status
    risk: Optional[RiskDetail] = None
    budget: Optional[BudgetDetail] = None
    fx: Optional[FxAmounts] = None

    @property
    def ok(self):
        return self.status == Status.ok

    def __repr__(self):
        parts = [self.status.name]
        for name in ("risk", "budget", "fx"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"CommandResult({', '.join(parts)})"


# ----------------------------------------------------------------- queries


@dataclass
class BalanceQuery:
    account: int


@dataclass
class CommandQuery:
    """The first result of a command, while its idempotency record is kept."""

    id: int


@dataclass
class RiskPolicyQuery:
    pass


@dataclass
class RiskAuditQuery:
    account: int
    index: int


@dataclass
class SpendingQuery:
    """``month`` is ``year * 12 + month - 1``; 0: the month of the last command."""

    account: int
    month: int
    category: int


@dataclass
class FxRateQuery:
    index: int


QUERY_KINDS = (
    BalanceQuery,
    CommandQuery,
    RiskPolicyQuery,
    RiskAuditQuery,
    SpendingQuery,
    FxRateQuery,
)


@dataclass(frozen=True)
class InstrumentQuery:
    """The ``index``-th instrument (in number order) of the customer holding
    ``account``; ``Refused(unknown_instrument)`` past the end."""

    account: int
    index: int


@dataclass(frozen=True)
class InstrumentView:
    instrument: InstrumentId
    kind: InstrumentKind
    token: str
    bank: str
    country: str
    last_four: str
    currency: int
    state: InstrumentState
    bound_at: int
    changed_at: int
    instruments_total: int


@dataclass(frozen=True)
class AccountView:
    account: int
    owner: int
    kind: AccountKind
    currency: int
    status: AccountStatus
    kyc_tier: int
    mcc: int
    balance: int
    debits_pending: int
    credits_pending: int
    available: int


@dataclass(frozen=True)
class CommandOutcome:
    """Reply to ``CommandQuery``: the command was applied with this status
    (which may be a rejection)."""

    status: Status


@dataclass(frozen=True)
class Refused:
    """The query was refused; the status says why (``unknown_account``, ...)."""

    status: Status


@dataclass(frozen=True)
class RiskPolicyReply:
    digest: bytes
    rules: int

    @property
    def rule_names(self):
        return rule_names(self.rules)


@dataclass(frozen=True)
class AuditEntry:
    timestamp: int
    command: int
    currency: int
    amount: int
    verdict: Verdict
    rule: Optional[RuleId]
    limit: int
    observed: int
    freeze: bool
    fired: int
    flags: int
    stepped_up: int


@dataclass(frozen=True)
class RiskAuditReply:
    """``entry`` is meaningless when the index asked for is ``>= entries``."""

    entries: int
    entry: AuditEntry


@dataclass(frozen=True)
class SpendingReply:
    month: int
    category: int
    spent: int
    budget: Optional[int]


@dataclass(frozen=True)
class FxRateView:
    base: int
    quote: int
    mid: FxMid
    spread_bps: int
    source: str
    set_at: int
    valid_until: int
    rates_total: int


# ------------------------------------------------- history, tx, status, ...


@dataclass(frozen=True)
class MovementInstrument:
    """The funding instrument a top-up came from or a posted withdrawal went
    to, as it was then (docs/instruments.md)."""

    number: int
    bank: str
    last_four: str

    def __str__(self):
        return f"{self.bank} ****{self.last_four} (instrument {self.number})"


@dataclass(frozen=True)
class Movement:
    account: int
    counterparty: int
    command: int
    sequence: int
    timestamp: int
    position: int
    amount: int
    balance: int
    currency: int
    mcc: int
    kind: str
    instrument: Optional[MovementInstrument] = None


@dataclass(frozen=True)
class HistoryPage:
    """``next_cursor`` 0: this is the last page."""

    entries: List[Movement]
    next_cursor: int


@dataclass(frozen=True)
class TxReply:
    source: TxSource
    status: Status
    legs: List[Movement]


@dataclass(frozen=True)
class Limits:
    """What the server announced in ``Welcome``."""

    frame_bytes_max: int
    batch_commands_max: int
    inflight_max: int


@dataclass(frozen=True)
class RiskPolicySet:
    """Reply to ``SetRiskPolicy``: ``ok`` and the digest now in force, or
    ``storage_failed`` / ``unavailable`` and zeros."""

    status: Status
    digest: bytes


@dataclass(frozen=True)
class Challenge:
    nonce: bytes


@dataclass(frozen=True)
class Results:
    results: List[CommandResult]


@dataclass(frozen=True)
class QueryResults:
    replies: list


@dataclass(frozen=True)
class StatusReply:
    fields: Dict[str, int]


@dataclass(frozen=True)
class BackupReply:
    last_sequence: int


@dataclass(frozen=True)
class ErrorReply:
    """An ``Error`` frame: why a request or the connection was refused."""

    code: object  # ErrorCode
    message: str


# ------------------------------------------------------------- risk policy


@dataclass(frozen=True)
class Response:
    action: Action
    freeze: bool = False


@dataclass(frozen=True)
class BlockList:
    """Entries: country codes ("KP"), merchant account ids, or MCCs,
    sorted and unique."""

    response: Response
    entries: Tuple = ()


@dataclass(frozen=True)
class TierLimits:
    """Per currency, the maximum for each KYC tier 0 to 3."""

    currency: int
    max: Tuple[int, int, int, int]


@dataclass(frozen=True)
class LimitRule:
    response: Response
    limits: Tuple[TierLimits, ...] = ()


@dataclass(frozen=True)
class VelocityRule:
    response: Response
    payments_max: int
    window_ns: int


@dataclass(frozen=True)
class NewDeviceRule:
    response: Response
    trust_first_device: bool = False


@dataclass(frozen=True)
class ImpossibleTravelRule:
    response: Response
    speed_kmh_max: int
    distance_m_min: int


@dataclass(frozen=True)
class AmountAnomalyRule:
    response: Response
    multiplier_milli: int
    history: int
    history_min: int


@dataclass(frozen=True)
class RiskPolicy:
    """The risk rules in force (docs/risk.md); a rule left at None is off."""

    blocked_countries: Optional[BlockList] = None
    blocked_merchants: Optional[BlockList] = None
    blocked_mccs: Optional[BlockList] = None
    single_payment: Optional[LimitRule] = None
    daily_outflow: Optional[LimitRule] = None
    monthly_outflow: Optional[LimitRule] = None
    velocity: Optional[VelocityRule] = None
    new_device: Optional[NewDeviceRule] = None
    impossible_travel: Optional[ImpossibleTravelRule] = None
    amount_anomaly: Optional[AmountAnomalyRule] = None


__all__ = [
    name
    for name, value in list(globals().items())
    if not name.startswith("_")
    and (getattr(value, "__module__", None) == __name__ or (isinstance(value, int) and name.isupper()))
]
