//! `Ledger::apply` on transfers: one batch of 8,190 random customer-to-customer
//! transfers per iteration, one thread, no I/O.
//!
//! Setup (not measured): open N customer accounts in one currency, fund each
//! with a deposit, pre-generate uniformly random (from, to) pairs, then apply
//! transfers until the idempotency table is at its cap, so that every measured
//! batch also pays for evicting as many records as it inserts.
//!
//! Measured: `apply` alone. Each iteration first overwrites a reused batch
//! vector with fresh command ids (ids never repeat, so no command is answered
//! from its idempotency record) outside the timed region, then times one
//! `apply` into a reused results vector, so the hot loop does not allocate.
//!
//! Run: `cargo bench -p payrail-bench --bench apply`; results and analysis in
//! docs/benchmarks.md. With `PAYRAIL_BENCH_CLOCK=cpu` the bench times `apply`
//! by the thread's CPU clock instead of the wall clock: on a machine shared
//! with other work it leaves out the time the thread waited for a core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandKind, CommandResult, Currency, Ledger,
    LedgerConfig, OpenAccount, Status,
};

const BATCH_COMMANDS: usize = limits::BATCH_COMMANDS_MAX;
/// Idempotency records kept: a few million, so memory stays bounded and the
/// cost of eviction is part of every measured batch.
const IDEMPOTENCY_RECORDS_MAX: usize = 4 * 1024 * 1024;
/// Batches' worth of pre-generated pairs: 128 x 8,190 = 1,048,320 pairs touch
/// about 2 million account slots, so the 1M-account case really is spread over
/// all accounts (about 56 MB of them, more than the 35.8 MiB L3 here).
const PAIR_BATCHES: usize = 128;
/// Each account's funds: transfers of at most 100 never run out.
const FUNDS: u64 = 1_000_000_000_000;
const AMOUNT_MAX: u64 = 100;
const CURRENCY: Currency = Currency::CNY;
/// Command time between batches, ns.
const BATCH_INTERVAL_NS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// SplitMix64: a tiny deterministic generator, so the workload is the same on
/// every run without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (the modulo bias is negligible for n far below 2^64).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A funded ledger, the pairs to transfer between, and the reused buffers.
struct Workload {
    ledger: Ledger,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    /// (from, to, amount) for `PAIR_BATCHES` batches, used in a cycle.
    transfers: Vec<(u64, u64, u64)>,
    cursor: usize,
    batch: Vec<Command>,
    results: Vec<CommandResult>,
}

