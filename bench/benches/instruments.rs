//! What naming a funding instrument costs the ledger: `Ledger::apply` of
//! top-ups and withdrawals (hold + post) without an instrument, on 100,000
//! customers who have none, against the same with an instrument
//! (`DepositFrom`, `WithdrawHoldTo`), on 100,000 customers who each have a
//! verified card. One batch of 8,190 commands per timed apply, one thread,
//! no I/O; the kinds are run in alternation (without, with, without, ...)
//! so that a disturbance of a shared machine falls on both.
//!
//! Run: `cargo bench -p payrail-bench --bench instruments`; figures in
//! docs/benchmarks.md ("Top-ups and withdrawals with an instrument").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use payrail_bench::lone::thread_cpu_ns;
use payrail_engine::instrument::{BankName, InstrumentKind, InstrumentToken};
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency,
    InstrumentBind, InstrumentId, Ledger, LedgerConfig, OpenAccount, RiskContext, Status,
};

const BATCH: usize = limits::BATCH_COMMANDS_MAX;
const CUSTOMERS: u64 = 100_000;
const CURRENCY: Currency = Currency::CNY;
const T0: u64 = 1_700_000_000_000_000_000;

struct World {
    ledger: Ledger,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    state: u64,
    results: Vec<CommandResult>,
    /// Every customer has a verified card number 1.
    cards: bool,
    /// CPU time of this thread inside `apply`, summed (for the paired figure).
    cpu_ns: u64,
}

impl World {
    fn new(cards: bool) -> World {
        let config = LedgerConfig {
            idempotency_records_max: 1 << 21,
            ..LedgerConfig::default()
        };
        let mut world = World {
            ledger: Ledger::new(config),
            sequence: 0,
            timestamp: T0,
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            results: Vec::with_capacity(BATCH),
            cards,
            cpu_ns: 0,
        };
        let customers: Vec<u64> = (1..=CUSTOMERS).collect();
        for chunk in customers.chunks(BATCH) {
            let opens = chunk
                .iter()
                .map(|&c| {
                    CommandKind::OpenAccount(OpenAccount {
                        account: AccountId(c),
                        owner: c,
                        kind: AccountKind::Customer,
                        currency: CURRENCY,
                        kyc_tier: 0,
                        mcc: 0,
                    })
                })
                .collect();
            world.apply(opens);
            let deposits = chunk
                .iter()
                .map(|&c| CommandKind::Deposit {
                    account: AccountId(c),
                    amount: 1 << 40,
                    currency: CURRENCY,
                })
                .collect();
            world.apply(deposits);
            if cards {
                let binds = chunk
                    .iter()
                    .map(|&c| {
                        CommandKind::BindInstrument(InstrumentBind {
                            customer: AccountId(c),
                            number: 1,
                            kind: InstrumentKind::Card,
                            token: InstrumentToken::new(&format!("tok_{c:x}")).unwrap(),
                            bank: BankName::new("ICBC").unwrap(),
                            country: *b"CN",
                            last_four: *b"4242",
                            currency: CURRENCY,
                        })
                    })
                    .collect();
                world.apply(binds);
                let verifies = chunk
                    .iter()
                    .map(|&c| CommandKind::VerifyInstrument {
                        instrument: card(c),
                        passed: true,
                    })
                    .collect();
                world.apply(verifies);
            } else {
                // As many commands as the binds and verifications, so that
                // both worlds keep as many idempotency records.
                for _ in 0..2 {
                    let tiers = chunk
                        .iter()
                        .map(|&c| CommandKind::SetKycTier {
                            account: AccountId(c),
                            tier: 1,
                        })
                        .collect();
                    world.apply(tiers);
                }
            }
        }
        world
    }

    fn random(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }

    /// Applies one batch with fresh ids; returns the ids and the time `apply` took.
    fn apply(&mut self, kinds: Vec<CommandKind>) -> (Vec<CommandId>, Duration) {
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
        let cpu_before = thread_cpu_ns();
        let started = Instant::now();
        self.ledger
            .apply(self.sequence, self.timestamp, &batch, &mut self.results);
        let elapsed = started.elapsed();
        self.cpu_ns += thread_cpu_ns().saturating_sub(cpu_before);
        for (command, result) in batch.iter().zip(&self.results) {
            assert_eq!(result.status, Status::Ok, "{command:?}");
        }
        (batch.iter().map(|command| command.id).collect(), elapsed)
    }

    /// One timed batch of top-ups to random customers (from their card
    /// when the world has cards).
    fn top_ups(&mut self) -> Duration {
        let batch = (0..BATCH)
            .map(|_| {
                let customer = 1 + self.random(CUSTOMERS);
                let account = AccountId(customer);
                if self.cards {
                    CommandKind::DepositFrom {
                        account,
                        amount: 1,
                        currency: CURRENCY,
                        instrument: card(customer),
                    }
                } else {
                    CommandKind::Deposit {
                        account,
                        amount: 1,
                        currency: CURRENCY,
                    }
                }
            })
            .collect();
        self.apply(batch).1
    }

