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
use payrail_bench::payment_mix::{setup, Mix};
use payrail_engine::pipeline::{Engine, EngineConfig, EngineHandle};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::storage::RocksStorage;
use payrail_engine::{Command, LedgerConfig};

const WINDOW: usize = 64;
const BATCH: usize = 8_190;

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
