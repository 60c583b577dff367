//! The cost of a conversion relative to a transfer: `Ledger::apply` of one
//! batch of 8,190 commands of one kind per iteration, over 100,000 owners
//! who each hold a CNY and a JPY account, and 1,000 JPY merchants; one
//! thread, no I/O. Prerequisites (the rate, quotes to convert) are applied
//! in untimed batches.
//!
//! `fx_sharded` runs the transfer, the conversion and the cross-currency QR
//! payment on a `ShardedLedger` of 2 shards (router and shard threads, no
//! log): a command that draws on FX liquidity makes the router wait for
//! what is routed and ask the other shards for their liquidity parts.
//!
//! Run: `cargo bench -p payrail-bench --bench fx`; figures in
//! docs/benchmarks.md ("FX").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::shard::ShardedLedger;
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency,
    FxMid, FxOrder, FxRateSet, FxSide, FxSource, Ledger, LedgerConfig, MerchantKey, OpenAccount,
    RiskContext, Status,
};

const BATCH: usize = limits::BATCH_COMMANDS_MAX;
const OWNERS: u64 = 100_000;
/// Owner n holds CNY account n and JPY account JPY_FIRST + n.
const JPY_FIRST: u64 = 1_000_000;
const MERCHANTS: u64 = 1_000;
const MERCHANT_FIRST: u64 = 10_000_000;
const T0: u64 = 1_700_000_000_000_000_000;
/// Command time between batches: quotes (120 s) expire and are forgotten
/// (10 min later) after a dozen batches, so the quote table stays small.
const BATCH_GAP_NS: u64 = 60_000_000_000;

/// A lone ledger or a sharded one: the same `apply`.
enum Executor {
    Lone(Box<Ledger>),
    Sharded(Box<ShardedLedger>),
}

impl Executor {
    fn apply(
        &mut self,
        sequence: u64,
        timestamp: u64,
        batch: &[Command],
        results: &mut Vec<CommandResult>,
    ) {
        match self {
            Executor::Lone(ledger) => ledger.apply(sequence, timestamp, batch, results),
            Executor::Sharded(ledger) => ledger.apply(sequence, timestamp, batch, results),
        }
    }
}

struct World {
    ledger: Executor,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    state: u64,
    results: Vec<CommandResult>,
}

fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("bench.payrail", &merchant.to_string())
}

impl World {
    /// `shards`: `None` for a lone ledger.
    fn new(shards: Option<usize>) -> World {
        let config = LedgerConfig {
            idempotency_records_max: 1 << 21,
            ..LedgerConfig::default()
        };
        let ledger = match shards {
            None => Executor::Lone(Box::new(Ledger::new(config))),
            Some(shards) => {
                Executor::Sharded(Box::new(ShardedLedger::new(config, shards).unwrap()))
            }
        };
        let mut world = World {
            ledger,
            sequence: 0,
            timestamp: T0,
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            results: Vec::with_capacity(BATCH),
        };
        let open = |account: u64, owner: u64, kind, currency, mcc| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner,
                kind,
                currency,
                kyc_tier: 0,
                mcc,
            })
        };
        let owners: Vec<u64> = (1..=OWNERS).collect();
        for chunk in owners.chunks(BATCH / 2) {
            let mut batch = Vec::with_capacity(BATCH);
            for &n in chunk {
                batch.push(open(n, n, AccountKind::Customer, Currency::CNY, 0));
                batch.push(open(
                    JPY_FIRST + n,
                    n,
                    AccountKind::Customer,
                    Currency::JPY,
                    0,
                ));
            }
            world.apply(batch);
            let mut batch = Vec::with_capacity(BATCH);
            for &n in chunk {
                batch.push(CommandKind::Deposit {
                    account: AccountId(n),
                    amount: 1 << 40,
                    currency: Currency::CNY,
                });
                batch.push(CommandKind::Deposit {
                    account: AccountId(JPY_FIRST + n),
                    amount: 1 << 40,
                    currency: Currency::JPY,
                });
            }
            world.apply(batch);
        }
        let merchants: Vec<u64> = (MERCHANT_FIRST..MERCHANT_FIRST + MERCHANTS).collect();
        world.apply(
            merchants
                .iter()
                .map(|&m| open(m, m, AccountKind::Merchant, Currency::JPY, 5812))
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
        world.apply(
            [Currency::CNY, Currency::JPY]
                .into_iter()
                .map(|currency| CommandKind::SetFxFloor {
                    currency,
                    limit: limits::AMOUNT_MAX,
                })
                .collect(),
        );
        world.refresh_rate();
        world
    }

    /// A fresh CNY/JPY rate (untimed), so it never goes stale mid-bench.
    fn refresh_rate(&mut self) {
        self.apply(vec![CommandKind::SetFxRate(FxRateSet {
            base: Currency::CNY,
            quote: Currency::JPY,
            mid: FxMid {
                mantissa: 2_087,
                scale: 2,
            },
            spread_bps: 50,
            valid_ms: limits::FX_RATE_VALID_MS_MAX,
            source: FxSource::new("BENCH").unwrap(),
        })]);
    }

    fn random(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }

    fn owner(&mut self) -> u64 {
        1 + self.random(OWNERS)
    }

    /// 8,190 distinct owners (an account may hold at most 8 open quotes).
    fn distinct_owners(&mut self) -> Vec<u64> {
        let start = self.random(OWNERS);
        (0..BATCH as u64)
            .map(|n| 1 + (start + n * 7) % OWNERS)
            .collect()
    }

    fn conversion(&mut self, owner: u64) -> FxOrder {
        let (side, amount) = if self.random(2) == 0 {
            (FxSide::Pay, 100 + self.random(100_000))
        } else {
            (FxSide::Receive, 1 + self.random(10_000))
        };
        FxOrder {
            from: AccountId(owner),
            to: AccountId(JPY_FIRST + owner),
            amount,
            side,
        }
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
        self.timestamp += BATCH_GAP_NS;
        self.results.clear();
        let started = Instant::now();
        self.ledger
            .apply(self.sequence, self.timestamp, &batch, &mut self.results);
        let elapsed = started.elapsed();
        for (command, result) in batch.iter().zip(&self.results) {
            assert_eq!(result.status, Status::Ok, "{command:?}");
        }
        (batch.iter().map(|command| command.id).collect(), elapsed)
    }
}