impl Workload {
    fn new(accounts: u64) -> Workload {
        let config = LedgerConfig {
            idempotency_records_max: IDEMPOTENCY_RECORDS_MAX,
            ..LedgerConfig::default()
        };
        let mut workload = Workload {
            ledger: Ledger::new(config),
            sequence: 0,
            timestamp: T0,
            next_id: 1,
            transfers: Vec::new(),
            cursor: 0,
            batch: Vec::with_capacity(BATCH_COMMANDS),
            results: Vec::with_capacity(BATCH_COMMANDS),
        };

        // Open and fund the accounts (ids 1..=accounts).
        let open = |account: u64| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind: AccountKind::Customer,
                currency: CURRENCY,
                kyc_tier: 1,
                mcc: 0,
            })
        };
        let deposit = |account: u64| CommandKind::Deposit {
            account: AccountId(account),
            amount: FUNDS,
            currency: CURRENCY,
        };
        let ids: Vec<u64> = (1..=accounts).collect();
        for chunk in ids.chunks(BATCH_COMMANDS) {
            workload.apply_kinds(chunk.iter().map(|&account| open(account)));
            workload.apply_kinds(chunk.iter().map(|&account| deposit(account)));
        }

        let mut random = SplitMix64(0x5EED_0000 ^ accounts);
        workload.transfers = (0..PAIR_BATCHES * BATCH_COMMANDS)
            .map(|_| {
                let from = 1 + random.below(accounts);
                // Uniform over the other accounts.
                let to = 1 + (from + random.below(accounts - 1)) % accounts;
                (from, to, 1 + random.below(AMOUNT_MAX))
            })
            .collect();

        // Fill the idempotency table to its cap: from here on every batch
        // evicts as many records as it adds.
        while workload.ledger.records_len() + BATCH_COMMANDS <= IDEMPOTENCY_RECORDS_MAX {
            workload.fill_transfers();
            workload.apply_and_check();
        }
        workload
    }

    /// Applies one batch of these kinds with fresh ids; all must succeed.
    fn apply_kinds(&mut self, kinds: impl Iterator<Item = CommandKind>) {
        self.batch.clear();
        for kind in kinds {
            self.batch.push(Command::new(self.next_id, kind));
            self.next_id += 1;
        }
        self.apply_and_check();
    }

    /// Overwrites the batch with the next transfers, under fresh ids.
    fn fill_transfers(&mut self) {
        self.batch.clear();
        for _ in 0..BATCH_COMMANDS {
            let (from, to, amount) = self.transfers[self.cursor];
            self.cursor = (self.cursor + 1) % self.transfers.len();
            let kind = CommandKind::Transfer {
                from: AccountId(from),
                to: AccountId(to),
                amount,
                currency: CURRENCY,
                context: payrail_engine::RiskContext::NONE,
            };
            self.batch.push(Command::new(self.next_id, kind));
            self.next_id += 1;
        }
    }

    /// The measured part: one `apply` into the reused results vector.
    fn apply(&mut self) {
        self.sequence += 1;
        self.timestamp += BATCH_INTERVAL_NS;
        self.results.clear();
        self.ledger.apply(
            self.sequence,
            self.timestamp,
            black_box(&self.batch),
            &mut self.results,
        );
        black_box(&self.results);
    }

    fn apply_and_check(&mut self) {
        self.apply();
        self.check();
    }

    /// Every command succeeded, or the benchmark measures the wrong thing.
    fn check(&self) {
        assert_eq!(self.results.len(), self.batch.len());
        let failed = self
            .results
            .iter()
            .find(|result| result.status != Status::Ok);
        assert!(failed.is_none(), "a benchmark command failed: {failed:?}");
    }
}

fn ledger_apply(criterion: &mut Criterion) {
    let cpu_clock = std::env::var("PAYRAIL_BENCH_CLOCK").is_ok_and(|clock| clock == "cpu");
    let mut group = criterion.benchmark_group("ledger_apply");
    group.throughput(Throughput::Elements(BATCH_COMMANDS as u64));
    for accounts in [1_000_000u64, 10_000] {
        // Built on the first call (so a filtered-out case costs nothing) and
        // outside `iter_custom`, so criterion's warm-up does not see the setup.
        // One ledger at a time: the 1M-account one holds about half a GB.
        let mut workload: Option<Workload> = None;
        group.bench_function(BenchmarkId::new("transfers", accounts), |bencher| {
            let workload = workload.get_or_insert_with(|| Workload::new(accounts));
            bencher.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    workload.fill_transfers();
                    if cpu_clock {
                        let start = payrail_bench::lone::thread_cpu_ns();
                        workload.apply();
                        let end = payrail_bench::lone::thread_cpu_ns();
                        elapsed += Duration::from_nanos(end.saturating_sub(start));
                    } else {
                        let start = Instant::now();
                        workload.apply();
                        elapsed += start.elapsed();
                    }
                    workload.check();
                }
                elapsed
            });
        });
        if let Some(workload) = workload {
            assert!(workload.ledger.records_len() <= IDEMPOTENCY_RECORDS_MAX);
            assert!(workload.ledger.is_conserved());
        }
    }
    group.finish();
}

criterion_group!(benches, ledger_apply);
criterion_main!(benches);
