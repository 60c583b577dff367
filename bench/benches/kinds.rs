//! `Ledger::apply` per command kind: one batch of 8,190 commands of one kind
//! per iteration, over 100,000 customers and 1,000 merchants, one thread, no
//! I/O. Prerequisites (holds to post, codes to charge, payments to refund)
//! are applied in untimed batches; only the measured kind's batch is timed.
//!
//! Run: `cargo bench -p payrail-bench --bench kinds`; figures in
//! docs/benchmarks.md ("Ledger apply per command kind").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency,
    Ledger, LedgerConfig, MerchantKey, OpenAccount, Status,
};

const BATCH: usize = limits::BATCH_COMMANDS_MAX;
const CUSTOMERS: u64 = 100_000;
const MERCHANTS: u64 = 1_000;
const MERCHANT_FIRST: u64 = 10_000_000;
const CURRENCY: Currency = Currency::CNY;
const T0: u64 = 1_700_000_000_000_000_000;

struct World {
    ledger: Ledger,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    state: u64,
    results: Vec<CommandResult>,
}

fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("bench.payrail", &merchant.to_string())
}

impl World {
    fn new() -> World {
        let config = LedgerConfig {
            idempotency_records_max: 1 << 21,
            ..LedgerConfig::default()
        };
        let mut world = World {
            ledger: Ledger::new(config),
            sequence: 0,
            timestamp: T0,
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            results: Vec::with_capacity(BATCH),
        };
        let open = |account: u64, kind, mcc| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind,
                currency: CURRENCY,
                kyc_tier: 0,
                mcc,
            })
        };
        let customers: Vec<u64> = (1..=CUSTOMERS).collect();
        for chunk in customers.chunks(BATCH) {
            world.apply(
                chunk
                    .iter()
                    .map(|&c| open(c, AccountKind::Customer, 0))
                    .collect(),
            );
            world.apply(
                chunk
                    .iter()
                    .map(|&c| CommandKind::Deposit {
                        account: AccountId(c),
                        amount: 1 << 40,
                        currency: CURRENCY,
                    })
                    .collect(),
            );
        }
        let merchants: Vec<u64> = (MERCHANT_FIRST..MERCHANT_FIRST + MERCHANTS).collect();
        world.apply(
            merchants
                .iter()
                .map(|&m| open(m, AccountKind::Merchant, 5812))
                .collect(),
        );
        world.apply(
            merchants
                .iter()
                .map(|&m| CommandKind::RegisterMerchantKey {
                    merchant: AccountId(m),
                    key: key(m),
                })
                .collect(),
        );
        world
    }

    fn random(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }

    fn customer(&mut self) -> u64 {
        1 + self.random(CUSTOMERS)
    }

    fn merchant(&mut self) -> u64 {
        MERCHANT_FIRST + self.random(MERCHANTS)
    }

    /// Applies one batch with fresh ids; returns the ids and the time `apply` took.
    fn apply(&mut self, kinds: Vec<CommandKind>) -> (Vec<CommandId>, Duration) {
        let batch: Vec<Command> = kinds
            .into_iter()
            .map(|kind| {
                self.next_id += 1;
                Command::new(self.next_id, kind)
            })
            .collect();
        self.sequence += 1;
        self.timestamp += 1_000_000;
        self.results.clear();
        let started = Instant::now();
        self.ledger
            .apply(self.sequence, self.timestamp, &batch, &mut self.results);
        let elapsed = started.elapsed();
        for (command, result) in batch.iter().zip(&self.results) {
            assert_eq!(result.status, Status::Ok, "{command:?}");
        }
        (batch.iter().map(|command| command.id).collect(), elapsed)
    }

    fn pay_merchant_qr(&mut self) -> CommandKind {
        let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
        keys[0] = key(self.merchant());
        CommandKind::PayMerchantQr {
            payer: AccountId(self.customer()),
            keys,
            amount: 1 + self.random(1_000),
            fee: 0,
            currency: CURRENCY,
            mcc: 0,
            context: payrail_engine::RiskContext::NONE,
        }
    }

    /// 8,190 distinct customers (a customer may hold at most 64 holds and 5 codes).
    fn distinct_customers(&mut self) -> Vec<u64> {
        let start = self.random(CUSTOMERS);
        (0..BATCH as u64)
            .map(|n| 1 + (start + n * 7) % CUSTOMERS)
            .collect()
    }
}

fn kinds(c: &mut Criterion) {
    let mut world = World::new();
    let mut group = c.benchmark_group("apply_per_kind");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);

    group.bench_function("deposit", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let batch = (0..BATCH)
                        .map(|_| CommandKind::Deposit {
                            account: AccountId(world.customer()),
                            amount: 1,
                            currency: CURRENCY,
                        })
                        .collect();
                    world.apply(batch).1
                })
                .sum()
        })
    });
    group.bench_function("transfer", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let batch = (0..BATCH)
                        .map(|_| {
                            let from = world.customer();
                            let to = 1 + from % CUSTOMERS;
                            CommandKind::Transfer {
                                from: AccountId(from),
                                to: AccountId(to),
                                amount: 1,
                                currency: CURRENCY,
                                context: payrail_engine::RiskContext::NONE,
                            }
                        })
                        .collect();
                    world.apply(batch).1
                })
                .sum()
        })
    });
    group.bench_function("withdraw_hold_then_post", |b| {
        // Timed: the hold batch and the post batch, two batches per
        // iteration, so elements/s counts withdrawals (hold + post pairs).
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let customers = world.distinct_customers();
                    let holds = customers
                        .iter()
                        .map(|&c| CommandKind::WithdrawHold {
                            account: AccountId(c),
                            amount: 1,
                            currency: CURRENCY,
                            timeout_ms: 60_000,
                            context: payrail_engine::RiskContext::NONE,
                        })
                        .collect();
                    let (ids, hold_time) = world.apply(holds);
                    let posts = ids
                        .into_iter()
                        .map(|hold| CommandKind::WithdrawPost { hold })
                        .collect();
                    hold_time + world.apply(posts).1
                })
                .sum()
        })
    });
    group.bench_function("pay_merchant_qr", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let batch = (0..BATCH).map(|_| world.pay_merchant_qr()).collect();
                    world.apply(batch).1
                })
                .sum()
        })
    });
    group.bench_function("charge_payment_code", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let customers = world.distinct_customers();
                    let base = 100_000_000_000_000_000 + world.random(1 << 40) * 10_000;
                    let issues = customers
                        .iter()
                        .enumerate()
                        .map(|(n, &c)| CommandKind::IssuePaymentCode {
                            customer: AccountId(c),
                            code: base + n as u64,
                            lifetime_ms: 60_000,
                        })
                        .collect();
                    world.apply(issues);
                    let charges = (0..BATCH as u64)
                        .map(|n| CommandKind::ChargePaymentCode {
                            merchant: AccountId(world.merchant()),
                            code: base + n,
                            amount: 1,
                            currency: CURRENCY,
                            context: payrail_engine::RiskContext::NONE,
                        })
                        .collect();
                    world.apply(charges).1
                })
                .sum()
        })
    });
    group.bench_function("refund", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let payments = (0..BATCH).map(|_| world.pay_merchant_qr()).collect();
                    let (ids, _) = world.apply(payments);
                    let refunds = ids
                        .into_iter()
                        .map(|payment| CommandKind::Refund {
                            payment,
                            amount: 1,
                            currency: CURRENCY,
                        })
                        .collect();
                    world.apply(refunds).1
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, kinds);
criterion_main!(benches);
