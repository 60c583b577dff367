//! Checkpoints made by the checkpointer's follower (its own lone ledger,
//! replaying the log) hold exactly the live sharded state at their marker:
//! the same digest as a sharded twin fed the same log, and idempotency
//! records that answer retries after a restart (on another shard count)
//! as the live engine would have, evictions included. And a stop is quick:
//! no final checkpoint, the next start replays the tail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use payrail_engine::pipeline::{Engine, EngineConfig, EngineError};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::storage::{
    decode_state, recover, LogEntry, LogRecord, MemoryStorage, Storage, StorageError,
};
use payrail_engine::{Command, CommandResult, LedgerConfig, Status};

use common::{deposit, open, transfer};

const ACCOUNTS: u64 = 40;
/// Small, so that records are evicted by the cap well before the checkpoint.
const RECORDS_MAX: usize = 300;

fn config(shards: usize) -> EngineConfig {
    EngineConfig {
        ledger: LedgerConfig {
            idempotency_records_max: RECORDS_MAX,
            ..LedgerConfig::default()
        },
        shards,
        // Checkpoints only when asked.
        checkpoint_commands: u64::MAX,
        checkpoint_interval: std::time::Duration::from_secs(3_600),
        ..EngineConfig::default()
    }
}

/// Seeded batches of transfers (some overdrawing, some to unknown
/// accounts), with retries of earlier ids, some with changed fields.
fn batches(seed: u64, first_id: u128, count: usize) -> Vec<Vec<Command>> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut id = first_id;
    let mut sent: Vec<Command> = Vec::new();
    (0..count)
        .map(|_| {
            (0..25)
                .map(|_| {
                    let roll = next() % 100;
                    if roll < 15 && !sent.is_empty() {
                        // A retry of an id sent earlier (evicted or not).
                        let old = sent[(next() as usize) % sent.len()];
                        if roll < 3 {
                            // The same id with other fields.
                            return transfer(old.id.0, 1, 2, 1 + next() % 7);
                        }
                        return old;
                    }
                    id += 1;
                    let from = 1 + next() % (ACCOUNTS + 2);
                    let to = 1 + next() % ACCOUNTS;
                    let command = transfer(id, from, to, 1 + next() % 300);
                    sent.push(command);
                    command
                })
                .collect()
        })
        .collect()
}

fn opening() -> Vec<Command> {
    let mut commands: Vec<Command> = (1..=ACCOUNTS)
        .map(|account| open(u128::from(account), account))
        .collect();
    commands
        .extend((1..=ACCOUNTS).map(|account| deposit(1_000 + u128::from(account), account, 2_000)));
    commands
}

/// Every logged batch (sequence, timestamp, commands), in order.
fn logged(storage: &MemoryStorage) -> Vec<(u64, u64, Vec<Command>)> {
    let mut batches = Vec::new();
    let mut after = 0;
    loop {
        let page = storage.read_log(after, 1_000).unwrap();
        let Some(&(last, _)) = page.last() else {
            return batches;
        };
        for (_, bytes) in page {
            let record = LogRecord::decode(&bytes).unwrap();
            if let LogEntry::Batch(commands) = record.entry {
                batches.push((record.sequence, record.timestamp, commands));
            }
        }
        after = last;
    }
}

