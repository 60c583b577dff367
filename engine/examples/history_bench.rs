//! History store measurements (docs/benchmarks.md, "History store"):
//!
//! - `store`: appends `--movements` movements (default 100 million) in log
//!   order to a `HistoryStore`, in jobs of 65,536 as the history writer
//!   does: `--accounts` accounts (default 1 million) chosen at random, and
//!   one hot account that takes 1 % of all movements, or 1 million if that
//!   is more (1 million at the default). Then reopens the store twice
//!   (every segment read and checked; from the head-index snapshot),
//!   and times pages: the newest 50 of random accounts (also as the server
//!   reads them: without waiting first), the hot account's
//!   newest 50, 50 at a cursor 90 % of the way back, a time range, and
//!   `tx show` look-ups.
//! - `append`: the history writer's CPU cost alone: `--movements` movements
//!   of transfers (two legs, `--accounts` accounts at random) built in jobs
//!   of 65,536 in memory first (so they are not in the cache, as the
//!   shards' vectors are not when the writer reads them), then appended,
//!   timing the appending thread's CPU (user and system) per movement.
//! - `rebuild`: logs `--transfers` transfers (default 2 million, so 4
//!   million movements) to a RocksDB data directory, then recovers it
//!   from the log twice: history off, and history on (every movement
//!   rebuilt). The movements-per-second figure is the history-on replay.
//!   Each recovery's CPU time is given too: its applying thread's (the
//!   caller's: the apply and the final digest) and all the process's
//!   threads' (the replay's reading, history and mapping threads,
//!   RocksDB's), which say more than the rate on a loaded machine.
//!
//! ```text
//! cargo run --release -p payrail-engine --example history_bench -- \
//!     --dir target/history-bench [--only store,rebuild] [--movements N] \
//!     [--accounts N] [--transfers N]
//! ```
//!
//! The directory is deleted and recreated; at the default size the store
//! takes about 11 GB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use payrail_engine::history::Movement;
use payrail_engine::storage::{
    recover_with_history, HistoryConfig, HistoryStore, LogRecord, RocksStorage, Storage,
};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, Currency, LedgerConfig, OpenAccount,
};

const SECOND_NS: u64 = 1_000_000_000;
const START_NS: u64 = 1_795_000_000 * SECOND_NS;
const HOT: AccountId = AccountId(7);
const JOB_MOVEMENTS: usize = 65_536;

