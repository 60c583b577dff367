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
//! thread's CPU time in user mode (the ledger's own work: a rehash is
//! there), in the kernel (page faults, and the reclaim they cause on a
//! machine short of free memory) and by the wall clock (which also counts
//! the time the thread waited for a core on a shared machine).
//! Bounded: the run stops after `PAYRAIL_GROWTH_SECONDS` (default 120).
//!
//! Run: `cargo bench -p payrail-bench --bench growth`; figures in
//! docs/benchmarks.md ("Tables that grow without stopping the shard").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use payrail_bench::lone::{LoneWorld, BATCH, CUSTOMERS};
use payrail_engine::LedgerConfig;

const BAND: usize = 1_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().expect(name))
        .unwrap_or(default)
}

fn main() {
    let payments = env_or("PAYRAIL_GROWTH_PAYMENTS", 12_000_000) as usize;
    let deadline = Instant::now() + Duration::from_secs(env_or("PAYRAIL_GROWTH_SECONDS", 120));
    let config = LedgerConfig {
        idempotency_records_max: payments + 2 * CUSTOMERS as usize + 4 * BATCH,
        ..LedgerConfig::default()
    };
    let mut world = LoneWorld::new(config);

    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut band_max = [Duration::ZERO; 3];
    let mut kept = 0usize;
    let started = Instant::now();
    println!("payments kept   slowest batch in the band: user CPU, kernel CPU, wall");
    while kept < payments && Instant::now() < deadline {
        let kinds = (0..BATCH).map(|_| world.pay_merchant_qr(5812)).collect();
        let applied = world.apply(kinds);
        for (n, took) in [applied.user, applied.system, applied.wall]
            .into_iter()
            .enumerate()
        {
            times[n].push(took);
            band_max[n] = band_max[n].max(took);
        }
        let before = kept;
        kept += BATCH;
        if kept / BAND != before / BAND {
            let [user, system, wall] = band_max.map(|took| took.as_secs_f64() * 1e3);
            println!("{kept:>13}   {user:>10.2} ms {system:>10.2} ms {wall:>10.2} ms");
            band_max = [Duration::ZERO; 3];
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{} batches of {} QR payments ({} kept) in {:.1} s ({:.0} payments/s)",
        times[0].len(),
        BATCH,
        kept,
        elapsed.as_secs_f64(),
        kept as f64 / elapsed.as_secs_f64(),
    );
    for (name, times) in ["user CPU", "kernel CPU", "wall"]
        .into_iter()
        .zip(&mut times)
    {
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