#[test]
fn a_checkpoint_holds_the_live_state_at_its_marker() {
    for (shards, restart_shards) in [(1, 3), (3, 1)] {
        let storage = MemoryStorage::new();
        let engine = Engine::start(storage.clone(), config(shards)).unwrap();
        let handle = engine.handle();
        let mut live: Vec<CommandResult> = handle.submit_blocking(opening()).unwrap();
        for batch in batches(7 + shards as u64, 10_000, 60) {
            live.extend(handle.submit_blocking(batch).unwrap());
        }
        // Some retries were refused as changed and some transfers failed:
        // the records hold more than one status.
        assert!(live
            .iter()
            .any(|result| result.status == Status::IdReusedWithDifferentFields));
        assert!(live
            .iter()
            .any(|result| result.status == Status::InsufficientFunds));
        let log = logged(&storage);
        let sequence = handle.checkpoint_blocking().unwrap().unwrap();
        let checkpoint = storage.load_checkpoint().unwrap().unwrap();
        assert_eq!(checkpoint.sequence, sequence);
        // The log is trimmed up to the marker.
        assert!(storage.read_log(0, 1).unwrap().is_empty());

        // A sharded twin fed the same log gives the live results and, merged,
        // the checkpoint's state.
        let mut twin = ShardedLedger::new(config(shards).ledger, shards).unwrap();
        let mut twin_results = Vec::new();
        for (sequence, timestamp, commands) in &log {
            twin.apply(*sequence, *timestamp, commands, &mut twin_results);
        }
        assert_eq!(twin_results, live, "{shards} shards");
        let twin_state = twin.to_ledger().unwrap();
        assert_eq!(twin_state.digest(), checkpoint.digest, "{shards} shards");
        let loaded = decode_state(&checkpoint.state, config(shards).ledger).unwrap();
        assert_eq!(loaded.digest(), checkpoint.digest, "{shards} shards");
        assert_eq!(loaded.totals(), twin_state.totals());

        // After a crash and a restart on another shard count from that
        // checkpoint, retries and new commands (which evict the oldest
        // records in arrival order) are answered as by the twin.
        drop(engine);
        let engine = Engine::start(storage.clone(), config(restart_shards)).unwrap();
        assert_eq!(engine.recovery().checkpoint_sequence, sequence);
        assert_eq!(engine.recovery().commands_replayed, 0);
        let handle = engine.handle();
        let mut got = Vec::new();
        for batch in batches(7 + shards as u64, 10_000, 90).into_iter().skip(50) {
            got.extend(handle.submit_blocking(batch).unwrap());
        }
        let mut want = Vec::new();
        for (sequence, timestamp, commands) in logged(&storage) {
            twin.apply(sequence, timestamp, &commands, &mut want);
        }
        assert_eq!(got, want, "{shards} then {restart_shards} shards");
        assert!(got
            .iter()
            .any(|result| result.status == Status::IdReusedWithDifferentFields));
        engine.shutdown();
    }
}

#[test]
fn a_stop_leaves_the_tail_to_replay_and_a_stop_with_checkpoint_does_not() {
    let storage = MemoryStorage::new();
    let engine = Engine::start(storage.clone(), config(3)).unwrap();
    let handle = engine.handle();
    handle.submit_blocking(opening()).unwrap();
    let checkpoint = handle.checkpoint_blocking().unwrap().unwrap();
    let mut commands = 0;
    for batch in batches(3, 50_000, 20) {
        commands += batch.len() as u64;
        handle.submit_blocking(batch).unwrap();
    }
    engine.shutdown();
    // The state a restart reaches, digested offline as `payrail verify` does.
    let (_, offline) = recover(&mut storage.clone(), config(1).ledger).unwrap();

    let engine = Engine::start(storage.clone(), config(1)).unwrap();
    let recovery = engine.recovery().clone();
    assert_eq!(recovery.checkpoint_sequence, checkpoint);
    assert_eq!(recovery.commands_replayed, commands);
    // A start digests the checkpoint it loads, not the state after the
    // replay (it does not wait for that).
    assert_eq!(recovery.digest_sequence, checkpoint);
    assert_ne!(recovery.digest, offline.digest);
    assert_eq!(offline.digest_sequence, recovery.last_sequence);
    let stats = engine.handle().stats().snapshot();
    let field = |name: &str| stats.iter().find(|(field, _)| *field == name).unwrap().1;
    assert_eq!(field("recovery_commands"), commands);
    assert!(field("recovery_ns") > 0);
    engine.shutdown_with_checkpoint();

    let engine = Engine::start(storage.clone(), config(2)).unwrap();
    assert_eq!(engine.recovery().commands_replayed, 0);
    assert_eq!(engine.recovery().digest, offline.digest);
    engine.shutdown();
}

