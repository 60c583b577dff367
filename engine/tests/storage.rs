//! The durable log, checkpoints and recovery, end to end: a "live" engine
//! logs every batch before applying it (as the sequencer does), and recovery
//! from what storage kept must rebuild exactly the live state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::storage::{
    decode_state, encode_state, recover, Checkpoint, LogEntry, LogRecord, MemoryStorage,
    RocksStorage, Storage, StorageError,
};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency, FxMid,
    FxOrder, FxRateSet, FxSide, FxSource, HouseRole, Ledger, LedgerConfig, MerchantKey,
    OpenAccount, Status,
};

const SECOND_NS: u64 = 1_000_000_000;
const START_NS: u64 = 1_700_000_000 * SECOND_NS;

/// Small retention, so that records are evicted and finished holds dropped
/// while their expiry entries are still queued.
fn config() -> LedgerConfig {
    LedgerConfig {
        idempotency_window_ns: 20 * SECOND_NS,
        idempotency_records_max: 400,
        ..LedgerConfig::default()
    }
}

/// A deterministic pseudo-random workload over a few currencies: opens,
/// deposits, transfers, holds that are posted, voided or left to expire,
/// freezes, closes, retries and reused ids.
struct Workload {
    state: u64,
    next_id: u128,
    accounts: Vec<(AccountId, Currency)>,
    holds: Vec<CommandId>,
    merchants: Vec<(AccountId, Currency)>,
    keys: Vec<MerchantKey>,
    codes: Vec<u64>,
    /// Payments made, with the currency they were made in.
    payments: Vec<(CommandId, Currency)>,
    sent: Vec<Command>,
    /// The currency of the merchant each key of `keys` pays (FX payments).
    key_currencies: Vec<Currency>,
    /// FX quotes asked for, with their paying account.
    quotes: Vec<(CommandId, AccountId)>,
}