    /// One timed batch of holds of 8,190 distinct customers (to their card
    /// when the world has cards) and one of their posts.
    fn withdrawals(&mut self) -> Duration {
        let start = self.random(CUSTOMERS);
        let holds = (0..BATCH as u64)
            .map(|n| {
                let customer = 1 + (start + n * 7) % CUSTOMERS;
                let account = AccountId(customer);
                if self.cards {
                    CommandKind::WithdrawHoldTo {
                        account,
                        amount: 1,
                        currency: CURRENCY,
                        timeout_ms: 60_000,
                        context: RiskContext::NONE,
                        instrument: card(customer),
                    }
                } else {
                    CommandKind::WithdrawHold {
                        account,
                        amount: 1,
                        currency: CURRENCY,
                        timeout_ms: 60_000,
                        context: RiskContext::NONE,
                    }
                }
            })
            .collect();
        let (ids, hold_time) = self.apply(holds);
        let posts = ids
            .into_iter()
            .map(|hold| CommandKind::WithdrawPost { hold })
            .collect();
        hold_time + self.apply(posts).1
    }
}

fn card(customer: u64) -> InstrumentId {
    InstrumentId {
        owner: customer,
        number: 1,
    }
}

/// Pairs measured back to back for the paired figure.
const PAIRS: usize = 400;

/// The paired figure, printed before criterion's: `PAIRS` times, one batch
/// without an instrument and one with, back to back (in alternating order);
/// the median and quartiles of the per-pair ratio, of the wall-clock time
/// and of the thread's CPU time. A load spike of a shared machine hits a
/// pair, not one side of the comparison, and CPU time leaves out waiting
/// for a core.
fn paired(plain: &mut World, carded: &mut World) {
    type Step = fn(&mut World) -> Duration;
    let kinds: [(&str, Step); 2] = [
        ("top-up", World::top_ups),
        ("withdrawal (hold + post)", World::withdrawals),
    ];
    for (name, step) in kinds {
        let mut wall = Vec::with_capacity(PAIRS);
        let mut cpu = Vec::with_capacity(PAIRS);
        let mut cpu_without = Vec::with_capacity(PAIRS);
        let mut cpu_with = Vec::with_capacity(PAIRS);
        for pair in 0..PAIRS {
            let (plain_cpu, carded_cpu) = (plain.cpu_ns, carded.cpu_ns);
            let (a, b) = if pair % 2 == 0 {
                let a = step(plain);
                (a, step(carded))
            } else {
                let b = step(carded);
                (step(plain), b)
            };
            let a_cpu = (plain.cpu_ns - plain_cpu) as f64;
            let b_cpu = (carded.cpu_ns - carded_cpu) as f64;
            wall.push(b.as_secs_f64() / a.as_secs_f64());
            cpu.push(b_cpu / a_cpu.max(1.0));
            cpu_without.push(a_cpu);
            cpu_with.push(b_cpu);
        }
        for values in [&mut wall, &mut cpu, &mut cpu_without, &mut cpu_with] {
            values.sort_by(f64::total_cmp);
        }
        let quartiles = |values: &[f64]| {
            format!(
                "median {:.3} (quartiles {:.3}-{:.3})",
                values[PAIRS / 2],
                values[PAIRS / 4],
                values[PAIRS * 3 / 4]
            )
        };
        println!(
            "paired {name}, with / without an instrument: CPU {}, wall {}; \
             median CPU per batch of {BATCH}: without {:.2} ms, with {:.2} ms",
            quartiles(&cpu),
            quartiles(&wall),
            cpu_without[PAIRS / 2] / 1e6,
            cpu_with[PAIRS / 2] / 1e6,
        );
    }
}

fn instruments(c: &mut Criterion) {
    let mut plain = World::new(false);
    let mut carded = World::new(true);
    paired(&mut plain, &mut carded);
    let mut group = c.benchmark_group("instruments");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    // Each pair of functions is measured alternately, batch by batch: the
    // criterion figure of each is its own batches' time.
    group.bench_function("deposit", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    carded.top_ups();
                    plain.top_ups()
                })
                .sum()
        })
    });
    group.bench_function("deposit_from", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    plain.top_ups();
                    carded.top_ups()
                })
                .sum()
        })
    });
    group.bench_function("withdraw_hold_then_post", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    carded.withdrawals();
                    plain.withdrawals()
                })
                .sum()
        })
    });
    group.bench_function("withdraw_hold_to_then_post", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    plain.withdrawals();
                    carded.withdrawals()
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, instruments);
criterion_main!(benches);