/// The settings that decide commands are stored with each checkpoint: a
/// start with other values is refused while the log after the checkpoint
/// holds records (they were decided with the stored values), and accepted
/// when nothing is left to replay, in which case the checkpoint is saved
/// again with the new values so that a later replay uses them.
#[test]
fn a_changed_config_is_refused_while_there_is_a_log_to_replay() {
    let with_holds = |holds: u16| EngineConfig {
        ledger: LedgerConfig {
            account_holds_pending_max: holds,
            ..config(2).ledger
        },
        ..config(2)
    };
    let storage = MemoryStorage::new();
    let engine = Engine::start(storage.clone(), with_holds(64)).unwrap();
    let handle = engine.handle();
    handle.submit_blocking(opening()).unwrap();
    let checkpoint = handle.checkpoint_blocking().unwrap().unwrap();
    for batch in batches(11, 70_000, 4) {
        handle.submit_blocking(batch).unwrap();
    }
    engine.shutdown();

    // A tail after the checkpoint: other values are refused, by name.
    let refused = Engine::start(storage.clone(), with_holds(8)).unwrap_err();
    match refused {
        EngineError::Recovery(StorageError::ConfigChanged {
            sequence,
            first_record,
            changes,
        }) => {
            assert_eq!(sequence, checkpoint);
            assert_eq!(first_record, checkpoint + 1);
            assert_eq!(
                changes,
                "engine.account_holds_pending_max = 64 (configured: 8)"
            );
        }
        other => panic!("expected ConfigChanged, got {other:?}"),
    }
    // `payrail verify` refuses the same way.
    assert!(matches!(
        recover(&mut storage.clone(), with_holds(8).ledger),
        Err(StorageError::ConfigChanged { .. })
    ));

    // The checkpoint's values replay the tail; a stop with a checkpoint
    // leaves nothing to replay ...
    let engine = Engine::start(storage.clone(), with_holds(64)).unwrap();
    assert!(engine.recovery().commands_replayed > 0);
    engine.shutdown_with_checkpoint();
    let (_, before) = recover(&mut storage.clone(), with_holds(64).ledger).unwrap();

    // ... so the new value is taken: the same state (digest), saved again
    // at a marker of its own.
    let engine = Engine::start(storage.clone(), with_holds(8)).unwrap();
    let recovery = engine.recovery().clone();
    assert_eq!(recovery.checkpoint_sequence, before.last_sequence + 1);
    assert_eq!(recovery.digest, before.digest);
    let handle = engine.handle();
    for batch in batches(12, 80_000, 3) {
        handle.submit_blocking(batch).unwrap();
    }
    engine.shutdown();

    // The log after that checkpoint was written with 8: a start with 8
    // replays it, one with the old 64 is refused.
    assert!(matches!(
        Engine::start(storage.clone(), with_holds(64)).map(|_| ()),
        Err(EngineError::Recovery(StorageError::ConfigChanged { .. }))
    ));
    let engine = Engine::start(storage.clone(), with_holds(8)).unwrap();
    assert_eq!(engine.recovery().commands_replayed, 3 * 25);
    engine.shutdown();
}

