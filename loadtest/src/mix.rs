//! Workload mixes and the batch generator.
//!
//! A mix is a table: one row per kind of wallet traffic, with its share (per
//! mille of the slots), the operation that generates it, and why it has
//! that share. Adding a kind when the server gains one is a row here and
//! its arm in [`Generator::fill`].

use std::collections::VecDeque;
use std::sync::Arc;

use payrail_engine::budget::Category;
use payrail_engine::command::{FxOrder, FxSide, QR_MERCHANT_KEYS_MAX};
use payrail_engine::{
    AccountId, Command, CommandId, CommandKind, Currency, MerchantKey, Query, RiskContext,
};

use crate::options::{MixName, SkewName};
use crate::population::{Population, CURRENCIES};
use crate::sample::{Rng, Zipf};

/// What one slot of a batch turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A QR payment to a merchant whose code the customer scanned: the
    /// merchant is Zipf-popular within the customer's currency.
    QrMerchantPresented,
    /// The same from an account in another currency than the merchant's:
    /// the ledger converts at the current rate (docs/fx.md).
    QrCrossCurrency,
    /// A user-presented QR payment: a payment code is issued to a customer,
    /// and charged by a (Zipf-popular) merchant in a later batch once the
    /// issue was acknowledged.
    QrUserPresented,
    /// A transfer between two customer accounts of one currency.
    P2p,
    /// A deposit from the house settlement account.
    TopUp,
    /// A withdrawal hold, or the post of an earlier acknowledged hold.
    Withdrawal,
    /// A partial refund of an earlier acknowledged same-currency QR payment.
    Refund,
    /// A partial refund of an earlier acknowledged cross-currency payment.
    RefundCrossCurrency,
    /// A conversion between two of a customer's accounts at the current rate.
    FxConvert,
    /// A quote (locked price), or the conversion of an earlier acknowledged
    /// quote.
    FxQuoted,
    /// A balance query (not a command: sent as a query request).
    Balance,
    /// A spending query: one category's spending this month and its budget.
    Spending,
    /// A page of an account's movement history (a request of its own).
    History,
}

/// One row of a mix.
#[derive(Clone, Copy, Debug)]
pub struct MixEntry {
    pub label: &'static str,
    /// Share of the slots, per mille.
    pub per_mille: u32,
    pub op: Op,
    /// Where the share comes from (docs/loadtest.md prints these).
    pub why: &'static str,
}

/// The wallet mix: what a QR-code wallet's gateways send, per 1,000 slots.
/// The shares are this harness's estimate of such a wallet's traffic (none
/// is measured from a real wallet); `why` says what each rests on.
pub const WALLET_MIX: &[MixEntry] = &[
    MixEntry {
        label: "QR payments, merchant-presented (Zipf-popular merchants)",
        per_mille: 280,
        op: Op::QrMerchantPresented,
        why: "scanning a shop's code is what a QR wallet is for: the largest share",
    },
    MixEntry {
        label: "QR payments, cross-currency (payer's account in another currency than the merchant's)",
        per_mille: 30,
        op: Op::QrCrossCurrency,
        why: "travellers paying abroad from a home-currency account: about 1 in 10 merchant-presented payments",
    },
    MixEntry {
        label: "QR payments, user-presented (issue a code, then a merchant charges it)",
        per_mille: 110,
        op: Op::QrUserPresented,
        why: "shops with a scanner charge the customer's code; each payment takes two slots (issue, charge), so about 1 in 7 in-shop payments",
    },
    MixEntry {
        label: "p2p transfers",
        per_mille: 150,
        op: Op::P2p,
        why: "splitting bills and sending money: fewer than shop payments",
    },
    MixEntry {
        label: "top-ups",
        per_mille: 80,
        op: Op::TopUp,
        why: "a top-up funds several payments; from the customer's own card (bound and verified at seeding)",
    },
    MixEntry {
        label: "withdrawals (hold, then post)",
        per_mille: 60,
        op: Op::Withdrawal,
        why: "cash-out to the customer's own card, less often than top-ups; each takes two slots (hold, post)",
    },
    MixEntry {
        label: "refunds (half of an earlier same-currency QR payment)",
        per_mille: 15,
        op: Op::Refund,
        why: "about 1 in 20 same-currency QR payments is refunded in part",
    },
    MixEntry {
        label: "refunds of cross-currency QR payments (at the original rate)",
        per_mille: 5,
        op: Op::RefundCrossCurrency,
        why: "the same refund rate on cross-currency payments, rounded up so that every run has some",
    },
    MixEntry {
        label: "FX conversions at the current rate",
        per_mille: 20,
        op: Op::FxConvert,
        why: "customers holding two currencies move money between them before a trip or a payment",
    },
    MixEntry {
        label: "FX conversions with a locked quote (quote, then convert)",
        per_mille: 20,
        op: Op::FxQuoted,
        why: "the app may show a locked price first; each takes two slots (quote, convert), so half as many as direct conversions",
    },
    MixEntry {
        label: "balance queries",
        per_mille: 150,
        op: Op::Balance,
        why: "the app shows the balance when it opens and after each payment",
    },
    MixEntry {
        label: "spending queries (one category this month, with its budget)",
        per_mille: 30,
        op: Op::Spending,
        why: "the budget screen, opened now and then",
    },
    MixEntry {
        label: "history pages (20 newest movements of an account)",
        per_mille: 50,
        op: Op::History,
        why: "the transaction list, opened after some payments; one request per page",
    },
];

