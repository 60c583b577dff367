//! History pages at scale: a history store of `PAYRAIL_HISTORY_MOVEMENTS`
//! movements (default 10 million), written directly through the segment
//! writer (`HistoryStore::append_parts`, jobs of 65,536 movements as the
//! history writer sends them; no ledger), spread at random over one
//! account per 100 movements (so a random account has about 100 and its
//! newest page is a full 50; 1 million accounts at 100 million) plus one
//! hot account that takes 1 million of them; then pages of 50 timed as
//! `payrail history` asks for them.
//!
//! Building is bounded in time (`PAYRAIL_HISTORY_BUILD_SECONDS`, default
//! 900): past it the store keeps what was written and the benches run on
//! that (the size is printed and in the group's name). The store takes
//! about 50 bytes a movement on disk in segment version 4 (103 before;
//! 100 million: about 5 GB), in `PAYRAIL_HISTORY_DIR` (default: a
//! temporary directory), deleted afterwards.
//!
//! Run: `PAYRAIL_HISTORY_MOVEMENTS=30000000 cargo bench -p payrail-bench
//! --bench history_scale`; figures in docs/benchmarks.md ("History store").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use payrail_engine::history::Movement;
use payrail_engine::storage::{HistoryConfig, HistoryStore};
use payrail_engine::{AccountId, CommandId, Currency};

/// Movements per account (but the hot one), on average.
const MOVEMENTS_PER_ACCOUNT: u64 = 100;
const FIRST_ACCOUNT: u64 = 1_000;
const HOT: AccountId = AccountId(7);
/// Movements of the hot account.
const HOT_MOVEMENTS: u64 = 1_000_000;
const JOB_MOVEMENTS: usize = 65_536;
/// Movements a batch (one sequence number and timestamp).
const BATCH_MOVEMENTS: u64 = 512;
const FIRST_TIMESTAMP: u64 = 1_795_000_000_000_000_000;
const PAGE: u32 = 50;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| value.replace('_', "").parse().expect(name))
        .unwrap_or(default)
}

/// A small fast generator (xorshift), so building is not the bench.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn movement(index: u64, account: AccountId) -> Movement {
    let batch = index / BATCH_MOVEMENTS;
    Movement {
        account,
        counterparty: AccountId(FIRST_ACCOUNT + index % 977),
        command: CommandId(u128::from(index) + 1),
        sequence: batch + 1,
        // 100,000 movements a second of log time.
        timestamp: FIRST_TIMESTAMP + index * 10_000,
        position: (index % BATCH_MOVEMENTS) as u32 * 256,
        kind: "transfer".into(),
        amount: -1_250,
        balance: index as i64,
        currency: Currency::CNY,
        mcc: 0,
        instrument: None,
    }
}

/// Every how many movements one is the hot account's (1 million of them
/// from 2 million movements on; half of a smaller store).
fn hot_every(movements: u64) -> u64 {
    (movements / HOT_MOVEMENTS).max(2)
}

/// Writes up to `movements` movements, stopping at `budget`; returns how
/// many were written.
fn build(store: &HistoryStore, movements: u64, accounts: u64, budget: Duration) -> u64 {
    let hot_every = hot_every(movements);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut job: Vec<Vec<Movement>> = Vec::new();
    let mut part = Vec::with_capacity(BATCH_MOVEMENTS as usize);
    let mut in_job = 0;
    let mut written = 0;
    for index in 0..movements {
        let account = if index % hot_every == 0 {
            HOT
        } else {
            AccountId(FIRST_ACCOUNT + rng.next() % accounts)
        };
        part.push(movement(index, account));
        if part.len() as u64 == BATCH_MOVEMENTS || index + 1 == movements {
            in_job += part.len();
            job.push(std::mem::take(&mut part));
            part.reserve(BATCH_MOVEMENTS as usize);
        }
        if in_job >= JOB_MOVEMENTS || index + 1 == movements {
            let watermark = job.last().and_then(|part| part.last()).unwrap().sequence;
            store.append_parts(&job, watermark).unwrap();
            written = index + 1;
            job.clear();
            in_job = 0;
            if started.elapsed() > budget {
                eprintln!("history_scale: the build budget ran out");
                break;
            }
        }
    }
    store.sync().unwrap();
    written
}

fn history_scale(c: &mut Criterion) {
    let movements = env_u64("PAYRAIL_HISTORY_MOVEMENTS", 10_000_000);
    let budget = Duration::from_secs(env_u64("PAYRAIL_HISTORY_BUILD_SECONDS", 900));
    let parent = std::env::var_os("PAYRAIL_HISTORY_DIR");
    let dir = match &parent {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let accounts = (movements / MOVEMENTS_PER_ACCOUNT).max(1_000);
    let config = HistoryConfig {
        accounts_max: (accounts + 16) as usize,
        ..HistoryConfig::default()
    };
    let (store, _) = HistoryStore::open(dir.path(), config, 0).unwrap();
    let started = Instant::now();
    let written = build(&store, movements, accounts, budget);
    let stats = store.stats();
    let hot = store.page(HOT, 0, u64::MAX, 0, 1).unwrap();
    assert_eq!(hot.entries.len(), 1);
    eprintln!(
        "history_scale: {written} movements ({} segments, {:.2} GB, {} accounts) written in {:.1} s",
        stats.segments,
        stats.bytes as f64 / 1e9,
        stats.accounts,
        started.elapsed().as_secs_f64()
    );
    // The hot account's cursor 90 % of the way back (pages of 1,000).
    let hot_movements = written / hot_every(movements);
    let target = hot_movements * 9 / 10;
    let mut cursor = 0;
    let mut skipped = 0;
    while skipped < target {
        let page = store.page(HOT, 0, u64::MAX, cursor, 1_000).unwrap();
        skipped += page.entries.len() as u64;
        cursor = page.next_cursor;
        if cursor == 0 {
            break;
        }
    }
    assert_ne!(cursor, 0, "the hot account has {skipped} movements");

    let millions = written as f64 / 1e6;
    let mut group = c.benchmark_group(format!("history_scale_{millions:.0}M"));
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    let mut rng = Rng(12_345);
    group.bench_function("page_50_newest_random_account", |b| {
        b.iter_batched(
            || AccountId(FIRST_ACCOUNT + rng.next() % accounts),
            |account| {
                let page = store.page(account, 0, u64::MAX, 0, PAGE).unwrap();
                assert!(!page.entries.is_empty() || written < movements);
                page
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("page_50_newest_hot_account_1M", |b| {
        b.iter(|| {
            let page = store.page(HOT, 0, u64::MAX, 0, PAGE).unwrap();
            assert_eq!(page.entries.len(), PAGE as usize);
            page
        })
    });
    group.bench_function("page_50_hot_account_1M_at_cursor_90pct_back", |b| {
        b.iter(|| {
            let page = store.page(HOT, 0, u64::MAX, cursor, PAGE).unwrap();
            assert_eq!(page.entries.len(), PAGE as usize);
            page
        })
    });
    group.finish();
}

criterion_group!(benches, history_scale);
criterion_main!(benches);