/// A lone ledger with something in most sections of the digest: customers
/// and merchants, merchant keys, QR payments and refunds, holds (posted,
/// voided and pending), payment codes, budgets, risk state under the
/// example policy, and idempotency records.
fn busy_ledger() -> payrail_engine::Ledger {
    use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
    use payrail_engine::{
        AccountId, AccountKind, CommandKind, Currency, MerchantKey, OpenAccount, RiskContext,
    };
    const CUSTOMERS: u64 = 300;
    const MERCHANT_FIRST: u64 = 10_000;
    const MERCHANTS: u64 = 7;
    let mut ledger = payrail_engine::Ledger::new(LedgerConfig::default());
    let mut timestamp = 1_700_000_000_000_000_000u64;
    ledger.set_risk_policy(1, timestamp, payrail_engine::risk::RiskPolicy::example());
    let mut sequence = 1u64;
    let mut id = 0u128;
    let mut results = Vec::new();
    let mut apply = |ledger: &mut payrail_engine::Ledger, kinds: Vec<CommandKind>| {
        let batch: Vec<Command> = kinds
            .into_iter()
            .map(|kind| {
                id += 1;
                Command::new(id, kind)
            })
            .collect();
        sequence += 1;
        timestamp += 700_000_000;
        results.clear();
        ledger.apply(sequence, timestamp, &batch, &mut results);
        batch
            .iter()
            .zip(&results)
            .map(|(command, result)| (command.id, result.status))
            .collect::<Vec<_>>()
    };
    let key = |merchant: u64| MerchantKey::new("test.payrail", &merchant.to_string());
    let open = |account: u64, kind, mcc| {
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind,
            currency: Currency::CNY,
            kyc_tier: u8::from(kind == AccountKind::Customer),
            mcc,
        })
    };
    // Accounts opened out of id order, so the digest's sort has work.
    let mut opens: Vec<CommandKind> = (1..=CUSTOMERS)
        .rev()
        .map(|c| open(c, AccountKind::Customer, 0))
        .collect();
    opens.extend((0..MERCHANTS).map(|m| open(MERCHANT_FIRST + m, AccountKind::Merchant, 5_812)));
    apply(&mut ledger, opens);
    apply(
        &mut ledger,
        (1..=CUSTOMERS)
            .map(|c| CommandKind::Deposit {
                account: AccountId(c),
                amount: 5_000_000,
                currency: Currency::CNY,
            })
            .chain((0..MERCHANTS).map(|m| CommandKind::RegisterMerchantKey {
                merchant: AccountId(MERCHANT_FIRST + m),
                key: key(MERCHANT_FIRST + m),
            }))
            .collect(),
    );
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut payments = Vec::new();
    let mut holds = Vec::new();
    for round in 0..40u64 {
        let mut kinds = Vec::new();
        for _ in 0..60 {
            let customer = AccountId(1 + next(CUSTOMERS));
            let kind = match next(8) {
                0 | 1 => {
                    let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                    keys[0] = key(MERCHANT_FIRST + next(MERCHANTS));
                    CommandKind::PayMerchantQr {
                        payer: customer,
                        keys,
                        amount: 1 + next(20_000),
                        fee: 0,
                        currency: Currency::CNY,
                        mcc: 5_812,
                        context: RiskContext::NONE,
                    }
                }
                2 => CommandKind::Transfer {
                    from: customer,
                    to: AccountId(1 + next(CUSTOMERS)),
                    amount: 1 + next(5_000),
                    currency: Currency::CNY,
                    context: RiskContext::NONE,
                },
                3 => CommandKind::WithdrawHold {
                    account: customer,
                    amount: 1 + next(3_000),
                    currency: Currency::CNY,
                    timeout_ms: 60_000 + next(600_000),
                    context: RiskContext::NONE,
                },
                4 => CommandKind::IssuePaymentCode {
                    customer,
                    code: 100_000_000_000_000_000 + round * 1_000 + next(1_000),
                    lifetime_ms: 30_000 + next(90_000),
                },
                5 if !payments.is_empty() => CommandKind::Refund {
                    payment: payments[next(payments.len() as u64) as usize],
                    amount: 1 + next(500),
                    currency: Currency::CNY,
                },
                6 if !holds.is_empty() => {
                    let hold = holds.swap_remove(next(holds.len() as u64) as usize);
                    if next(2) == 0 {
                        CommandKind::WithdrawPost { hold }
                    } else {
                        CommandKind::WithdrawVoid { hold }
                    }
                }
                _ => CommandKind::SetBudget {
                    account: customer,
                    category: next(5) as u8,
                    budget: Some(10_000 + next(100_000)),
                },
            };
            kinds.push(kind);
        }
        let is_payment: Vec<bool> = kinds
            .iter()
            .map(|kind| matches!(kind, CommandKind::PayMerchantQr { .. }))
            .collect();
        let is_hold: Vec<bool> = kinds
            .iter()
            .map(|kind| matches!(kind, CommandKind::WithdrawHold { .. }))
            .collect();
        for (at, (id, status)) in apply(&mut ledger, kinds).into_iter().enumerate() {
            if status == Status::Ok && is_payment[at] {
                payments.push(id);
            }
            if status == Status::Ok && is_hold[at] {
                holds.push(id);
            }
        }
    }
    ledger
}

