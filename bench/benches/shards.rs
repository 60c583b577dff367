//! Sharded execution, 1 shard against 2, on a payment mix: 80% QR payments
//! to merchants picked by a Zipf law (s = 1, 1,000 merchants: the top
//! merchant takes about 13% of the payments), 20% P2P transfers; 30% of all
//! commands have their two accounts on two shards (when there are two).
//!
//! - `shards_apply`: the sharded ledger alone (router + shard threads), no log.
//! - `shards_durable`: the whole in-process pipeline: sequencer, RocksDB log
//!   with fsync (group commit), router, shards; up to `WINDOW` batches in
//!   flight. A batch counts once its results are back (durable and applied).
//!
//! Each run prints how the work was shared between the shards.
//!
//! Run: `cargo bench -p payrail-bench --bench shards`; figures in
//! docs/benchmarks.md.

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_engine::command::{MerchantKey, QR_MERCHANT_KEYS_MAX};
use payrail_engine::pipeline::{Engine, EngineConfig, EngineHandle};
use payrail_engine::shard::{shard_of_owner, ShardedLedger};
use payrail_engine::storage::RocksStorage;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, LedgerConfig, OpenAccount, RiskContext,
};

const CUSTOMERS: u64 = 100_000;
const MERCHANTS: u64 = 1_000;
const MERCHANT_FIRST: u64 = 10_000_000;
const WINDOW: usize = 64;
const BATCH: usize = 8_190;
/// Share of commands whose two accounts are on two shards (of two).
const CROSS_PERCENT: u64 = 30;

fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("com.example.pay", &format!("M{merchant}"))
}

/// Opening, funding and key registration, in batches.
fn setup() -> Vec<Vec<Command>> {
    let mut id = 1u128 << 100;
    let mut next = || {
        id += 1;
        id
    };
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<Command>, batches: &mut Vec<Vec<Command>>| {
        if batch.len() >= 8_000 {
            batches.push(std::mem::take(batch));
        }
    };
    for customer in 0..CUSTOMERS {
        batch.push(Command::new(
            next(),
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(customer),
                owner: customer,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 1,
                mcc: 0,
            }),
        ));
        batch.push(Command::new(
            next(),
            CommandKind::Deposit {
                account: AccountId(customer),
                amount: 1 << 40,
                currency: Currency::CNY,
            },
        ));
        flush(&mut batch, &mut batches);
    }
    for merchant in 0..MERCHANTS {
        let account = AccountId(MERCHANT_FIRST + merchant);
        batch.push(Command::new(
            next(),
            CommandKind::OpenAccount(OpenAccount {
                account,
                owner: MERCHANT_FIRST + merchant,
                kind: AccountKind::Merchant,
                currency: Currency::CNY,
                kyc_tier: 0,
                mcc: 5411,
            }),
        ));
        batch.push(Command::new(
            next(),
            CommandKind::RegisterMerchantKey {
                merchant: account,
                key: key(merchant),
            },
        ));
        flush(&mut batch, &mut batches);
    }
    batches.push(batch);
    batches
}

/// The payment mix. Accounts are picked by the 2-shard partition so that
/// exactly CROSS_PERCENT of the commands cross shards when there are two.
struct Mix {
    next_id: u128,
    state: u64,
    /// Customers by their shard (of two).
    customers: [Vec<u64>; 2],
    /// Zipf(1) cumulative weights over merchants.
    zipf: Vec<f64>,
}

