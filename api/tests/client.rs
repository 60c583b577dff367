//! The client library against a real server on 127.0.0.1:0: round trips,
//! automatic batching, pipelining, reconnecting and handshake refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{deposit, transfer};
use payrail_api::client::{Client, ClientConfig, ClientError};
use payrail_api::config::ServerConfig;
use payrail_api::serve::{self, RunningServer};
use payrail_api::wire::ErrorCode;
use payrail_engine::{AccountId, Command, CommandResult, Currency, Query, QueryReply, Status};
use tokio::task::JoinSet;

/// Every test finishes within this or fails.
const TEST_TIME_MAX: Duration = Duration::from_secs(60);

async fn start(data_dir: &Path, listen: SocketAddr) -> RunningServer {
    let config = ServerConfig {
        listen,
        data_dir: data_dir.to_owned(),
        ..ServerConfig::default()
    };
    serve::start(config).await.unwrap()
}

async fn start_fresh() -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    (server, dir)
}

async fn connect(server: &RunningServer, dir: &Path) -> Client {
    let config = ClientConfig::local(server.addr.to_string(), dir).unwrap();
    Client::connect(config).await.unwrap()
}

/// A CNY customer account (owner = account).
fn open_customer(id: u128, account: u64) -> Command {
    common::open_customer(id, account, Currency::CNY)
}

async fn balance(client: &Client, account: u64) -> i64 {
    let replies = client
        .query(vec![Query::Balance {
            account: AccountId(account),
        }])
        .await
        .unwrap();
    match replies.as_slice() {
        [QueryReply::Balance(view)] => view.balance,
        other => panic!("account {account}: {other:?}"),
    }
}

async fn counter(client: &Client, name: &str) -> u64 {
    let fields = client.status().await.unwrap();
    fields
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| *value)
        .unwrap_or_else(|| panic!("no counter {name} in {fields:?}"))
}

