//! Durable commands/s in process: the sequencer, the RocksDB log with fsync
//! (group commit), and the executor, without the network.
//!
//! Each iteration submits one batch; up to `WINDOW` batches are in flight at
//! once, as several gateway connections would have them, so small batches
//! share fsyncs through group commit. A batch counts once its results are
//! back, i.e. once it is durable and applied.
//!
//! The `pipeline_risk` group runs the same durable transfers (batches of
//! 8,190, 1M customers) twice: with no risk policy, and with the full
//! example policy (docs/risk-policy.example.toml) put in force through the
//! log, every transfer carrying a device, a location and a country, so every
//! rule is evaluated on every payment. It prints how many were approved.
//!
//! Run: `cargo bench -p payrail-bench --bench pipeline` (with movement
//! history, the default; `PAYRAIL_BENCH_HISTORY=off` without); only the risk
//! comparison: `cargo bench -p payrail-bench --bench pipeline -- pipeline_risk`;
//! figures in docs/benchmarks.md.

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use payrail_engine::pipeline::{Engine, EngineConfig, EngineHandle};
use payrail_engine::risk::RiskPolicy;
use payrail_engine::storage::RocksStorage;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, OpenAccount, RiskContext,
};

const ACCOUNTS: u64 = 100_000;
/// Customers of the risk comparison: enough that a run's transfers stay far
/// below the example policy's velocity limit (10 in 10 minutes) per customer.
const RISK_ACCOUNTS: u64 = 1_000_000;
const WINDOW: usize = 64;

fn open_accounts(engine: &EngineHandle, accounts: u64) {
    let mut id = 1u128 << 100;
    let mut batch = Vec::new();
    for account in 0..accounts {
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
    accounts: u64,
    /// Send a device (the payer's own), a location (the payer's city) and
    /// a country with every transfer.
    with_context: bool,
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
                let accounts = self.accounts;
                let from = self.random() % accounts;
                let to = (from + 1 + self.random() % (accounts - 1)) % accounts;
                let context = if self.with_context {
                    RiskContext {
                        device: from + 1,
                        latitude_centidegrees: (from % 1_000) as i16,
                        longitude_centidegrees: (from % 2_000) as i16,
                        country: *b"CN",
                        step_up_verified: false,
                    }
                } else {
                    RiskContext::NONE
                };
                Command::new(
                    self.next_id,
                    CommandKind::Transfer {
                        from: AccountId(from),
                        to: AccountId(to),
                        amount: 1,
                        currency: Currency::CNY,
                        context,
                    },
                )
            })
            .collect()
    }
}

/// Submits `batches` batches of `size`, at most WINDOW in flight; returns the
/// time taken. Counts the results that were not `ok` in `refused`.
fn run(
    engine: &EngineHandle,
    workload: &mut Workload,
    size: usize,
    batches: u64,
    refused: &Arc<AtomicU64>,
) -> Duration {
    let prepared: Vec<Vec<Command>> = (0..batches).map(|_| workload.batch(size)).collect();
    payrail_bench::submit_windowed_counting(engine, prepared, WINDOW, refused)
}

fn durable(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let storage = RocksStorage::open(dir.path()).unwrap_or_else(|error| panic!("open: {error}"));
    // PAYRAIL_BENCH_SHARDS=N runs N shards (default: the engine's, one per core).
    // PAYRAIL_BENCH_HISTORY=off measures without the movement history.
    let mut config = EngineConfig {
        history: std::env::var("PAYRAIL_BENCH_HISTORY").map_or(true, |value| value != "off"),
        ..EngineConfig::default()
    };
    if let Some(shards) = std::env::var("PAYRAIL_BENCH_SHARDS")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        config.shards = shards;
    }
    let engine = Engine::start(storage, config).unwrap_or_else(|error| panic!("start: {error}"));
    let handle = engine.handle();
    open_accounts(&handle, ACCOUNTS);
    let mut workload = Workload {
        next_id: 1,
        state: 0x9E37_79B9_7F4A_7C15,
        accounts: ACCOUNTS,
        with_context: false,
    };
    let refused = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("pipeline_durable");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for size in [1usize, 64, 1_024, 8_190] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(
            BenchmarkId::new("transfers_batch", size),
            &size,
            |b, &size| {
                b.iter_custom(|batches| run(&handle, &mut workload, size, batches, &refused));
            },
        );
    }
    group.finish();
    engine.shutdown();
}

/// Durable transfers with the risk policy off, then on (module docs).
fn risk_on_off(c: &mut Criterion) {
    let size = 8_190usize;
    let mut group = c.benchmark_group("pipeline_risk");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(size as u64));
    for policy in ["off", "example"] {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
        let storage =
            RocksStorage::open(dir.path()).unwrap_or_else(|error| panic!("open: {error}"));
        let engine = Engine::start(storage, EngineConfig::default())
            .unwrap_or_else(|error| panic!("start: {error}"));
        let handle = engine.handle();
        if policy == "example" {
            let set = handle.set_risk_policy_blocking(RiskPolicy::example());
            assert!(matches!(set, Ok(Ok(_))), "{set:?}");
        }
        open_accounts(&handle, RISK_ACCOUNTS);
        let mut workload = Workload {
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            accounts: RISK_ACCOUNTS,
            with_context: true,
        };
        let refused = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        group.bench_with_input(
            BenchmarkId::new("transfers_8190_policy", policy),
            &size,
            |b, &size| {
                b.iter_custom(|batches| {
                    sent.fetch_add(batches * size as u64, Ordering::Relaxed);
                    run(&handle, &mut workload, size, batches, &refused)
                });
            },
        );
        let sent = sent.load(Ordering::Relaxed);
        let refused = refused.load(Ordering::Relaxed);
        eprintln!(
            "policy {policy}: {sent} transfers, {refused} refused ({:.3} %)",
            refused as f64 * 100.0 / sent.max(1) as f64
        );
        engine.shutdown();
    }
    group.finish();
}

criterion_group!(benches, durable, risk_on_off);
criterion_main!(benches);