/// P2P transfers only.
pub const TRANSFERS_MIX: &[MixEntry] = &[MixEntry {
    label: "p2p transfers",
    per_mille: 1_000,
    op: Op::P2p,
    why: "comparable with other ledgers' transfer benchmarks",
}];

/// Slots of the op table: shares are per mille.
pub const MIX_SLOTS: u32 = 1_000;

const _: () = assert!(per_mille_total(WALLET_MIX) == MIX_SLOTS);
const _: () = assert!(per_mille_total(TRANSFERS_MIX) == MIX_SLOTS);

const fn per_mille_total(mix: &[MixEntry]) -> u32 {
    let mut total = 0;
    let mut index = 0;
    while index < mix.len() {
        total += mix[index].per_mille;
        index += 1;
    }
    total
}

pub fn table(mix: MixName) -> &'static [MixEntry] {
    match mix {
        MixName::Transfers => TRANSFERS_MIX,
        MixName::Wallet => WALLET_MIX,
    }
}

/// One line saying what runs, in what shares.
pub fn describe(mix: MixName) -> String {
    let running: Vec<String> = table(mix)
        .iter()
        .map(|entry| format!("{} {}%", entry.label, f64::from(entry.per_mille) / 10.0))
        .collect();
    format!("{} mix: {}", mix.name(), running.join(", "))
}

/// What a command or query was, for per-kind figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    PayMerchantQr = 0,
    PayMerchantQrCrossCurrency = 1,
    IssuePaymentCode = 2,
    ChargePaymentCode = 3,
    Transfer = 4,
    Deposit = 5,
    WithdrawHold = 6,
    WithdrawPost = 7,
    Refund = 8,
    RefundCrossCurrency = 9,
    FxConvert = 10,
    FxQuote = 11,
    FxConvertQuote = 12,
    BalanceQuery = 13,
    SpendingQuery = 14,
    HistoryPage = 15,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::PayMerchantQr,
        Kind::PayMerchantQrCrossCurrency,
        Kind::IssuePaymentCode,
        Kind::ChargePaymentCode,
        Kind::Transfer,
        Kind::Deposit,
        Kind::WithdrawHold,
        Kind::WithdrawPost,
        Kind::Refund,
        Kind::RefundCrossCurrency,
        Kind::FxConvert,
        Kind::FxQuote,
        Kind::FxConvertQuote,
        Kind::BalanceQuery,
        Kind::SpendingQuery,
        Kind::HistoryPage,
    ];
    pub const COUNT: usize = Kind::ALL.len();

    /// The engine's name of the command kind (`CommandKind::name`), with
    /// the cross-currency payments and their refunds told apart.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PayMerchantQr => "pay_merchant_qr",
            Kind::PayMerchantQrCrossCurrency => "pay_merchant_qr_fx",
            Kind::IssuePaymentCode => "issue_payment_code",
            Kind::ChargePaymentCode => "charge_payment_code",
            Kind::Transfer => "transfer",
            // Top-ups and holds name the customer's card.
            Kind::Deposit => "deposit_from",
            Kind::WithdrawHold => "withdraw_hold_to",
            Kind::WithdrawPost => "withdraw_post",
            Kind::Refund => "refund",
            Kind::RefundCrossCurrency => "refund_fx",
            Kind::FxConvert => "fx_convert",
            Kind::FxQuote => "fx_quote",
            Kind::FxConvertQuote => "fx_convert_quote",
            Kind::BalanceQuery => "balance_query",
            Kind::SpendingQuery => "spending_query",
            Kind::HistoryPage => "history_page",
        }
    }

    pub fn is_query(self) -> bool {
        matches!(
            self,
            Kind::BalanceQuery | Kind::SpendingQuery | Kind::HistoryPage
        )
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The kinds a mix generates (a run of it shows every one of them).
    pub fn of_mix(mix: MixName) -> Vec<Kind> {
        let mut kinds = Vec::new();
        for entry in table(mix) {
            let produced: &[Kind] = match entry.op {
                Op::QrMerchantPresented => &[Kind::PayMerchantQr],
                Op::QrCrossCurrency => &[Kind::PayMerchantQrCrossCurrency],
                Op::QrUserPresented => &[Kind::IssuePaymentCode, Kind::ChargePaymentCode],
                Op::P2p => &[Kind::Transfer],
                Op::TopUp => &[Kind::Deposit],
                Op::Withdrawal => &[Kind::WithdrawHold, Kind::WithdrawPost],
                Op::Refund => &[Kind::Refund],
                Op::RefundCrossCurrency => &[Kind::RefundCrossCurrency],
                Op::FxConvert => &[Kind::FxConvert],
                Op::FxQuoted => &[Kind::FxQuote, Kind::FxConvertQuote],
                Op::Balance => &[Kind::BalanceQuery],
                Op::Spending => &[Kind::SpendingQuery],
                Op::History => &[Kind::HistoryPage],
            };
            kinds.extend_from_slice(produced);
        }
        kinds
    }
}

