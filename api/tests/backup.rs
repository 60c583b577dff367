//! Backup under load, restored into a new directory: the real `payrail
//! serve` process takes pipelined transfers from several client tasks while
//! `payrail backup` runs; a second server started on the backup must know
//! every command acknowledged before the backup began, with the result it
//! was acknowledged with, its movements in the history, and conserve money;
//! `payrail verify` passes on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{cli, free_addr, ServerProcess};
use common::{deposit, open_customer, transfer};
use payrail_api::client::{Client, ClientConfig};
use payrail_api::wire::TxSource;
use payrail_engine::{
    AccountId, Command, CommandId, CommandResult, Currency, HouseRole, Query, QueryReply, Status,
};

const ACCOUNTS: u64 = 100;
const FIRST_ACCOUNT: u64 = 1_000;
const LOADERS: u64 = 4;
const BATCH: u64 = 200;
/// Every loader stops after this many batches, or this long, whichever first.
const BATCHES_MAX: u64 = 400;
const LOAD_MAX: Duration = Duration::from_secs(20);

/// A batch the server acknowledged, and when.
struct Acknowledged {
    commands: Vec<Command>,
    results: Vec<CommandResult>,
    at: Instant,
}

#[test]
fn a_backup_taken_under_load_restores_every_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let backup_dir = dir.path().join("backup");
    let config = dir.path().join("payrail.toml");
    // Checkpoints every second, so one lands during the load too.
    // Backups go under the test's directory (the backup root).
    std::fs::write(
        &config,
        format!(
            "backup_root = {:?}\n\n[engine]\ncheckpoint_interval_s = 1\n\n[metrics]\nenabled = false\n",
            dir.path()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let serve_args = ["--no-metrics", "--config", config_arg];
    let mut server = ServerProcess::spawn(
        &data_dir,
        free_addr(),
        &dir.path().join("server.log"),
        &serve_args,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let (backup_began, backup_sequence) = runtime.block_on(async {
        let client =
            Client::connect(ClientConfig::local(server.addr.to_string(), &data_dir).unwrap())
                .await
                .unwrap();
        let mut setup = Vec::new();
        for index in 0..ACCOUNTS {
            let account = FIRST_ACCOUNT + index;
            setup.push(open_customer(u128::from(account), account, Currency::CNY));
            setup.push(deposit(u128::from(account) + 1_000_000, account, 1_000_000));
        }
        let results = client.submit(setup).await.unwrap();
        assert!(results.iter().all(|result| result.status == Status::Ok));

        // Pipelined load: several tasks on one connection, each a stream of
        // transfer batches between pseudo-random accounts.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut loaders = Vec::new();
        for loader in 0..LOADERS {
            let client = client.clone();
            let acknowledged = Arc::clone(&acknowledged);
            let stop = Arc::clone(&stop);
            loaders.push(tokio::spawn(async move {
                let started = Instant::now();
                for round in 0..BATCHES_MAX {
                    if stop.load(std::sync::atomic::Ordering::Relaxed)
                        || started.elapsed() > LOAD_MAX
                    {
                        break;
                    }
                    let commands: Vec<Command> = (0..BATCH)
                        .map(|index| {
                            let id = ((loader + 1) << 40) | (round << 16) | index;
                            let from = FIRST_ACCOUNT + (id * 7_919) % ACCOUNTS;
                            let to = FIRST_ACCOUNT + (id * 104_729 + 1) % ACCOUNTS;
                            transfer(u128::from(id) + 10_000_000, from, to, 1 + id % 500)
                        })
                        .collect();
                    let results = client.submit(commands.clone()).await.unwrap();
                    acknowledged.lock().unwrap().push(Acknowledged {
                        commands,
                        results,
                        at: Instant::now(),
                    });
                }
            }));
        }
        // Let the load run, back up in the middle of it, let it run on.
        // The wait is for acknowledged batches, not a fixed time, so that a
        // slow machine (a debug build on 2 busy cores) still backs up under
        // load; both waits are bounded by the loaders' own time limit.
        let acknowledged_count = || acknowledged.lock().unwrap().len();
        let waited = Instant::now();
        while acknowledged_count() < 8 && waited.elapsed() < LOAD_MAX / 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let backup_began = Instant::now();
        let backup_sequence = client.backup(backup_dir.to_str().unwrap()).await.unwrap();
        let after_backup = acknowledged_count();
        let waited = Instant::now();
        while acknowledged_count() < after_backup + 8 && waited.elapsed() < LOAD_MAX / 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for loader in loaders {
            loader.await.unwrap();
        }
        // A second backup into the same directory is refused.
        let again = client.backup(backup_dir.to_str().unwrap()).await;
        assert!(
            again
                .as_ref()
                .is_err_and(|error| error.to_string().contains("already exists")),
            "{again:?}"
        );
        (backup_began, backup_sequence)
    });
    server.terminate();

    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let before: Vec<&Acknowledged> = acknowledged
        .iter()
        .filter(|batch| batch.at < backup_began)
        .collect();
    let after = acknowledged.len() - before.len();
    assert!(
        before.len() >= 4 && after >= 1,
        "the backup must run under load: {} batches before it, {after} after",
        before.len()
    );
    assert!(backup_sequence >= 2, "{backup_sequence}");

    // Restore: a new server on the backup directory.
    let mut restored = ServerProcess::spawn(
        &backup_dir,
        free_addr(),
        &dir.path().join("restored.log"),
        &serve_args,
    );
    runtime.block_on(async {
        let client =
            Client::connect(ClientConfig::local(restored.addr.to_string(), &backup_dir).unwrap())
                .await
                .unwrap();
        let mut checked = 0usize;
        for batch in &before {
            let queries: Vec<Query> = batch
                .commands
                .iter()
                .map(|command| Query::Command { id: command.id })
                .collect();
            let replies = client.query(queries).await.unwrap();
            for ((command, result), reply) in batch.commands.iter().zip(&batch.results).zip(replies)
            {
                assert_eq!(
                    reply,
                    QueryReply::Command(result.status),
                    "command {:?} acknowledged before the backup",
                    command.id
                );
                checked += 1;
            }
        }
        assert!(checked >= 4 * BATCH as usize);
        // The history came along: an acknowledged transfer's two legs.
        let (index, _) = before[0]
            .results
            .iter()
            .enumerate()
            .find(|(_, result)| result.status == Status::Ok)
            .unwrap();
        let id: CommandId = before[0].commands[index].id;
        let (source, status, legs) = client.tx(id).await.unwrap();
        assert_eq!((source, status), (TxSource::Record, Status::Ok));
        assert_eq!(legs.len(), 2);
        assert_eq!(legs[0].amount, -legs[1].amount);

        // Money is conserved: customers and the settlement account sum to 0.
        let mut queries: Vec<Query> = (0..ACCOUNTS)
            .map(|index| Query::Balance {
                account: AccountId(FIRST_ACCOUNT + index),
            })
            .collect();
        queries.push(Query::Balance {
            account: AccountId::house(HouseRole::Settlement, Currency::CNY),
        });
        let total: i64 = client
            .query(queries)
            .await
            .unwrap()
            .into_iter()
            .map(|reply| match reply {
                QueryReply::Balance(view) => view.balance,
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(total, 0);
    });
    restored.terminate();

    // The offline check agrees.
    let verify = cli(&["verify", backup_dir.to_str().unwrap(), "--json"]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    let summary: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["accounts"], ACCOUNTS + 1);
}

#[test]
fn verify_refuses_what_is_not_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a data directory"));
}
