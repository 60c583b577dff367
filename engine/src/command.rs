//! Commands (what a gateway asks the ledger to do) and queries (what it asks
//! to see).
//!
//! Every command carries a client-chosen 128-bit id: re-sending the same id
//! returns the first result, so a gateway can always retry safely.

pub mod codec;

use crate::currency::Currency;
pub use crate::instrument::{InstrumentBind, InstrumentId};
use crate::status::Status;

/// Client-chosen id of one command, unique per gateway installation.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, bincode::Encode, bincode::Decode,
)]
pub struct CommandId(pub u128);

/// Id of one account. Ids from [`AccountId::HOUSE_FIRST`] up are house accounts.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, bincode::Encode, bincode::Decode,
)]
pub struct AccountId(pub u64);

impl AccountId {
    /// First id of the range reserved for house accounts.
    pub const HOUSE_FIRST: u64 = 0xFF00_0000_0000_0000;

    pub fn is_house(self) -> bool {
        self.0 >= Self::HOUSE_FIRST
    }

    /// Part `part` of a house account: a sharded ledger splits each house
    /// account into one part per shard, numbered in the 32 spare bits (part 0
    /// is the public id itself).
    pub fn house_part(self, part: u32) -> AccountId {
        debug_assert!(self.is_house());
        AccountId(self.0 & !(0xFFFF_FFFF << 16) | u64::from(part) << 16)
    }

    /// The part number of a house account id (0 for the public id).
    pub fn house_part_number(self) -> u32 {
        ((self.0 >> 16) & 0xFFFF_FFFF) as u32
    }

    /// The house account with this role for this currency.
    ///
    /// Layout: `0xFF` | role (8 bits) | 32 bits zero | currency numeric (16 bits).
    pub fn house(role: HouseRole, currency: Currency) -> AccountId {
        AccountId(Self::HOUSE_FIRST | (role as u64) << 48 | u64::from(currency.numeric()))
    }

    /// The role and currency of a house account id (the public id or any
    /// part of it); None for other ids, and for ids in the house range that
    /// no house account can have.
    pub fn house_role(self) -> Option<(HouseRole, Currency)> {
        if !self.is_house() {
            return None;
        }
        let role = match (self.0 >> 48) & 0xFF {
            1 => HouseRole::Settlement,
            2 => HouseRole::FxLiquidity,
            3 => HouseRole::FxRevenue,
            _ => return None,
        };
        let currency = Currency::from_numeric((self.0 & 0xFFFF) as u16)?;
        Some((role, currency))
    }
}

impl HouseRole {
    /// Stable snake_case name, for people and reports.
    pub fn name(self) -> &'static str {
        match self {
            HouseRole::Settlement => "settlement",
            HouseRole::FxLiquidity => "fx_liquidity",
            HouseRole::FxRevenue => "fx_revenue",
        }
    }
}

/// What a house account is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum HouseRole {
    /// Counterpart of top-ups and withdrawals: money entering and leaving the
    /// wallet through banks and cards. Its balance is negative: it is what the
    /// wallet owes its customers.
    Settlement = 1,
    /// FX liquidity: the house side of every conversion into or out of its
    /// currency. Negative when the house has sold more of the currency than
    /// it bought, down to the floor set by `SetFxFloor` (docs/fx.md).
    FxLiquidity = 2,
    /// FX revenue: the spread of every conversion from its currency, as its
    /// own leg so that FX revenue is visible. Never negative.
    FxRevenue = 3,
}

/// Key of one merchant-account-information entry of an EMVCo QR code (tags
/// 26-51): xxh3-128 of the globally unique identifier (lowercased) and the
/// merchant id. Onboarding registers a merchant's keys; a QR payment carries
/// the keys of the code it paid, computed at the edge by the parser.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    bincode::Encode,
    bincode::Decode,
)]
pub struct MerchantKey(pub u128);

impl MerchantKey {
    /// "No key": fills the unused places of a payment's key list.
    pub const NONE: MerchantKey = MerchantKey(0);

