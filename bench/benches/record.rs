//! The log record's commands: encode and decode a full batch (8,190
//! commands) as the sequencer and recovery do, and the fingerprint of each
//! command as the connection tasks do, each field by field
//! (`payrail_engine::command::codec`, what the engine runs) and through
//! bincode (what it ran before; the same bytes), side by side in one run so
//! that the machine's load weighs on both alike.
//!
//! Run: `cargo bench -p payrail-bench --bench record`; figures in
//! docs/benchmarks.md ("The log record's commands field by field").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_engine::command::codec;
use payrail_engine::limits::BATCH_COMMANDS_MAX;
use payrail_engine::storage::record::largest_commands;
use payrail_engine::storage::LogRecord;
use payrail_engine::{AccountId, Command, CommandKind, Currency, RiskContext};

/// The log's bincode settings (storage::record).
const BINCODE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::NoLimit,
> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_little_endian();

fn transfers() -> Vec<Command> {
    (0..BATCH_COMMANDS_MAX as u64)
        .map(|i| {
            Command::new(
                u128::from(i) << 64 | 0xC0DE,
                CommandKind::Transfer {
                    from: AccountId(i * 7 % 10_000 + 1),
                    to: AccountId(i * 13 % 10_000 + 1),
                    amount: 100 + i,
                    currency: Currency::CNY,
                    context: RiskContext::NONE,
                },
            )
        })
        .collect()
}

/// Every kind in turn (its largest values), for the mix's branches.
fn every_kind() -> Vec<Command> {
    let kinds = largest_commands();
    (0..BATCH_COMMANDS_MAX)
        .map(|i| kinds[i % kinds.len()])
        .collect()
}

/// The writer the log record used with bincode (storage::record).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The record's body the way it was written before: bincode per command.
fn body_by_bincode(commands: &[Command], out: &mut Vec<u8>) {
    out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
    for command in commands {
        bincode::encode_into_writer(command, VecWriter(out), BINCODE).unwrap();
    }
}

fn body_by_fields(commands: &[Command], out: &mut Vec<u8>) {
    out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
    for command in commands {
        codec::encode_command(command, out);
    }
}

fn bench_record(c: &mut Criterion) {
    for (name, commands) in [("transfers", transfers()), ("every_kind", every_kind())] {
        let record = LogRecord::batch(7, 7, commands.clone());
        let bytes = record.to_bytes();
        let body = &bytes[28 + 4..];

        let mut group = c.benchmark_group(format!("record/{name}_8190"));
        group.throughput(Throughput::Elements(commands.len() as u64));
        // The whole record as the sequencer writes it (header, CRC32C).
        group.bench_function(BenchmarkId::new("encode_record", "fields"), |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                black_box(&record).encode(&mut out);
                black_box(out.len())
            })
        });
        // The commands alone, both ways.
        group.bench_function(BenchmarkId::new("encode_commands", "fields"), |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                body_by_fields(black_box(&commands), &mut out);
                black_box(out.len())
            })
        });
        group.bench_function(BenchmarkId::new("encode_commands", "bincode"), |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                body_by_bincode(black_box(&commands), &mut out);
                black_box(out.len())
            })
        });
        // The whole record as recovery reads it, into a new vector and
        // into the one of the record before.
        group.bench_function(BenchmarkId::new("decode_record", "fields"), |b| {
            b.iter(|| black_box(LogRecord::decode(black_box(&bytes)).unwrap()))
        });
        group.bench_function(BenchmarkId::new("decode_record_reusing", "fields"), |b| {
            let mut spare = Vec::new();
            b.iter(|| {
                let record =
                    LogRecord::decode_reusing(black_box(&bytes), std::mem::take(&mut spare))
                        .unwrap();
                black_box(&record);
                if let payrail_engine::storage::LogEntry::Batch(commands) = record.entry {
                    spare = commands;
                }
            })
        });
        group.bench_function(BenchmarkId::new("decode_commands", "fields"), |b| {
            let mut out = Vec::with_capacity(commands.len());
            b.iter(|| {
                out.clear();
                let mut rest = black_box(body);
                while !rest.is_empty() {
                    let (command, used) = codec::decode_command(rest).unwrap();
                    out.push(command);
                    rest = &rest[used..];
                }
                black_box(out.len())
            })
        });
        group.bench_function(BenchmarkId::new("decode_commands", "bincode"), |b| {
            let mut out = Vec::with_capacity(commands.len());
            b.iter(|| {
                out.clear();
                let mut rest = black_box(body);
                while !rest.is_empty() {
                    let (command, used): (Command, usize) =
                        bincode::decode_from_slice(rest, BINCODE).unwrap();
                    out.push(command);
                    rest = &rest[used..];
                }
                black_box(out.len())
            })
        });
        // The fingerprint of every command of the batch.
        group.bench_function(BenchmarkId::new("fingerprint", "fields"), |b| {
            b.iter(|| {
                black_box(&commands)
                    .iter()
                    .fold(0u64, |sum, command| sum ^ command.fingerprint())
            })
        });
        group.bench_function(BenchmarkId::new("fingerprint", "bincode"), |b| {
            b.iter(|| {
                black_box(&commands).iter().fold(0u64, |sum, command| {
                    let mut buffer = [0u8; 128];
                    let len =
                        bincode::encode_into_slice(command.kind, &mut buffer, BINCODE).unwrap();
                    sum ^ xxhash_rust::xxh3::xxh3_64(&buffer[..len])
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_record);
criterion_main!(benches);
