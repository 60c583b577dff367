//! Movement history over the real RocksDB storage: what the ledger emits for
//! each kind of money movement, newest-first paging with a cursor, time
//! ranges, the command-id index, and rebuilding from the log at recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use payrail_engine::history::Movement;
use payrail_engine::pipeline::{Engine, EngineConfig};
use payrail_engine::storage::{self, HistoryConfig, LogEntry, LogRecord, RocksStorage, Storage};
use payrail_engine::{
    AccountId, Command, CommandId, CommandKind, Currency, HouseRole, LedgerConfig, RiskContext,
    Status,
};

use common::{deposit, open, transfer};

/// (amount, balance, counterparty, kind) of each entry.
fn summary(entries: &[Movement]) -> Vec<(i64, i64, u64, String)> {
    entries
        .iter()
        .map(|entry| {
            (
                entry.amount,
                entry.balance,
                entry.counterparty.0,
                entry.kind.to_string(),
            )
        })
        .collect()
}

/// Waits (bounded) until the history writer has covered `sequence`.
fn wait_history(storage: &RocksStorage, sequence: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.history_watermark().unwrap() < sequence {
        assert!(
            Instant::now() < deadline,
            "history never reached {sequence}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn every_balance_change_is_in_the_history_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let storage = RocksStorage::open(dir.path()).unwrap();
    let reader = storage.clone();
    let engine = Engine::start(storage, EngineConfig::default()).unwrap();
    let handle = engine.handle();
    let settlement = AccountId::house(HouseRole::Settlement, Currency::CNY);
    let results = handle
        .submit_blocking(vec![open(1, 10), open(2, 20), deposit(3, 10, 5_000)])
        .unwrap();
    assert!(results.iter().all(|result| result.status == Status::Ok));
    let results = handle
        .submit_blocking(vec![
            transfer(4, 10, 20, 1_200),
            // Refused: no money moves, nothing in the history.
            transfer(5, 10, 20, 1_000_000),
            Command::new(
                6,
                CommandKind::WithdrawHold {
                    account: AccountId(10),
                    amount: 300,
                    currency: Currency::CNY,
                    timeout_ms: 60_000,
                    context: RiskContext::NONE,
                },
            ),
        ])
        .unwrap();
    assert_eq!(results[1].status, Status::InsufficientFunds);
    // The hold moves nothing; its post does.
    let results = handle
        .submit_blocking(vec![Command::new(
            7,
            CommandKind::WithdrawPost { hold: CommandId(6) },
        )])
        .unwrap();
    assert_eq!(results[0].status, Status::Ok);
    let last = handle
        .stats()
        .last_sequence
        .load(std::sync::atomic::Ordering::Relaxed);
    wait_history(&reader, last);

    let page = reader
        .history_page(AccountId(10), 0, u64::MAX, 0, 50)
        .unwrap();
    assert_eq!(
        summary(&page.entries),
        vec![
            (-300, 3_500, settlement.0, "withdraw_post".to_owned()),
            (-1_200, 3_800, 20, "transfer".to_owned()),
            (5_000, 5_000, settlement.0, "deposit".to_owned()),
        ]
    );
    assert_eq!(page.next_cursor, 0, "one page holds it all");
    assert_eq!(page.entries[1].command, CommandId(4));
    let credit = reader
        .history_page(AccountId(20), 0, u64::MAX, 0, 50)
        .unwrap();
    assert_eq!(
        summary(&credit.entries),
        vec![(1_200, 1_200, 10, "transfer".to_owned())]
    );
    // House accounts keep no history (split per shard, their balance after
    // a movement would depend on the shard count); the customer's leg names
    // the public house id.
    let house = reader.history_page(settlement, 0, u64::MAX, 0, 50).unwrap();
    assert!(house.entries.is_empty());
    assert_eq!(
        reader
            .command_movements(CommandId(3))
            .unwrap()
            .iter()
            .map(|leg| (leg.account.0, leg.counterparty, leg.amount))
            .collect::<Vec<_>>(),
        vec![(10, settlement, 5_000)]
    );

    // Paging: one entry at a time, following the cursor, gives the same.
    let mut cursor = 0;
    let mut paged = Vec::new();
    for _ in 0..10 {
        let page = reader
            .history_page(AccountId(10), 0, u64::MAX, cursor, 1)
            .unwrap();
        paged.extend(page.entries);
        cursor = page.next_cursor;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(summary(&paged), summary(&page.entries));

    // A time range: only the transfer's batch.
    let at = page.entries[1].timestamp;
    let ranged = reader.history_page(AccountId(10), at, at, 0, 50).unwrap();
    assert_eq!(
        summary(&ranged.entries),
        vec![summary(&page.entries)[1].clone()]
    );

    // The command index: both legs of the transfer; none for the refusal.
    let legs = reader.command_movements(CommandId(4)).unwrap();
    assert_eq!(
        legs.iter()
            .map(|leg| (leg.account.0, leg.amount))
            .collect::<Vec<_>>(),
        vec![(10, -1_200), (20, 1_200)]
    );
    assert!(reader.command_movements(CommandId(5)).unwrap().is_empty());
    engine.shutdown();
}

#[test]
fn recovery_rebuilds_history_past_the_watermark_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Records written straight to the log, as if the server stopped
        // before its history writer saw them.
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        let batches = [
            vec![open(1, 10), open(2, 20), deposit(3, 10, 900)],
            vec![transfer(4, 10, 20, 400)],
        ];
        let mut records = Vec::new();
        for (index, batch) in batches.into_iter().enumerate() {
            let sequence = index as u64 + 1;
            let mut bytes = Vec::new();
            LogRecord {
                sequence,
                timestamp: 1_000 * sequence,
                entry: LogEntry::Batch(batch),
            }
            .encode(&mut bytes);
            records.push((sequence, bytes));
        }
        storage.append(&records).unwrap();
        assert_eq!(storage.history_watermark().unwrap(), 0);
    }
    let mut storage = RocksStorage::open(dir.path()).unwrap();
    let (_, report) = storage::recover(&mut storage, LedgerConfig::default()).unwrap();
    assert_eq!(report.history_watermark, 0);
    // The deposit's customer leg and both legs of the transfer.
    assert_eq!(report.history_rebuilt, 3);
    assert_eq!(storage.history_watermark().unwrap(), 2);
    let page = storage
        .history_page(AccountId(10), 0, u64::MAX, 0, 10)
        .unwrap();
    assert_eq!(
        page.entries
            .iter()
            .map(|entry| (entry.timestamp, entry.amount, entry.balance))
            .collect::<Vec<_>>(),
        vec![(2_000, -400, 500), (1_000, 900, 900)]
    );
    // A second recovery finds the history complete and writes nothing.
    let (_, report) = storage::recover(&mut storage, LedgerConfig::default()).unwrap();
    assert_eq!((report.history_watermark, report.history_rebuilt), (2, 0));
    assert_eq!(
        storage
            .history_page(AccountId(10), 0, u64::MAX, 0, 10)
            .unwrap()
            .entries
            .len(),
        2
    );
}

#[test]
fn a_checkpoint_keeps_history_and_the_engine_restarts_with_it_on_another_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let storage = RocksStorage::open(dir.path()).unwrap();
    let shards = |shards| EngineConfig {
        shards,
        ..EngineConfig::default()
    };
    let engine = Engine::start(storage, shards(3)).unwrap();
    let handle = engine.handle();
    handle
        .submit_blocking(vec![open(1, 10), open(2, 20), deposit(3, 10, 900)])
        .unwrap();
    let checkpoint = handle.checkpoint_blocking().unwrap().unwrap();
    handle
        .submit_blocking(vec![transfer(4, 10, 20, 400)])
        .unwrap();
    // Stop without the final checkpoint: the transfer is only in the log.
    drop(engine);
    let storage = RocksStorage::open(dir.path()).unwrap();
    assert!(storage.history_watermark().unwrap() >= checkpoint);
    // Restarted on another shard count: the transfer's movements are
    // rebuilt from the log.
    let engine = Engine::start(storage.clone(), shards(1)).unwrap();
    assert!(engine.recovery().checkpoint_sequence >= checkpoint);
    let page = storage
        .history_page(AccountId(10), 0, u64::MAX, 0, 10)
        .unwrap();
    assert_eq!(
        page.entries
            .iter()
            .map(|entry| (entry.amount, entry.balance))
            .collect::<Vec<_>>(),
        vec![(-400, 500), (900, 900)]
    );
    engine.shutdown();
}