    pub fn new(gui: &str, merchant_id: &str) -> MerchantKey {
        let gui = gui.trim().to_ascii_lowercase();
        let merchant_id = merchant_id.trim();
        let mut bytes = Vec::with_capacity(gui.len() + 1 + merchant_id.len());
        bytes.extend_from_slice(gui.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(merchant_id.as_bytes());
        // 0 means "no key"; a real key hashing to 0 is moved to 1.
        MerchantKey(xxhash_rust::xxh3::xxh3_128(&bytes).max(1))
    }
}

/// How many merchant keys one QR payment carries at most (a code may name
/// the merchant under several schemes).
pub const QR_MERCHANT_KEYS_MAX: usize = 4;

/// Who holds an account.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum AccountKind {
    Customer,
    Merchant,
    House,
}

/// Fields of an account opening.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct OpenAccount {
    pub account: AccountId,
    /// The person or business holding the account; all of one owner's
    /// currency accounts are kept together.
    pub owner: u64,
    pub kind: AccountKind,
    pub currency: Currency,
    /// KYC tier, customers only (0 = unverified .. `KYC_TIER_MAX`).
    pub kyc_tier: u8,
    /// Merchant category code (ISO 18245), merchants only.
    pub mcc: u16,
}

/// What the gateway tells about where and how a customer makes a payment,
/// for the inline risk rules (docs/risk.md). Carried by the money-moving
/// commands a customer initiates (transfer, QR payment, payment-code charge,
/// withdrawal hold). 15 bytes on the wire and in the log; every field has a
/// "not sent" value, and [`RiskContext::NONE`] sends nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct RiskContext {
    /// The gateway's id of the customer's device; 0: not sent.
    pub device: u64,
    /// Coarse location in hundredths of a degree (about 1.1 km), north and
    /// east positive: latitude -9000..=9000, longitude -18000..=18000;
    /// [`RiskContext::NO_LOCATION`] in both: not sent.
    pub latitude_centidegrees: i16,
    pub longitude_centidegrees: i16,
    /// Where the payment is made, ISO 3166 alpha-2 in upper case ASCII;
    /// `[0, 0]`: not sent.
    pub country: [u8; 2],
    /// The gateway verified a second factor for this payment (a
    /// re-submission after `step_up_required`).
    pub step_up_verified: bool,
}

impl RiskContext {
    /// Latitude and longitude of "no location".
    pub const NO_LOCATION: i16 = i16::MIN;

    /// Nothing sent: no device, location or country, no step-up.
    pub const NONE: RiskContext = RiskContext {
        device: 0,
        latitude_centidegrees: RiskContext::NO_LOCATION,
        longitude_centidegrees: RiskContext::NO_LOCATION,
        country: [0, 0],
        step_up_verified: false,
    };

    /// Whether every field is in range: a location is both coordinates or
    /// neither, within ±90° / ±180°; a country is two upper-case letters.
    pub fn is_valid(&self) -> bool {
        let location = match (self.latitude_centidegrees, self.longitude_centidegrees) {
            (RiskContext::NO_LOCATION, RiskContext::NO_LOCATION) => true,
            (latitude, longitude) => {
                (-9_000..=9_000).contains(&latitude) && (-18_000..=18_000).contains(&longitude)
            }
        };
        let country = self.country == [0, 0] || self.country.iter().all(u8::is_ascii_uppercase);
        location && country
    }

    /// The device id, if sent.
    pub fn device(&self) -> Option<u64> {
        (self.device != 0).then_some(self.device)
    }

    /// The country, if sent.
    pub fn country(&self) -> Option<[u8; 2]> {
        (self.country != [0, 0]).then_some(self.country)
    }

    /// The location in micro-degrees, if sent (call on a valid context).
    pub fn location_microdegrees(&self) -> Option<(i32, i32)> {
        if self.latitude_centidegrees == RiskContext::NO_LOCATION {
            return None;
        }
        Some((
            i32::from(self.latitude_centidegrees) * 10_000,
            i32::from(self.longitude_centidegrees) * 10_000,
        ))
    }
}

