//! Storage measurements: log append throughput, checkpoint encode/save/load
//! and recovery replay rate, on RocksDB in a real directory.
//!
//! ```text
//! cargo run --release -p payrail-engine --example storage_bench -- \
//!     [--dir target/storage-bench] [--accounts 1000000,10000000] [--replay-commands 4000000] \
//!     [--only append,checkpoint,replay]
//! ```
//!
//! The directory is deleted and recreated: point it at a disk, not tmpfs, or
//! fsync costs nothing and the append figures mean nothing.
//!
//! The replay table gives the CPU time of the recovery's applying thread
//! (the caller's: the apply and the final digest) and of all the process's
//! threads (the replay's reading, history and mapping threads, RocksDB's):
//! on a loaded machine the wall-clock rate says little, the CPU times say
//! what each side cost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use payrail_engine::storage::{
    decode_state, encode_state, recover, Checkpoint, LogEntry, LogRecord, RocksStorage, Storage,
};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, Ledger, LedgerConfig, OpenAccount,
};

const SECOND_NS: u64 = 1_000_000_000;
const START_NS: u64 = 1_700_000_000 * SECOND_NS;

struct Args {
    dir: PathBuf,
    accounts: Vec<usize>,
    replay_commands: usize,
    /// Sections to run: append, checkpoint, replay.
    only: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        dir: PathBuf::from("target/storage-bench"),
        accounts: vec![1_000_000, 10_000_000],
        replay_commands: 4_000_000,
        only: vec!["append".into(), "checkpoint".into(), "replay".into()],
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = PathBuf::from(value),
            "--accounts" => {
                args.accounts = value.split(',').map(|n| n.parse().unwrap()).collect();
            }
            "--replay-commands" => args.replay_commands = value.parse().unwrap(),
            "--only" => args.only = value.split(',').map(String::from).collect(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

fn fresh(dir: &Path) -> RocksStorage {
    let _ = std::fs::remove_dir_all(dir);
    RocksStorage::open(dir).unwrap()
}

fn transfer(id: u128, from: u64, to: u64) -> Command {
    Command::new(
        id,
        CommandKind::Transfer {
            from: AccountId(from),
            to: AccountId(to),
            amount: 100,
            currency: Currency::CNY,
            context: payrail_engine::RiskContext::NONE,
        },
    )
}

fn open(id: u128, account: u64) -> Command {
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Appends records of `batch_commands` transfers, `group` records per
/// synced append, for about `duration`.
fn append_run(dir: &Path, batch_commands: usize, group: usize, duration: Duration) {
    let mut storage = fresh(dir);
    let commands: Vec<Command> = (0..batch_commands)
        .map(|index| transfer(index as u128, 1 + index as u64 % 1000, 2000))
        .collect();
    let mut sequence = 0u64;
    let mut latencies = Vec::new();
    let mut bytes = 0u64;
    let mut encode_time = Duration::ZERO;
    let started = Instant::now();
    // Bounded in time and in count.
    while started.elapsed() < duration && latencies.len() < 1_000_000 {
        let encode_started = Instant::now();
        let records: Vec<(u64, Vec<u8>)> = (0..group)
            .map(|_| {
                sequence += 1;
                let record = LogRecord::batch(sequence, START_NS + sequence, commands.clone());
                (sequence, record.to_bytes())
            })
            .collect();
        encode_time += encode_started.elapsed();
        bytes += records.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        let append_started = Instant::now();
        storage.append(&records).unwrap();
        latencies.push(append_started.elapsed());
        if storage.log_stats().bytes > 1 << 30 {
            storage.trim_log(sequence).unwrap();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let appends = latencies.len() as f64;
    let records = sequence as f64;
    println!(
        "| {batch_commands:>5} | {group:>3} | {:>9.0} | {:>9.0} | {:>11.0} | {:>7.1} | {:>7.0} | {:>7.0} | {:>7.0} | {:>6.2} |",
        appends / elapsed,
        records / elapsed,
        records * batch_commands as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        percentile(&latencies, 1.0).as_secs_f64() * 1e6,
        encode_time.as_secs_f64() * 1e9 / (records * batch_commands as f64),
    );
}

fn seconds(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64())
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// A ledger with `accounts` customer accounts and, unless `age_out`, the
/// idempotency records of their openings (one per account).
fn big_ledger(accounts: usize, age_out: bool) -> Ledger {
    let mut ledger = Ledger::new(LedgerConfig::default());
    let mut sequence = 0;
    let mut id = 0u128;
    let mut next_account = 1u64;
    while (next_account as usize) <= accounts {
        let batch: Vec<Command> = (0..8190)
            .take_while(|offset| next_account as usize + offset <= accounts)
            .map(|offset| {
                id += 1;
                open(id, next_account + offset as u64)
            })
            .collect();
        next_account += batch.len() as u64;
        sequence += 1;
        ledger.apply_batch(sequence, START_NS, &batch);
    }
    if age_out {
        sequence += 1;
        ledger.apply_batch(sequence, START_NS + 25 * 3_600 * SECOND_NS, &[]);
    }
    ledger
}

fn checkpoint_run(dir: &Path, accounts: usize, age_out: bool) {
    let (ledger, build) = timed(|| big_ledger(accounts, age_out));
    let (digest, digest_time) = timed(|| ledger.digest());
    let mut state = Vec::new();
    let ((), encode) = timed(|| encode_state(&ledger, &mut state));
    let (decoded, decode) = timed(|| decode_state(&state, LedgerConfig::default()).unwrap());
    assert_eq!(decoded.digest(), digest);
    drop(decoded);
    let mut storage = fresh(dir);
    let checkpoint = Checkpoint {
        sequence: ledger.sequence() + 1,
        timestamp: ledger.timestamp(),
        digest,
        state,
    };
    let ((), save) = timed(|| storage.save_checkpoint(&checkpoint).unwrap());
    drop(storage);
    let storage = RocksStorage::open(dir).unwrap();
    let (loaded, load) = timed(|| storage.load_checkpoint().unwrap().unwrap());
    assert!(loaded == checkpoint);
    let mut storage = storage;
    let ((_, report), recover_time) =
        timed(|| recover(&mut storage, LedgerConfig::default()).unwrap());
    assert_eq!(report.digest, digest);
    println!(
        "| {accounts:>10} | {:>10} | {:>7.1} | {:>6} | {:>6} | {:>6} | {:>6} | {:>6} | {:>6} | {:>6} |",
        ledger.records_len(),
        checkpoint.state.len() as f64 / 1e6,
        seconds(build),
        seconds(digest_time),
        seconds(encode),
        seconds(decode),
        seconds(save),
        seconds(load),
        seconds(recover_time),
    );
}

/// Logs `commands` commands (opens, deposits, transfers) in records of
/// `batch_commands`, then recovers from the log alone.
fn replay_run(dir: &Path, commands: usize, batch_commands: usize) {
    let mut storage = fresh(dir);
    let accounts = 100_000u64;
    let mut sequence = 0u64;
    let mut id = 0u128;
    let mut written = 0usize;
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut batch = Vec::with_capacity(batch_commands);
    let mut live = Ledger::new(LedgerConfig::default());
    while written < commands {
        id += 1;
        let n = written as u64;
        let command = if n < accounts {
            open(id, n + 1)
        } else if n < 2 * accounts {
            Command::new(
                id,
                CommandKind::Deposit {
                    account: AccountId(n - accounts + 1),
                    amount: 1_000_000,
                    currency: Currency::CNY,
                },
            )
        } else {
            let from = 1 + (n * 7_919) % accounts;
            let to = 1 + (n * 104_729) % accounts;
            transfer(id, from, to)
        };
        batch.push(command);
        written += 1;
        if batch.len() == batch_commands || written == commands {
            sequence += 1;
            let timestamp = START_NS + sequence * 1_000_000;
            live.apply_batch(sequence, timestamp, &batch);
            pending.push((
                sequence,
                LogRecord::batch(sequence, timestamp, std::mem::take(&mut batch)).to_bytes(),
            ));
            if pending.len() == 64 || written == commands {
                storage.append(&pending).unwrap();
                pending.clear();
            }
        }
    }
    let stats = storage.log_stats();
    drop(storage);
    let mut storage = RocksStorage::open(dir).unwrap();
    // Read and decode only, to separate storage from apply (each record's
    // commands into the vector of the record before).
    let ((), read_decode) = timed(|| {
        let mut after = 0;
        let mut spare = Vec::new();
        loop {
            let page = storage.read_log(after, 128).unwrap();
            let Some(last) = page.last() else { break };
            after = last.0;
            for (_, bytes) in &page {
                let record = LogRecord::decode_reusing(bytes, spare).unwrap();
                spare = match record.entry {
                    LogEntry::Batch(commands) => commands,
                    _ => Vec::new(),
                };
            }
        }
    });
    let cpu_before = cpu_times();
    let ((ledger, report), total) =
        timed(|| recover(&mut storage, LedgerConfig::default()).unwrap());
    let cpu_after = cpu_times();
    assert_eq!(ledger.digest(), live.digest());
    // Recovery ends with one digest of the whole state; apart from it:
    let digest_time = report.digest_elapsed;
    let replay = total.saturating_sub(digest_time);
    assert_eq!(report.commands_replayed as usize, commands);
    println!(
        "| {commands:>9} | {batch_commands:>5} | {:>7} | {:>7.1} | {:>6} | {:>6} | {:>6} | {:>10.0} | {:>10.0} | {:>6} | {:>6} |",
        stats.records,
        stats.bytes as f64 / 1e6,
        seconds(read_decode),
        seconds(total),
        seconds(digest_time),
        commands as f64 / read_decode.as_secs_f64(),
        commands as f64 / replay.as_secs_f64(),
        seconds(cpu_after.0 - cpu_before.0),
        seconds(cpu_after.1 - cpu_before.1),
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
    let dir = args.dir.join("db");

    let run = |section: &str| args.only.iter().any(|only| only == section);
    if run("append") {
        println!("## Log append (RocksDB WriteBatch, sync = true), transfers of 46 bytes");
        println!();
        println!("| commands/record | records/append | appends/s | records/s | commands/s | MB/s | p50 us | p99 us | max us | encode ns/command |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for batch_commands in [1, 64, 1024, 8190] {
            for group in [1, 16] {
                append_run(&dir, batch_commands, group, Duration::from_secs(4));
            }
        }
    }
    if run("checkpoint") {
        println!();
        println!("## Checkpoint, seconds (recover = load + decode + digest check)");
        println!();
        println!("| accounts | idempotency records | state MB | build | digest | encode | decode | save | load | recover |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &accounts in &args.accounts {
            for age_out in [true, false] {
                checkpoint_run(&dir, accounts, age_out);
            }
        }
    }
    if run("replay") {
        println!();
        println!("## Recovery replay from the log (no checkpoint), 100k accounts");
        println!();
        println!("| commands | commands/record | records | log MB | read+decode s | recover s | of which final digest s | read+decode commands/s | replay (excl. digest) commands/s | recover: applying thread CPU s | recover: all threads CPU s |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for batch_commands in [64, 1024, 8190] {
            replay_run(&dir, args.replay_commands, batch_commands);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