impl Mix {
    fn new() -> Mix {
        let mut customers = [Vec::new(), Vec::new()];
        for customer in 0..CUSTOMERS {
            customers[shard_of_owner(customer, 2)].push(customer);
        }
        let mut zipf = Vec::with_capacity(MERCHANTS as usize);
        let mut sum = 0.0;
        for rank in 1..=MERCHANTS {
            sum += 1.0 / rank as f64;
            zipf.push(sum);
        }
        for weight in &mut zipf {
            *weight /= sum;
        }
        Mix {
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            customers,
            zipf,
        }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn customer_on(&mut self, shard: usize) -> u64 {
        let pick = self.random() as usize % self.customers[shard].len();
        self.customers[shard][pick]
    }

    fn command(&mut self) -> Command {
        self.next_id += 1;
        let cross = self.random() % 100 < CROSS_PERCENT;
        let kind = if self.random() % 100 < 80 {
            let u = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
            let merchant = self.zipf.partition_point(|&weight| weight < u) as u64;
            let merchant = merchant.min(MERCHANTS - 1);
            let merchant_shard = shard_of_owner(MERCHANT_FIRST + merchant, 2);
            let payer = self.customer_on(merchant_shard ^ usize::from(cross));
            let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
            keys[0] = key(merchant);
            CommandKind::PayMerchantQr {
                payer: AccountId(payer),
                keys,
                amount: 1 + self.random() % 5_000,
                fee: 0,
                currency: Currency::CNY,
                mcc: 0,
                context: RiskContext::NONE,
            }
        } else {
            let from_shard = (self.random() % 2) as usize;
            let from = self.customer_on(from_shard);
            let mut to = self.customer_on(from_shard ^ usize::from(cross));
            if to == from {
                to = self.customer_on(from_shard ^ usize::from(cross));
            }
            CommandKind::Transfer {
                from: AccountId(from),
                to: AccountId(to),
                amount: 1 + self.random() % 1_000,
                currency: Currency::CNY,
                context: RiskContext::NONE,
            }
        };
        Command::new(self.next_id, kind)
    }

    fn batch(&mut self, size: usize) -> Vec<Command> {
        (0..size).map(|_| self.command()).collect()
    }
}

fn config() -> LedgerConfig {
    LedgerConfig {
        // Enough records for every command of a long run: no eviction.
        idempotency_records_max: 64 << 20,
        ..LedgerConfig::default()
    }
}

fn share(steps: &[u64]) -> String {
    let total: u64 = steps.iter().sum();
    let shares: Vec<String> = steps
        .iter()
        .map(|steps| format!("{:.1}%", 100.0 * *steps as f64 / total.max(1) as f64))
        .collect();
    shares.join(" / ")
}

fn apply_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("shards_apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for shards in [1usize, 2] {
        let mut ledger = ShardedLedger::new(config(), shards).unwrap();
        let mut sequence = 0u64;
        let mut timestamp = 1_800_000_000_000_000_000u64;
        for batch in setup() {
            sequence += 1;
            timestamp += 1_000;
            ledger.apply_batch(sequence, timestamp, &batch);
        }
        let mut mix = Mix::new();
        let mut results = Vec::with_capacity(BATCH);
        group.bench_with_input(BenchmarkId::new("payments", shards), &shards, |b, _| {
            b.iter_custom(|batches| {
                let prepared: Vec<Vec<Command>> = (0..batches).map(|_| mix.batch(BATCH)).collect();
                let started = Instant::now();
                for batch in &prepared {
                    sequence += 1;
                    timestamp += 1_000;
                    results.clear();
                    ledger.apply(sequence, timestamp, batch, &mut results);
                }
                started.elapsed()
            });
        });
        let stats = ledger.stats();
        eprintln!(
            "shards_apply/{shards}: work per shard {}; two-party on two shards {}; router waits {}",
            share(&stats.steps),
            stats.pairs_split,
            stats.flushes
        );
    }
    group.finish();
}

/// Submits `batches` batches, at most WINDOW in flight; returns the time taken.
fn run(engine: &EngineHandle, mix: &mut Mix, batches: u64) -> Duration {
    let prepared: Vec<Vec<Command>> = (0..batches).map(|_| mix.batch(BATCH)).collect();
    payrail_bench::submit_windowed(engine, prepared, WINDOW)
}

fn durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("shards_durable");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for shards in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let storage = RocksStorage::open(dir.path()).unwrap();
        let engine = Engine::start(
            storage,
            EngineConfig {
                ledger: config(),
                shards,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let handle = engine.handle();
        for batch in setup() {
            handle.submit_blocking(batch).unwrap();
        }
        let mut mix = Mix::new();
        group.bench_with_input(BenchmarkId::new("payments", shards), &shards, |b, _| {
            b.iter_custom(|batches| run(&handle, &mut mix, batches));
        });
        let stats = handle.stats();
        eprintln!(
            "shards_durable/{shards}: work per shard {}; {:?}",
            share(&stats.shard_steps()),
            stats
                .snapshot()
                .into_iter()
                .filter(|(name, _)| [
                    "group_writes",
                    "commands_logged",
                    "pairs_split",
                    "router_flushes"
                ]
                .contains(name))
                .collect::<Vec<_>>()
        );
        engine.shutdown();
    }
    group.finish();
}

criterion_group!(benches, apply_only, durable);
criterion_main!(benches);