impl Default for RiskContext {
    fn default() -> Self {
        RiskContext::NONE
    }
}

/// What a command does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum CommandKind {
    /// Open a customer or merchant account.
    OpenAccount(OpenAccount),
    /// Top-up: credit the account, debit the house settlement account of its currency.
    Deposit {
        account: AccountId,
        amount: u64,
        currency: Currency,
    },
    /// Move money from one account to another in the same currency.
    Transfer {
        from: AccountId,
        to: AccountId,
        amount: u64,
        currency: Currency,
        context: RiskContext,
    },
    /// Withdrawal phase one: hold the amount until it is posted, voided or
    /// `timeout_ms` of command time passes. The hold's id is this command's id.
    WithdrawHold {
        account: AccountId,
        amount: u64,
        currency: Currency,
        timeout_ms: u64,
        context: RiskContext,
    },
    /// Withdrawal phase two: the money leaves to the house settlement account.
    WithdrawPost {
        hold: CommandId,
    },
    /// Withdrawal cancelled: the held money is available again.
    WithdrawVoid {
        hold: CommandId,
    },
    Freeze {
        account: AccountId,
    },
    Unfreeze {
        account: AccountId,
    },
    /// Close an account with zero balance and no pending holds.
    Close {
        account: AccountId,
    },
    /// Set a customer's KYC tier, after the gateway verified their identity.
    SetKycTier {
        account: AccountId,
        tier: u8,
    },
    /// Onboarding: QR codes carrying this key pay this merchant account.
    RegisterMerchantKey {
        merchant: AccountId,
        key: MerchantKey,
    },
    /// Merchant-presented QR payment, parsed at the edge: the payer pays
    /// `amount` plus `fee` (tip or convenience fee) to the merchant registered
    /// under the first known key. `mcc` is the code's category (0: the
    /// merchant's own), recorded with the payment.
    PayMerchantQr {
        payer: AccountId,
        keys: [MerchantKey; QR_MERCHANT_KEYS_MAX],
        amount: u64,
        fee: u64,
        currency: Currency,
        mcc: u16,
        context: RiskContext,
    },
    /// User-presented QR: make `code` (18 digits, drawn by the gateway from a
    /// CSPRNG) chargeable once against the customer's account for
    /// `lifetime_ms` of command time.
    IssuePaymentCode {
        customer: AccountId,
        code: u64,
        lifetime_ms: u64,
    },
    /// A merchant's gateway charges a customer's payment code.
    ChargePaymentCode {
        merchant: AccountId,
        code: u64,
        amount: u64,
        currency: Currency,
        context: RiskContext,
    },
    /// Return part or all of a payment (by its command id) from the merchant
    /// to the account that paid.
    Refund {
        payment: CommandId,
        amount: u64,
        currency: Currency,
    },
    /// Set (Some) or remove (None) a customer account's monthly budget for a
    /// spending category (`budget::Category` code), in minor units of the
    /// account's currency.
    SetBudget {
        account: AccountId,
        category: u8,
        budget: Option<u64>,
    },
    /// Set the FX rate of a currency pair: one `base` is worth `mid`
    /// `quote`. Conversions use it until `valid_ms` of command time have
    /// passed (then they are refused as stale), with `spread_bps` taken as
    /// the house's fee. Opens the house FX accounts of both currencies.
    SetFxRate(FxRateSet),
    /// Let the FX liquidity account of `currency` go down to `-limit` minor
    /// units (default 0): a conversion that would take it lower is refused.
    SetFxFloor {
        currency: Currency,
        limit: u64,
    },
    /// Price a conversion between two accounts of one owner and lock it for
    /// `ttl_ms` of command time (never past the rate's validity). The
    /// quote's id is this command's id; the result's detail is
    /// `Detail::FxConversion` with the exact amounts and the expiry.
    FxQuote {
        order: FxOrder,
        ttl_ms: u64,
    },
    /// Execute a quote at exactly its amounts, once, before it expires.
    /// `from` must be the quote's paying account.
    FxConvertQuote {
        quote: CommandId,
        from: AccountId,
    },
    /// Convert at the current rate and spread.
    FxConvert(FxOrder),
    /// Bind a funding instrument (bank card or bank account) to a customer,
    /// unverified until the gateway reports its check (docs/instruments.md).
    BindInstrument(InstrumentBind),
    /// The gateway's check of an instrument (card verification,
    /// micro-deposit): `passed` makes it usable, otherwise it stays unusable.
    VerifyInstrument {
        instrument: InstrumentId,
        passed: bool,
    },
    /// The customer removes an instrument: it can no longer be named.
    UnbindInstrument {
        instrument: InstrumentId,
    },
    /// Top-up from a verified instrument of the account's customer: a
    /// `Deposit` that names where the money comes from.
    DepositFrom {
        account: AccountId,
        amount: u64,
        currency: Currency,
        instrument: InstrumentId,
    },
    /// Withdrawal phase one to a verified instrument of the account's
    /// customer in the account's currency: a `WithdrawHold` that names where
    /// the money goes. Posted and voided like any hold.
    WithdrawHoldTo {
        account: AccountId,
        amount: u64,
        currency: Currency,
        timeout_ms: u64,
        context: RiskContext,
        instrument: InstrumentId,
    },
}