#[test]
fn the_buffered_digest_is_the_digest_of_every_write_passed_on_at_once() {
    use payrail_engine::digest::DigestHasher;
    let ledger = busy_ledger();
    // Every part the test means to cover holds something.
    for table in ledger.tables() {
        if matches!(
            table.name,
            "holds" | "payment_codes" | "payments" | "risk_customers"
        ) {
            assert!(table.entries > 10, "{}: {}", table.name, table.entries);
        }
    }
    assert!(ledger.records_len() > 2_000);
    let unbuffered = ledger.digest_with(DigestHasher::with_buffer(0));
    assert_eq!(ledger.digest(), unbuffered);
    // Buffers that split the stream at other places agree too.
    for buffer in [1, 7, 64, 1_000, 1 << 20] {
        assert_eq!(
            ledger.digest_with(DigestHasher::with_buffer(buffer)),
            unbuffered
        );
    }
    // And the state encodes and decodes to the same digest.
    let mut bytes = Vec::new();
    payrail_engine::storage::encode_state(&ledger, &mut bytes);
    let decoded = decode_state(&bytes, LedgerConfig::default()).unwrap();
    assert_eq!(decoded.digest(), unbuffered);
}

#[test]
fn the_state_in_chunks_is_the_encoded_state_cut_into_pieces() {
    use payrail_engine::storage::encode_state_chunks;
    let ledger = busy_ledger();
    let mut whole = Vec::new();
    payrail_engine::storage::encode_state(&ledger, &mut whole);
    assert!(whole.len() > 100_000);
    for chunk_bytes in [1, 7, 4_096, 65_536, whole.len() - 1, whole.len(), 1 << 30] {
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        encode_state_chunks(&ledger, chunk_bytes, &mut |piece: &[u8]| {
            pieces.push(piece.to_vec());
            Ok(())
        })
        .unwrap();
        let (last, full) = pieces.split_last().unwrap();
        assert!(full.iter().all(|piece| piece.len() == chunk_bytes));
        assert!(!last.is_empty() && last.len() <= chunk_bytes);
        assert_eq!(pieces.concat(), whole, "chunks of {chunk_bytes}");
    }
    // The first error ends the handing on and is returned.
    let mut calls = 0;
    let failed = encode_state_chunks(&ledger, 4_096, &mut |_: &[u8]| {
        calls += 1;
        if calls == 3 {
            return Err(StorageError::Io("disk full".to_owned()));
        }
        Ok(())
    });
    assert_eq!(failed, Err(StorageError::Io("disk full".to_owned())));
    assert_eq!(calls, 3);
}

#[test]
fn a_checkpoint_written_as_it_is_encoded_loads_as_the_encoded_state() {
    use payrail_engine::storage::{Checkpoint, LedgerCheckpoint, RocksStorage};
    let ledger = busy_ledger();
    let digest = ledger.digest();
    let mut whole = Vec::new();
    payrail_engine::storage::encode_state(&ledger, &mut whole);
    let dir = tempfile::tempdir().unwrap();
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    let source = LedgerCheckpoint::new(&ledger, 5, 77, digest);
    storage.save_checkpoint_from(&source).unwrap();
    assert_eq!(source.state_len(), whole.len() as u64);
    drop(storage);
    let storage = RocksStorage::open(dir.path()).unwrap();
    let loaded = storage.load_checkpoint().unwrap().unwrap();
    // The same manifest and bytes as the whole image saved at once.
    assert!(
        loaded
            == Checkpoint {
                sequence: 5,
                timestamp: 77,
                digest,
                state: whole.clone(),
            }
    );
    assert_eq!(
        decode_state(&loaded.state, LedgerConfig::default())
            .unwrap()
            .digest(),
        digest
    );
    // The next one, saved whole, replaces it as before.
    let mut storage = storage;
    storage
        .save_checkpoint(&Checkpoint {
            sequence: 6,
            timestamp: 78,
            digest,
            state: whole.clone(),
        })
        .unwrap();
    assert_eq!(storage.load_checkpoint().unwrap().unwrap().sequence, 6);
    // The memory storage gathers the chunks.
    let mut memory = MemoryStorage::new();
    memory
        .save_checkpoint_from(&LedgerCheckpoint::new(&ledger, 5, 77, digest))
        .unwrap();
    assert_eq!(memory.load_checkpoint().unwrap().unwrap().state, whole);
}

