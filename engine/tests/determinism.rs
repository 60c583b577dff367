//! Determinism across shard counts: one seeded command log (opens, top-ups,
//! withdrawals, transfers, QR payments to hot merchants, payment codes,
//! refunds, freezes, retries and reused ids, failures of every kind) applied
//! by a lone ledger and by 1, 2, 3 and 8 shards gives the same result for
//! every command and the same final state, and money is conserved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::command::{HouseRole, MerchantKey, QR_MERCHANT_KEYS_MAX};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency, Ledger,
    LedgerConfig, OpenAccount, Query, QueryReply,
};

/// splitmix64: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Zipf-like: small indices far more likely (u^3 skew).
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as u64 % n.max(1)
    }
}

const CUSTOMERS: u64 = 3_000;
const MERCHANTS: u64 = 120;
const BASE_TIME: u64 = 1_800_000_000_000_000_000;

fn customer(owner: u64) -> AccountId {
    AccountId(1_000_000 + owner * 2)
}
fn customer_usd(owner: u64) -> AccountId {
    AccountId(1_000_000 + owner * 2 + 1)
}
fn merchant(index: u64) -> AccountId {
    AccountId(5_000_000 + index)
}
fn merchant_key(index: u64, which: u64) -> MerchantKey {
    MerchantKey::new("com.example.pay", &format!("M{index}-{which}"))
}