/// An FX mid rate as it travels on the log and the wire: `mantissa /
/// 10^scale` (rust_decimal's own representation, limited to 64 bits so
/// that the command stays small and `Copy`). See `crate::fx::FxMid`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct FxMid {
    pub mantissa: u64,
    pub scale: u8,
}

/// Where a rate came from: up to 8 ASCII characters, zero padded ("ECB",
/// "REUTERS").
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    bincode::Encode,
    bincode::Decode,
)]
pub struct FxSource(pub [u8; 8]);

impl FxSource {
    /// The source from text: 1 to 8 printable ASCII characters, no spaces.
    pub fn new(text: &str) -> Option<FxSource> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > 8 || !bytes.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut source = [0u8; 8];
        source[..bytes.len()].copy_from_slice(bytes);
        Some(FxSource(source))
    }

    /// Whether the bytes are what `new` makes: printable ASCII, then zeros.
    pub fn is_valid(&self) -> bool {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(8);
        len > 0
            && self.0[..len].iter().all(u8::is_ascii_graphic)
            && self.0[len..].iter().all(|&b| b == 0)
    }

    /// The text ("?" for bytes that are not a valid source).
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(8);
        std::str::from_utf8(&self.0[..len]).unwrap_or("?")
    }
}

/// Fields of `SetFxRate`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct FxRateSet {
    pub base: Currency,
    pub quote: Currency,
    /// Units of `quote` one unit of `base` is worth (major units).
    pub mid: FxMid,
    /// The house's spread in basis points of what the customer pays.
    pub spread_bps: u16,
    /// How long the rate may be used, in command time.
    pub valid_ms: u64,
    pub source: FxSource,
}

/// Which amount of a conversion the customer fixes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum FxSide {
    /// "I pay X": `amount` is debited from `from`, in its currency.
    Pay,
    /// "I want to receive Y": `amount` is credited to `to`, in its currency.
    Receive,
}

/// A conversion between two accounts of the same owner.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct FxOrder {
    pub from: AccountId,
    pub to: AccountId,
    /// Minor units of `from`'s currency (`Pay`) or of `to`'s (`Receive`).
    pub amount: u64,
    pub side: FxSide,
}