/// What an acknowledged command makes possible later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// Post this withdrawal hold.
    Post(CommandId),
    /// Charge this payment code (of a customer of this currency pool).
    Charge { code: u64, pool: u8 },
    /// Refund part of this payment, made in this (the merchant's) currency.
    Refund {
        payment: CommandId,
        amount: u64,
        currency: Currency,
        cross_currency: bool,
    },
    /// Convert this quote, paid from this account.
    Convert { quote: CommandId, from: AccountId },
}

/// One batch: commands with their kinds, the queries sent beside them, and
/// the accounts whose history pages are asked for (one request each).
/// Command ids of a batch are consecutive from `first_id`.
#[derive(Debug, Default)]
pub struct Batch {
    pub commands: Vec<Command>,
    pub kinds: Vec<Kind>,
    pub queries: Vec<Query>,
    pub query_kinds: Vec<Kind>,
    pub histories: Vec<AccountId>,
    pub first_id: u128,
    /// Index of a command in the batch, and what to do later if it is
    /// acknowledged `ok`.
    pub follow_ups: Vec<(u32, FollowUp)>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.commands.clear();
        self.kinds.clear();
        self.queries.clear();
        self.query_kinds.clear();
        self.histories.clear();
        self.follow_ups.clear();
        self.first_id = 0;
    }

    /// Slots of the batch: commands, queries and history pages.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.commands.len() + self.queries.len() + self.histories.len()
    }
}

/// Follow-ups waiting, per kind and generator.
const PENDING_MAX: usize = 65_536;
/// A hold lives an hour of command time unless posted.
const HOLD_TIMEOUT_MS: u64 = 3_600_000;
/// A payment code lives a minute of command time unless charged.
const PAYMENT_CODE_LIFETIME_MS: u64 = payrail_engine::limits::PAYMENT_CODE_LIFETIME_MS_DEFAULT;
/// A quote is locked for 30 s of command time (the app's countdown).
const QUOTE_TTL_MS: u64 = 30_000;
/// Entries of a history page, as a phone screen shows them.
pub const HISTORY_PAGE_ENTRIES: u32 = 20;
/// Bits of a command id below the stream number.
const STREAM_SHIFT: u32 = 40;

/// Command ids: `nonce << 64 | stream << 40 | counter`; a stream is one
/// generator (or the seeding), so ids never repeat within a run and differ
/// between runs (and between generator processes) by the nonce.
pub fn command_id(nonce: u64, stream: u64, counter: u64) -> u128 {
    debug_assert!(stream < 1 << 24 && counter < 1 << STREAM_SHIFT);
    u128::from(nonce) << 64 | u128::from(stream) << STREAM_SHIFT | u128::from(counter)
}

#[derive(Clone, Debug)]
enum Skew {
    Uniform,
    /// One sampler per currency pool.
    Zipf(Vec<Zipf>),
}

/// A refund waiting for its slot.
#[derive(Clone, Copy, Debug)]
struct PendingRefund {
    payment: CommandId,
    amount: u64,
    currency: Currency,
}

/// Makes batches for one stream. Cheap: a few random numbers per command.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    nonce: u64,
    stream: u64,
    counter: u64,
    population: Arc<Population>,
    /// 1,000 slots, filled by share: a slot's op is one lookup.
    ops: Vec<Op>,
    skew: Skew,
    /// Merchants are always Zipf-popular, one sampler per currency.
    merchants: Vec<Zipf>,
    pending_posts: VecDeque<CommandId>,
    pending_charges: VecDeque<(u64, u8)>,
    pending_refunds: VecDeque<PendingRefund>,
    pending_refunds_cross: VecDeque<PendingRefund>,
    pending_quotes: VecDeque<(CommandId, AccountId)>,
}