#[test]
fn with_history_off_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let storage = RocksStorage::open(dir.path()).unwrap();
    let config = EngineConfig {
        history: false,
        ..EngineConfig::default()
    };
    let engine = Engine::start(storage.clone(), config.clone()).unwrap();
    let results = engine
        .handle()
        .submit_blocking(vec![open(1, 10), deposit(2, 10, 900)])
        .unwrap();
    assert!(results.iter().all(|result| result.status == Status::Ok));
    // Stopped without a final checkpoint: the restart replays the batch,
    // and with history off does not rebuild its movements either.
    drop(engine);
    let engine = Engine::start(storage.clone(), config).unwrap();
    assert_eq!(engine.recovery().commands_replayed, 2);
    assert_eq!(engine.recovery().history_rebuilt, 0);
    engine.shutdown();
    assert_eq!(storage.history_watermark().unwrap(), 0);
    assert!(storage
        .history_page(AccountId(10), 0, u64::MAX, 0, 10)
        .unwrap()
        .entries
        .is_empty());
}

/// A transfer's two legs, as the ledger emits them.
fn legs(index: u64, timestamp: u64, first_position: u32) -> [Movement; 2] {
    let from = AccountId(1 + index % 1_000);
    let to = AccountId(1 + (index * 7 + 1) % 1_000);
    let leg = |account, counterparty, amount, position| Movement {
        account,
        counterparty,
        command: CommandId(u128::from(index) + 1),
        sequence: timestamp,
        timestamp,
        position,
        kind: "transfer".into(),
        amount,
        balance: amount * 3,
        currency: Currency::CNY,
        mcc: 0,
        instrument: None,
    };
    [
        leg(from, to, -(index as i64) - 1, first_position),
        leg(to, from, index as i64 + 1, first_position + 1),
    ]
}