fn statuses(results: &[CommandResult]) -> Vec<Status> {
    results.iter().map(|result| result.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_query_round_trip() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_fresh().await;
        let client = connect(&server, dir.path()).await;
        let limits = client.server_limits().unwrap();
        assert!(limits.batch_commands_max >= 1 && limits.inflight_max >= 1);

        let results = client
            .submit(vec![
                open_customer(1, 1001),
                open_customer(2, 2001),
                deposit(3, 1001, 10_000),
                transfer(4, 1001, 2001, 1_250),
                transfer(5, 1001, 2001, 1_000_000),
            ])
            .await
            .unwrap();
        assert_eq!(
            statuses(&results),
            [
                Status::Ok,
                Status::Ok,
                Status::Ok,
                Status::Ok,
                Status::InsufficientFunds
            ]
        );
        assert_eq!(balance(&client, 1001).await, 8_750);
        assert_eq!(balance(&client, 2001).await, 1_250);

        // A retry with the same id is answered with the first result, once.
        let retry = client
            .submit(vec![transfer(4, 1001, 2001, 1_250)])
            .await
            .unwrap();
        assert_eq!(statuses(&retry), [Status::Ok]);
        assert_eq!(balance(&client, 1001).await, 8_750);

        let replies = client
            .query(vec![
                Query::Balance {
                    account: AccountId(9_999),
                },
                Query::Balance {
                    account: AccountId(2001),
                },
            ])
            .await
            .unwrap();
        assert_eq!(replies[0], QueryReply::Refused(Status::UnknownAccount));
        assert!(matches!(replies[1], QueryReply::Balance(view) if view.available == 1_250));

        // Empty batches send nothing; oversized ones are refused before sending.
        assert!(client.submit(Vec::new()).await.unwrap().is_empty());
        let too_many = limits.batch_commands_max as u128 + 1;
        let commands = (0..too_many).map(|i| deposit(1_000 + i, 1001, 1)).collect();
        let error = client.submit(commands).await.unwrap_err();
        assert!(
            matches!(error, ClientError::BatchTooLarge { .. }),
            "{error}"
        );
        assert_eq!(balance(&client, 1001).await, 8_750);

        let counters = client.status().await.unwrap();
        assert!(counters.iter().any(|(name, _)| name == "server.requests"));
        drop(client);
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executes_are_batched() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_fresh().await;
        let client = connect(&server, dir.path()).await;
        let accounts: Vec<u64> = (1..=10).collect();
        let opens = accounts
            .iter()
            .map(|&account| open_customer(u128::from(account), account))
            .collect();
        assert!(client
            .submit(opens)
            .await
            .unwrap()
            .iter()
            .all(|r| r.status.is_ok()));

        let requests_before = counter(&client, "server.requests").await;
        let executes = 1_000u64;
        let mut tasks = JoinSet::new();
        for i in 0..executes {
            let client = client.clone();
            let account = accounts[(i % 10) as usize];
            tasks.spawn(async move {
                client
                    .execute(deposit(1_000_000 + u128::from(i), account, i + 1))
                    .await
            });
        }
        let mut done = 0;
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap().unwrap().status, Status::Ok);
            done += 1;
        }
        assert_eq!(done, executes);
        let requests_after = counter(&client, "server.requests").await;
        // One request per batch, plus the status request that reads the counter.
        let requests = requests_after - requests_before;
        println!("{executes} executes in {} requests", requests - 1);
        assert!(
            requests < 100,
            "{executes} executes took {requests} requests"
        );

        for (index, &account) in accounts.iter().enumerate() {
            let expected: u64 = (0..executes)
                .filter(|i| (i % 10) as usize == index)
                .map(|i| i + 1)
                .sum();
            assert_eq!(balance(&client, account).await, expected as i64);
        }
        drop(client);
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_submits_from_many_tasks_share_one_connection() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_fresh().await;
        let client = connect(&server, dir.path()).await;
        let inflight_max = client.server_limits().unwrap().inflight_max as usize;
        let tasks_count = 8u64;
        let opens = (1..=tasks_count)
            .map(|account| open_customer(u128::from(account), account))
            .collect();
        assert!(client
            .submit(opens)
            .await
            .unwrap()
            .iter()
            .all(|r| r.status.is_ok()));

        // More submits at once than the server allows in flight: the client
        // must queue them, not get TooManyInFlight.
        let submits_per_task = (inflight_max as u64 * 2) / tasks_count + 10;
        let commands_per_submit = 20u64;
        let mut tasks = JoinSet::new();
        for task in 1..=tasks_count {
            let client = client.clone();
            tasks.spawn(async move {
                let mut submits = JoinSet::new();
                for submit in 0..submits_per_task {
                    let client = client.clone();
                    let commands = (0..commands_per_submit)
                        .map(|i| {
                            let id = (u128::from(task) << 64)
                                | u128::from(submit * commands_per_submit + i);
                            deposit(id, task, 1)
                        })
                        .collect();
                    submits.spawn(async move { client.submit(commands).await });
                }
                while let Some(results) = submits.join_next().await {
                    let results = results.unwrap().unwrap();
                    assert_eq!(results.len(), commands_per_submit as usize);
                    assert!(results.iter().all(|result| result.status.is_ok()));
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap();
        }
        for account in 1..=tasks_count {
            let expected = submits_per_task * commands_per_submit;
            assert_eq!(balance(&client, account).await, expected as i64);
        }
        assert_eq!(counter(&client, "server.connections_accepted").await, 1);
        assert_eq!(counter(&client, "server.requests_refused").await, 0);
        drop(client);
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let dir = tempfile::tempdir().unwrap();
        let first = start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
        let addr = first.addr;
        let mut config = ClientConfig::local(addr.to_string(), dir.path()).unwrap();
        config.connect_attempts = 2;
        config.connect_timeout = Duration::from_secs(2);
        let client = Client::connect(config).await.unwrap();
        let setup = client
            .submit(vec![open_customer(1, 1001), deposit(2, 1001, 500)])
            .await
            .unwrap();
        assert_eq!(statuses(&setup), [Status::Ok, Status::Ok]);

        first.stop().await;
        let error = client
            .submit(vec![deposit(3, 1001, 100)])
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::ConnectionLost { .. } | ClientError::Connect { .. }
            ),
            "{error}"
        );

        // Same data directory and port: the next request reconnects.
        let second = start(dir.path(), addr).await;
        // The retry of the command whose outcome was unknown, with the same
        // id, and a retry of one known to be applied: each applies once.
        let results = client
            .submit(vec![deposit(3, 1001, 100), deposit(2, 1001, 500)])
            .await
            .unwrap();
        assert_eq!(statuses(&results), [Status::Ok, Status::Ok]);
        assert_eq!(balance(&client, 1001).await, 600);
        assert_eq!(
            client.execute(deposit(4, 1001, 1)).await.unwrap().status,
            Status::Ok
        );
        assert_eq!(balance(&client, 1001).await, 601);
        drop(client);
        second.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_and_unknown_gateway_are_refused() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_fresh().await;
        let good = ClientConfig::local(server.addr.to_string(), dir.path()).unwrap();

        let mut wrong_secret = good.clone();
        wrong_secret.secret = vec![0x55; 32];
        let error = Client::connect(wrong_secret).await.unwrap_err();
        assert!(
            matches!(
                &error,
                ClientError::GatewayRefused {
                    code: ErrorCode::BadProof,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("the server refused gateway 'local'"),
            "{error}"
        );

        let mut unknown = good.clone();
        unknown.gateway = "x".to_owned();
        let error = Client::connect(unknown).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the server refused gateway 'x': unknown gateway"
        );

        // The right secret still works.
        let client = Client::connect(good).await.unwrap();
        assert!(!client.status().await.unwrap().is_empty());
        drop(client);
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_server_is_explained() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        // A port nobody listens on: bind one, then let it go.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut config = ClientConfig::new(addr.to_string(), "local", vec![1; 32]);
        config.connect_attempts = 2;
        let error = Client::connect(config).await.unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("payrail serve"), "{text}");
    })
    .await
    .unwrap();
}