struct Workload {
    rng: Rng,
    next_id: u128,
    /// Commands sent so far, for retries and reused ids.
    sent: Vec<Command>,
    holds: Vec<CommandId>,
    codes: Vec<u64>,
    payments: Vec<CommandId>,
    next_owner: u64,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng(seed),
            next_id: 1,
            sent: Vec::new(),
            holds: Vec::new(),
            codes: Vec::new(),
            payments: Vec::new(),
            next_owner: CUSTOMERS + MERCHANTS + 10,
        }
    }

    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    fn push(&mut self, batch: &mut Vec<Command>, kind: CommandKind) -> CommandId {
        let command = Command::new(self.id(), kind);
        self.sent.push(command);
        batch.push(command);
        command.id
    }

    fn setup(&mut self) -> Vec<Vec<Command>> {
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        for owner in 0..CUSTOMERS {
            for (account, currency) in [
                (customer(owner), Currency::CNY),
                (customer_usd(owner), Currency::USD),
            ] {
                if currency == Currency::USD && owner % 3 != 0 {
                    continue;
                }
                self.push(
                    &mut batch,
                    CommandKind::OpenAccount(OpenAccount {
                        account,
                        owner,
                        kind: AccountKind::Customer,
                        currency,
                        kyc_tier: (owner % 4) as u8,
                        mcc: 0,
                    }),
                );
            }
        }
        for index in 0..MERCHANTS {
            self.push(
                &mut batch,
                CommandKind::OpenAccount(OpenAccount {
                    account: merchant(index),
                    owner: CUSTOMERS + index,
                    kind: AccountKind::Merchant,
                    currency: if index % 10 == 9 {
                        Currency::USD
                    } else {
                        Currency::CNY
                    },
                    kyc_tier: 0,
                    mcc: 5411 + (index % 7) as u16,
                }),
            );
            // Most merchants register their keys up front; some later.
            if index % 8 != 0 {
                for which in 0..2 {
                    self.push(
                        &mut batch,
                        CommandKind::RegisterMerchantKey {
                            merchant: merchant(index),
                            key: merchant_key(index, which),
                        },
                    );
                }
            }
        }
        batches.push(std::mem::take(&mut batch));
        for owner in 0..CUSTOMERS {
            let amount = 50_000 + self.rng.below(500_000);
            self.push(
                &mut batch,
                CommandKind::Deposit {
                    account: customer(owner),
                    amount,
                    currency: Currency::CNY,
                },
            );
            if owner % 3 == 0 {
                self.push(
                    &mut batch,
                    CommandKind::Deposit {
                        account: customer_usd(owner),
                        amount,
                        currency: Currency::USD,
                    },
                );
            }
        }
        batches.push(batch);
        batches
    }

    fn some_customer(&mut self) -> AccountId {
        // A few unknown ids too.
        if self.rng.chance(1) {
            return AccountId(9_000_000 + self.rng.below(100));
        }
        let owner = self.rng.below(CUSTOMERS);
        if owner % 3 == 0 && self.rng.chance(20) {
            customer_usd(owner)
        } else {
            customer(owner)
        }
    }

    fn hot_merchant(&mut self) -> u64 {
        self.rng.skewed(MERCHANTS)
    }

    fn amount(&mut self) -> u64 {
        match self.rng.below(100) {
            0 => 0,
            1 => 10_000_000,
            2..=10 => 20_000 + self.rng.below(200_000),
            _ => 1 + self.rng.below(5_000),
        }
    }

    fn currency(&mut self) -> Currency {
        if self.rng.chance(4) {
            Currency::USD
        } else {
            Currency::CNY
        }
    }

    /// One command of the main mix: about two thirds name two owners.
    fn command(&mut self, batch: &mut Vec<Command>) {
        let roll = self.rng.below(1000);
        // Retries (same id, same fields) and reused ids (different fields).
        if roll < 30 && !self.sent.is_empty() {
            let back = self.rng.below(self.sent.len().min(3_000) as u64) as usize;
            let command = self.sent[self.sent.len() - 1 - back];
            batch.push(command);
            return;
        }
        if roll < 40 && !self.sent.is_empty() {
            let back = self.rng.below(self.sent.len().min(3_000) as u64) as usize;
            let id = self.sent[self.sent.len() - 1 - back].id;
            let kind = CommandKind::Transfer {
                from: self.some_customer(),
                to: self.some_customer(),
                amount: 1 + self.rng.below(100),
                currency: Currency::CNY,
            };
            batch.push(Command { id, kind });
            return;
        }
        let kind = match roll {
            40..=449 => CommandKind::Transfer {
                from: self.some_customer(),
                to: self.some_customer(),
                amount: self.amount(),
                currency: self.currency(),
            },
            450..=649 => {
                let index = self.hot_merchant();
                let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                keys[0] = if self.rng.chance(3) {
                    MerchantKey::new("unknown.gui", "nobody")
                } else {
                    merchant_key(index, self.rng.below(2))
                };
                if self.rng.chance(20) {
                    keys[1] = merchant_key(self.hot_merchant(), 0);
                }
                let id = self.id();
                let command = Command::new(
                    id,
                    CommandKind::PayMerchantQr {
                        payer: self.some_customer(),
                        keys,
                        amount: self.amount(),
                        fee: if self.rng.chance(10) {
                            self.rng.below(300)
                        } else {
                            0
                        },
                        currency: self.currency(),
                        mcc: if self.rng.chance(10) { 5812 } else { 0 },
                    },
                );
                self.payments.push(command.id);
                self.sent.push(command);
                batch.push(command);
                return;
            }
            650..=699 => {
                if self.codes.is_empty() || self.rng.chance(5) {
                    CommandKind::ChargePaymentCode {
                        merchant: merchant(self.hot_merchant()),
                        code: 100_000_000_000_000_000 + self.rng.below(1_000),
                        amount: self.amount(),
                        currency: Currency::CNY,
                    }
                } else {
                    let pick = self.codes.len()
                        - 1
                        - self.rng.below(self.codes.len().min(50) as u64) as usize;
                    let code = self.codes[pick];
                    let id = self.id();
                    let command = Command::new(
                        id,
                        CommandKind::ChargePaymentCode {
                            merchant: merchant(self.hot_merchant()),
                            code,
                            amount: self.amount(),
                            currency: Currency::CNY,
                        },
                    );
                    self.payments.push(command.id);
                    self.sent.push(command);
                    batch.push(command);
                    return;
                }
            }
            700..=739 => {
                let payment = if self.payments.is_empty() || self.rng.chance(5) {
                    CommandId(self.rng.next() as u128)
                } else {
                    let back = self.rng.below(self.payments.len().min(2_000) as u64) as usize;
                    self.payments[self.payments.len() - 1 - back]
                };
                CommandKind::Refund {
                    payment,
                    amount: 1 + self.rng.below(3_000),
                    currency: if self.rng.chance(3) {
                        Currency::USD
                    } else {
                        Currency::CNY
                    },
                }
            }
            740..=769 => {
                // Codes: mostly fresh, some taken (reused numbers).
                let code = if self.rng.chance(10) && !self.codes.is_empty() {
                    self.codes[self.rng.below(self.codes.len() as u64) as usize]
                } else {
                    100_000_000_000_000_000 + self.rng.below(899_999_999_999_999_999)
                };
                self.codes.push(code);
                CommandKind::IssuePaymentCode {
                    customer: self.some_customer(),
                    code,
                    lifetime_ms: 5_000 + self.rng.below(20_000),
                }
            }
            770..=819 => CommandKind::Deposit {
                account: self.some_customer(),
                amount: self.amount(),
                currency: self.currency(),
            },
            820..=869 => {
                let id = self.id();
                let command = Command::new(
                    id,
                    CommandKind::WithdrawHold {
                        account: self.some_customer(),
                        amount: self.amount(),
                        currency: Currency::CNY,
                        timeout_ms: 1_000 + self.rng.below(5_000),
                    },
                );
                self.holds.push(command.id);
                self.sent.push(command);
                batch.push(command);
                return;
            }
            870..=909 => {
                let hold = if self.holds.is_empty() || self.rng.chance(5) {
                    CommandId(self.rng.next() as u128)
                } else {
                    let back = self.rng.below(self.holds.len().min(3_000) as u64) as usize;
                    self.holds[self.holds.len() - 1 - back]
                };
                if self.rng.chance(60) {
                    CommandKind::WithdrawPost { hold }
                } else {
                    CommandKind::WithdrawVoid { hold }
                }
            }
            910..=914 => CommandKind::Freeze {
                account: self.some_customer(),
            },
            915..=959 => CommandKind::Unfreeze {
                account: self.some_customer(),
            },
            960..=969 => CommandKind::SetKycTier {
                account: self.some_customer(),
                tier: self.rng.below(5) as u8,
            },
            970..=979 => {
                // A late merchant registering a key (some taken, some fresh).
                let index = self.rng.below(MERCHANTS);
                CommandKind::RegisterMerchantKey {
                    merchant: merchant(if self.rng.chance(80) {
                        index - index % 8
                    } else {
                        index
                    }),
                    key: merchant_key(index - index % 8, self.rng.below(3)),
                }
            }
            980..=989 => {
                let owner = self.next_owner;
                self.next_owner += 1;
                CommandKind::OpenAccount(OpenAccount {
                    account: AccountId(8_000_000 + owner),
                    owner,
                    kind: AccountKind::Customer,
                    currency: Currency::CNY,
                    kyc_tier: 1,
                    mcc: 0,
                })
            }
            990..=994 => CommandKind::Close {
                account: self.some_customer(),
            },
            _ => CommandKind::Transfer {
                from: AccountId::house(HouseRole::Settlement, Currency::CNY),
                to: self.some_customer(),
                amount: 5,
                currency: Currency::CNY,
            },
        };
        self.push(batch, kind);
    }
}