struct Args {
    dir: PathBuf,
    only: Vec<String>,
    movements: u64,
    accounts: u64,
    transfers: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        dir: PathBuf::from("target/history-bench"),
        only: vec!["store".into(), "rebuild".into()],
        movements: 100_000_000,
        accounts: 1_000_000,
        transfers: 2_000_000,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value),
            "--only" => args.only = value.split(',').map(String::from).collect(),
            "--movements" => args.movements = value.parse().unwrap(),
            "--accounts" => args.accounts = value.parse().unwrap(),
            "--transfers" => args.transfers = value.parse().unwrap(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

/// Times `f` `samples` times; prints p50, p99 and max in µs.
fn time_samples(name: &str, samples: usize, mut f: impl FnMut(usize)) {
    let mut times = Vec::with_capacity(samples);
    for sample in 0..samples {
        let started = Instant::now();
        f(sample);
        times.push(started.elapsed());
    }
    times.sort_unstable();
    println!(
        "| {name} | {samples} | {} | {} | {} |",
        micros(percentile(&times, 0.5)),
        micros(percentile(&times, 0.99)),
        micros(*times.last().unwrap())
    );
}

fn movement(index: u64, account: AccountId, batch: u64) -> Movement {
    Movement {
        account,
        counterparty: AccountId(1_000_000_000 + index % 977),
        command: CommandId(u128::from(index) + 1),
        sequence: batch + 1,
        // 10,000 movements a second of log time.
        timestamp: START_NS + index * 100_000,
        position: (index % 8_192) as u32 * 256,
        kind: "transfer".into(),
        amount: -1_250,
        balance: index as i64,
        currency: Currency::CNY,
        mcc: 0,
        instrument: None,
    }
}

fn store_run(args: &Args) {
    let dir = args.dir.join("store");
    let _ = std::fs::remove_dir_all(&dir);
    let config = HistoryConfig {
        accounts_max: (args.accounts as usize + 1).max(1 << 20),
        ..HistoryConfig::default()
    };
    let (store, _) = HistoryStore::open(&dir, config, 0).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut job = Vec::with_capacity(JOB_MOVEMENTS);
    // The hot account takes 1 % of the movements, or 1 million if that is
    // more (a store smaller than 100 million still has a 1M-movement account).
    let hot_every = (args.movements / 1_000_000).clamp(1, 100);
    let started = Instant::now();
    let mut build = Duration::ZERO;
    for index in 0..args.movements {
        let build_started = Instant::now();
        let account = if index % hot_every == 0 {
            HOT
        } else {
            AccountId(1_000 + rng.next() % args.accounts)
        };
        // One movement per command: every command is its own batch entry.
        job.push(movement(index, account, index / 8_192));
        build += build_started.elapsed();
        if job.len() == JOB_MOVEMENTS || index + 1 == args.movements {
            let watermark = job.last().unwrap().sequence;
            store.append(&job, watermark).unwrap();
            job.clear();
        }
    }
    store.sync().unwrap();
    let elapsed = started.elapsed().saturating_sub(build);
    let stats = store.stats();
    println!(
        "store: {} movements appended in {:.1} s (excluding building them: {:.1} s) = {:.2} M/s; {} segments, {:.2} GB, head index {} accounts",
        stats.movements,
        started.elapsed().as_secs_f64(),
        elapsed.as_secs_f64(),
        stats.movements as f64 / elapsed.as_secs_f64() / 1e6,
        stats.segments,
        stats.bytes as f64 / 1e9,
        stats.accounts
    );
    drop(store);
    let full = HistoryConfig {
        check_all_segments: true,
        ..config
    };
    let opened = Instant::now();
    let (store, report) = HistoryStore::open(&dir, full, 0).unwrap();
    println!(
        "reopen reading every segment: {:.1} s ({} segments, {} movements read and checked)",
        opened.elapsed().as_secs_f64(),
        report.segments,
        report.movements
    );
    assert!(report.damaged.is_empty());
    drop(store);
    let opened = Instant::now();
    let (store, report) = HistoryStore::open(&dir, config, 0).unwrap();
    println!(
        "reopen from the head-index snapshot: {:.2} s ({} segments from the snapshot, {} read, {} movements read and checked)",
        opened.elapsed().as_secs_f64(),
        report.segments_from_snapshot,
        report.segments,
        report.movements
    );
    assert!(report.damaged.is_empty());

    println!("| query | samples | p50 µs | p99 µs | max µs |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rng = Rng(12345);
    time_samples("newest 50, random account", 10_000, |_| {
        let account = AccountId(1_000 + rng.next() % args.accounts);
        let page = store.page(account, 0, u64::MAX, 0, 50).unwrap();
        assert!(!page.entries.is_empty() || args.movements < args.accounts * 100);
    });
    // As the server reads a page: without waiting if it can (the newest
    // segments mapped, the others from the page cache), else as above.
    time_samples(
        "newest 50, random account, as the server reads it",
        10_000,
        |_| {
            let account = AccountId(1_000 + rng.next() % args.accounts);
            let page = match store
                .page_without_waiting(account, 0, u64::MAX, 0, 50)
                .unwrap()
            {
                Some(page) => page,
                None => store.page(account, 0, u64::MAX, 0, 50).unwrap(),
            };
            assert!(!page.entries.is_empty() || args.movements < args.accounts * 100);
        },
    );
    time_samples("newest 50, hot account", 1_000, |_| {
        let page = store.page(HOT, 0, u64::MAX, 0, 50).unwrap();
        assert_eq!(page.entries.len(), 50);
    });
    let hot_movements = args.movements / (args.movements / 1_000_000).clamp(1, 100);
    println!("hot account: {hot_movements} movements");
    let mut deep_cursor = 0;
    for _ in 0..(hot_movements * 9 / 10 / 1_000) {
        deep_cursor = store
            .page(HOT, 0, u64::MAX, deep_cursor, 1_000)
            .unwrap()
            .next_cursor;
    }
    time_samples("50 at a cursor 90 % back, hot account", 1_000, |_| {
        let page = store.page(HOT, 0, u64::MAX, deep_cursor, 50).unwrap();
        assert_eq!(page.entries.len(), 50);
    });
    time_samples("1,000 newest, hot account", 200, |_| {
        let page = store.page(HOT, 0, u64::MAX, 0, 1_000).unwrap();
        assert_eq!(page.entries.len(), 1_000);
    });
    let middle = START_NS + args.movements / 2 * 100_000;
    time_samples("50 in a 1 s range in the middle, hot account", 200, |_| {
        let page = store.page(HOT, middle, middle + SECOND_NS, 0, 50).unwrap();
        assert_eq!(page.entries.len(), 50);
    });
    time_samples("tx show, random command", 1_000, |_| {
        let index = rng.next() % args.movements;
        let legs = store
            .command_movements(CommandId(u128::from(index) + 1))
            .unwrap();
        assert_eq!(legs.len(), 1);
    });
}

fn open_account(id: u128, account: u64) -> Command {
    Command::new(
        id,
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind: AccountKind::Customer,
            currency: Currency::CNY,
            kyc_tier: 1,
            mcc: 0,
        }),
    )
}