const CURRENCIES: [Currency; 4] = [Currency::CNY, Currency::JPY, Currency::BHD, Currency::USD];

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            state: seed | 1,
            next_id: u128::from(seed) << 64,
            accounts: Vec::new(),
            holds: Vec::new(),
            merchants: Vec::new(),
            keys: Vec::new(),
            codes: Vec::new(),
            payments: Vec::new(),
            sent: Vec::new(),
            key_currencies: Vec::new(),
            quotes: Vec::new(),
        }
    }

    /// FX: rates that go stale, floors, conversions between an owner's
    /// accounts (owner = number / 2), quotes converted or left to expire,
    /// and QR payments in the merchant's currency from payers in another.
    fn fx(&mut self) -> Command {
        let pick =
            |workload: &mut Workload| CURRENCIES[workload.random(CURRENCIES.len() as u64) as usize];
        let order = |workload: &mut Workload| {
            let (from, _) = workload.account();
            let to = AccountId(from.0 ^ 1);
            FxOrder {
                from,
                to,
                amount: 1 + workload.random(50_000),
                side: if workload.random(2) == 0 {
                    FxSide::Pay
                } else {
                    FxSide::Receive
                },
            }
        };
        let kind = match self.random(6) {
            0 => {
                let (base, quote) = (pick(self), pick(self));
                CommandKind::SetFxRate(FxRateSet {
                    base,
                    quote,
                    mid: FxMid {
                        mantissa: 1 + self.random(500_000),
                        scale: self.random(5) as u8,
                    },
                    spread_bps: self.random(200) as u16,
                    valid_ms: 1_000 + self.random(30_000),
                    source: FxSource::new("TEST").unwrap(),
                })
            }
            1 => CommandKind::SetFxFloor {
                currency: pick(self),
                limit: self.random(10_000_000),
            },
            2 => CommandKind::FxConvert(order(self)),
            3 => {
                let order = order(self);
                let id = self.id();
                self.quotes.push((CommandId(id), order.from));
                return Command::new(
                    id,
                    CommandKind::FxQuote {
                        order,
                        ttl_ms: 1_000 + self.random(10_000),
                    },
                );
            }
            4 if !self.quotes.is_empty() => {
                let recent = self.quotes.len().min(10) as u64;
                let back = self.random(recent) as usize;
                let (quote, from) = self.quotes[self.quotes.len() - 1 - back];
                CommandKind::FxConvertQuote { quote, from }
            }
            _ if !self.keys.is_empty() => {
                let (payer, _) = self.account();
                let index = self.random(self.keys.len() as u64) as usize;
                let currency = self.key_currencies[index];
                let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                keys[0] = self.keys[index];
                let id = self.id();
                self.payments.push((CommandId(id), currency));
                return Command::new(
                    id,
                    CommandKind::PayMerchantQr {
                        payer,
                        keys,
                        amount: 1 + self.random(10_000),
                        fee: 0,
                        currency,
                        mcc: 0,
                        context: payrail_engine::RiskContext::NONE,
                    },
                );
            }
            _ => CommandKind::FxConvert(order(self)),
        };
        Command::new(self.id(), kind)
    }

    fn random(&mut self, below: u64) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }

    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    fn account(&mut self) -> (AccountId, Currency) {
        let index = self.random(self.accounts.len() as u64) as usize;
        self.accounts[index]
    }

    fn pick_merchant(&mut self) -> (AccountId, Currency) {
        let index = self.random(self.merchants.len() as u64) as usize;
        self.merchants[index]
    }

    fn open(&mut self) -> Command {
        let number = self.accounts.len() as u64 + 1;
        let currency = CURRENCIES[self.random(CURRENCIES.len() as u64) as usize];
        let merchant = self.random(5) == 0;
        let account = AccountId(number);
        self.accounts.push((account, currency));
        if merchant {
            self.merchants.push((account, currency));
        }
        Command::new(
            self.id(),
            CommandKind::OpenAccount(OpenAccount {
                account,
                owner: number / 2,
                kind: if merchant {
                    AccountKind::Merchant
                } else {
                    AccountKind::Customer
                },
                currency,
                kyc_tier: if merchant { 0 } else { 1 },
                mcc: if merchant { 5812 } else { 0 },
            }),
        )
    }

    fn command(&mut self) -> Command {
        if self.accounts.len() < 8 || self.random(20) == 0 {
            return self.open();
        }
        if self.random(8) == 0 {
            return self.fx();
        }
        let roll = self.random(120);
        let command = match roll {
            0..=24 => {
                let (account, currency) = self.account();
                let amount = 1 + self.random(100_000);
                Command::new(
                    self.id(),
                    CommandKind::Deposit {
                        account,
                        amount,
                        currency,
                    },
                )
            }
            25..=54 => {
                let (from, currency) = self.account();
                let (to, _) = self.account();
                // Mostly the payer's currency; sometimes a mismatch.
                let currency = if self.random(10) == 0 {
                    Currency::EUR
                } else {
                    currency
                };
                let amount = 1 + self.random(20_000);
                Command::new(
                    self.id(),
                    CommandKind::Transfer {
                        from,
                        to,
                        amount,
                        currency,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            }
            55..=69 => {
                let (account, currency) = self.account();
                let id = self.id();
                self.holds.push(CommandId(id));
                let amount = 1 + self.random(5_000);
                let timeout_ms = 1_000 + self.random(40_000);
                Command::new(
                    id,
                    CommandKind::WithdrawHold {
                        account,
                        amount,
                        currency,
                        timeout_ms,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            }
            70..=79 if !self.holds.is_empty() => {
                // Mostly recent holds, which still exist.
                let recent = self.holds.len().min(30) as u64;
                let index = self.holds.len() - 1 - self.random(recent) as usize;
                let hold = self.holds[index];
                let kind = if self.random(3) == 0 {
                    CommandKind::WithdrawVoid { hold }
                } else {
                    CommandKind::WithdrawPost { hold }
                };
                Command::new(self.id(), kind)
            }
            80..=84 => {
                let (account, _) = self.account();
                let kind = match self.random(4) {
                    0 => CommandKind::Freeze { account },
                    1 => CommandKind::Unfreeze { account },
                    2 => CommandKind::Close { account },
                    _ => CommandKind::SetKycTier {
                        account,
                        tier: self.random(4) as u8,
                    },
                };
                Command::new(self.id(), kind)
            }
            85..=94 if !self.sent.is_empty() => {
                // A retry: the same command again.
                let index = self.random(self.sent.len() as u64) as usize;
                self.sent[index]
            }
            95..=99 if !self.sent.is_empty() => {
                // An old id with different fields (refused, or accepted once
                // its record has been evicted).
                let index = self.random(self.sent.len() as u64) as usize;
                let old = self.sent[index];
                let (account, currency) = self.account();
                Command {
                    id: old.id,
                    kind: CommandKind::WithdrawHold {
                        account,
                        amount: 1 + self.random(100),
                        currency,
                        timeout_ms: 1_000 + self.random(60_000),
                        context: payrail_engine::RiskContext::NONE,
                    },
                }
            }
            100..=103 if !self.merchants.is_empty() => {
                let (merchant, merchant_currency) = self.pick_merchant();
                let key = MerchantKey(u128::from(self.random(u64::MAX)) + 1);
                self.keys.push(key);
                self.key_currencies.push(merchant_currency);
                Command::new(
                    self.id(),
                    CommandKind::RegisterMerchantKey { merchant, key },
                )
            }
            104..=108 if !self.keys.is_empty() => {
                let (payer, currency) = self.account();
                let index = self.random(self.keys.len() as u64) as usize;
                let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                keys[0] = self.keys[index];
                let id = self.id();
                self.payments.push((CommandId(id), currency));
                let amount = 1 + self.random(10_000);
                let fee = self.random(50);
                Command::new(
                    id,
                    CommandKind::PayMerchantQr {
                        payer,
                        keys,
                        amount,
                        fee,
                        currency,
                        mcc: 5812,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            }
            109..=112 => {
                let (customer, _) = self.account();
                let code = 100_000_000_000_000_000 + self.random(1_000_000);
                self.codes.push(code);
                let lifetime_ms = 5_000 + self.random(55_000);
                Command::new(
                    self.id(),
                    CommandKind::IssuePaymentCode {
                        customer,
                        code,
                        lifetime_ms,
                    },
                )
            }
            113..=116 if !self.merchants.is_empty() && !self.codes.is_empty() => {
                let (merchant, currency) = self.pick_merchant();
                let recent = self.codes.len().min(20) as u64;
                let back = self.random(recent) as usize;
                let code = self.codes[self.codes.len() - 1 - back];
                let id = self.id();
                self.payments.push((CommandId(id), currency));
                let amount = 1 + self.random(5_000);
                Command::new(
                    id,
                    CommandKind::ChargePaymentCode {
                        merchant,
                        code,
                        amount,
                        currency,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            }
            117..=119 if !self.payments.is_empty() => {
                let recent = self.payments.len().min(30) as u64;
                let back = self.random(recent) as usize;
                let (payment, currency) = self.payments[self.payments.len() - 1 - back];
                let amount = 1 + self.random(3_000);
                Command::new(
                    self.id(),
                    CommandKind::Refund {
                        payment,
                        amount,
                        currency,
                    },
                )
            }
            _ => self.open(),
        };
        if self.sent.len() < 2_000 {
            self.sent.push(command);
        }
        command
    }

    fn batch(&mut self) -> Vec<Command> {
        let len = 1 + self.random(40) as usize;
        (0..len).map(|_| self.command()).collect()
    }
}

/// An engine in miniature: every record is durably appended before its
/// batch is applied, as the sequencer does.
struct Live<S: Storage> {
    ledger: Ledger,
    storage: S,
    sequence: u64,
    timestamp: u64,
}

impl<S: Storage> Live<S> {
    fn new(storage: S) -> Live<S> {
        Live {
            ledger: Ledger::new(config()),
            storage,
            sequence: 0,
            timestamp: START_NS,
        }
    }

    fn next(&mut self) -> (u64, u64) {
        self.sequence += 1;
        // 50 ms to 1.5 s of command time per record.
        self.timestamp += 50_000_000 + (self.sequence % 30) * 50_000_000;
        (self.sequence, self.timestamp)
    }

    /// Logs then applies one batch; on a failed append nothing is applied.
    fn batch(&mut self, commands: Vec<Command>) -> Result<Vec<CommandResult>, StorageError> {
        let (sequence, timestamp) = self.next();
        let record = LogRecord::batch(sequence, timestamp, commands.clone());
        if let Err(error) = self.storage.append(&[(sequence, record.to_bytes())]) {
            self.sequence -= 1;
            return Err(error);
        }
        Ok(self.ledger.apply_batch(sequence, timestamp, &commands))
    }

    /// Several batches in one append (group commit).
    fn group(&mut self, batches: Vec<Vec<Command>>) {
        let mut records = Vec::new();
        let mut applies = Vec::new();
        for commands in batches {
            let (sequence, timestamp) = self.next();
            records.push((
                sequence,
                LogRecord::batch(sequence, timestamp, commands.clone()).to_bytes(),
            ));
            applies.push((sequence, timestamp, commands));
        }
        self.storage.append(&records).unwrap();
        for (sequence, timestamp, commands) in applies {
            self.ledger.apply_batch(sequence, timestamp, &commands);
        }
    }

    /// A checkpoint marker through the log, the state saved, the log trimmed.
    fn checkpoint(&mut self) -> u64 {
        let (sequence, timestamp) = self.next();
        let marker = LogRecord::checkpoint(sequence, timestamp);
        self.storage
            .append(&[(sequence, marker.to_bytes())])
            .unwrap();
        let mut state = Vec::new();
        encode_state(&self.ledger, &mut state);
        self.storage
            .save_checkpoint(&Checkpoint {
                sequence,
                timestamp,
                digest: self.ledger.digest(),
                state,
            })
            .unwrap();
        self.storage.trim_log(sequence).unwrap();
        sequence
    }

    fn run(&mut self, workload: &mut Workload, batches: usize) {
        for _ in 0..batches {
            let batch = workload.batch();
            self.batch(batch).unwrap();
        }
    }
}

fn round_trip(ledger: &Ledger) -> Ledger {
    let mut bytes = Vec::new();
    encode_state(ledger, &mut bytes);
    decode_state(&bytes, *ledger.config()).unwrap()
}

#[test]
fn snapshot_round_trip_keeps_digest_and_behaviour() {
    let mut workload = Workload::new(11);
    let mut live = Live::new(MemoryStorage::new());
    live.run(&mut workload, 300);
    let ledger = &live.ledger;
    assert!(ledger.is_conserved());
    assert!(ledger.totals().len() >= 3, "several currencies in use");
    assert!(ledger.records_len() > 100);
    assert!(
        workload
            .payments
            .iter()
            .any(|(id, _)| ledger.payment(*id).is_some()),
        "refundable payments are part of the state"
    );

    let mut copy = round_trip(ledger);
    assert_eq!(copy.digest(), ledger.digest());
    assert_eq!(copy.sequence(), ledger.sequence());
    assert_eq!(copy.timestamp(), ledger.timestamp());
    assert_eq!(copy.accounts(), ledger.accounts());
    // Equal states encode to equal bytes.
    let (mut first, mut second) = (Vec::new(), Vec::new());
    encode_state(ledger, &mut first);
    encode_state(&copy, &mut second);
    assert_eq!(first, second);

    // Same results and digests on every further batch, long enough for the
    // holds pending at the snapshot to expire.
    let mut original = live.ledger.clone();
    let (mut sequence, mut timestamp) = (original.sequence(), original.timestamp());
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..300u64 {
        let batch = workload.batch();
        sequence += 1;
        timestamp += 400_000_000 + (step % 7) * 100_000_000;
        let expected = original.apply_batch(sequence, timestamp, &batch);
        let actual = copy.apply_batch(sequence, timestamp, &batch);
        assert_eq!(actual, expected, "batch {sequence}");
        seen.extend(actual.iter().map(|result| result.status));
        assert_eq!(copy.digest(), original.digest(), "batch {sequence}");
    }
    assert!(copy.is_conserved());
    // The workload reached the interesting paths.
    for status in [
        Status::Ok,
        Status::HoldExpired,
        Status::HoldAlreadyPosted,
        Status::HoldAlreadyVoided,
        Status::IdReusedWithDifferentFields,
        Status::InsufficientFunds,
        Status::AccountFrozen,
        Status::PaymentCodeUsed,
        Status::RefundExceedsPayment,
    ] {
        assert!(seen.contains(&status), "{status:?} never happened");
    }
    assert_eq!(copy.records_len(), 400, "records were evicted");
}

#[test]
fn snapshot_holds_pending_posted_and_expired_holds() {
    use payrail_engine::ledger::HoldState;
    let customer = AccountId(1);
    let open = Command::new(
        1,
        CommandKind::OpenAccount(OpenAccount {
            account: customer,
            owner: 1,
            kind: AccountKind::Customer,
            currency: Currency::BHD,
            kyc_tier: 1,
            mcc: 0,
        }),
    );
    let deposit = Command::new(
        2,
        CommandKind::Deposit {
            account: customer,
            amount: 10_000,
            currency: Currency::BHD,
        },
    );
    let hold = |id, timeout_ms| {
        Command::new(
            id,
            CommandKind::WithdrawHold {
                account: customer,
                amount: 100,
                currency: Currency::BHD,
                timeout_ms,
                context: payrail_engine::RiskContext::NONE,
            },
        )
    };
    let mut ledger = Ledger::new(LedgerConfig::default());
    ledger.apply_batch(
        1,
        START_NS,
        &[
            open,
            deposit,
            hold(3, 1_000),
            hold(4, 60_000),
            hold(5, 60_000),
        ],
    );
    ledger.apply_batch(
        2,
        START_NS + 2 * SECOND_NS,
        &[Command::new(
            6,
            CommandKind::WithdrawPost { hold: CommandId(4) },
        )],
    );
    let states: Vec<HoldState> = (3..=5)
        .map(|id| ledger.hold(CommandId(id)).unwrap().state)
        .collect();
    assert_eq!(
        states,
        [HoldState::Expired, HoldState::Posted, HoldState::Pending]
    );

    let copy = round_trip(&ledger);
    assert_eq!(copy.digest(), ledger.digest());
    for id in 3..=5 {
        assert_eq!(copy.hold(CommandId(id)), ledger.hold(CommandId(id)));
    }
    assert_eq!(copy.account(customer), ledger.account(customer));
}

#[test]
fn decode_state_refuses_damage_without_panicking() {
    let mut workload = Workload::new(12);
    let mut live = Live::new(MemoryStorage::new());
    live.run(&mut workload, 100);
    let mut bytes = Vec::new();
    encode_state(&live.ledger, &mut bytes);

    // About 500 positions each, spread over every section.
    let step = (bytes.len() / 500).max(1);
    for len in (0..bytes.len()).step_by(step) {
        assert!(
            decode_state(&bytes[..len], config()).is_err(),
            "length {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_state(&longer, config()).is_err());

    // Flipped bits decode to an error or to some state; a changed state is
    // caught by the digest (checked in recovery), and nothing panics.
    let digest = live.ledger.digest();
    let mut changed = 0;
    for index in (0..bytes.len()).step_by(step) {
        let mut flipped = bytes.clone();
        flipped[index] ^= 1 << (index % 8);
        if let Ok(ledger) = decode_state(&flipped, config()) {
            if ledger.digest() != digest {
                changed += 1;
            }
        }
    }
    assert!(
        changed > 0,
        "some flips yield a different but decodable state"
    );
}

#[test]
fn recovery_replays_the_log_after_the_checkpoint() {
    let storage = MemoryStorage::new();
    let mut workload = Workload::new(13);
    let mut live = Live::new(storage.clone());

    // No checkpoint yet: the whole log is replayed.
    live.run(&mut workload, 50);
    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(ledger.digest(), live.ledger.digest());
    assert_eq!(report.checkpoint_sequence, 0);
    assert_eq!(report.records_replayed, 50);
    assert_eq!(report.last_sequence, 50);

    let checkpoint = live.checkpoint();
    live.run(&mut workload, 80);
    let batches = (0..5).map(|_| workload.batch()).collect();
    live.group(batches);
    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(ledger.digest(), live.ledger.digest());
    assert_eq!(report.digest, live.ledger.digest());
    assert_eq!(report.checkpoint_sequence, checkpoint);
    assert_eq!(report.records_replayed, 85);
    assert_eq!(report.last_sequence, live.sequence);
    assert_eq!(report.last_timestamp, live.timestamp);
    assert_eq!(report.dropped_tail, None);
    assert_eq!(storage.log_sequences().first(), Some(&(checkpoint + 1)));

    // A second checkpoint, then only markers after it: nothing to apply.
    live.run(&mut workload, 10);
    let second = live.checkpoint();
    let (sequence, timestamp) = live.next();
    live.storage
        .append(&[(
            sequence,
            LogRecord::checkpoint(sequence, timestamp).to_bytes(),
        )])
        .unwrap();
    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(ledger.digest(), live.ledger.digest());
    assert_eq!(report.checkpoint_sequence, second);
    assert_eq!((report.records_replayed, report.commands_replayed), (1, 0));
    assert_eq!(report.last_sequence, sequence);

    // The recovered ledger carries on exactly like the live one.
    let mut recovered = Live {
        ledger,
        storage: storage.clone(),
        sequence: report.last_sequence,
        timestamp: report.last_timestamp,
    };
    for _ in 0..20 {
        let batch = workload.batch();
        let actual = recovered.batch(batch.clone()).unwrap();
        let expected = live
            .ledger
            .apply_batch(recovered.sequence, recovered.timestamp, &batch);
        assert_eq!(actual, expected);
    }
    assert_eq!(recovered.ledger.digest(), live.ledger.digest());
    // The workload's conversions and cross-currency payments went through
    // (so FX state took part in the checkpoints and replays above).
    let fx_moved = CURRENCIES.iter().any(|&currency| {
        recovered
            .ledger
            .account(AccountId::house(HouseRole::FxRevenue, currency))
            .is_some_and(|account| account.balance > 0)
    });
    assert!(fx_moved, "no conversion succeeded in the workload");
}

#[test]
fn a_torn_last_record_is_dropped_and_reported() {
    let storage = MemoryStorage::new();
    let mut workload = Workload::new(14);
    let mut live = Live::new(storage.clone());
    live.run(&mut workload, 30);
    live.checkpoint();
    live.run(&mut workload, 10);
    let before_last = live.ledger.digest();
    live.run(&mut workload, 1);
    storage.tear_last_record();

    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(report.dropped_tail, Some(live.sequence));
    assert_eq!(ledger.digest(), before_last);
    assert_eq!(report.last_sequence, live.sequence - 1);
    assert_eq!(storage.log_sequences().last(), Some(&(live.sequence - 1)));

    // Recovering again finds a clean log.
    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(report.dropped_tail, None);
    assert_eq!(ledger.digest(), before_last);
}

#[test]
fn a_torn_record_right_after_the_checkpoint_is_dropped() {
    let storage = MemoryStorage::new();
    let mut workload = Workload::new(15);
    let mut live = Live::new(storage.clone());
    live.run(&mut workload, 5);
    live.checkpoint();
    let at_checkpoint = live.ledger.digest();
    live.run(&mut workload, 1);
    storage.tear_last_record();
    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(report.dropped_tail, Some(live.sequence));
    assert_eq!(report.records_replayed, 0);
    assert_eq!(ledger.digest(), at_checkpoint);
}

fn corrupt_sequence(result: Result<(Ledger, impl std::fmt::Debug), StorageError>) -> u64 {
    match result {
        Err(StorageError::Corrupt { sequence, .. }) => sequence,
        other => panic!(
            "expected Corrupt, got {:?}",
            other.map(|(_, report)| report)
        ),
    }
}

#[test]
fn a_corrupt_record_before_the_last_is_an_error_naming_it() {
    let storage = MemoryStorage::new();
    let mut workload = Workload::new(16);
    let mut live = Live::new(storage.clone());
    live.run(&mut workload, 20);
    live.checkpoint();
    live.run(&mut workload, 300);
    let damaged = live.sequence - 150;
    storage.corrupt_record(damaged);
    let result = recover(&mut storage.clone(), config());
    let message = result
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert_eq!(corrupt_sequence(result), damaged);
    assert!(
        message.contains(&format!("log record {damaged} is corrupt")),
        "{message}"
    );
    // Nothing was deleted.
    assert_eq!(storage.log_sequences().len(), 300);

    // The second-to-last record, with an intact last one after it.
    let storage = MemoryStorage::new();
    let mut live = Live::new(storage.clone());
    live.run(&mut workload, 3);
    storage.corrupt_record(2);
    assert_eq!(corrupt_sequence(recover(&mut storage.clone(), config())), 2);
}

#[test]
fn records_that_break_the_order_are_corruption() {
    let batch = |sequence, timestamp| {
        LogRecord::batch(sequence, timestamp, vec![Workload::new(1).open()]).to_bytes()
    };

    // A gap: record 3 is missing.
    let storage = MemoryStorage::new();
    storage.put_raw(1, batch(1, 10));
    storage.put_raw(2, batch(2, 20));
    storage.put_raw(4, batch(4, 40));
    assert_eq!(corrupt_sequence(recover(&mut storage.clone(), config())), 4);

    // The log does not start at 1 and there is no checkpoint.
    let storage = MemoryStorage::new();
    storage.put_raw(2, batch(2, 20));
    assert_eq!(corrupt_sequence(recover(&mut storage.clone(), config())), 2);

    // Time going back.
    let storage = MemoryStorage::new();
    storage.put_raw(1, batch(1, 10));
    storage.put_raw(2, batch(2, 9));
    assert_eq!(corrupt_sequence(recover(&mut storage.clone(), config())), 2);

    // A record stored under another record's number (a valid last record:
    // not a torn write, so not dropped).
    let storage = MemoryStorage::new();
    storage.put_raw(1, batch(1, 10));
    storage.put_raw(2, batch(7, 20));
    assert_eq!(corrupt_sequence(recover(&mut storage.clone(), config())), 2);
}

#[test]
fn a_bad_checkpoint_is_an_error_naming_it() {
    let storage = MemoryStorage::new();
    let mut workload = Workload::new(17);
    let mut live = Live::new(storage.clone());
    live.run(&mut workload, 40);
    let sequence = live.checkpoint();
    storage.corrupt_checkpoint();
    match recover(&mut storage.clone(), config()) {
        Err(StorageError::CheckpointCorrupt {
            sequence: named, ..
        }) => assert_eq!(named, sequence),
        other => panic!("{:?}", other.map(|(_, report)| report)),
    }

    // A digest that does not match the state.
    let mut storage = MemoryStorage::new();
    let mut state = Vec::new();
    encode_state(&live.ledger, &mut state);
    storage
        .save_checkpoint(&Checkpoint {
            sequence: live.sequence,
            timestamp: live.timestamp,
            digest: [7; 32],
            state,
        })
        .unwrap();
    let error = recover(&mut storage, config()).err().unwrap();
    assert!(error.to_string().contains("digest"), "{error}");
    assert!(
        error.to_string().contains(&live.sequence.to_string()),
        "{error}"
    );
}

#[test]
fn a_failed_append_keeps_nothing_and_recovery_matches_what_was_acknowledged() {
    let storage = MemoryStorage::new();
    let mut workload = Workload::new(18);
    let mut live = Live::new(storage.clone());
    live.run(&mut workload, 10);
    storage.fail_appends_after(2);
    live.run(&mut workload, 2);
    let acknowledged = live.ledger.digest();
    let batch = workload.batch();
    assert!(matches!(live.batch(batch), Err(StorageError::Io(_))));
    assert!(live
        .storage
        .append(&[(99, vec![1]), (100, vec![2])])
        .is_err());
    assert_eq!(storage.appended_records(), 12);
    assert_eq!(storage.log_sequences(), (1..=12).collect::<Vec<_>>());
    assert_eq!(live.ledger.digest(), acknowledged);

    let (ledger, report) = recover(&mut storage.clone(), config()).unwrap();
    assert_eq!(ledger.digest(), acknowledged);
    assert_eq!(report.last_sequence, 12);

    storage.fail_all(true);
    assert!(matches!(
        recover(&mut storage.clone(), config()),
        Err(StorageError::Io(_))
    ));
    storage.fail_all(false);
    assert!(recover(&mut storage.clone(), config()).is_ok());
}

#[test]
fn rocks_append_read_trim_checkpoint_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    assert_eq!(storage.read_log(0, 10).unwrap(), Vec::new());
    assert_eq!(storage.load_checkpoint().unwrap(), None);

    let records: Vec<(u64, Vec<u8>)> = (1..=300u64)
        .map(|sequence| {
            (
                sequence,
                LogRecord::checkpoint(sequence, sequence).to_bytes(),
            )
        })
        .collect();
    storage.append(&records[..1]).unwrap();
    storage.append(&records[1..]).unwrap();
    assert_eq!(storage.log_stats().records, 300);
    assert_eq!(storage.log_stats().bytes, 300 * 28);

    // Paging: keys in numeric order (255 < 256 < 257 in big-endian keys).
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = storage.read_log(after, 64).unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 64);
        after = last.0;
        read.extend(page);
    }
    assert_eq!(read, records);
    assert_eq!(storage.read_log(299, 10).unwrap(), records[299..].to_vec());
    assert_eq!(storage.read_log(u64::MAX, 10).unwrap(), Vec::new());

    let checkpoint = Checkpoint {
        sequence: 256,
        timestamp: 256,
        digest: [9; 32],
        state: vec![1, 2, 3],
    };
    storage.save_checkpoint(&checkpoint).unwrap();
    storage.trim_log(256).unwrap();
    assert_eq!(storage.read_log(0, 1000).unwrap(), records[256..].to_vec());
    let stats = storage.log_stats();
    assert_eq!(stats.records, 44);
    drop(storage);

    let mut storage = RocksStorage::open(dir.path()).unwrap();
    assert_eq!(storage.log_stats(), stats);
    assert_eq!(storage.read_log(0, 1000).unwrap(), records[256..].to_vec());
    assert_eq!(storage.load_checkpoint().unwrap(), Some(checkpoint));
    storage.truncate_log(290).unwrap();
    assert_eq!(
        storage.read_log(0, 1000).unwrap(),
        records[256..289].to_vec()
    );
    assert_eq!(storage.log_stats().records, 33);
    storage.trim_log(u64::MAX).unwrap();
    assert_eq!(storage.read_log(0, 1000).unwrap(), Vec::new());
    assert_eq!(storage.log_stats().records, 0);
}

#[test]
fn rocks_recovery_backup_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut workload = Workload::new(19);
    let mut live = Live::new(RocksStorage::open(&data).unwrap());
    live.run(&mut workload, 60);
    live.checkpoint();
    live.run(&mut workload, 40);
    let batches = (0..4).map(|_| workload.batch()).collect();
    live.group(batches);

    // A backup while "serving", then more writes to the original.
    let backup = dir.path().join("backup");
    live.storage.backup(&backup).unwrap();
    let at_backup = live.ledger.digest();
    live.run(&mut workload, 25);
    let sequence = live.sequence;
    let digest = live.ledger.digest();

    // A write torn by a crash: a record that fails its checksum, last.
    let mut torn = LogRecord::batch(sequence + 1, live.timestamp, workload.batch()).to_bytes();
    torn.truncate(torn.len() - 3);
    live.storage.append(&[(sequence + 1, torn)]).unwrap();
    drop(live);

    let mut storage = RocksStorage::open(&data).unwrap();
    let (ledger, report) = recover(&mut storage, config()).unwrap();
    assert_eq!(ledger.digest(), digest);
    assert_eq!(report.dropped_tail, Some(sequence + 1));
    assert_eq!(report.last_sequence, sequence);
    assert_eq!(report.records_replayed, 40 + 4 + 25);
    drop(storage);
    let mut storage = RocksStorage::open(&data).unwrap();
    assert_eq!(
        recover(&mut storage, config()).unwrap().1.dropped_tail,
        None
    );

    let mut restored = RocksStorage::open(&backup).unwrap();
    let (ledger, report) = recover(&mut restored, config()).unwrap();
    assert_eq!(ledger.digest(), at_backup);
    assert_eq!(report.last_sequence, sequence - 25);
    assert!(matches!(
        LogRecord::decode(&restored.read_log(report.last_sequence - 1, 1).unwrap()[0].1)
            .unwrap()
            .entry,
        LogEntry::Batch(_)
    ));
    // A backup goes to a new directory only.
    assert!(storage.backup(&backup).is_err());
}

#[test]
fn rocks_clones_share_one_database_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    let mut checkpointer = storage.clone();
    let checkpoint = Checkpoint {
        sequence: 1,
        timestamp: 1,
        digest: [1; 32],
        state: vec![5; 9 * 1024 * 1024],
    };
    let expected = checkpoint.clone();
    let saver = std::thread::spawn(move || {
        checkpointer.save_checkpoint(&checkpoint).unwrap();
        checkpointer.trim_log(1).unwrap();
    });
    for sequence in 1..=200u64 {
        storage
            .append(&[(
                sequence,
                LogRecord::checkpoint(sequence, sequence).to_bytes(),
            )])
            .unwrap();
    }
    saver.join().unwrap();
    assert_eq!(storage.load_checkpoint().unwrap(), Some(expected));
    assert_eq!(storage.read_log(0, 1).unwrap()[0].0, 2);
    assert_eq!(storage.read_log(0, 1000).unwrap().len(), 199);
    assert_eq!(storage.log_stats().records, 199);
}
