//! Durable commands/s in process: the sequencer, the RocksDB log with fsync
//! (group commit), and the executor, without the network.
//!
//! Each iteration submits one batch; up to `WINDOW` batches are in flight at
//! once, as several gateway connections would have them, so small batches
//! share fsyncs through group commit. A batch counts once its results are
//! back, i.e. once it is durable and applied.
//!
//! Run: `cargo bench -p payrail-bench --bench pipeline`; figures in
//! docs/benchmarks.md.

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_engine::pipeline::{Engine, EngineConfig, EngineHandle};
use payrail_engine::storage::RocksStorage;
use payrail_engine::{AccountId, AccountKind, Command, CommandKind, Currency, OpenAccount};

const ACCOUNTS: u64 = 100_000;
const WINDOW: usize = 64;

fn open_accounts(engine: &EngineHandle) {
    let mut id = 1u128 << 100;
    let mut batch = Vec::new();
    for account in 0..ACCOUNTS {
        id += 1;
        batch.push(Command::new(
            id,
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 1,
                mcc: 0,
            }),
        ));
        id += 1;
        batch.push(Command::new(
            id,
            CommandKind::Deposit {
                account: AccountId(account),
                amount: 1 << 40,
                currency: Currency::CNY,
            },
        ));
        if batch.len() >= 8_000 {
            engine.submit_blocking(std::mem::take(&mut batch)).ok();
        }
    }
    if !batch.is_empty() {
        engine.submit_blocking(batch).ok();
    }
}

/// Random transfers with fresh ids.
struct Workload {
    next_id: u128,
    state: u64,
}

impl Workload {
    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn batch(&mut self, size: usize) -> Vec<Command> {
        (0..size)
            .map(|_| {
                self.next_id += 1;
                let from = self.random() % ACCOUNTS;
                let to = (from + 1 + self.random() % (ACCOUNTS - 1)) % ACCOUNTS;
                Command::new(
                    self.next_id,
                    CommandKind::Transfer {
                        from: AccountId(from),
                        to: AccountId(to),
                        amount: 1,
                        currency: Currency::CNY,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            })
            .collect()
    }
}

/// Submits `batches` batches of `size`, at most WINDOW in flight; returns the time taken.
fn run(engine: &EngineHandle, workload: &mut Workload, size: usize, batches: u64) -> Duration {
    let prepared: Vec<Vec<Command>> = (0..batches).map(|_| workload.batch(size)).collect();
    payrail_bench::submit_windowed(engine, prepared, WINDOW)
}

fn durable(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let storage = RocksStorage::open(dir.path()).unwrap_or_else(|error| panic!("open: {error}"));
    // PAYRAIL_BENCH_SHARDS=N runs N shards (default: the engine's, one per core).
    let mut config = EngineConfig::default();
    if let Some(shards) = std::env::var("PAYRAIL_BENCH_SHARDS")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        config.shards = shards;
    }
    let engine = Engine::start(storage, config).unwrap_or_else(|error| panic!("start: {error}"));
    let handle = engine.handle();
    open_accounts(&handle);
    let mut workload = Workload {
        next_id: 1,
        state: 0x9E37_79B9_7F4A_7C15,
    };

    let mut group = c.benchmark_group("pipeline_durable");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for size in [1usize, 64, 1_024, 8_190] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(
            BenchmarkId::new("transfers_batch", size),
            &size,
            |b, &size| {
                b.iter_custom(|batches| run(&handle, &mut workload, size, batches));
            },
        );
    }
    group.finish();
    engine.shutdown();
}

criterion_group!(benches, durable);
criterion_main!(benches);