impl CommandKind {
    /// Stable snake_case name, for metrics and reports.
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::OpenAccount(_) => "open_account",
            CommandKind::Deposit { .. } => "deposit",
            CommandKind::Transfer { .. } => "transfer",
            CommandKind::WithdrawHold { .. } => "withdraw_hold",
            CommandKind::WithdrawPost { .. } => "withdraw_post",
            CommandKind::WithdrawVoid { .. } => "withdraw_void",
            CommandKind::Freeze { .. } => "freeze",
            CommandKind::Unfreeze { .. } => "unfreeze",
            CommandKind::Close { .. } => "close",
            CommandKind::SetKycTier { .. } => "set_kyc_tier",
            CommandKind::RegisterMerchantKey { .. } => "register_merchant_key",
            CommandKind::PayMerchantQr { .. } => "pay_merchant_qr",
            CommandKind::IssuePaymentCode { .. } => "issue_payment_code",
            CommandKind::ChargePaymentCode { .. } => "charge_payment_code",
            CommandKind::Refund { .. } => "refund",
            CommandKind::SetBudget { .. } => "set_budget",
            CommandKind::SetFxRate(_) => "set_fx_rate",
            CommandKind::SetFxFloor { .. } => "set_fx_floor",
            CommandKind::FxQuote { .. } => "fx_quote",
            CommandKind::FxConvertQuote { .. } => "fx_convert_quote",
            CommandKind::FxConvert(_) => "fx_convert",
            CommandKind::BindInstrument(_) => "bind_instrument",
            CommandKind::VerifyInstrument { .. } => "verify_instrument",
            CommandKind::UnbindInstrument { .. } => "unbind_instrument",
            CommandKind::DepositFrom { .. } => "deposit_from",
            CommandKind::WithdrawHoldTo { .. } => "withdraw_hold_to",
        }
    }
}

/// One command: a client-chosen id and what to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct Command {
    pub id: CommandId,
    pub kind: CommandKind,
}

impl Command {
    pub fn new(id: u128, kind: CommandKind) -> Command {
        Command {
            id: CommandId(id),
            kind,
        }
    }

    /// A 64-bit hash of the command's fields (not its id), to tell a retry
    /// (same fields) from an id reused for a different command. xxh3 over the
    /// kind's bytes in the log's encoding (`codec`: the fixed-width bincode
    /// bytes, written field by field): stable across builds and platforms,
    /// and the same as when bincode wrote them, so idempotency records in
    /// old logs and checkpoints still match their retries.
    pub fn fingerprint(&self) -> u64 {
        let mut buffer = [0u8; codec::COMMAND_BYTES_MAX];
        let len = codec::put_command_kind(&self.kind, &mut buffer);
        xxhash_rust::xxh3::xxh3_64(&buffer[..len])
    }
}

/// Result of one command, in the order of the batch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct CommandResult {
    pub status: Status,
    /// What the command has to say beyond its status (a quote's amounts, the
    /// risk rule that fired, ...); `Detail::None` for most results.
    pub detail: Detail,
}

impl CommandResult {
    pub const OK: CommandResult = CommandResult {
        status: Status::Ok,
        detail: Detail::None,
    };

    pub fn new(status: Status) -> CommandResult {
        CommandResult {
            status,
            detail: Detail::None,
        }
    }

    pub fn with_detail(status: Status, detail: Detail) -> CommandResult {
        CommandResult { status, detail }
    }
}

/// Extra facts a command's result carries besides its status. Variants are
/// only ever appended (the wire and the log encode the variant index).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, bincode::Encode, bincode::Decode)]
pub enum Detail {
    /// Nothing beyond the status.
    #[default]
    None,
    /// A risk rule fired: with `risk_declined`, `step_up_required` or
    /// `risk_frozen` the rule that refused the payment, with `ok` a rule that
    /// flagged it.
    Risk(RiskDetail),
    /// The payment went through and took a category's spending this month
    /// above its budget (a warning, not a refusal).
    BudgetCrossed(BudgetDetail),
    /// Both: the payment was flagged and crossed a budget.
    FlaggedOverBudget(RiskDetail, BudgetDetail),
    /// The amounts of a conversion: of a quote (`expires_at` is when it
    /// stops being convertible), of a direct conversion or of a
    /// cross-currency QR payment (`expires_at` 0).
    FxConversion(FxAmounts),
}

