//! What sharding costs in CPU: the CPU time of every thread of the process
//! (the router and the shard threads; user and system time, from
//! `/proc/self/task/*/schedstat`) per million commands, and the wall-clock
//! rate, for the lone ledger (`Ledger::apply` on this thread: no router) and
//! for 1, 2 and 3 shards behind the router, on two mixes of
//! `payrail_bench::payment_mix`: transfers only, and the payment mix (80% QR
//! payments, 20% transfers); 30% of the commands have their two accounts on
//! two shards when there are two. The router is driven as the engine's
//! executor drives it: up to 8 batches in flight.
//!
//! On a machine with fewer cores than threads the wall-clock rate says
//! little about sharding; the CPU time per command says what a shard more
//! costs, whatever the cores.
//!
//! Run: `cargo bench -p payrail-bench --bench shards_cpu` (optionally
//! followed by `-- BATCHES`, default 200 batches of 8,190 per run); figures
//! in docs/benchmarks.md.

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use payrail_bench::payment_mix::{setup, Mix};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::{Command, Ledger, LedgerConfig};

const BATCH: usize = 8_190;
const IN_FLIGHT_MAX: usize = 8;

/// CPU time of every live thread of this process, in ns.
fn cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|field| field.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

fn config() -> LedgerConfig {
    LedgerConfig {
        // Enough records for every command of a run: no eviction.
        idempotency_records_max: 16 << 20,
        ..LedgerConfig::default()
    }
}

/// One engine under test: the lone ledger, or N shards behind the router.
/// One per run: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Subject {
    Lone(Ledger),
    Sharded(ShardedLedger),
}

struct Run {
    subject: Subject,
    sequence: u64,
    timestamp: u64,
}

impl Run {
    fn new(shards: usize) -> Run {
        let subject = if shards == 0 {
            Subject::Lone(Ledger::new(config()))
        } else {
            Subject::Sharded(ShardedLedger::new(config(), shards).unwrap())
        };
        let mut run = Run {
            subject,
            sequence: 0,
            timestamp: 1_800_000_000_000_000_000,
        };
        for batch in setup() {
            run.apply(&[batch]);
        }
        run
    }

    /// Applies the batches in order; returns how many results came back.
    fn apply(&mut self, batches: &[Vec<Command>]) -> usize {
        let mut answered = 0;
        match &mut self.subject {
            Subject::Lone(ledger) => {
                let mut results = Vec::with_capacity(BATCH);
                for batch in batches {
                    self.sequence += 1;
                    self.timestamp += 1_000;
                    results.clear();
                    ledger.apply(self.sequence, self.timestamp, batch, &mut results);
                    answered += results.len();
                }
            }
            Subject::Sharded(ledger) => {
                for batch in batches {
                    self.sequence += 1;
                    self.timestamp += 1_000;
                    if ledger.in_flight() >= IN_FLIGHT_MAX {
                        answered += ledger.complete_wait().map_or(0, |done| done.len());
                    }
                    ledger.submit(self.sequence, self.timestamp, batch);
                    while let Some(done) = ledger.complete_ready() {
                        answered += done.len();
                    }
                }
                while let Some(done) = ledger.complete_wait() {
                    answered += done.len();
                }
            }
        }
        answered
    }
}

fn main() {
    let batches: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200);
    println!("shards_cpu: {batches} batches of {BATCH} per run; CPU = every thread of the process");
    println!(
        "{:<10} {:<8} {:>12} {:>14} {:>12} {:>10}",
        "mix", "engine", "commands/s", "CPU s/M cmds", "vs 1 shard", "split"
    );
    for (mix_name, payments) in [("transfers", false), ("payments", true)] {
        let mut one_shard = None;
        for shards in [0usize, 1, 2, 3] {
            let mut run = Run::new(shards);
            let mut mix = Mix::with_payments(payments);
            // The fingerprints are the submitter's work in the engine; here
            // they are computed by `submit` on this thread, as part of the run.
            let prepared: Vec<Vec<Command>> = (0..batches).map(|_| mix.batch(BATCH)).collect();
            let warm: Vec<Vec<Command>> = (0..8).map(|_| mix.batch(BATCH)).collect();
            run.apply(&warm);
            let cpu_before = cpu_ns();
            let started = Instant::now();
            let answered = run.apply(&prepared);
            let wall = started.elapsed().as_secs_f64();
            let cpu = (cpu_ns() - cpu_before) as f64 / 1e9;
            assert_eq!(answered, batches * BATCH);
            let per_million = cpu / (answered as f64 / 1e6);
            if shards == 1 {
                one_shard = Some(per_million);
            }
            let split = match &run.subject {
                Subject::Sharded(ledger) => {
                    let stats = ledger.stats();
                    let pairs = stats.pairs_split + stats.pairs_local;
                    format!(
                        "{:.0}%",
                        100.0 * stats.pairs_split as f64 / pairs.max(1) as f64
                    )
                }
                Subject::Lone(_) => "-".to_owned(),
            };
            println!(
                "{:<10} {:<8} {:>12.0} {:>14.3} {:>12} {:>10}",
                mix_name,
                if shards == 0 {
                    "lone".to_owned()
                } else {
                    format!("{shards} shard{}", if shards == 1 { "" } else { "s" })
                },
                answered as f64 / wall,
                per_million,
                one_shard.map_or("-".to_owned(), |one| format!("{:.2}x", per_million / one)),
                split
            );
        }
    }
}
