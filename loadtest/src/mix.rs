//! Workload mixes and the batch generator.
//!
//! A mix is a table: one row per kind of wallet traffic, with its share and
//! the operation that generates it, or none while the server does not support
//! that kind yet. Adding a kind when the server gains it is one row here (and
//! its arm in [`Generator::fill`]).

use std::collections::VecDeque;
use std::sync::Arc;

use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::{AccountId, Command, CommandId, CommandKind, Currency, MerchantKey, Query};

use crate::options::{MixName, SkewName};
use crate::population::{Population, CURRENCIES};
use crate::sample::{Rng, Zipf};

/// What one slot of a batch turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A QR payment to a merchant whose code the customer scanned: the
    /// merchant is Zipf-popular within the customer's currency.
    QrMerchantPresented,
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
    /// A partial refund of an earlier acknowledged QR payment.
    Refund,
    /// A balance query (not a command: sent as a query request).
    Balance,
}

/// One row of a mix.
#[derive(Clone, Copy, Debug)]
pub struct MixEntry {
    pub label: &'static str,
    /// Share of the slots, in percent; 0 for kinds not supported yet.
    pub percent: u32,
    /// `None`: the server does not support this kind yet.
    pub op: Option<Op>,
}

/// The wallet mix. The rows without an operation are part of the wallet
/// traffic this harness is meant to drive, but do not exist in the server
/// yet; the run says so.
pub const WALLET_MIX: &[MixEntry] = &[
    MixEntry {
        label: "QR payments, merchant-presented (Zipf-popular merchants)",
        percent: 30,
        op: Some(Op::QrMerchantPresented),
    },
    MixEntry {
        label: "QR payments, user-presented (issue a code, then a merchant charges it)",
        percent: 12,
        op: Some(Op::QrUserPresented),
    },
    MixEntry {
        label: "p2p transfers",
        percent: 18,
        op: Some(Op::P2p),
    },
    MixEntry {
        label: "top-ups",
        percent: 10,
        op: Some(Op::TopUp),
    },
    MixEntry {
        label: "withdrawals (hold, then post)",
        percent: 8,
        op: Some(Op::Withdrawal),
    },
    MixEntry {
        label: "refunds (half of an earlier QR payment)",
        percent: 2,
        op: Some(Op::Refund),
    },
    MixEntry {
        label: "balance queries",
        percent: 20,
        op: Some(Op::Balance),
    },
    MixEntry {
        label: "FX conversions",
        percent: 0,
        op: None,
    },
    MixEntry {
        label: "cross-currency QR payments",
        percent: 0,
        op: None,
    },
    MixEntry {
        label: "history queries",
        percent: 0,
        op: None,
    },
];

/// P2P transfers only.
pub const TRANSFERS_MIX: &[MixEntry] = &[MixEntry {
    label: "p2p transfers",
    percent: 100,
    op: Some(Op::P2p),
}];

const _: () = assert!(percent_total(WALLET_MIX) == 100);
const _: () = assert!(percent_total(TRANSFERS_MIX) == 100);

const fn percent_total(mix: &[MixEntry]) -> u32 {
    let mut total = 0;
    let mut index = 0;
    while index < mix.len() {
        if mix[index].op.is_some() {
            total += mix[index].percent;
        }
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

/// One line saying what runs and what is not supported yet.
pub fn describe(mix: MixName) -> String {
    let entries = table(mix);
    let missing: Vec<&str> = entries
        .iter()
        .filter(|entry| entry.op.is_none())
        .map(|entry| entry.label)
        .collect();
    let running: Vec<String> = entries
        .iter()
        .filter(|entry| entry.op.is_some())
        .map(|entry| format!("{} {}%", entry.label, entry.percent))
        .collect();
    let mut text = format!("{} mix: ", mix.name());
    if !missing.is_empty() {
        text.push_str(&missing.join(", "));
        text.push_str(": not supported by this server yet; ");
    }
    text.push_str("running: ");
    text.push_str(&running.join(", "));
    text
}

/// What a command or query was, for per-kind figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    PayMerchantQr = 0,
    IssuePaymentCode = 1,
    ChargePaymentCode = 2,
    Transfer = 3,
    Deposit = 4,
    WithdrawHold = 5,
    WithdrawPost = 6,
    Refund = 7,
    BalanceQuery = 8,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::PayMerchantQr,
        Kind::IssuePaymentCode,
        Kind::ChargePaymentCode,
        Kind::Transfer,
        Kind::Deposit,
        Kind::WithdrawHold,
        Kind::WithdrawPost,
        Kind::Refund,
        Kind::BalanceQuery,
    ];
    pub const COUNT: usize = Kind::ALL.len();

    /// The engine's name of the command kind (`CommandKind::name`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::PayMerchantQr => "pay_merchant_qr",
            Kind::IssuePaymentCode => "issue_payment_code",
            Kind::ChargePaymentCode => "charge_payment_code",
            Kind::Transfer => "transfer",
            Kind::Deposit => "deposit",
            Kind::WithdrawHold => "withdraw_hold",
            Kind::WithdrawPost => "withdraw_post",
            Kind::Refund => "refund",
            Kind::BalanceQuery => "balance_query",
        }
    }

    pub fn is_query(self) -> bool {
        self == Kind::BalanceQuery
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What an acknowledged command makes possible later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// Post this withdrawal hold.
    Post(CommandId),
    /// Charge this payment code (of a customer of this currency pool).
    Charge { code: u64, pool: u8 },
    /// Refund part of this payment, made in this currency.
    Refund {
        payment: CommandId,
        amount: u64,
        currency: Currency,
    },
}