/// The risk decision behind a result: the verdict, the deciding rule
/// (`risk::RuleId` code) and its figures (docs/risk.md has what `limit` and
/// `observed` mean for each rule).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct RiskDetail {
    pub verdict: crate::risk::Verdict,
    pub rule: crate::risk::RuleId,
    pub limit: u64,
    pub observed: u64,
}

/// A budget crossed: the category, the budget and this month's spending in
/// it, this payment included, in minor units of the account's currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct BudgetDetail {
    pub category: crate::budget::Category,
    pub budget: u64,
    pub spent: u64,
}

impl Detail {
    /// The risk part, if any.
    pub fn risk(&self) -> Option<&RiskDetail> {
        match self {
            Detail::Risk(risk) | Detail::FlaggedOverBudget(risk, _) => Some(risk),
            _ => None,
        }
    }

    /// The budget part, if any.
    pub fn budget(&self) -> Option<&BudgetDetail> {
        match self {
            Detail::BudgetCrossed(budget) | Detail::FlaggedOverBudget(_, budget) => Some(budget),
            _ => None,
        }
    }
}

/// What a conversion debits, keeps and credits, in minor units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct FxAmounts {
    /// Debited from the paying account, in `pay_currency`: `fee` included.
    pub pay: u64,
    /// The house's spread, in `pay_currency` (the FX revenue leg).
    pub fee: u64,
    /// Credited to the receiving account, in `receive_currency`.
    pub receive: u64,
    pub pay_currency: Currency,
    pub receive_currency: Currency,
    /// The mid rate used: `receive_currency` per `pay_currency`, or the
    /// other way round when `inverse` (the rate was set for the opposite pair).
    pub mid: FxMid,
    pub inverse: bool,
    /// Command time (ns) from which a quote can no longer be converted; 0
    /// for a conversion already done.
    pub expires_at: u64,
}

/// A read-only question. Queries are not logged and change nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum Query {
    Balance {
        account: AccountId,
    },
    /// The first result of a command, while its idempotency record is kept.
    Command {
        id: CommandId,
    },
    /// The risk policy in force: its digest and which rules are on.
    RiskPolicy,
    /// The `index`-th newest audited risk decision (0 = newest) of the
    /// customer who holds `account`; a client asks for 0..AUDIT_ENTRIES_MAX
    /// in one batch.
    RiskAudit {
        account: AccountId,
        index: u8,
    },
    /// A customer account's spending in one category in `month`
    /// (`year * 12 + month - 1`; 0: the month of the ledger's last command)
    /// and its budget there.
    Spending {
        account: AccountId,
        month: u32,
        category: u8,
    },
    /// The FX rate at this position of the rate table (pairs in order);
    /// `Refused(FxRateUnknown)` past the end.
    FxRate {
        index: u64,
    },
    /// The `index`-th funding instrument (in number order) of the customer
    /// holding `account`; `Refused(UnknownInstrument)` past the end.
    Instrument {
        account: AccountId,
        index: u8,
    },
}

/// One FX rate as the ledger holds it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct FxRateView {
    pub base: Currency,
    pub quote: Currency,
    pub mid: FxMid,
    pub spread_bps: u16,
    pub source: FxSource,
    /// Command time (ns) the rate was set at ...
    pub set_at: u64,
    /// ... and from which it is stale.
    pub valid_until: u64,
    /// How many rates the table holds.
    pub rates_total: u32,
}

/// What an account looks like from outside.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct AccountView {
    pub account: AccountId,
    pub owner: u64,
    pub kind: AccountKind,
    pub currency: Currency,
    pub status: AccountStatus,
    pub kyc_tier: u8,
    pub mcc: u16,
    /// Credits minus debits, in minor units. Negative only for house accounts.
    pub balance: i64,
    /// Held for pending withdrawals, not yet debited.
    pub debits_pending: u64,
    /// Pending credits (house settlement side of pending withdrawals).
    pub credits_pending: u64,
    /// What the owner can spend now: balance minus debits pending.
    pub available: i64,
}

