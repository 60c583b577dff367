//! The wire codec on full batches: encode and decode a Submit of 8,190
//! transfers and a Results of 8,190 statuses. Throughput is reported twice
//! per case: bytes (MB/s) and commands (elements/s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_api::wire::{self, Message, WireLimits};
use payrail_engine::limits::BATCH_COMMANDS_MAX;
use payrail_engine::{AccountId, Command, CommandKind, CommandResult, Currency, Status};

fn submit() -> Message {
    let commands = (0..BATCH_COMMANDS_MAX as u64)
        .map(|i| {
            Command::new(
                u128::from(i) << 64 | 0xC0DE,
                CommandKind::Transfer {
                    from: AccountId(i * 7 % 100_000),
                    to: AccountId(i * 13 % 100_000 + 1),
                    amount: 100 + i,
                    currency: Currency::CNY,
                    context: payrail_engine::RiskContext::NONE,
                },
            )
        })
        .collect();
    Message::Submit { commands }
}

fn results() -> Message {
    let results = (0..BATCH_COMMANDS_MAX)
        .map(|i| {
            CommandResult::new(if i % 50 == 0 {
                Status::InsufficientFunds
            } else {
                Status::Ok
            })
        })
        .collect();
    Message::Results { results }
}

fn bench_codec(c: &mut Criterion) {
    let limits = WireLimits::default();
    let commands = BATCH_COMMANDS_MAX as u64;
    for (name, message) in [
        ("submit_8190_transfers", submit()),
        ("results_8190", results()),
    ] {
        let mut frame = Vec::new();
        wire::encode(1, &message, &mut frame).unwrap();
        let bytes = frame.len() as u64;

        for (unit, throughput) in [
            ("bytes", Throughput::BytesDecimal(bytes)),
            ("commands", Throughput::Elements(commands)),
        ] {
            let mut group = c.benchmark_group(format!("wire/{name}"));
            group.throughput(throughput);
            group.bench_function(BenchmarkId::new("encode", unit), |b| {
                let mut out = Vec::with_capacity(frame.len());
                b.iter(|| {
                    out.clear();
                    wire::encode(1, black_box(&message), &mut out).unwrap();
                    black_box(out.len())
                })
            });
            group.bench_function(BenchmarkId::new("decode", unit), |b| {
                b.iter(|| {
                    let decoded = wire::decode(black_box(&frame), &limits).unwrap();
                    black_box(decoded)
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
