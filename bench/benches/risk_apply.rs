//! `Ledger::apply` of 8,190 transfers per batch with the risk policy off and
//! with the full example policy (docs/risk-policy.example.toml), on one
//! ledger each, one thread, no I/O: what the policy costs the executor, the
//! pipeline's bottleneck, without the noise of fsync and group commit.
//!
//! 1M funded customers (KYC tier 1); every transfer carries the payer's
//! device, a fixed location per payer and country CN, and 1.00 CNY, so with
//! the policy on every rule is evaluated and none fires: batches are ten
//! seconds of command time apart, so a customer pays about once every 20
//! minutes (the velocity limit is 10 in 10 minutes) and the amounts never
//! look anomalous. Every result is checked to be `ok` outside the timed
//! region. During setup every customer pays once, so the measurement sees
//! established customers, whose risk state and budget exist (a customer's
//! first payment also allocates both, about 1.7 KB). Idempotency records are capped at 1 Mi, so after setup every
//! batch also evicts as many as it adds.
//!
//! The `risk_apply_sharded` group runs the same through a `ShardedLedger`
//! of 2 shards (router plus two shard threads, one batch at a time; about
//! half the transfers cross shards, so the payer's half decides the rules
//! and sends its verdict to the payee's shard).
//!
//! Run: `cargo bench -p payrail-bench --bench risk_apply`; figures in
//! docs/benchmarks.md.

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_engine::risk::RiskPolicy;
use payrail_engine::shard::ShardedLedger;
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandKind, CommandResult, Currency, Ledger,
    LedgerConfig, OpenAccount, RiskContext, Status,
};

const BATCH: usize = limits::BATCH_COMMANDS_MAX;
const CUSTOMERS: u64 = 1_000_000;
const RECORDS_MAX: usize = 1024 * 1024;
const SECOND: u64 = 1_000_000_000;
/// 2026-11-10 00:00 UTC.
const T0: u64 = 1_762_732_800 * SECOND;

/// What applies the batches: a lone ledger, or shards behind their router.
#[allow(clippy::large_enum_variant)] // one per bench, never moved in the timed loop
enum Executor {
    Lone(Ledger),
    Sharded(ShardedLedger),
}

struct Workload {
    ledger: Executor,
    /// Commands applied (all with fresh ids, none evicted by age: the
    /// default window is a day of command time), to fill the records.
    applied: usize,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    random: u64,
    batch: Vec<Command>,
    results: Vec<CommandResult>,
}

impl Workload {
    /// `shards`: 0 for a lone ledger.
    fn new(policy: RiskPolicy, shards: usize) -> Workload {
        let config = LedgerConfig {
            idempotency_records_max: RECORDS_MAX,
            ..LedgerConfig::default()
        };
        let ledger = if shards == 0 {
            Executor::Lone(Ledger::new(config))
        } else {
            Executor::Sharded(ShardedLedger::new(config, shards).unwrap())
        };
        let mut workload = Workload {
            ledger,
            applied: 0,
            sequence: 1,
            timestamp: T0,
            next_id: 1,
            random: 0x9E37_79B9_7F4A_7C15,
            batch: Vec::with_capacity(BATCH),
            results: Vec::with_capacity(BATCH),
        };
        match &mut workload.ledger {
            Executor::Lone(ledger) => {
                ledger.set_risk_policy(1, T0, policy);
            }
            Executor::Sharded(sharded) => {
                sharded.set_risk_policy(1, T0, policy);
            }
        }
        let ids: Vec<u64> = (0..CUSTOMERS).collect();
        for chunk in ids.chunks(BATCH / 2) {
            workload.batch.clear();
            for &account in chunk {
                workload.push(CommandKind::OpenAccount(OpenAccount {
                    account: AccountId(account),
                    owner: account,
                    kind: AccountKind::Customer,
                    currency: Currency::CNY,
                    kyc_tier: 1,
                    mcc: 0,
                }));
                workload.push(CommandKind::Deposit {
                    account: AccountId(account),
                    amount: 1 << 40,
                    currency: Currency::CNY,
                });
            }
            workload.apply();
            workload.check();
        }
        // Every customer pays once, so each has its risk state and budget
        // before the measurement: the bench measures established customers
        // (a customer's first payment also allocates both).
        for chunk in ids.chunks(BATCH) {
            workload.batch.clear();
            for &from in chunk {
                workload.push(transfer(from, (from + 1) % CUSTOMERS));
            }
            workload.apply();
            workload.check();
        }
        while workload.applied + BATCH <= RECORDS_MAX {
            workload.fill();
            workload.apply();
            workload.check();
        }
        workload
    }

    fn push(&mut self, kind: CommandKind) {
        self.batch.push(Command::new(self.next_id, kind));
        self.next_id += 1;
    }

    fn random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    fn fill(&mut self) {
        self.batch.clear();
        for _ in 0..BATCH {
            let from = self.random() % CUSTOMERS;
            let to = (from + 1 + self.random() % (CUSTOMERS - 1)) % CUSTOMERS;
            self.push(transfer(from, to));
        }
    }

    fn apply(&mut self) {
        self.sequence += 1;
        self.timestamp += 10 * SECOND;
        self.results.clear();
        match &mut self.ledger {
            Executor::Lone(ledger) => ledger.apply(
                self.sequence,
                self.timestamp,
                black_box(&self.batch),
                &mut self.results,
            ),
            Executor::Sharded(sharded) => sharded.apply(
                self.sequence,
                self.timestamp,
                black_box(&self.batch),
                &mut self.results,
            ),
        }
        self.applied += self.batch.len();
        black_box(&self.results);
    }

    fn check(&self) {
        let failed = self
            .results
            .iter()
            .find(|result| result.status != Status::Ok);
        assert!(failed.is_none(), "a benchmark command failed: {failed:?}");
    }
}

/// 1.00 CNY from `from` to `to`, with the payer's device, its fixed
/// location and country CN.
fn transfer(from: u64, to: u64) -> CommandKind {
    CommandKind::Transfer {
        from: AccountId(from),
        to: AccountId(to),
        amount: 100,
        currency: Currency::CNY,
        context: RiskContext {
            device: from + 1,
            latitude_centidegrees: (from % 1_000) as i16,
            longitude_centidegrees: (from % 2_000) as i16,
            country: *b"CN",
            step_up_verified: false,
        },
    }
}

fn risk_apply(criterion: &mut Criterion) {
    run_group(criterion, "risk_apply", 0);
}

fn risk_apply_sharded(criterion: &mut Criterion) {
    run_group(criterion, "risk_apply_sharded", 2);
}

fn run_group(criterion: &mut Criterion, group_name: &str, shards: usize) {
    let mut group = criterion.benchmark_group(group_name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for (name, policy) in [
        ("off", RiskPolicy::disabled()),
        ("example", RiskPolicy::example()),
    ] {
        let mut workload: Option<Workload> = None;
        group.bench_function(BenchmarkId::new("transfers_8190_policy", name), |bencher| {
            let workload = workload.get_or_insert_with(|| Workload::new(policy.clone(), shards));
            bencher.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    workload.fill();
                    let started = Instant::now();
                    workload.apply();
                    total += started.elapsed();
                    workload.check();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, risk_apply, risk_apply_sharded);
criterion_main!(benches);
