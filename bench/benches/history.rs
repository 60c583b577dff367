//! History queries: one account with 1,000,000 movements in the history
//! store (segment files, as the history writer appends them), read a page
//! at a time as `payrail history` does.
//!
//! Run: `cargo bench -p payrail-bench --bench history`; figures in
//! docs/benchmarks.md ("History queries").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use payrail_engine::history::Movement;
use payrail_engine::storage::{RocksStorage, Storage};
use payrail_engine::{AccountId, CommandId, Currency};

const MOVEMENTS: u64 = 1_000_000;
/// Movements per batch (one timestamp each), as a busy account would see.
const PER_BATCH: u64 = 4;
const ACCOUNT: AccountId = AccountId(42);
const FIRST_TIMESTAMP: u64 = 1_795_000_000_000_000_000;

fn movement(index: u64) -> Movement {
    let amount = if index % 3 == 0 { 5_000 } else { -1_250 };
    Movement {
        account: ACCOUNT,
        counterparty: AccountId(1_000 + index % 977),
        command: CommandId(u128::from(index) + 1),
        sequence: index / PER_BATCH + 1,
        // One batch a millisecond.
        timestamp: FIRST_TIMESTAMP + (index / PER_BATCH) * 1_000_000,
        position: (index % PER_BATCH) as u32,
        kind: if amount > 0 { "deposit" } else { "transfer" }.into(),
        amount,
        balance: 1_000_000 + index as i64,
        currency: Currency::CNY,
        mcc: 0,
        instrument: None,
    }
}

fn history(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    let started = Instant::now();
    let mut chunk = Vec::with_capacity(10_000);
    for index in 0..MOVEMENTS {
        chunk.push(movement(index));
        if chunk.len() == 10_000 {
            let watermark = chunk.last().unwrap().sequence;
            storage.write_history(&chunk, watermark).unwrap();
            chunk.clear();
        }
    }
    eprintln!(
        "history setup: {MOVEMENTS} movements written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Sanity: the newest page starts with the last movement written.
    let newest = storage.history_page(ACCOUNT, 0, u64::MAX, 0, 50).unwrap();
    assert_eq!(newest.entries.len(), 50);
    assert_eq!(newest.entries[0], movement(MOVEMENTS - 1));
    // A cursor 90% of the way back (900,000 newer movements paged past).
    let mut deep_cursor = 0;
    for _ in 0..(MOVEMENTS * 9 / 10 / 1_000) {
        deep_cursor = storage
            .history_page(ACCOUNT, 0, u64::MAX, deep_cursor, 1_000)
            .unwrap()
            .next_cursor;
    }
    let deep = storage
        .history_page(ACCOUNT, 0, u64::MAX, deep_cursor, 50)
        .unwrap();
    assert_eq!(deep.entries[0], movement(MOVEMENTS / 10 - 1));
    // A one-second window ending 1,000 movements back: a time range walks
    // the chain from the newest entry to its end (docs/persistence.md).
    let middle = movement(MOVEMENTS - 1_000).timestamp - 1_000_000_000;

    let mut group = c.benchmark_group("history_1m_movements");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("newest_page_50", |b| {
        b.iter(|| storage.history_page(ACCOUNT, 0, u64::MAX, 0, 50).unwrap())
    });
    group.bench_function("deep_cursor_page_50", |b| {
        b.iter(|| {
            storage
                .history_page(ACCOUNT, 0, u64::MAX, deep_cursor, 50)
                .unwrap()
        })
    });
    group.bench_function("time_range_page_50", |b| {
        b.iter(|| {
            storage
                .history_page(ACCOUNT, middle, middle + 1_000_000_000, 0, 50)
                .unwrap()
        })
    });
    group.bench_function("page_1000", |b| {
        b.iter(|| {
            storage
                .history_page(ACCOUNT, 0, u64::MAX, 0, 1_000)
                .unwrap()
        })
    });
    group.bench_function("tx_legs", |b| {
        b.iter(|| storage.command_movements(CommandId(123_457)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, history);
criterion_main!(benches);
