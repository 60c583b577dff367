//! The checkpointer's work on a real state: recovers the state of a data
//! directory (a server's, after a load test), then times what a checkpoint
//! does with it: the digest (with the buffered hasher, and with
//! `unbuffered` also as before it), the encoding into one vector, the save
//! of that whole image (`save-whole`, as before the streamed write) and the
//! streamed encode-and-write (`save`) into a fresh RocksDB, then the load
//! of what it wrote, decoded as the chunks are read (and with `load-whole`
//! read whole first, as before), and the process's peak resident size
//! during each.
//!
//! ```text
//! cargo run --release -p payrail-engine --example checkpoint_bench -- \
//!     --data DIR/data --out /tmp/checkpoint-bench \
//!     [--only unbuffered,digest,encode,save-whole,save,load-whole] [--rounds 2]
//! ```
//!
//! `--out` is deleted and recreated. The data directory is opened and its
//! log tail replayed (not changed otherwise: no history is rebuilt).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use payrail_engine::digest::DigestHasher;
use payrail_engine::storage::{
    decode_state_and_config, encode_state, recover_with_history, Checkpoint, LedgerCheckpoint,
    RocksStorage, Storage,
};
use payrail_engine::LedgerConfig;

struct Args {
    data: PathBuf,
    out: PathBuf,
    only: Vec<String>,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        data: PathBuf::from("payrail-data"),
        out: PathBuf::from("target/checkpoint-bench"),
        only: vec![
            "unbuffered".into(),
            "digest".into(),
            "encode".into(),
            "save".into(),
            "load-whole".into(),
        ],
        rounds: 2,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = PathBuf::from(value),
            "--out" => args.out = PathBuf::from(value),
            "--only" => args.only = value.split(',').map(String::from).collect(),
            "--rounds" => args.rounds = value.parse().unwrap(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

/// A field of /proc/self/status in MiB (Linux; 0 elsewhere).
fn status_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Resets the peak resident size (VmHWM) to the current one (Linux).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Seconds since the Unix epoch, to place a step in a profile taken with
/// `perf record -k realtime` (`perf report --time FROM,TO`).
fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Runs `work`, printing its time, how far the resident size rose above
/// where it was, and when it ran (wall clock, for a profile's time range).
fn measured<T>(what: &str, work: impl FnOnce() -> T) -> T {
    reset_peak();
    let before = status_mib("VmRSS:");
    let from = epoch_seconds();
    let started = Instant::now();
    let value = work();
    let elapsed = started.elapsed();
    let to = epoch_seconds();
    println!(
        "| {what} | {:.2} s | {} MiB | +{} MiB | {from:.6},{to:.6} |",
        elapsed.as_secs_f64(),
        status_mib("VmHWM:"),
        status_mib("VmHWM:").saturating_sub(before),
    );
    value
}

fn main() {
    let args = parse_args();
    let mut storage = RocksStorage::open(&args.data).unwrap();
    let config = match storage.load_checkpoint().unwrap() {
        Some(checkpoint) => {
            let (_, stored) = decode_state_and_config(&checkpoint.state, LedgerConfig::default())
                .expect("the checkpoint decodes");
            stored.unwrap_or_default()
        }
        None => LedgerConfig::default(),
    };
    let started = Instant::now();
    let (ledger, report) = recover_with_history(&mut storage, config, false).unwrap();
    drop(storage);
    println!(
        "recovered {} accounts, {} records at sequence {} in {:.1} s (checkpoint read chunk by chunk); resident {} MiB, peak {} MiB",
        ledger.accounts().len(),
        ledger.records_len(),
        report.last_sequence,
        started.elapsed().as_secs_f64(),
        status_mib("VmRSS:"),
        status_mib("VmHWM:"),
    );
    let tables: Vec<String> = ledger
        .tables()
        .iter()
        .map(|table| format!("{} {}", table.name, table.entries))
        .collect();
    println!("tables: {}", tables.join(", "));
    println!("| step | time | peak resident | above the start | wall clock (perf --time) |");
    println!("|---|---:|---:|---:|---|");
    let mut digest = [0u8; 32];
    for _ in 0..args.rounds {
        if args.only.iter().any(|only| only == "unbuffered") {
            let unbuffered = measured("digest, unbuffered hasher", || {
                ledger.digest_with(DigestHasher::with_buffer(0))
            });
            digest = measured("digest", || ledger.digest());
            assert_eq!(digest, unbuffered);
        } else if args.only.iter().any(|only| only == "digest") {
            digest = measured("digest", || ledger.digest());
        }
    }
    if digest == [0u8; 32] {
        digest = ledger.digest();
    }
    let mut state = Vec::new();
    for _ in 0..args.rounds {
        if args.only.iter().any(|only| only == "encode") {
            state = measured("encode", || {
                let mut state = Vec::new();
                encode_state(&ledger, &mut state);
                state
            });
        }
    }
    println!(
        "state {} bytes, digest {}",
        state.len(),
        payrail_engine::storage::hex32(&digest)
    );
    if args.only.iter().any(|only| only == "save-whole") {
        // As before the streamed write: the whole image, then its chunks.
        let _ = std::fs::remove_dir_all(&args.out);
        let mut out = RocksStorage::open(&args.out).unwrap();
        if state.is_empty() {
            encode_state(&ledger, &mut state);
        }
        let checkpoint = Checkpoint {
            sequence: ledger.sequence().max(1),
            timestamp: ledger.timestamp(),
            digest,
            state: std::mem::take(&mut state),
        };
        measured(
            "save of the whole image (chunks to a table file, ingest)",
            || out.save_checkpoint(&checkpoint).unwrap(),
        );
    }
    drop(state);
    if args.only.iter().any(|only| only == "save") {
        let _ = std::fs::remove_dir_all(&args.out);
        let mut out = RocksStorage::open(&args.out).unwrap();
        let source = LedgerCheckpoint::new(
            &ledger,
            ledger.sequence().max(1),
            ledger.timestamp(),
            digest,
        );
        measured("encode and write as it goes (table file, ingest)", || {
            out.save_checkpoint_from(&source).unwrap()
        });
        let (encode, chunks) = source.times();
        println!(
            "of which encoding {:.2} s, in the table file writer {:.2} s; {} bytes",
            encode.as_secs_f64(),
            chunks.as_secs_f64(),
            source.state_len()
        );
        if args.only.iter().any(|only| only == "load-whole") {
            let loaded = measured("load whole, then decode", || {
                let checkpoint = out.load_checkpoint().unwrap().unwrap();
                payrail_engine::storage::decode_state(&checkpoint.state, config).unwrap()
            });
            assert_eq!(loaded.digest(), digest);
        }
        let loaded = measured("decode as the chunks are read", || {
            let mut reader = out.read_checkpoint().unwrap().unwrap();
            payrail_engine::storage::decode_state_chunks(
                reader.state_len,
                &mut reader.chunks,
                config,
            )
            .unwrap()
            .0
        });
        assert_eq!(loaded.digest(), digest);
    }
}