#[test]
fn a_state_read_in_chunks_decodes_as_the_whole() {
    use payrail_engine::storage::decode_state_chunks;
    let ledger = busy_ledger();
    let digest = ledger.digest();
    let mut whole = Vec::new();
    payrail_engine::storage::encode_state(&ledger, &mut whole);
    let len = whole.len() as u64;
    for chunk_bytes in [1, 3, 1_000, 65_536, whole.len()] {
        let mut chunks = whole.chunks(chunk_bytes).map(|chunk| Ok(chunk.to_vec()));
        let (decoded, stored) =
            decode_state_chunks(len, &mut chunks, LedgerConfig::default()).unwrap();
        assert_eq!(decoded.digest(), digest, "chunks of {chunk_bytes}");
        assert_eq!(stored, Some(LedgerConfig::default()));
    }
    // What the reader says after the last chunk (a failed checksum) is
    // heard even though the state decoded.
    let failed = StorageError::CheckpointCorrupt {
        sequence: 9,
        reason: "the state fails its checksum".to_owned(),
    };
    let mut chunks = whole
        .chunks(4_096)
        .map(|chunk| Ok(chunk.to_vec()))
        .chain(std::iter::once(Err(failed.clone())));
    assert_eq!(
        decode_state_chunks(len, &mut chunks, LedgerConfig::default()).err(),
        Some(failed)
    );
    // Cut short, or longer than it says: corrupt, not a panic.
    let mut cut = whole[..whole.len() - 10]
        .chunks(4_096)
        .map(|chunk| Ok(chunk.to_vec()));
    assert!(matches!(
        decode_state_chunks(len, &mut cut, LedgerConfig::default()),
        Err(StorageError::StateCorrupt(_))
    ));
    let mut longer = whole.chunks(4_096).map(|chunk| Ok(chunk.to_vec()));
    assert!(matches!(
        decode_state_chunks(len - 1, &mut longer, LedgerConfig::default()),
        Err(StorageError::StateCorrupt(_))
    ));
    let mut extra = whole
        .chunks(4_096)
        .map(|chunk| Ok(chunk.to_vec()))
        .chain(std::iter::once(Ok(vec![0u8; 3])));
    assert!(matches!(
        decode_state_chunks(len + 3, &mut extra, LedgerConfig::default()),
        Err(StorageError::StateCorrupt(_))
    ));
}

#[test]
fn recovery_reads_a_streamed_checkpoint_chunk_by_chunk() {
    use payrail_engine::storage::{LedgerCheckpoint, RocksStorage};
    let ledger = busy_ledger();
    let digest = ledger.digest();
    let dir = tempfile::tempdir().unwrap();
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    storage
        .save_checkpoint_from(&LedgerCheckpoint::new(
            &ledger,
            ledger.sequence() + 1,
            ledger.timestamp(),
            digest,
        ))
        .unwrap();
    {
        let reader = storage.read_checkpoint().unwrap().unwrap();
        assert_eq!(reader.sequence, ledger.sequence() + 1);
        let state_len = reader.state_len;
        let chunks: Vec<Vec<u8>> = reader.chunks.map(Result::unwrap).collect();
        assert_eq!(chunks.concat().len() as u64, state_len);
    }
    drop(storage);
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    let (recovered, report) = recover(&mut storage, LedgerConfig::default()).unwrap();
    assert_eq!(recovered.digest(), digest);
    assert_eq!(report.checkpoint_sequence, ledger.sequence() + 1);
}