/// The log: (timestamp, batch) in order.
fn seeded_log(seed: u64, commands_min: usize) -> Vec<(u64, Vec<Command>)> {
    let mut workload = Workload::new(seed);
    let mut time = BASE_TIME;
    let mut log = Vec::new();
    for batch in workload.setup() {
        time += 1_000_000;
        log.push((time, batch));
    }
    let mut total = 0;
    while total < commands_min {
        let size = match workload.rng.below(10) {
            0 => 1,
            1..=6 => 1 + workload.rng.below(64) as usize,
            _ => 64 + workload.rng.below(700) as usize,
        };
        let mut batch = Vec::with_capacity(size);
        for _ in 0..size {
            workload.command(&mut batch);
        }
        total += batch.len();
        // 0-60 ms between batches: holds (1-6 s) and codes (5-25 s) expire
        // along the way, and so do idempotency records (window below).
        time += workload.rng.below(60_000_000);
        log.push((time, batch));
    }
    log
}

fn config() -> LedgerConfig {
    LedgerConfig {
        // Small enough that records go by age and by count during the run.
        idempotency_window_ns: 20_000_000_000,
        idempotency_records_max: 40_000,
    }
}

#[test]
fn determinism_across_shard_counts() {
    let log = seeded_log(0x5EED_0001, 100_000);
    let commands: usize = log.iter().map(|(_, batch)| batch.len()).sum();
    assert!(commands >= 100_000);

    let mut lone = Ledger::new(config());
    let mut expected: Vec<CommandResult> = Vec::with_capacity(commands);
    for (sequence, (timestamp, batch)) in log.iter().enumerate() {
        lone.apply(sequence as u64 + 1, *timestamp, batch, &mut expected);
    }
    assert!(lone.is_conserved());
    // The log exercises what it claims to: successes and many kinds of failure.
    let mut statuses = std::collections::BTreeMap::new();
    for result in &expected {
        *statuses.entry(result.status.name()).or_insert(0usize) += 1;
    }
    for status in [
        "ok",
        "id_reused_with_different_fields",
        "insufficient_funds",
        "currency_mismatch",
        "unknown_merchant",
        "payment_code_used",
        "refund_exceeds_payment",
        "payment_not_found",
        "hold_expired",
        "account_frozen",
        "merchant_key_taken",
        "payment_code_taken",
    ] {
        assert!(
            statuses.get(status).copied().unwrap_or(0) > 0,
            "no {status} in {statuses:?}"
        );
    }

    for shards in [1, 2, 3, 8] {
        let mut sharded = ShardedLedger::new(config(), shards).unwrap();
        // Pipelined as the engine runs it: up to 6 batches in flight, the
        // router routing the next while the shards apply earlier ones.
        let mut results: Vec<CommandResult> = Vec::with_capacity(commands);
        for (sequence, (timestamp, batch)) in log.iter().enumerate() {
            sharded.submit(sequence as u64 + 1, *timestamp, batch);
            while let Some(done) = sharded.complete_ready() {
                results.extend(done);
            }
            while sharded.in_flight() > 6 {
                results.extend(sharded.complete_wait().unwrap());
            }
        }
        while let Some(done) = sharded.complete_wait() {
            results.extend(done);
        }
        assert_eq!(results.len(), expected.len());
        let mut flat = log.iter().flat_map(|(_, batch)| batch.iter());
        for (index, (got, want)) in results.iter().zip(&expected).enumerate() {
            let command = flat.next();
            assert_eq!(got, want, "{shards} shards, command {index}: {command:?}");
        }
        let stats = sharded.stats();
        if shards == 2 {
            // Over the main mix (after the opening and top-up batches).
            let main: usize = log.iter().skip(2).map(|(_, batch)| batch.len()).sum();
            let pairs_split = stats.pairs_split as f64 / main as f64;
            assert!(pairs_split > 1.0 / 3.0, "cross-shard share {pairs_split}");
        }

        let merged = sharded.to_ledger().unwrap();
        assert!(merged.is_conserved(), "{shards} shards");
        assert_eq!(merged.totals(), lone.totals(), "{shards} shards");
        for account in lone.accounts() {
            assert_eq!(
                merged.account(account.id).map(|a| a.view()),
                Some(account.view()),
                "{shards} shards"
            );
            let reply = sharded.query(&Query::Balance {
                account: account.id,
            });
            assert_eq!(
                reply,
                QueryReply::Balance(account.view()),
                "{shards} shards"
            );
        }
        assert_eq!(merged.digest(), lone.digest(), "{shards} shards");

        // A restart with another shard count: split the merged state and
        // carry on with the next part of the log.
        let mut restarted = ShardedLedger::from_ledger(merged, shards % 3 + 1).unwrap();
        let mut lone_after = lone.clone();
        let tail = seeded_log(0x5EED_0002, 20_000);
        let last = log.last().map_or(0, |(timestamp, _)| *timestamp);
        for (offset, (timestamp, batch)) in tail.iter().enumerate().skip(2) {
            let sequence = log.len() as u64 + offset as u64 + 1;
            let timestamp = last + (timestamp - BASE_TIME);
            let want = lone_after.apply_batch(sequence, timestamp, batch);
            let got = restarted.apply_batch(sequence, timestamp, batch);
            assert_eq!(got, want, "restart from {shards} shards");
        }
        assert_eq!(restarted.to_ledger().unwrap().digest(), lone_after.digest());
    }
}