fn rebuild_run(args: &Args) {
    let dir = args.dir.join("rebuild");
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = 100_000u64;
    let batch_commands = 8_190u64;
    {
        let mut storage = RocksStorage::open(&dir).unwrap();
        let mut sequence = 0u64;
        let mut id = 0u128;
        let mut commands = Vec::new();
        let mut records = Vec::new();
        let total = 2 * accounts + args.transfers;
        for n in 0..total {
            id += 1;
            commands.push(if n < accounts {
                open_account(id, n + 1)
            } else if n < 2 * accounts {
                Command::new(
                    id,
                    CommandKind::Deposit {
                        account: AccountId(n - accounts + 1),
                        amount: 1_000_000_000,
                        currency: Currency::CNY,
                    },
                )
            } else {
                Command::new(
                    id,
                    CommandKind::Transfer {
                        from: AccountId(1 + (n * 7_919) % accounts),
                        to: AccountId(1 + (n * 104_729) % accounts),
                        amount: 100,
                        currency: Currency::CNY,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            });
            if commands.len() as u64 == batch_commands || n + 1 == total {
                sequence += 1;
                let record = LogRecord::batch(
                    sequence,
                    START_NS + sequence * 1_000_000,
                    std::mem::take(&mut commands),
                );
                records.push((sequence, record.to_bytes()));
                if records.len() == 64 {
                    storage.append(&records).unwrap();
                    records.clear();
                }
            }
        }
        storage.append(&records).unwrap();
    }
    for history in [false, true] {
        let _ = std::fs::remove_dir_all(dir.join("history"));
        let mut storage = RocksStorage::open(&dir).unwrap();
        let cpu_before = cpu_times();
        let started = Instant::now();
        let (_, report) =
            recover_with_history(&mut storage, LedgerConfig::default(), history).unwrap();
        let replay = started.elapsed().saturating_sub(report.digest_elapsed);
        let cpu_after = cpu_times();
        println!(
            "recovery, history {}: {} commands replayed in {:.2} s (digest {:.2} s apart) = {:.2} M commands/s; {} movements rebuilt = {:.2} M movements/s; CPU: applying thread {:.2} s, all threads {:.2} s",
            if history { "on" } else { "off" },
            report.commands_replayed,
            replay.as_secs_f64(),
            report.digest_elapsed.as_secs_f64(),
            report.commands_replayed as f64 / replay.as_secs_f64() / 1e6,
            report.history_rebuilt,
            report.history_rebuilt as f64 / replay.as_secs_f64() / 1e6,
            (cpu_after.0 - cpu_before.0).as_secs_f64(),
            (cpu_after.1 - cpu_before.1).as_secs_f64(),
        );
    }
}

/// CPU time (user and system) the calling thread used so far.
fn thread_cpu() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that we own.
    #[allow(unsafe_code)]
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn append_run(args: &Args) {
    let dir = args.dir.join("append");
    let _ = std::fs::remove_dir_all(&dir);
    let config = HistoryConfig {
        accounts_max: (args.accounts as usize + 1).max(1 << 20),
        ..HistoryConfig::default()
    };
    let (store, _) = HistoryStore::open(&dir, config, 0).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut jobs: Vec<Vec<Vec<Movement>>> = Vec::new();
    let mut index = 0;
    while index < args.movements {
        let mut job = Vec::new();
        let mut filled = 0;
        // Parts of 512 movements, as the shards hand over one batch each.
        while filled < JOB_MOVEMENTS && index < args.movements {
            let batch = index / 512;
            let mut part = Vec::with_capacity(512);
            for _ in 0..256 {
                let from = AccountId(1_000 + rng.next() % args.accounts);
                let to = AccountId(1_000 + rng.next() % args.accounts);
                let mut debit = movement(index, from, batch);
                debit.counterparty = to;
                let mut credit = movement(index, to, batch);
                credit.counterparty = from;
                credit.position += 1;
                credit.amount = -debit.amount;
                part.push(debit);
                part.push(credit);
                index += 2;
            }
            filled += part.len();
            job.push(part);
        }
        jobs.push(job);
    }
    let cpu = thread_cpu();
    let started = Instant::now();
    let mut appended = 0u64;
    for job in &jobs {
        let watermark = job.last().and_then(|part| part.last()).unwrap().sequence;
        store.append_parts(job, watermark).unwrap();
        appended += job.iter().map(|part| part.len() as u64).sum::<u64>();
    }
    let cpu = thread_cpu() - cpu;
    let wall = started.elapsed();
    let stats = store.stats();
    println!(
        "append: {appended} movements, {} accounts, {} segments, {:.1} bytes per movement: thread CPU {:.3} s = {:.3} µs per movement ({:.2} M movements per CPU second); wall {:.2} s",
        stats.accounts,
        stats.segments,
        stats.bytes as f64 / appended as f64,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / appended as f64,
        appended as f64 / cpu.as_secs_f64() / 1e6,
        wall.as_secs_f64(),
    );
}

/// CPU time (user and system) of the calling thread, and of the whole
/// process (every thread, RocksDB's included), so far.
fn cpu_times() -> (Duration, Duration) {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that we own.
    #[allow(unsafe_code)]
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0);
    let thread = Duration::new(time.tv_sec as u64, time.tv_nsec as u32);
    // SAFETY: as above, for the process's clock.
    #[allow(unsafe_code)]
    let result = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0);
    (
        thread,
        Duration::new(time.tv_sec as u64, time.tv_nsec as u32),
    )
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).unwrap();
    let _ = Path::new(&args.dir);
    if args.only.iter().any(|only| only == "store") {
        store_run(&args);
    }
    if args.only.iter().any(|only| only == "append") {
        append_run(&args);
    }
    if args.only.iter().any(|only| only == "rebuild") {
        rebuild_run(&args);
    }
}