fn fx(c: &mut Criterion) {
    let mut world = World::new(None);
    let mut group = c.benchmark_group("fx_apply");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);

    group.bench_function("transfer", |b| {
        b.iter_custom(|iterations| timed(&mut world, iterations, false, transfers))
    });
    group.bench_function("fx_convert", |b| {
        b.iter_custom(|iterations| timed(&mut world, iterations, true, conversions))
    });
    group.bench_function("fx_quote_then_convert", |b| {
        // Timed: the quote batch and the convert batch, so elements/s
        // counts conversions (quote + convert pairs).
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    world.refresh_rate();
                    let owners = world.distinct_owners();
                    let quotes = owners
                        .iter()
                        .map(|&owner| CommandKind::FxQuote {
                            order: world.conversion(owner),
                            ttl_ms: 120_000,
                        })
                        .collect();
                    let (ids, quote_time) = world.apply(quotes);
                    let converts = ids
                        .into_iter()
                        .zip(&owners)
                        .map(|(quote, &owner)| CommandKind::FxConvertQuote {
                            quote,
                            from: AccountId(owner),
                        })
                        .collect();
                    quote_time + world.apply(converts).1
                })
                .sum()
        })
    });
    for (name, payer_first) in [
        ("pay_merchant_qr_jpy", JPY_FIRST),
        ("pay_merchant_qr_cny_to_jpy", 0),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        world.refresh_rate();
                        let batch = qr_payments(&mut world, payer_first);
                        world.apply(batch).1
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

/// `iterations` batches made by `make` (after a fresh rate if `refresh`),
/// timing only their `apply`.
fn timed(
    world: &mut World,
    iterations: u64,
    refresh: bool,
    make: impl Fn(&mut World) -> Vec<CommandKind>,
) -> Duration {
    (0..iterations)
        .map(|_| {
            if refresh {
                world.refresh_rate();
            }
            let batch = make(world);
            world.apply(batch).1
        })
        .sum()
}

fn conversions(world: &mut World) -> Vec<CommandKind> {
    (0..BATCH)
        .map(|_| {
            let owner = world.owner();
            CommandKind::FxConvert(world.conversion(owner))
        })
        .collect()
}

/// QR payments to JPY merchants from the accounts `payer_first + owner`
/// (JPY accounts, or CNY ones: cross-currency).
fn qr_payments(world: &mut World, payer_first: u64) -> Vec<CommandKind> {
    (0..BATCH)
        .map(|_| {
            let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
            keys[0] = key(MERCHANT_FIRST + world.random(MERCHANTS));
            CommandKind::PayMerchantQr {
                payer: AccountId(payer_first + world.owner()),
                keys,
                amount: 1 + world.random(10_000),
                fee: 0,
                currency: Currency::JPY,
                mcc: 0,
                context: RiskContext::NONE,
            }
        })
        .collect()
}

fn transfers(world: &mut World) -> Vec<CommandKind> {
    (0..BATCH)
        .map(|_| {
            let from = world.owner();
            CommandKind::Transfer {
                from: AccountId(from),
                to: AccountId(1 + from % OWNERS),
                amount: 1,
                currency: Currency::CNY,
                context: RiskContext::NONE,
            }
        })
        .collect()
}

fn fx_sharded(c: &mut Criterion) {
    let mut world = World::new(Some(2));
    let mut group = c.benchmark_group("fx_sharded");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.bench_function("transfer_2_shards", |b| {
        b.iter_custom(|iterations| timed(&mut world, iterations, false, transfers))
    });
    group.bench_function("fx_convert_2_shards", |b| {
        b.iter_custom(|iterations| timed(&mut world, iterations, true, conversions))
    });
    group.bench_function("pay_merchant_qr_cny_to_jpy_2_shards", |b| {
        b.iter_custom(|iterations| {
            timed(&mut world, iterations, true, |world| qr_payments(world, 0))
        })
    });
    group.finish();
}

criterion_group!(benches, fx, fx_sharded);
criterion_main!(benches);