/// Answer to a query.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum QueryReply {
    Balance(AccountView),
    /// The command was applied with this status (which may be a rejection).
    Command(Status),
    /// The query was refused; the status says why (for example `UnknownAccount`).
    Refused(Status),
    /// The policy in force: BLAKE3 of its canonical encoding
    /// (`RiskPolicy::digest`) and the rules that are on.
    RiskPolicy {
        digest: [u8; 32],
        rules: crate::risk::RuleSet,
    },
    /// One audited decision and how many the customer has (`entry` is
    /// meaningless when `index >= entries`).
    RiskAudit {
        entries: u8,
        entry: crate::risk::AuditEntry,
    },
    /// Spending of one category in one month, and the category's budget.
    Spending {
        month: u32,
        category: u8,
        spent: u64,
        budget: Option<u64>,
    },
    FxRate(FxRateView),
    Instrument(crate::instrument::InstrumentView),
}

/// Lifecycle of an account.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum AccountStatus {
    Active,
    Frozen,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint is what it was when bincode wrote the bytes it
    /// hashes: xxh3 of the kind's fixed-width bincode encoding, for every
    /// kind and every value of every enum field (records in old logs and
    /// checkpoints keep matching their retries).
    #[test]
    fn fingerprint_hashes_the_bincode_bytes_of_every_kind() {
        let config = bincode::config::standard()
            .with_fixed_int_encoding()
            .with_little_endian();
        let commands = codec::every_kind_and_variant();
        for command in &commands {
            let bytes = bincode::encode_to_vec(command.kind, config).unwrap_or_default();
            assert!(!bytes.is_empty() && bytes.len() <= codec::KIND_BYTES_MAX);
            assert_eq!(
                command.fingerprint(),
                xxhash_rust::xxh3::xxh3_64(&bytes),
                "{command:?}"
            );
        }
    }

    #[test]
    fn fingerprint_ignores_id_and_sees_every_field() {
        let transfer = |amount| CommandKind::Transfer {
            from: AccountId(1),
            to: AccountId(2),
            amount,
            currency: Currency::CNY,
            context: crate::command::RiskContext::NONE,
        };
        assert_eq!(
            Command::new(1, transfer(5)).fingerprint(),
            Command::new(2, transfer(5)).fingerprint()
        );
        assert_ne!(
            Command::new(1, transfer(5)).fingerprint(),
            Command::new(1, transfer(6)).fingerprint()
        );
    }

    #[test]
    fn house_ids_name_their_role_and_currency() {
        for role in [
            HouseRole::Settlement,
            HouseRole::FxLiquidity,
            HouseRole::FxRevenue,
        ] {
            for currency in [Currency::CNY, Currency::JPY, Currency::BHD] {
                let id = AccountId::house(role, currency);
                assert_eq!(id.house_role(), Some((role, currency)));
                assert_eq!(id.house_part(3).house_role(), Some((role, currency)));
            }
        }
        assert_eq!(AccountId(1001).house_role(), None);
        // In the house range but no role 0 and no currency 0 exist.
        assert_eq!(AccountId(AccountId::HOUSE_FIRST).house_role(), None);
        let no_currency =
            AccountId(AccountId::house(HouseRole::Settlement, Currency::CNY).0 & !0xFFFF);
        assert_eq!(no_currency.house_role(), None);
    }

    #[test]
    fn house_ids_are_reserved() {
        let id = AccountId::house(HouseRole::Settlement, Currency::CNY);
        assert!(id.is_house());
        assert_eq!(id.0, 0xFF01_0000_0000_009C);
        assert!(!AccountId(0xFEFF_FFFF_FFFF_FFFF).is_house());
    }
}