/// A hold id that comes back after its record was evicted: refused while
/// the old hold (pending when its record went) is kept on its shard, even
/// when the new hold's account lives on another shard.
#[test]
fn determinism_of_hold_ids_reused_after_eviction() {
    use payrail_engine::shard::shard_of_owner;
    let owner_on = |shard: usize| {
        (0..)
            .find(|owner| shard_of_owner(*owner, 2) == shard)
            .unwrap()
    };
    let (a, b) = (owner_on(0), owner_on(1));
    let config = LedgerConfig {
        idempotency_window_ns: 1_000_000_000,
        idempotency_records_max: 1_000_000,
    };
    let open = |id: u128, owner: u64| {
        Command::new(
            id,
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(owner + 100),
                owner,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 1,
                mcc: 0,
            }),
        )
    };
    let deposit = |id: u128, owner: u64| {
        Command::new(
            id,
            CommandKind::Deposit {
                account: AccountId(owner + 100),
                amount: 1_000,
                currency: Currency::CNY,
            },
        )
    };
    let hold = |id: u128, owner: u64| {
        Command::new(
            id,
            CommandKind::WithdrawHold {
                account: AccountId(owner + 100),
                amount: 10,
                currency: Currency::CNY,
                timeout_ms: 60_000,
            },
        )
    };
    let post = |id: u128, hold: u128| {
        Command::new(
            id,
            CommandKind::WithdrawPost {
                hold: CommandId(hold),
            },
        )
    };
    let second = 1_000_000_000u64;
    let log: Vec<(u64, Vec<Command>)> = vec![
        (
            BASE_TIME,
            vec![open(1, a), open(2, b), deposit(3, a), deposit(4, b)],
        ),
        (BASE_TIME + 1, vec![hold(50, a), hold(60, a)]),
        (BASE_TIME + 2, vec![post(5, 60)]),
        // Both records are gone; 50 is still pending (refused), 60 was
        // posted (forgotten with its record: the id is free).
        (BASE_TIME + 5 * second, vec![hold(50, b), hold(60, b)]),
        // The refusal's record is gone too; the old hold 50 is still kept.
        (BASE_TIME + 6 * second, vec![hold(50, b)]),
        (BASE_TIME + 6 * second + 1, vec![post(7, 50)]),
        // The old hold 50 expired and its last record went: the id is free.
        (BASE_TIME + 70 * second, vec![hold(50, b)]),
    ];
    let mut lone = Ledger::new(config);
    let expected: Vec<Vec<CommandResult>> = log
        .iter()
        .enumerate()
        .map(|(sequence, (timestamp, batch))| {
            lone.apply_batch(sequence as u64 + 1, *timestamp, batch)
        })
        .collect();
    let statuses: Vec<&str> = expected.iter().flatten().map(|r| r.status.name()).collect();
    assert_eq!(
        statuses[6..],
        [
            "ok",
            "id_reused_with_different_fields",
            "ok",
            "id_reused_with_different_fields",
            "ok",
            "ok"
        ]
    );
    for shards in [1, 2, 3] {
        let mut sharded = ShardedLedger::new(config, shards).unwrap();
        for (sequence, ((timestamp, batch), want)) in log.iter().zip(&expected).enumerate() {
            let got = sharded.apply_batch(sequence as u64 + 1, *timestamp, batch);
            assert_eq!(&got, want, "{shards} shards, batch {sequence}");
        }
        assert_eq!(sharded.to_ledger().unwrap().digest(), lone.digest());
    }
}
