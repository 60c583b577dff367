//! The longest stop while a table grows: merchant QR payments applied to a
//! lone `Ledger` in batches of 8,190 until `PAYRAIL_GROWTH_PAYMENTS`
//! payments (default 12 million) are kept for refunds, each batch timed.
//! The idempotency records are capped above that (they are allocated once,
//! so they never grow); what grows is the payments table (one entry per
//! payment) and the customers' budget state. A table that rehashes all at
//! once stops the batch in which it doubles, for longer each time; a table
//! that resizes a few entries per insert does not.
//!
//! Prints, for each band of 1 million payments kept, the slowest batch, and
//! for the whole run the median, 99th percentile and slowest batch, by the
//! thread's CPU time (what the batch cost: on a machine shared with other
//! work the wall clock also counts the time the thread waited for a core)
//! and by the wall clock.
//! Bounded: the run stops after `PAYRAIL_GROWTH_SECONDS` (default 120).
//!
//! Run: `cargo bench -p payrail-bench --bench growth`; figures in
//! docs/benchmarks.md ("Tables that grow without stopping the shard").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandKind, CommandResult, Currency, Ledger,
    LedgerConfig, MerchantKey, OpenAccount, Status,
};

const BATCH: usize = limits::BATCH_COMMANDS_MAX;
const CUSTOMERS: u64 = 100_000;
const MERCHANTS: u64 = 1_000;
const MERCHANT_FIRST: u64 = 10_000_000;
const CURRENCY: Currency = Currency::CNY;
const T0: u64 = 1_700_000_000_000_000_000;
const BAND: usize = 1_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().expect(name))
        .unwrap_or(default)
}

/// CPU time this thread has run, in ns (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `time` is a valid, writable timespec for the call's duration.
    #[allow(unsafe_code)]
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } != 0;
    assert!(!failed, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    (time.tv_sec as u64) * 1_000_000_000 + time.tv_nsec as u64
}

fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("bench.payrail", &merchant.to_string())
}

struct World {
    ledger: Ledger,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    state: u64,
    results: Vec<CommandResult>,
}

impl World {
    fn random(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }

    /// Applies one batch with fresh ids; returns the thread's CPU time and
    /// the wall time `apply` took.
    fn apply(&mut self, kinds: Vec<CommandKind>) -> (Duration, Duration) {
        let batch: Vec<Command> = kinds
            .into_iter()
            .map(|kind| {
                self.next_id += 1;
                Command::new(self.next_id, kind)
            })
            .collect();
        self.sequence += 1;
        self.timestamp += 1_000_000;
        self.results.clear();
        let cpu = thread_cpu_ns();
        let started = Instant::now();
        self.ledger
            .apply(self.sequence, self.timestamp, &batch, &mut self.results);
        let elapsed = started.elapsed();
        let cpu = Duration::from_nanos(thread_cpu_ns() - cpu);
        for (command, result) in batch.iter().zip(&self.results) {
            assert_eq!(result.status, Status::Ok, "{command:?}");
        }
        (cpu, elapsed)
    }
}

fn main() {
    let payments = env_or("PAYRAIL_GROWTH_PAYMENTS", 12_000_000) as usize;
    let deadline = Instant::now() + Duration::from_secs(env_or("PAYRAIL_GROWTH_SECONDS", 120));
    let config = LedgerConfig {
        idempotency_records_max: payments + 2 * CUSTOMERS as usize + 4 * BATCH,
        ..LedgerConfig::default()
    };
    let mut world = World {
        ledger: Ledger::new(config),
        sequence: 0,
        timestamp: T0,
        next_id: 1,
        state: 0x9E37_79B9_7F4A_7C15,
        results: Vec::with_capacity(BATCH),
    };
    let open = |account: u64, kind, mcc| {
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind,
            currency: CURRENCY,
            kyc_tier: 0,
            mcc,
        })
    };
    let customers: Vec<u64> = (1..=CUSTOMERS).collect();
    for chunk in customers.chunks(BATCH) {
        world.apply(
            chunk
                .iter()
                .map(|&c| open(c, AccountKind::Customer, 0))
                .collect(),
        );
        world.apply(
            chunk
                .iter()
                .map(|&c| CommandKind::Deposit {
                    account: AccountId(c),
                    amount: 1 << 40,
                    currency: CURRENCY,
                })
                .collect(),
        );
    }
    let merchants: Vec<u64> = (MERCHANT_FIRST..MERCHANT_FIRST + MERCHANTS).collect();
    world.apply(
        merchants
            .iter()
            .map(|&m| open(m, AccountKind::Merchant, 5812))
            .collect(),
    );
    world.apply(
        merchants
            .iter()
            .map(|&m| CommandKind::RegisterMerchantKey {
                merchant: AccountId(m),
                key: key(m),
            })
            .collect(),
    );

    let mut cpu_times: Vec<Duration> = Vec::with_capacity(payments / BATCH + 1);
    let mut wall_times: Vec<Duration> = Vec::with_capacity(payments / BATCH + 1);
    let mut band_max = (Duration::ZERO, Duration::ZERO);
    let mut kept = 0usize;
    let started = Instant::now();
    println!("payments kept   slowest batch in the band: CPU, wall");
    while kept < payments && Instant::now() < deadline {
        let kinds = (0..BATCH)
            .map(|_| {
                let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                keys[0] = key(MERCHANT_FIRST + world.random(MERCHANTS));
                CommandKind::PayMerchantQr {
                    payer: AccountId(1 + world.random(CUSTOMERS)),
                    keys,
                    amount: 1 + world.random(1_000),
                    fee: 0,
                    currency: CURRENCY,
                    mcc: 5812,
                    context: payrail_engine::RiskContext::NONE,
                }
            })
            .collect();
        let (cpu, wall) = world.apply(kinds);
        cpu_times.push(cpu);
        wall_times.push(wall);
        band_max = (band_max.0.max(cpu), band_max.1.max(wall));
        let before = kept;
        kept += BATCH;
        if kept / BAND != before / BAND {
            println!(
                "{:>13}   {:>10.2} ms {:>10.2} ms",
                kept,
                band_max.0.as_secs_f64() * 1e3,
                band_max.1.as_secs_f64() * 1e3
            );
            band_max = (Duration::ZERO, Duration::ZERO);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{} batches of {} QR payments ({} kept) in {:.1} s ({:.0} payments/s)",
        cpu_times.len(),
        BATCH,
        kept,
        elapsed.as_secs_f64(),
        kept as f64 / elapsed.as_secs_f64(),
    );
    for (name, times) in [("CPU", &mut cpu_times), ("wall", &mut wall_times)] {
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "a batch, {name}: median {:.2} ms, p99 {:.2} ms, slowest {:.2} ms",
            at(0.5),
            at(0.99),
            at(1.0),
        );
    }
}