#[test]
fn small_and_large_history_writes_read_alike_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        // A small write, then a large one that fills more than one segment
        // (40,000 movements of about 100 bytes: 4 MB, and 64 MiB segments
        // would not roll: the unit tests roll small segments).
        let small: Vec<Movement> = legs(0, 1, 0).to_vec();
        storage.write_history(&small, 1).unwrap();
        let large: Vec<Movement> = (1..=20_000u64)
            .flat_map(|index| legs(index, 2, 2 * (index as u32 - 1)))
            .collect();
        storage.write_history(&large, 2).unwrap();
        assert_eq!(storage.history_watermark().unwrap(), 2);
    }
    let storage = RocksStorage::open(dir.path()).unwrap();
    assert_eq!(storage.history_watermark().unwrap(), 2);
    // Account 1 pays in command 1 (index 0, the small write) and in every
    // thousandth command of the large one: newest first across both.
    let mut all = Vec::new();
    let mut cursor = 0;
    for _ in 0..100 {
        let page = storage
            .history_page(AccountId(1), 0, u64::MAX, cursor, 7)
            .unwrap();
        all.extend(page.entries);
        cursor = page.next_cursor;
        if cursor == 0 {
            break;
        }
    }
    assert!(all.len() > 20, "{}", all.len());
    assert!(all
        .windows(2)
        .all(|pair| (pair[0].timestamp, pair[0].position) > (pair[1].timestamp, pair[1].position)));
    assert_eq!(all.last().unwrap().command, CommandId(1));
    assert_eq!(all.last().unwrap().timestamp, 1);
    let tx = storage.command_movements(CommandId(12_346)).unwrap();
    assert_eq!(tx.to_vec(), legs(12_345, 2, 2 * 12_344).to_vec());
}

