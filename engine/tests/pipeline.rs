//! The engine pipeline (sequencer, log, executor, checkpoints) over the
//! fault-injecting in-memory storage: durable before acknowledged, group
//! commit, failed writes never acknowledged, checkpoints and restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use payrail_engine::pipeline::{Engine, EngineConfig, EngineHandle, SubmitError};
use payrail_engine::storage::{LogEntry, LogRecord, MemoryStorage, Storage};
use payrail_engine::{AccountId, Command, CommandResult, Query, QueryReply, Status};

use common::{deposit, open, transfer};

fn statuses(results: &[CommandResult]) -> Vec<Status> {
    results.iter().map(|result| result.status).collect()
}

fn balance(engine: &EngineHandle, account: u64) -> Option<i64> {
    match engine
        .query_blocking(vec![Query::Balance {
            account: AccountId(account),
        }])
        .unwrap()[..]
    {
        [QueryReply::Balance(view)] => Some(view.balance),
        [QueryReply::Refused(Status::UnknownAccount)] => None,
        ref other => panic!("unexpected {other:?}"),
    }
}

/// Every command id in the durable log, decoded from the raw records.
fn logged_commands(storage: &MemoryStorage) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut after = 0;
    loop {
        let page = storage.read_log(after, 1_000).unwrap();
        let Some(&(last, _)) = page.last() else {
            return commands;
        };
        for (_, bytes) in page {
            if let LogEntry::Batch(batch) = LogRecord::decode(&bytes).unwrap().entry {
                commands.extend(batch);
            }
        }
        after = last;
    }
}

#[test]
fn acknowledged_batches_are_in_the_log_before_the_reply() {
    let storage = MemoryStorage::new();
    let engine = Engine::start(storage.clone(), EngineConfig::default()).unwrap();
    let handle = engine.handle();
    let results = handle
        .submit_blocking(vec![open(1, 10), open(2, 20), deposit(3, 10, 500)])
        .unwrap();
    assert_eq!(statuses(&results), [Status::Ok; 3]);
    // The reply came, so the record is durable: it is in storage now.
    let logged: Vec<u128> = logged_commands(&storage)
        .iter()
        .map(|command| command.id.0)
        .collect();
    assert_eq!(logged, [1, 2, 3]);
    assert_eq!(balance(&handle, 10), Some(500));
    engine.shutdown();
}

