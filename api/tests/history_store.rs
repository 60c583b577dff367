//! The history store under the real `payrail serve` process: pages equal a
//! reference built from the log by replaying it, on 3 shards and then 1,
//! across restarts after SIGKILL (with small segments, so the kills land
//! with sealed segments behind and an unsynced active one); and a damaged
//! segment is found by `payrail verify` and rebuilt from the log (or,
//! once a checkpoint trimmed the log, reported as lost).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{free_addr, ServerProcess};
use common::{deposit, open_customer, transfer, RawConnection};
use payrail_api::config::{read_local_gateway, GatewayConfig};
use payrail_api::wire::Message;
use payrail_engine::history::Movement;
use payrail_engine::storage::{LogEntry, LogRecord, RocksStorage, Storage, HEADS_FILE};
use payrail_engine::{AccountId, CommandResult, Currency, Ledger, LedgerConfig, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ACCOUNTS: u64 = 40;
const FIRST_ACCOUNT: u64 = 5_000;
/// 64 KiB segments: a few hundred transfers fill one.
const CONFIG: &str = "[engine]\nhistory_segment_bytes = 65536\n\n[metrics]\nenabled = false\n";

fn serve(dir: &Path, shards: usize) -> ServerProcess {
    let config = dir.join("payrail.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let shards = shards.to_string();
    ServerProcess::spawn(
        &dir.join("data"),
        free_addr(),
        &dir.join("serve.log"),
        &["--config", config.to_str().unwrap(), "--shards", &shards],
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens and funds the accounts.
async fn setup(connection: &mut RawConnection) {
    let mut commands = Vec::new();
    for (index, account) in (FIRST_ACCOUNT..FIRST_ACCOUNT + ACCOUNTS).enumerate() {
        let id = 10_000_000 + 2 * index as u128;
        commands.push(open_customer(id, account, Currency::CNY));
        commands.push(deposit(id + 1, account, 1_000_000));
    }
    let results = connection.submit(0, commands).await;
    assert!(results.iter().all(|result| result.status == Status::Ok));
}

/// `batches` batches of random transfers (some refused: overdrawn), each
/// acknowledged before the next; ids from `first_id`.
async fn traffic(connection: &mut RawConnection, rng: &mut StdRng, first_id: u128, batches: u64) {
    let mut id = first_id;
    for batch in 0..batches {
        let size = rng.gen_range(1..=60);
        let commands = (0..size)
            .map(|_| {
                id += 1;
                let from = FIRST_ACCOUNT + rng.gen_range(0..ACCOUNTS);
                let to = FIRST_ACCOUNT + rng.gen_range(0..ACCOUNTS);
                transfer(id, from, to, rng.gen_range(1..=300_000))
            })
            .collect();
        let results: Vec<CommandResult> = connection.submit(batch + 1, commands).await;
        assert_eq!(results.len(), size);
    }
}

/// Every page of `account` (pages of `limit`), following the cursor.
async fn pages(connection: &mut RawConnection, account: u64, limit: u32) -> Vec<Movement> {
    let mut entries = Vec::new();
    let mut cursor = 0u128;
    for page in 0..10_000u64 {
        connection
            .send(
                2_000_000 + page,
                &Message::HistoryQuery {
                    account: AccountId(account),
                    from_ns: 0,
                    to_ns: u64::MAX,
                    cursor,
                    limit,
                },
            )
            .await;
        let frame = connection.read_frame().await.expect("a history page");
        let Message::HistoryPage {
            entries: page_entries,
            next_cursor,
        } = frame.message
        else {
            panic!("expected a history page, got {frame:?}");
        };
        entries.extend(page_entries);
        cursor = next_cursor;
        if cursor == 0 {
            return entries;
        }
    }
    panic!("paging never ended");
}

/// Waits (bounded) until the history writer has covered every batch
/// logged: pages lag acknowledgements by up to one history job.
async fn wait_for_history(connection: &mut RawConnection) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for request in 3_000_000u64.. {
        connection.send(request, &Message::Status).await;
        let frame = connection.read_frame().await.expect("a status reply");
        let Message::StatusReply { fields } = frame.message else {
            panic!("expected a status reply, got {frame:?}");
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| *value)
                .unwrap_or_else(|| panic!("status has no {name}"))
        };
        if field("engine.history_watermark") >= field("engine.last_sequence") {
            // payrail status shows the store: its segments, the head
            // index's capacity (the default) and the retention (none).
            assert!(field("history.segments") >= 1);
            assert!(field("history.movements_kept") >= 1);
            assert_eq!(field("history.accounts_max"), 1_048_576);
            assert!(field("history.accounts") >= ACCOUNTS);
            assert_eq!(field("history.retention_s"), 0);
            assert_eq!(field("history.movements_refused"), 0);
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the history never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_pages(
    server: &ServerProcess,
    gateway: &GatewayConfig,
) -> BTreeMap<u64, Vec<Movement>> {
    let mut connection = RawConnection::authenticated(server.addr, gateway).await;
    wait_for_history(&mut connection).await;
    let mut out = BTreeMap::new();
    for account in FIRST_ACCOUNT..FIRST_ACCOUNT + ACCOUNTS {
        out.insert(account, pages(&mut connection, account, 17).await);
    }
    out
}

/// The reference: the log replayed from the start by a lone ledger that
/// records movements; each account's movements newest first.
fn reference(data_dir: &Path) -> BTreeMap<u64, Vec<Movement>> {
    let storage = RocksStorage::open(data_dir).unwrap();
    let mut ledger = Ledger::new(LedgerConfig::default());
    ledger.record_history(true);
    let mut movements = Vec::new();
    let mut batch_movements = Vec::new();
    let mut after = 0;
    let mut results = Vec::new();
    loop {
        let page = storage.read_log(after, 256).unwrap();
        if page.is_empty() {
            break;
        }
        for (sequence, bytes) in page {
            assert_eq!(
                sequence,
                after + 1,
                "the log starts at 1: no checkpoint trimmed it"
            );
            after = sequence;
            let record = LogRecord::decode(&bytes).unwrap();
            if let LogEntry::Batch(commands) = &record.entry {
                results.clear();
                ledger.apply(record.sequence, record.timestamp, commands, &mut results);
                ledger.take_movements(&mut batch_movements);
                movements.append(&mut batch_movements);
            }
        }
    }
    let mut out: BTreeMap<u64, Vec<Movement>> = BTreeMap::new();
    for movement in movements.into_iter().rev() {
        out.entry(movement.account.0).or_default().push(movement);
    }
    for account in FIRST_ACCOUNT..FIRST_ACCOUNT + ACCOUNTS {
        out.entry(account).or_default();
    }
    out
}

fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(data_dir.join("history"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    paths.sort();
    paths
}

fn assert_pages_equal(
    got: &BTreeMap<u64, Vec<Movement>>,
    expected: &BTreeMap<u64, Vec<Movement>>,
    when: &str,
) {
    for (account, entries) in expected {
        assert!(!entries.is_empty(), "account {account} has movements");
        let got = got.get(account).unwrap();
        if let Some(index) =
            (0..entries.len().max(got.len())).find(|&index| got.get(index) != entries.get(index))
        {
            panic!(
                "{when}: pages of account {account} differ from the log at entry {index} of {} (got {}):\n got {:?}\n log {:?}",
                entries.len(),
                got.len(),
                got.get(index),
                entries.get(index)
            );
        }
    }
}

#[test]
fn pages_equal_the_log_on_3_and_1_shards_across_kills() {
    let seed = 0x5eed_0017;
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let runtime = runtime();

    let mut server = serve(dir.path(), 3);
    let gateway = read_local_gateway(&data_dir).unwrap();
    runtime.block_on(async {
        let mut connection = RawConnection::authenticated(server.addr, &gateway).await;
        setup(&mut connection).await;
        traffic(&mut connection, &mut rng, 0, 150).await;
    });
    // Killed right after the last acknowledgement: the history writer's
    // last job is likely unwritten, the active segment unsynced.
    server.kill();
    let mut server = serve(dir.path(), 1);
    runtime.block_on(async {
        let mut connection = RawConnection::authenticated(server.addr, &gateway).await;
        traffic(&mut connection, &mut rng, 1_000_000, 150).await;
    });
    let after_first = runtime.block_on(all_pages(&server, &gateway));
    server.kill();
    assert!(
        segments(&data_dir).len() >= 4,
        "several segments: {:?}",
        segments(&data_dir)
    );
    let expected = reference(&data_dir);
    assert_pages_equal(&after_first, &expected, "3 shards, kill, 1 shard");

    // After a second kill, on 3 shards again: the start takes the sealed
    // segments from the head-index snapshot and reads only the rest.
    assert!(data_dir.join("history").join(HEADS_FILE).exists());
    let log = dir.path().join("serve.log");
    let starts_before = history_starts(&log).len();
    let server = serve(dir.path(), 3);
    let after_second = runtime.block_on(all_pages(&server, &gateway));
    assert_pages_equal(&after_second, &expected, "after the second kill, 3 shards");
    let starts = history_starts(&log);
    assert_eq!(starts.len(), starts_before + 1, "{starts:?}");
    let (read, from_snapshot) = starts[starts.len() - 1];
    assert!(
        from_snapshot >= 2 && read < from_snapshot,
        "segments read {read}, from the snapshot {from_snapshot}"
    );
    drop(server);
}

/// (segments read, segments from the snapshot) of each start in the log.
fn history_starts(log: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap();
    let field = |line: &str, name: &str| -> u64 {
        let start = line.find(name).unwrap() + name.len();
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    text.lines()
        .filter(|line| line.contains("history opened"))
        .map(|line| {
            (
                field(line, "segments_read="),
                field(line, "segments_from_snapshot="),
            )
        })
        .collect()
}

#[test]
fn a_damaged_segment_is_found_by_verify_and_rebuilt_from_the_log() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0018);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let runtime = runtime();
    let mut server = serve(dir.path(), 2);
    let gateway = read_local_gateway(&data_dir).unwrap();
    runtime.block_on(async {
        let mut connection = RawConnection::authenticated(server.addr, &gateway).await;
        setup(&mut connection).await;
        traffic(&mut connection, &mut rng, 0, 200).await;
    });
    // Give the history writer a moment, then stop without a checkpoint:
    // the log holds everything.
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    let expected = reference(&data_dir);
    let paths = segments(&data_dir);
    assert!(paths.len() >= 4, "{paths:?}");
    // Bit rot in the second segment, a sealed one.
    let mut bytes = std::fs::read(&paths[1]).unwrap();
    bytes[20_000] ^= 0x40;
    std::fs::write(&paths[1], &bytes).unwrap();

    let config = dir.path().join("payrail.toml");
    let verify = |expect_damage: bool| {
        let output = common::process::cli(&[
            "verify",
            data_dir.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--json",
        ]);
        common::process::expect_code(&output, 0);
        let report = common::process::json(&output);
        let damaged = report["history"]["damaged"].as_array().unwrap().clone();
        assert_eq!(damaged.is_empty(), !expect_damage, "{report}");
        report
    };
    let report = verify(true);
    let damaged = &report["history"]["damaged"][0];
    assert_eq!(damaged["segment"], 2, "{report}");
    assert_eq!(damaged["rebuilt"], true, "{report}");
    assert!(
        report["history"]["rebuilt_movements"].as_u64().unwrap() > 100,
        "{report}"
    );
    // The rebuilt history is whole: a second verify finds nothing wrong,
    // and the server's pages equal the log.
    let report = verify(false);
    assert_eq!(report["history"]["rebuilt_movements"], 0, "{report}");
    let mut server = serve(dir.path(), 3);
    let got = runtime.block_on(all_pages(&server, &gateway));
    assert_pages_equal(&got, &expected, "after the rebuild");

    // Once a checkpoint trimmed the log, damage can no longer be rebuilt:
    // verify reports the segment's movements as lost, and the newer history
    // is kept. A clean stop takes no checkpoint; a start with checkpoints
    // every second checkpoints the tail it replayed.
    server.terminate();
    let log = dir.path().join("serve.log");
    let log_from = std::fs::metadata(&log).map_or(0, |metadata| metadata.len() as usize);
    std::fs::write(
        &config,
        format!("{CONFIG}\n").replace("[engine]\n", "[engine]\ncheckpoint_interval_s = 1\n"),
    )
    .unwrap();
    let mut server = ServerProcess::spawn(
        &data_dir,
        free_addr(),
        &log,
        &["--config", config.to_str().unwrap()],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log_text()[log_from..].contains("checkpoint saved") {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.terminate();
    let paths = segments(&data_dir);
    let mut bytes = std::fs::read(&paths[0]).unwrap();
    bytes[1_000] ^= 0x40;
    std::fs::write(&paths[0], &bytes).unwrap();
    let report = verify(true);
    let damaged = &report["history"]["damaged"][0];
    assert_eq!(damaged["segment"], 1, "{report}");
    assert_eq!(damaged["rebuilt"], false, "{report}");
    assert_eq!(
        report["history"]["segments"].as_u64().unwrap(),
        paths.len() as u64 - 1,
        "{report}"
    );
}