/// The log replayed from its start by a lone ledger that records
/// movements: every movement, in log order.
fn movements_of_the_log(storage: &RocksStorage) -> Vec<Movement> {
    let mut ledger = payrail_engine::Ledger::new(LedgerConfig::default());
    ledger.record_history(true);
    let (mut all, mut batch, mut results) = (Vec::new(), Vec::new(), Vec::new());
    let mut after = 0;
    loop {
        let page = storage.read_log(after, 256).unwrap();
        if page.is_empty() {
            return all;
        }
        for (sequence, bytes) in page {
            assert_eq!(sequence, after + 1, "the log was not trimmed");
            after = sequence;
            let record = LogRecord::decode(&bytes).unwrap();
            if let LogEntry::Batch(commands) = &record.entry {
                results.clear();
                ledger.apply(record.sequence, record.timestamp, commands, &mut results);
                ledger.take_movements(&mut batch);
                all.append(&mut batch);
            }
        }
    }
}

/// Every page of `account` (pages of 13), following the cursor.
fn pages_of(storage: &RocksStorage, account: u64) -> Vec<Movement> {
    let (mut entries, mut cursor) = (Vec::new(), 0);
    for _ in 0..10_000 {
        let page = storage
            .history_page(AccountId(account), 0, u64::MAX, cursor, 13)
            .unwrap();
        entries.extend(page.entries);
        cursor = page.next_cursor;
        if cursor == 0 {
            return entries;
        }
    }
    panic!("paging never ended");
}

#[test]
fn retention_cuts_whole_segments_and_pages_equal_the_newest_part_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let retention_ns = 400_000_000;
    let config = HistoryConfig {
        segment_bytes: 64 * 1024,
        accounts_max: 1_000,
        retention_ns,
        check_all_segments: false,
    };
    let accounts = 30u64;
    let shards = |shards| EngineConfig {
        shards,
        ..EngineConfig::default()
    };
    let mut id = 0u128;
    let mut traffic = |handle: &payrail_engine::pipeline::EngineHandle, batches: u64| {
        for batch in 0..batches {
            let commands = (0..40)
                .map(|index| {
                    id += 1;
                    let from = 1 + (batch * 7 + index) % accounts;
                    let to = 1 + (batch * 3 + index * 11 + 1) % accounts;
                    transfer(1_000 + id, from, to, 1 + id as u64 % 500)
                })
                .collect();
            handle.submit_blocking(commands).unwrap();
            // Log time passes: the retention is in log time.
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    {
        let storage = RocksStorage::open_with(dir.path(), config).unwrap();
        let engine = Engine::start(storage, shards(3)).unwrap();
        let handle = engine.handle();
        let setup: Vec<Command> = (1..=accounts)
            .flat_map(|account| {
                [
                    open(account as u128 * 2, account),
                    deposit(account as u128 * 2 + 1, account, 1_000_000),
                ]
            })
            .collect();
        handle.submit_blocking(setup).unwrap();
        traffic(&handle, 150);
        // A stop without a checkpoint: the restart rebuilds what the
        // history writer had not written.
        drop(engine);
    }
    let storage = RocksStorage::open_with(dir.path(), config).unwrap();
    let engine = Engine::start(storage.clone(), shards(1)).unwrap();
    traffic(&engine.handle(), 150);
    let last = engine
        .handle()
        .stats()
        .last_sequence
        .load(std::sync::atomic::Ordering::Relaxed);
    wait_history(&storage, last);
    let stats = storage.history_stats();
    assert!(stats.segments_expired >= 2, "{stats:?}");
    assert!(
        stats.oldest_timestamp <= stats.newest_timestamp - retention_ns,
        "at least the retention is kept: {stats:?}"
    );
    let all = movements_of_the_log(&storage);
    assert!(stats.movements < all.len() as u64, "{stats:?}");
    // What is kept is the newest part of the log's movements, whole.
    let kept = &all[all.len() - stats.movements as usize..];
    assert_eq!(kept[0].timestamp, stats.oldest_timestamp);
    for account in 1..=accounts {
        let expected: Vec<Movement> = kept
            .iter()
            .rev()
            .filter(|movement| movement.account.0 == account)
            .cloned()
            .collect();
        assert_eq!(pages_of(&storage, account), expected, "account {account}");
    }
    engine.shutdown();
}