#[test]
fn concurrent_submitters_share_log_writes() {
    let storage = MemoryStorage::new();
    let engine = Engine::start(storage, EngineConfig::default()).unwrap();
    let handle = engine.handle();
    handle
        .submit_blocking(vec![open(1, 10), deposit(2, 10, 1_000_000), open(3, 20)])
        .unwrap();

    let threads: Vec<_> = (0..8u128)
        .map(|thread| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for batch in 0..50u128 {
                    let id = 1_000 + thread * 1_000 + batch;
                    let results = handle
                        .submit_blocking(vec![transfer(id, 10, 20, 1)])
                        .unwrap();
                    assert_eq!(results[0].status, Status::Ok);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(balance(&handle, 20), Some(400));
    let stats = handle.stats().snapshot();
    let get = |name: &str| stats.iter().find(|(key, _)| *key == name).unwrap().1;
    assert_eq!(get("batches_logged"), 401);
    // Not a timing assertion: with 8 submitters blocked on replies, at least
    // one write must have carried more than one batch unless every write
    // finished before the next batch arrived, which the counters would show.
    assert!(get("group_writes") <= get("batches_logged"));
    eprintln!(
        "group commit: {} batches in {} writes",
        get("batches_logged"),
        get("group_writes")
    );
    engine.shutdown();
}

#[test]
fn a_failed_write_is_never_acknowledged_and_stops_writes() {
    let storage = MemoryStorage::new();
    let engine = Engine::start(storage.clone(), EngineConfig::default()).unwrap();
    let handle = engine.handle();
    handle
        .submit_blocking(vec![open(1, 10), deposit(2, 10, 100)])
        .unwrap();

    storage.fail_appends_after(0);
    let failed = handle
        .submit_blocking(vec![deposit(3, 10, 50), deposit(4, 10, 60)])
        .unwrap();
    assert_eq!(statuses(&failed), [Status::StorageFailed; 2]);
    // From now on writes are refused, even if the disk came back ...
    storage.fail_appends_after(usize::MAX);
    let refused = handle.submit_blocking(vec![deposit(5, 10, 70)]).unwrap();
    assert_eq!(statuses(&refused), [Status::Unavailable]);
    // ... nothing of the failed batches was applied, and reads still work.
    assert_eq!(balance(&handle, 10), Some(100));
    let logged: Vec<u128> = logged_commands(&storage)
        .iter()
        .map(|command| command.id.0)
        .collect();
    assert_eq!(logged, [1, 2]);
    let stats = handle.stats().snapshot();
    assert!(stats.contains(&("write_failed", 1)));
    drop(engine);

    // A restart recovers exactly the acknowledged state.
    let engine = Engine::start(storage, EngineConfig::default()).unwrap();
    assert_eq!(balance(&engine.handle(), 10), Some(100));
    engine.shutdown();
}

#[test]
fn checkpoints_trim_the_log_and_restarts_recover_the_same_state() {
    let storage = MemoryStorage::new();
    let config = EngineConfig {
        checkpoint_commands: 1_000,
        ..EngineConfig::default()
    };
    let engine = Engine::start(storage.clone(), config.clone()).unwrap();
    let handle = engine.handle();
    let mut id = 0u128;
    let mut next = || {
        id += 1;
        id
    };
    let accounts: Vec<Command> = (0..100).map(|account| open(next(), account)).collect();
    handle.submit_blocking(accounts).unwrap();
    let deposits: Vec<Command> = (0..100)
        .map(|account| deposit(next(), account, 10_000))
        .collect();
    handle.submit_blocking(deposits).unwrap();
    for round in 0..30u64 {
        let batch: Vec<Command> = (0..100)
            .map(|n| transfer(next(), n, (n + round + 1) % 100, 7))
            .collect();
        handle.submit_blocking(batch).unwrap();
    }
    let checkpoint = handle.checkpoint_blocking().unwrap().unwrap();
    // The log holds nothing at or before the checkpoint.
    assert!(storage
        .log_sequences()
        .iter()
        .all(|&sequence| sequence > checkpoint));
    let after: Vec<Command> = (0..100)
        .map(|n| transfer(next(), n, (n + 3) % 100, 1))
        .collect();
    let after_results = handle.submit_blocking(after.clone()).unwrap();
    let before: Vec<Option<i64>> = (0..100).map(|account| balance(&handle, account)).collect();
    drop(engine); // a crash: no final checkpoint

    let engine = Engine::start(storage.clone(), config.clone()).unwrap();
    assert_eq!(engine.recovery().checkpoint_sequence, checkpoint);
    assert_eq!(engine.recovery().commands_replayed, 100);
    let handle = engine.handle();
    let recovered: Vec<Option<i64>> = (0..100).map(|account| balance(&handle, account)).collect();
    assert_eq!(recovered, before);
    // Retries after the restart get the first results back.
    assert_eq!(handle.submit_blocking(after).unwrap(), after_results);
    engine.shutdown_with_checkpoint(); // a final checkpoint: nothing to replay next time

    let engine = Engine::start(storage, config).unwrap();
    assert_eq!(engine.recovery().commands_replayed, 0);
    let again: Vec<Option<i64>> = (0..100)
        .map(|account| balance(&engine.handle(), account))
        .collect();
    assert_eq!(again, before);
    engine.shutdown();
}

#[test]
fn a_full_queue_says_overloaded_and_a_stopped_engine_says_shutting_down() {
    let storage = MemoryStorage::new();
    let config = EngineConfig {
        queue_depth: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::start(storage, config).unwrap();
    let handle = engine.handle();
    let mut overloaded = false;
    // Bounded: at most 10,000 tries to overrun a queue of one.
    for id in 0..10_000u128 {
        match handle.submit(vec![open(id, id as u64)], Box::new(|_| {})) {
            Err(SubmitError::Overloaded) => {
                overloaded = true;
                break;
            }
            Ok(()) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        overloaded,
        "a queue of depth 1 overflows under 10,000 immediate submits"
    );
    engine.shutdown();
    assert_eq!(
        handle.submit(vec![open(1, 1)], Box::new(|_| {})),
        Err(SubmitError::ShuttingDown)
    );
}