/// One batch: commands with their kinds, and the queries sent beside them.
/// Command ids of a batch are consecutive from `first_id`.
#[derive(Debug, Default)]
pub struct Batch {
    pub commands: Vec<Command>,
    pub kinds: Vec<Kind>,
    pub queries: Vec<Query>,
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
        self.follow_ups.clear();
        self.first_id = 0;
    }
}

/// Follow-ups waiting, per kind and generator.
const PENDING_MAX: usize = 65_536;
/// A hold lives an hour of command time unless posted.
const HOLD_TIMEOUT_MS: u64 = 3_600_000;
/// A payment code lives a minute of command time unless charged.
const PAYMENT_CODE_LIFETIME_MS: u64 = payrail_engine::limits::PAYMENT_CODE_LIFETIME_MS_DEFAULT;
/// Bits of a command id below the stream number.
const STREAM_SHIFT: u32 = 40;

/// Command ids: `nonce << 64 | stream << 40 | counter`; a stream is one
/// generator (or the seeding), so ids never repeat within a run and differ
/// between runs by the nonce.
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

/// Makes batches for one stream. Cheap: a few random numbers per command.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    nonce: u64,
    stream: u64,
    counter: u64,
    population: Arc<Population>,
    /// 100 slots, filled by share: a slot's op is one lookup.
    ops: Vec<Op>,
    skew: Skew,
    /// Merchants are always Zipf-popular, one sampler per currency.
    merchants: Vec<Zipf>,
    pending_posts: VecDeque<CommandId>,
    pending_charges: VecDeque<(u64, u8)>,
    pending_refunds: VecDeque<(CommandId, u64, Currency)>,
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
        let mut ops = Vec::with_capacity(100);
        for entry in table(mix) {
            if let Some(op) = entry.op {
                for _ in 0..entry.percent {
                    ops.push(op);
                }
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

    fn account(&mut self) -> (AccountId, usize) {
        let pool = self.population.pick_pool(&mut self.rng);
        let index = self.pick(pool);
        (self.population.pool_account(pool, index), pool)
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
                context: payrail_engine::RiskContext::NONE,
            },
        )
    }

    /// A merchant-presented QR payment; a P2P transfer when the currency
    /// drawn has no merchants.
    fn pay_merchant_qr(&mut self) -> (Kind, CommandKind, Option<u64>) {
        let (payer, pool) = self.account();
        let Some(merchant) = self.merchant(pool) else {
            let (kind, command) = self.p2p();
            return (kind, command, None);
        };
        let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
        keys[0] = self.population.merchant_keys[pool][merchant as usize];
        let amount = self.amount(pool);
        (
            Kind::PayMerchantQr,
            CommandKind::PayMerchantQr {
                payer,
                keys,
                amount,
                fee: 0,
                currency: CURRENCIES[pool].currency,
                mcc: 0,
                context: payrail_engine::RiskContext::NONE,
            },
            Some(amount),
        )
    }

    /// Fills `batch` with `slots` commands and queries, in the mix's shares.
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
                Op::QrMerchantPresented => {
                    let (kind, command, amount) = self.pay_merchant_qr();
                    if let (Some(amount), CommandKind::PayMerchantQr { currency, .. }) =
                        (amount, command)
                    {
                        batch.follow_ups.push((
                            index,
                            FollowUp::Refund {
                                payment: CommandId(id),
                                amount,
                                currency,
                            },
                        ));
                    }
                    (kind, command)
                }
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
                                },
                            ));
                            (
                                Kind::ChargePaymentCode,
                                CommandKind::ChargePaymentCode {
                                    merchant: self.population.merchant_account(pool, merchant),
                                    code,
                                    amount,
                                    currency: CURRENCIES[pool].currency,
                                    context: payrail_engine::RiskContext::NONE,
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
                Op::TopUp => {
                    let (account, pool) = self.account();
                    (
                        Kind::Deposit,
                        CommandKind::Deposit {
                            account,
                            amount: self.amount(pool),
                            currency: CURRENCIES[pool].currency,
                        },
                    )
                }
                Op::Withdrawal => match self.pending_posts.pop_front() {
                    Some(hold) => (Kind::WithdrawPost, CommandKind::WithdrawPost { hold }),
                    None => {
                        let (account, pool) = self.account();
                        batch
                            .follow_ups
                            .push((index, FollowUp::Post(CommandId(id))));
                        (
                            Kind::WithdrawHold,
                            CommandKind::WithdrawHold {
                                account,
                                amount: self.amount(pool),
                                currency: CURRENCIES[pool].currency,
                                timeout_ms: HOLD_TIMEOUT_MS,
                                context: payrail_engine::RiskContext::NONE,
                            },
                        )
                    }
                },
                Op::Refund => match self.pending_refunds.pop_front() {
                    Some((payment, amount, currency)) => (
                        Kind::Refund,
                        CommandKind::Refund {
                            payment,
                            amount: (amount / 2).max(1),
                            currency,
                        },
                    ),
                    // Nothing paid yet (the first batches): a payment instead.
                    None => {
                        let (kind, command, amount) = self.pay_merchant_qr();
                        if let (Some(amount), CommandKind::PayMerchantQr { currency, .. }) =
                            (amount, command)
                        {
                            batch.follow_ups.push((
                                index,
                                FollowUp::Refund {
                                    payment: CommandId(id),
                                    amount,
                                    currency,
                                },
                            ));
                        }
                        (kind, command)
                    }
                },
                Op::Balance => {
                    let (account, _) = self.account();
                    batch.queries.push(Query::Balance { account });
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
    /// dropped, and holds and codes expire on their own).
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
            } if self.pending_refunds.len() < PENDING_MAX => {
                self.pending_refunds.push_back((payment, amount, currency))
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
    fn the_wallet_mix_says_what_is_missing() {
        let text = describe(MixName::Wallet);
        assert!(text.contains("not supported by this server yet"), "{text}");
        assert!(text.contains("p2p transfers 18%"), "{text}");
        assert!(text.contains("QR payments, merchant-presented"), "{text}");
        assert!(text.contains("FX conversions"), "{text}");
        let text = describe(MixName::Transfers);
        assert_eq!(text, "transfers mix: running: p2p transfers 100%");
    }

    #[test]
    fn batches_follow_the_mix_and_stay_in_one_currency() {
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
            assert_eq!(batch.commands.len() + batch.queries.len(), 10_000);
            assert_eq!(batch.commands.len(), batch.kinds.len());
            let queries = batch.queries.len();
            assert!((1_700..2_300).contains(&queries), "{queries}");
            let currency_of = |id: AccountId| {
                population
                    .accounts
                    .iter()
                    .find(|account| account.id == id)
                    .map(|account| CURRENCIES[account.currency_index as usize].currency)
            };
            for (index, command) in batch.commands.iter().enumerate() {
                assert_eq!(command.id.0, batch.first_id + index as u128);
                if let CommandKind::Transfer {
                    from,
                    to,
                    currency,
                    amount,
                    context: payrail_engine::RiskContext::NONE,
                } = command.kind
                {
                    assert_ne!(from, to);
                    assert!(amount > 0);
                    assert_eq!(currency_of(from), Some(currency));
                    assert_eq!(currency_of(to), Some(currency));
                }
            }
            // Every kind the mix runs shows up (refunds only once payments
            // are acknowledged).
            for kind in [
                Kind::PayMerchantQr,
                Kind::IssuePaymentCode,
                Kind::Transfer,
                Kind::Deposit,
                Kind::WithdrawHold,
            ] {
                assert!(batch.kinds.contains(&kind), "{kind:?}");
            }
            for (index, follow_up) in &batch.follow_ups {
                let command = batch.commands[*index as usize];
                match (follow_up, command.kind) {
                    (FollowUp::Post(hold), CommandKind::WithdrawHold { .. }) => {
                        assert_eq!(*hold, command.id)
                    }
                    (
                        FollowUp::Charge { code, .. },
                        CommandKind::IssuePaymentCode { code: issued, .. },
                    ) => {
                        assert_eq!(*code, issued)
                    }
                    (FollowUp::Refund { payment, .. }, CommandKind::PayMerchantQr { .. }) => {
                        assert_eq!(*payment, command.id)
                    }
                    other => panic!("follow-up {other:?}"),
                }
            }
            let results = vec![payrail_engine::CommandResult::OK; batch.commands.len()];
            let follow_ups = batch.follow_ups.clone();
            generator.batch_acknowledged(&follow_ups, &results);
            generator.fill(1_000, &mut batch);
            for kind in [Kind::WithdrawPost, Kind::ChargePaymentCode, Kind::Refund] {
                assert!(batch.kinds.contains(&kind), "{kind:?}");
            }
            for command in &batch.commands {
                if let CommandKind::ChargePaymentCode {
                    merchant, currency, ..
                } = command.kind
                {
                    assert_eq!(currency_of(merchant), Some(currency));
                }
                if let CommandKind::PayMerchantQr {
                    payer,
                    currency,
                    keys,
                    ..
                } = command.kind
                {
                    assert_eq!(currency_of(payer), Some(currency));
                    let pool = CURRENCIES
                        .iter()
                        .position(|spec| spec.currency == currency)
                        .unwrap();
                    assert!(population.merchant_keys[pool].contains(&keys[0]));
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
