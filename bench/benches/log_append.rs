//! `RocksStorage::append`: one synced write of one log record holding a
//! batch of transfers, by batch size. This is the log's share of a durable
//! command; the pipeline bench adds the sequencer and the executor.
//!
//! Run: `cargo bench -p payrail-bench --bench log_append`; figures in
//! docs/benchmarks.md ("Durable log ...").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_engine::storage::{LogRecord, RocksStorage, Storage};
use payrail_engine::{AccountId, Command, CommandKind, Currency};

fn record(sequence: u64, size: usize) -> Vec<u8> {
    let commands = (0..size as u64)
        .map(|n| {
            Command::new(
                u128::from(sequence) << 32 | u128::from(n),
                CommandKind::Transfer {
                    from: AccountId(n),
                    to: AccountId(n + 1),
                    amount: 1,
                    currency: Currency::CNY,
                    context: payrail_engine::RiskContext::NONE,
                },
            )
        })
        .collect();
    LogRecord::batch(sequence, sequence, commands).to_bytes()
}

fn log_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    let mut sequence = 0u64;
    let mut group = c.benchmark_group("log_append_synced");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for size in [1usize, 64, 1_024, 8_190] {
        let bytes = record(1, size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(
            BenchmarkId::new("commands_per_record", size),
            &size,
            |b, _| {
                b.iter(|| {
                    sequence += 1;
                    // The record's own sequence field is not checked by the
                    // storage (recovery does); only the key is the sequence.
                    storage.append(&[(sequence, bytes.clone())]).unwrap();
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, log_append);
criterion_main!(benches);