impl Generator {
    pub fn new(
        population: Arc<Population>,
        mix: MixName,
        skew: SkewName,
        zipf_s: f64,
        nonce: u64,
        stream: u64,
        seed: u64,
    ) -> Generator {
        let mut ops = Vec::with_capacity(MIX_SLOTS as usize);
        for entry in table(mix) {
            for _ in 0..entry.per_mille {
                ops.push(entry.op);
            }
        }
        let skew = match skew {
            SkewName::Uniform => Skew::Uniform,
            SkewName::Zipf => Skew::Zipf(
                population
                    .pool_sizes
                    .iter()
                    .map(|&size| Zipf::new(size, zipf_s))
                    .collect(),
            ),
        };
        let merchants = population
            .merchant_keys
            .iter()
            .map(|keys| Zipf::new(keys.len() as u64, zipf_s))
            .collect();
        Generator {
            rng: Rng::new(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            nonce,
            stream,
            counter: 0,
            population,
            ops,
            skew,
            merchants,
            pending_posts: VecDeque::new(),
            pending_charges: VecDeque::new(),
            pending_refunds: VecDeque::new(),
            pending_refunds_cross: VecDeque::new(),
            pending_quotes: VecDeque::new(),
        }
    }

    /// An index into pool `pool`, by the run's skew.
    fn pick(&mut self, pool: usize) -> u64 {
        let size = self.population.pool_sizes[pool];
        match &self.skew {
            Skew::Uniform => self.rng.below(size.max(1)),
            Skew::Zipf(samplers) => samplers[pool].sample(&mut self.rng),
        }
    }

    /// A customer account: its pool and index in the pool.
    fn pick_account(&mut self) -> (usize, u64) {
        let pool = self.population.pick_pool(&mut self.rng);
        (pool, self.pick(pool))
    }

    fn account(&mut self) -> (AccountId, usize) {
        let (pool, index) = self.pick_account();
        (self.population.pool_account(pool, index), pool)
    }

    /// A customer account to pay from, its pool, and the risk context its
    /// owner's gateway sends.
    fn paying_account(&mut self) -> (AccountId, usize, RiskContext) {
        let (pool, index) = self.pick_account();
        (
            self.population.pool_account(pool, index),
            pool,
            self.population.risk_context(pool, index),
        )
    }

    /// A Zipf-popular merchant of currency `pool`, if it has any.
    fn merchant(&mut self, pool: usize) -> Option<u64> {
        if self.population.merchant_keys[pool].is_empty() {
            return None;
        }
        Some(self.merchants[pool].sample(&mut self.rng))
    }

    fn amount(&mut self, pool: usize) -> u64 {
        1 + self.rng.below(2 * CURRENCIES[pool].typical_minor)
    }

    fn p2p(&mut self) -> (Kind, CommandKind) {
        let pool = self.population.pick_pool(&mut self.rng);
        let size = self.population.pool_sizes[pool];
        let from_index = self.pick(pool);
        let mut to_index = self.pick(pool);
        if to_index == from_index {
            to_index = (to_index + 1) % size.max(1);
        }
        (
            Kind::Transfer,
            CommandKind::Transfer {
                from: self.population.pool_account(pool, from_index),
                to: self.population.pool_account(pool, to_index),
                amount: self.amount(pool),
                currency: CURRENCIES[pool].currency,
                context: self.population.risk_context(pool, from_index),
            },
        )
    }

    /// A merchant-presented QR payment, and the amount and currency a
    /// refund of it is in;
    /// a P2P transfer when the currency drawn has no merchants. With
    /// `cross_currency`, the merchant is one of another currency than the
    /// payer's account (a same-currency payment when no other currency has
    /// merchants).
    fn pay_merchant_qr(
        &mut self,
        cross_currency: bool,
    ) -> (Kind, CommandKind, Option<(u64, Currency)>) {
        let (payer, pool, context) = self.paying_account();
        let merchant_pool = if cross_currency {
            self.other_merchant_pool(pool).unwrap_or(pool)
        } else {
            pool
        };
        let Some(merchant) = self.merchant(merchant_pool) else {
            let (kind, command) = self.p2p();
            return (kind, command, None);
        };
        let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
        keys[0] = self.population.merchant_keys[merchant_pool][merchant as usize];
        let amount = self.amount(merchant_pool);
        let currency = CURRENCIES[merchant_pool].currency;
        let kind = if merchant_pool == pool {
            Kind::PayMerchantQr
        } else {
            Kind::PayMerchantQrCrossCurrency
        };
        (
            kind,
            CommandKind::PayMerchantQr {
                payer,
                keys,
                amount,
                fee: 0,
                currency,
                mcc: 0,
                context,
            },
            Some((amount, currency)),
        )
    }

    /// A currency other than `pool` that has merchants, drawn uniformly.
    fn other_merchant_pool(&mut self, pool: usize) -> Option<usize> {
        let start = self.rng.below(CURRENCIES.len() as u64) as usize;
        (0..CURRENCIES.len())
            .map(|step| (start + step) % CURRENCIES.len())
            .find(|&other| other != pool && !self.population.merchant_keys[other].is_empty())
    }

    /// An FX order between two accounts of one customer (direction drawn),
    /// paying from a tenth to twice a typical payment of the paying
    /// currency; None when no customer holds two currencies.
    fn fx_order(&mut self) -> Option<FxOrder> {
        let pairs = &self.population.fx_pairs;
        if pairs.is_empty() {
            return None;
        }
        let pair = pairs[self.rng.below(pairs.len() as u64) as usize];
        let a = (pair.pool_a as usize, u64::from(pair.index_a));
        let b = (pair.pool_b as usize, u64::from(pair.index_b));
        let (from, to) = if self.rng.below(2) == 0 {
            (a, b)
        } else {
            (b, a)
        };
        let typical = CURRENCIES[from.0].typical_minor;
        Some(FxOrder {
            from: self.population.pool_account(from.0, from.1),
            to: self.population.pool_account(to.0, to.1),
            amount: typical / 10 + self.rng.below(2 * typical),
            side: FxSide::Pay,
        })
    }

    /// A payment whose refund becomes possible once it is acknowledged.
    fn payment(
        &mut self,
        cross_currency: bool,
        index: u32,
        id: u128,
        batch: &mut Batch,
    ) -> (Kind, CommandKind) {
        let (kind, command, refund) = self.pay_merchant_qr(cross_currency);
        if let Some((amount, currency)) = refund {
            batch.follow_ups.push((
                index,
                FollowUp::Refund {
                    payment: CommandId(id),
                    amount,
                    currency,
                    cross_currency: kind == Kind::PayMerchantQrCrossCurrency,
                },
            ));
        }
        (kind, command)
    }

    /// Fills `batch` with `slots` commands, queries and history pages, in
    /// the mix's shares.
    pub fn fill(&mut self, slots: usize, batch: &mut Batch) {
        batch.clear();
        // The previous batch's vectors went to the client: reserve once
        // rather than grow by doubling.
        batch.commands.reserve(slots);
        batch.kinds.reserve(slots);
        batch.first_id = command_id(self.nonce, self.stream, self.counter);
        for _ in 0..slots {
            let op = self.ops[self.rng.below(self.ops.len() as u64) as usize];
            let index = batch.commands.len() as u32;
            let id = command_id(self.nonce, self.stream, self.counter);
            let (kind, command) = match op {
                Op::QrMerchantPresented => self.payment(false, index, id, batch),
                Op::QrCrossCurrency => self.payment(true, index, id, batch),
                Op::QrUserPresented => {
                    let charge = self.pending_charges.pop_front().and_then(|(code, pool)| {
                        let merchant = self.merchant(pool as usize)?;
                        Some((code, pool as usize, merchant))
                    });
                    match charge {
                        Some((code, pool, merchant)) => {
                            let amount = self.amount(pool);
                            batch.follow_ups.push((
                                index,
                                FollowUp::Refund {
                                    payment: CommandId(id),
                                    amount,
                                    currency: CURRENCIES[pool].currency,
                                    cross_currency: false,
                                },
                            ));
                            (
                                Kind::ChargePaymentCode,
                                CommandKind::ChargePaymentCode {
                                    merchant: self.population.merchant_account(pool, merchant),
                                    code,
                                    amount,
                                    currency: CURRENCIES[pool].currency,
                                    context: RiskContext::NONE,
                                },
                            )
                        }
                        None => {
                            let (customer, pool) = self.account();
                            let code = payrail_engine::limits::PAYMENT_CODE_MIN
                                + self.rng.below(
                                    payrail_engine::limits::PAYMENT_CODE_MAX
                                        - payrail_engine::limits::PAYMENT_CODE_MIN
                                        + 1,
                                );
                            batch.follow_ups.push((
                                index,
                                FollowUp::Charge {
                                    code,
                                    pool: pool as u8,
                                },
                            ));
                            (
                                Kind::IssuePaymentCode,
                                CommandKind::IssuePaymentCode {
                                    customer,
                                    code,
                                    lifetime_ms: PAYMENT_CODE_LIFETIME_MS,
                                },
                            )
                        }
                    }
                }
                Op::P2p => self.p2p(),
                // From and to the customer's own card in the account's
                // currency, bound and verified at seeding.
                Op::TopUp => {
                    let (pool, index) = self.pick_account();
                    (
                        Kind::Deposit,
                        CommandKind::DepositFrom {
                            account: self.population.pool_account(pool, index),
                            amount: self.amount(pool),
                            currency: CURRENCIES[pool].currency,
                            instrument: self.population.instrument(pool, index),
                        },
                    )
                }
                Op::Withdrawal => match self.pending_posts.pop_front() {
                    Some(hold) => (Kind::WithdrawPost, CommandKind::WithdrawPost { hold }),
                    None => {
                        let (pool, account_index) = self.pick_account();
                        batch
                            .follow_ups
                            .push((index, FollowUp::Post(CommandId(id))));
                        (
                            Kind::WithdrawHold,
                            CommandKind::WithdrawHoldTo {
                                account: self.population.pool_account(pool, account_index),
                                amount: self.amount(pool),
                                currency: CURRENCIES[pool].currency,
                                timeout_ms: HOLD_TIMEOUT_MS,
                                context: self.population.risk_context(pool, account_index),
                                instrument: self.population.instrument(pool, account_index),
                            },
                        )
                    }
                },
                Op::Refund | Op::RefundCrossCurrency => {
                    let cross_currency = op == Op::RefundCrossCurrency;
                    let queue = if cross_currency {
                        &mut self.pending_refunds_cross
                    } else {
                        &mut self.pending_refunds
                    };
                    match queue.pop_front() {
                        Some(refund) => (
                            if cross_currency {
                                Kind::RefundCrossCurrency
                            } else {
                                Kind::Refund
                            },
                            CommandKind::Refund {
                                payment: refund.payment,
                                amount: (refund.amount / 2).max(1),
                                currency: refund.currency,
                            },
                        ),
                        // Nothing paid yet (the first batches): a payment
                        // of that kind instead.
                        None => self.payment(cross_currency, index, id, batch),
                    }
                }
                Op::FxConvert => match self.fx_order() {
                    Some(order) => (Kind::FxConvert, CommandKind::FxConvert(order)),
                    None => self.p2p(),
                },
                Op::FxQuoted => match self.pending_quotes.pop_front() {
                    Some((quote, from)) => (
                        Kind::FxConvertQuote,
                        CommandKind::FxConvertQuote { quote, from },
                    ),
                    None => match self.fx_order() {
                        Some(order) => {
                            batch.follow_ups.push((
                                index,
                                FollowUp::Convert {
                                    quote: CommandId(id),
                                    from: order.from,
                                },
                            ));
                            (
                                Kind::FxQuote,
                                CommandKind::FxQuote {
                                    order,
                                    ttl_ms: QUOTE_TTL_MS,
                                },
                            )
                        }
                        None => self.p2p(),
                    },
                },
                Op::Balance => {
                    let (account, _) = self.account();
                    batch.queries.push(Query::Balance { account });
                    batch.query_kinds.push(Kind::BalanceQuery);
                    continue;
                }
                Op::Spending => {
                    let (account, _) = self.account();
                    let category =
                        Category::ALL[self.rng.below(Category::ALL.len() as u64) as usize];
                    batch.queries.push(Query::Spending {
                        account,
                        month: 0,
                        category: category.code(),
                    });
                    batch.query_kinds.push(Kind::SpendingQuery);
                    continue;
                }
                Op::History => {
                    let (account, _) = self.account();
                    batch.histories.push(account);
                    continue;
                }
            };
            self.counter += 1;
            batch.commands.push(Command::new(id, command));
            batch.kinds.push(kind);
        }
    }

    /// A command of this generator that made a follow-up possible was
    /// acknowledged `ok`: queue the follow-up (bounded; past the bound it is
    /// dropped, and holds, codes and quotes expire on their own).
    pub fn acknowledged(&mut self, follow_up: FollowUp) {
        match follow_up {
            FollowUp::Post(hold) if self.pending_posts.len() < PENDING_MAX => {
                self.pending_posts.push_back(hold)
            }
            FollowUp::Charge { code, pool } if self.pending_charges.len() < PENDING_MAX => {
                self.pending_charges.push_back((code, pool))
            }
            FollowUp::Refund {
                payment,
                amount,
                currency,
                cross_currency,
            } => {
                let queue = if cross_currency {
                    &mut self.pending_refunds_cross
                } else {
                    &mut self.pending_refunds
                };
                if queue.len() < PENDING_MAX {
                    queue.push_back(PendingRefund {
                        payment,
                        amount,
                        currency,
                    });
                }
            }
            FollowUp::Convert { quote, from } if self.pending_quotes.len() < PENDING_MAX => {
                self.pending_quotes.push_back((quote, from))
            }
            _ => {}
        }
    }

    /// Queues the follow-ups of `batch` whose commands were acknowledged `ok`.
    pub fn batch_acknowledged(
        &mut self,
        follow_ups: &[(u32, FollowUp)],
        results: &[payrail_engine::CommandResult],
    ) {
        for &(index, follow_up) in follow_ups {
            if results
                .get(index as usize)
                .is_some_and(|result| result.status.is_ok())
            {
                self.acknowledged(follow_up);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wallet_mix_describes_every_row() {
        let text = describe(MixName::Wallet);
        assert!(text.contains("p2p transfers 15%"), "{text}");
        assert!(text.contains("QR payments, merchant-presented"), "{text}");
        assert!(
            text.contains("FX conversions with a locked quote"),
            "{text}"
        );
        assert!(text.contains("history pages"), "{text}");
        assert!(WALLET_MIX.iter().all(|entry| !entry.why.is_empty()));
        let text = describe(MixName::Transfers);
        assert_eq!(text, "transfers mix: p2p transfers 100%");
        // Every kind the harness knows is generated by the wallet mix.
        let kinds = Kind::of_mix(MixName::Wallet);
        for kind in Kind::ALL {
            assert!(kinds.contains(&kind), "{kind:?}");
        }
        assert_eq!(Kind::of_mix(MixName::Transfers), vec![Kind::Transfer]);
    }

    #[test]
    fn batches_follow_the_mix_and_pay_in_the_right_currencies() {
        let population = Arc::new(Population::build(3, 500, false, 10, 9));
        for skew in [SkewName::Uniform, SkewName::Zipf] {
            let mut generator = Generator::new(
                Arc::clone(&population),
                MixName::Wallet,
                skew,
                1.0,
                77,
                1,
                5,
            );
            let mut batch = Batch::default();
            generator.fill(10_000, &mut batch);
            assert_eq!(batch.slots(), 10_000);
            assert_eq!(batch.commands.len(), batch.kinds.len());
            assert_eq!(batch.queries.len(), batch.query_kinds.len());
            let queries = batch.queries.len();
            assert!((1_500..2_100).contains(&queries), "{queries}");
            let histories = batch.histories.len();
            assert!((350..650).contains(&histories), "{histories}");
            for (query, kind) in batch.queries.iter().zip(&batch.query_kinds) {
                match (query, kind) {
                    (Query::Balance { .. }, Kind::BalanceQuery) => {}
                    (
                        Query::Spending {
                            month, category, ..
                        },
                        Kind::SpendingQuery,
                    ) => {
                        assert_eq!(*month, 0);
                        assert!(Category::from_code(*category).is_some());
                    }
                    other => panic!("{other:?}"),
                }
            }
            let currency_of = |id: AccountId| {
                population
                    .accounts
                    .iter()
                    .find(|account| account.id == id)
                    .map(|account| CURRENCIES[account.currency_index as usize].currency)
            };
            let owner_of = |id: AccountId| {
                population
                    .accounts
                    .iter()
                    .find(|account| account.id == id)
                    .map(|account| account.owner)
            };
            // Every customer payment carries its owner's context: a valid
            // one, the same device for every account of one owner.
            let mut devices = std::collections::HashMap::new();
            let mut check_context = |payer: AccountId, context: RiskContext| {
                assert!(context.is_valid(), "{context:?}");
                assert_ne!(context.device, 0);
                assert_eq!(context.country, *b"CN");
                let owner = owner_of(payer);
                assert!(owner.is_some());
                let device = *devices.entry(owner).or_insert(context.device);
                assert_eq!(device, context.device, "one device per owner");
            };
            for (index, command) in batch.commands.iter().enumerate() {
                assert_eq!(command.id.0, batch.first_id + index as u128);
                match command.kind {
                    CommandKind::PayMerchantQr {
                        payer,
                        currency,
                        keys,
                        context,
                        ..
                    } => {
                        // The merchant is of the code's currency; the payer's
                        // account of another one exactly when the kind says
                        // cross-currency.
                        let pool = CURRENCIES
                            .iter()
                            .position(|spec| spec.currency == currency)
                            .unwrap();
                        assert!(population.merchant_keys[pool].contains(&keys[0]));
                        let cross = batch.kinds[index] == Kind::PayMerchantQrCrossCurrency;
                        assert_eq!(currency_of(payer) != Some(currency), cross);
                        check_context(payer, context);
                    }
                    CommandKind::FxConvert(order) | CommandKind::FxQuote { order, .. } => {
                        assert_eq!(owner_of(order.from), owner_of(order.to));
                        assert!(owner_of(order.from).is_some());
                        assert_ne!(currency_of(order.from), currency_of(order.to));
                        assert!(order.amount > 0);
                    }
                    CommandKind::Transfer {
                        from,
                        to,
                        currency,
                        amount,
                        context,
                    } => {
                        assert_ne!(from, to);
                        assert!(amount > 0);
                        assert_eq!(currency_of(from), Some(currency));
                        assert_eq!(currency_of(to), Some(currency));
                        check_context(from, context);
                    }
                    CommandKind::WithdrawHoldTo {
                        account: payer,
                        context,
                        instrument,
                        currency,
                        ..
                    } => {
                        check_context(payer, context);
                        // The customer's own card, in the account's currency.
                        assert_eq!(owner_of(payer), Some(instrument.owner));
                        assert_eq!(currency_of(payer), Some(currency));
                    }
                    CommandKind::DepositFrom {
                        account,
                        instrument,
                        ..
                    } => assert_eq!(owner_of(account), Some(instrument.owner)),
                    CommandKind::Deposit { .. } | CommandKind::WithdrawHold { .. } => {
                        panic!("the wallet mix names an instrument: {:?}", command.kind)
                    }
                    _ => {}
                }
            }
            // Every kind the mix runs shows up (refunds only once payments
            // are acknowledged).
            for kind in [
                Kind::PayMerchantQr,
                Kind::PayMerchantQrCrossCurrency,
                Kind::IssuePaymentCode,
                Kind::Transfer,
                Kind::Deposit,
                Kind::WithdrawHold,
                Kind::FxConvert,
                Kind::FxQuote,
            ] {
                assert!(batch.kinds.contains(&kind), "{kind:?}");
            }
            for (index, follow_up) in &batch.follow_ups {
                let command = batch.commands[*index as usize];
                match (follow_up, command.kind) {
                    (FollowUp::Post(hold), CommandKind::WithdrawHoldTo { .. }) => {
                        assert_eq!(*hold, command.id)
                    }
                    (
                        FollowUp::Charge { code, .. },
                        CommandKind::IssuePaymentCode { code: issued, .. },
                    ) => {
                        assert_eq!(*code, issued)
                    }
                    (
                        FollowUp::Refund {
                            payment,
                            cross_currency,
                            currency,
                            ..
                        },
                        CommandKind::PayMerchantQr {
                            currency: paid_in, ..
                        },
                    ) => {
                        assert_eq!(*payment, command.id);
                        assert_eq!(*currency, paid_in);
                        assert_eq!(
                            *cross_currency,
                            batch.kinds[*index as usize] == Kind::PayMerchantQrCrossCurrency
                        );
                    }
                    (FollowUp::Convert { quote, from }, CommandKind::FxQuote { order, .. }) => {
                        assert_eq!(*quote, command.id);
                        assert_eq!(*from, order.from);
                    }
                    other => panic!("follow-up {other:?}"),
                }
            }
            let results = vec![payrail_engine::CommandResult::OK; batch.commands.len()];
            let follow_ups = batch.follow_ups.clone();
            generator.batch_acknowledged(&follow_ups, &results);
            generator.fill(3_000, &mut batch);
            for kind in [
                Kind::WithdrawPost,
                Kind::ChargePaymentCode,
                Kind::Refund,
                Kind::RefundCrossCurrency,
                Kind::FxConvertQuote,
            ] {
                assert!(batch.kinds.contains(&kind), "{kind:?}");
            }
            for command in &batch.commands {
                if let CommandKind::ChargePaymentCode {
                    merchant, currency, ..
                } = command.kind
                {
                    assert_eq!(currency_of(merchant), Some(currency));
                }
            }
            // Refunds are of the payments acknowledged, in their currency.
            for (command, kind) in batch.commands.iter().zip(&batch.kinds) {
                if let CommandKind::Refund {
                    payment, currency, ..
                } = command.kind
                {
                    let follow_up = follow_ups
                        .iter()
                        .find_map(|(_, follow_up)| match follow_up {
                            FollowUp::Refund {
                                payment: paid,
                                currency,
                                cross_currency,
                                ..
                            } if *paid == payment => Some((*currency, *cross_currency)),
                            _ => None,
                        });
                    assert_eq!(
                        follow_up,
                        Some((currency, *kind == Kind::RefundCrossCurrency))
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// What generating costs per command, for docs/benchmarks.md:
    /// `cargo test --release -p payrail-loadtest generator_speed -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check; run in release"]
    fn generator_speed() {
        let population = Arc::new(Population::build(3, 1_000_000, false, 10_000, 9));
        for (mix, skew) in [
            (MixName::Transfers, SkewName::Uniform),
            (MixName::Transfers, SkewName::Zipf),
            (MixName::Wallet, SkewName::Uniform),
        ] {
            let mut generator = Generator::new(Arc::clone(&population), mix, skew, 1.0, 1, 1, 1);
            let mut batch = Batch::default();
            let rounds = 500;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                generator.fill(8_190, &mut batch);
                std::hint::black_box(std::mem::take(&mut batch.commands));
            }
            let per_slot = started.elapsed().as_nanos() as f64 / (rounds * 8_190) as f64;
            println!("{} {}: {per_slot:.1} ns per slot", mix.name(), skew.name());
        }
    }
}