/// What the fake server does once a connection's handshake is done.
#[derive(Clone, Copy)]
enum FakeBehaviour {
    /// Reads requests and never answers.
    Silent,
    /// Closes the connection when the first request arrives.
    DropOnRequest,
}

/// A server that does the handshake right (any proof passes) and then
/// misbehaves. Returns its address and a counter of accepted connections.
async fn fake_server(
    behaviour: FakeBehaviour,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use payrail_api::wire::{self, Message, WireLimits};
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        // Bounded: a handful of connections is all a test makes.
        for _ in 0..8 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut frame = Vec::new();
                wire::encode(0, &Message::Challenge { nonce: [3; 32] }, &mut frame).unwrap();
                socket.write_all(&frame).await.unwrap();
                let mut buffer = bytes::BytesMut::new();
                let limits = WireLimits::default();
                let mut handshaken = false;
                loop {
                    match wire::decode(&buffer, &limits).unwrap() {
                        Some((_, used)) => {
                            bytes::Buf::advance(&mut buffer, used);
                            if !handshaken {
                                handshaken = true;
                                let welcome = Message::Welcome {
                                    frame_bytes_max: 1 << 20,
                                    batch_commands_max: 8_190,
                                    inflight_max: 4,
                                };
                                frame.clear();
                                wire::encode(0, &welcome, &mut frame).unwrap();
                                socket.write_all(&frame).await.unwrap();
                            } else if let FakeBehaviour::DropOnRequest = behaviour {
                                return;
                            }
                        }
                        None => {
                            if socket.read_buf(&mut buffer).await.unwrap_or(0) == 0 {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_is_a_timeout_and_a_dropped_connection_is_lost() {
    use std::sync::atomic::Ordering;
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (addr, _) = fake_server(FakeBehaviour::Silent).await;
        let mut config = ClientConfig::new(addr.to_string(), "gw", vec![1; 32]);
        config.request_timeout = Duration::from_millis(300);
        let client = Client::connect(config).await.unwrap();
        let error = client.submit(vec![deposit(1, 1, 1)]).await.unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
        assert!(error.outcome_unknown());
        assert!(
            error
                .to_string()
                .contains("retry it with the same command ids"),
            "{error}"
        );
        let error = client.execute(deposit(2, 1, 1)).await.unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");

        let (addr, accepted) = fake_server(FakeBehaviour::DropOnRequest).await;
        let mut config = ClientConfig::new(addr.to_string(), "gw", vec![1; 32]);
        config.connect_attempts = 1;
        let client = Client::connect(config).await.unwrap();
        for attempt in 1..=2u64 {
            let error = client.submit(vec![deposit(1, 1, 1)]).await.unwrap_err();
            assert!(
                matches!(error, ClientError::ConnectionLost { .. }),
                "{error:?}"
            );
            assert!(error.outcome_unknown());
            // Each request after a drop made a new connection.
            assert_eq!(accepted.load(Ordering::Relaxed), attempt);
        }
    })
    .await
    .unwrap();
}
