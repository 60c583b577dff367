//! `Ledger::apply` per command kind: one batch of 8,190 commands of one kind
//! per iteration, over 100,000 customers and 1,000 merchants, one thread, no
//! I/O. Prerequisites (holds to post, codes to charge, payments to refund)
//! are applied in untimed batches; only the measured kind's batch is timed.
//!
//! Run: `cargo bench -p payrail-bench --bench kinds`; figures in
//! docs/benchmarks.md ("Ledger apply per command kind").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use payrail_bench::lone::{LoneWorld, BATCH, CURRENCY, CUSTOMERS};
use payrail_engine::{AccountId, CommandKind, LedgerConfig};

fn kinds(c: &mut Criterion) {
    let mut world = LoneWorld::new(LedgerConfig {
        idempotency_records_max: 1 << 21,
        ..LedgerConfig::default()
    });
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
                    world.apply(batch).wall
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
                    world.apply(batch).wall
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
                    let held = world.apply(holds);
                    let (ids, hold_time) = (held.ids, held.wall);
                    let posts = ids
                        .into_iter()
                        .map(|hold| CommandKind::WithdrawPost { hold })
                        .collect();
                    hold_time + world.apply(posts).wall
                })
                .sum()
        })
    });
    group.bench_function("pay_merchant_qr", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let batch = (0..BATCH).map(|_| world.pay_merchant_qr(0)).collect();
                    world.apply(batch).wall
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
                    world.apply(charges).wall
                })
                .sum()
        })
    });
    group.bench_function("refund", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let payments = (0..BATCH).map(|_| world.pay_merchant_qr(0)).collect();
                    let ids = world.apply(payments).ids;
                    let refunds = ids
                        .into_iter()
                        .map(|payment| CommandKind::Refund {
                            payment,
                            amount: 1,
                            currency: CURRENCY,
                        })
                        .collect();
                    world.apply(refunds).wall
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, kinds);
criterion_main!(benches);
