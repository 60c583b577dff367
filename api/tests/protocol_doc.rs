//! What docs/protocol.md says the server does ("Connection lifecycle" and
//! "History, tx and backup"), checked with raw frames against a real server
//! on 127.0.0.1:0: the HMAC key is the secret's bytes; handshake refusals
//! carry request id 0; a second Hello is refused with its own id and
//! closes; `TooManyInFlight` keeps the connection; a reused request id gets
//! its own reply each time; a query pipelined after a submit sees it;
//! `Movement.position` is command index * 256 + leg; no build output sits
//! in the document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{deposit, encode, open_customer, transfer, RawConnection};
use payrail_api::auth;
use payrail_api::config::{GatewayConfig, LimitsConfig, Role, ServerConfig};
use payrail_api::serve::{self, RunningServer};
use payrail_api::wire::{ErrorCode, Message};
use payrail_engine::{AccountId, Currency, Query, QueryReply};

/// The gateway's secret: 32 bytes 00..1f, configured as 64 hex digits.
fn gateway() -> GatewayConfig {
    GatewayConfig::new(
        "doc",
        hex::encode((0u8..32).collect::<Vec<u8>>()),
        &Role::ALL,
    )
}

async fn start(limits: LimitsConfig) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        gateways: vec![gateway()],
        limits,
        ..ServerConfig::default()
    };
    (serve::start(config).await.unwrap(), dir)
}

/// Sends Hello with `request_id` and `proof`; returns the server's answer.
async fn hello(
    server: &RunningServer,
    name: &str,
    request_id: u64,
    key: &[u8],
) -> (RawConnection, payrail_api::wire::Frame) {
    let (mut connection, nonce) = RawConnection::connect(server.addr).await;
    let proof = auth::proof(key, &nonce, name);
    connection
        .send(
            request_id,
            &Message::Hello {
                gateway: name.to_owned(),
                proof,
            },
        )
        .await;
    let frame = connection.read_frame().await.unwrap();
    (connection, frame)
}

fn error_code(message: &Message) -> ErrorCode {
    match message {
        Message::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn balance(reply: &QueryReply) -> i64 {
    match reply {
        QueryReply::Balance(view) => view.balance,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hmac_key_is_the_secret_bytes_and_handshake_refusals_carry_id_0() {
    let (server, _dir) = start(LimitsConfig::default()).await;
    let secret_bytes: Vec<u8> = (0u8..32).collect();
    let secret_hex = gateway().secret;

    // The key is the 32 bytes; the Welcome echoes the Hello's id.
    let (_connection, frame) = hello(&server, "doc", 9, &secret_bytes).await;
    assert!(
        matches!(frame.message, Message::Welcome { .. }),
        "{frame:?}"
    );
    assert_eq!(frame.request_id, 9);

    // The hex text as the key is a wrong proof; the refusal has id 0.
    let (mut connection, frame) = hello(&server, "doc", 9, secret_hex.as_bytes()).await;
    assert_eq!(error_code(&frame.message), ErrorCode::BadProof);
    assert_eq!(frame.request_id, 0);
    connection.expect_closed().await;

    let (mut connection, frame) = hello(&server, "nobody", 11, &secret_bytes).await;
    assert_eq!(error_code(&frame.message), ErrorCode::UnknownGateway);
    assert_eq!(frame.request_id, 0);
    connection.expect_closed().await;

    // A request instead of a Hello.
    let (mut connection, _nonce) = RawConnection::connect(server.addr).await;
    connection.send(13, &Message::Status).await;
    let frame = connection.read_frame().await.unwrap();
    assert_eq!(error_code(&frame.message), ErrorCode::HandshakeRequired);
    assert_eq!(frame.request_id, 0);
    connection.expect_closed().await;
    drop(connection);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_gets_unexpected_message_with_its_id_and_closes() {
    let (server, _dir) = start(LimitsConfig::default()).await;
    let mut connection = RawConnection::authenticated(server.addr, &gateway()).await;
    connection
        .submit(1, vec![open_customer(1, 100, Currency::CNY)])
        .await;
    // Hello again, and a deposit behind it in the same write.
    let mut bytes = encode(
        12,
        &Message::Hello {
            gateway: "doc".to_owned(),
            proof: [0; 32],
        },
    );
    bytes.extend(encode(
        13,
        &Message::Submit {
            commands: vec![deposit(2, 100, 500)],
        },
    ));
    connection.write_raw(&bytes).await;
    let frame = connection.read_frame().await.unwrap();
    assert_eq!(error_code(&frame.message), ErrorCode::UnexpectedMessage);
    assert_eq!(frame.request_id, 12);
    connection.expect_closed().await;
    // The deposit after it was not read.
    let mut other = RawConnection::authenticated(server.addr, &gateway()).await;
    assert_eq!(other.balance(100).await, 0);
    drop(connection);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_in_flight_refuses_the_request_and_keeps_the_connection() {
    let limits = LimitsConfig {
        inflight_max: 1,
        ..LimitsConfig::default()
    };
    let (server, _dir) = start(limits).await;
    let mut connection = RawConnection::authenticated(server.addr, &gateway()).await;
    connection
        .submit(1, vec![open_customer(1, 100, Currency::CNY)])
        .await;
    let mut burst = Vec::new();
    for request in 0..30u64 {
        burst.extend(encode(
            100 + request,
            &Message::Submit {
                commands: vec![deposit(1_000 + u128::from(request), 100, 1)],
            },
        ));
    }
    connection.write_raw(&burst).await;
    let (mut applied, mut refused) = (0, 0);
    for expected_id in 100..130 {
        let frame = connection.read_frame().await.unwrap();
        assert_eq!(frame.request_id, expected_id);
        match frame.message {
            Message::Results { .. } => applied += 1,
            other => {
                assert_eq!(error_code(&other), ErrorCode::TooManyInFlight);
                refused += 1;
            }
        }
    }
    assert!(refused >= 1, "one in flight at a time: some are refused");
    // The connection is still open and serves the next request.
    let results = connection.submit(200, vec![deposit(2_000, 100, 1)]).await;
    assert_eq!(results[0].status, payrail_engine::Status::Ok);
    assert_eq!(connection.balance(100).await, applied + 1);
    drop(connection);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_request_id_gets_its_own_reply_each_time() {
    let (server, _dir) = start(LimitsConfig::default()).await;
    let mut connection = RawConnection::authenticated(server.addr, &gateway()).await;
    connection
        .submit(1, vec![open_customer(1, 100, Currency::CNY)])
        .await;
    let mut bytes = Vec::new();
    for (index, amount) in [5u64, 7, 11].into_iter().enumerate() {
        bytes.extend(encode(
            5,
            &Message::Submit {
                commands: vec![deposit(10 + index as u128, 100, amount)],
            },
        ));
    }
    connection.write_raw(&bytes).await;
    for _ in 0..3 {
        let frame = connection.read_frame().await.unwrap();
        assert_eq!(frame.request_id, 5);
        assert!(
            matches!(frame.message, Message::Results { .. }),
            "{frame:?}"
        );
    }
    assert_eq!(connection.balance(100).await, 23);
    drop(connection);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_pipelined_after_a_submit_sees_it() {
    let (server, _dir) = start(LimitsConfig::default()).await;
    let mut connection = RawConnection::authenticated(server.addr, &gateway()).await;
    connection
        .submit(1, vec![open_customer(1, 100, Currency::CNY)])
        .await;
    // Submit, Query, Submit, Query ... in one write, no waiting.
    const ROUNDS: u64 = 25;
    let mut bytes = Vec::new();
    for round in 0..ROUNDS {
        bytes.extend(encode(
            10 + 2 * round,
            &Message::Submit {
                commands: vec![deposit(100 + u128::from(round), 100, 1)],
            },
        ));
        bytes.extend(encode(
            11 + 2 * round,
            &Message::Query {
                queries: vec![Query::Balance {
                    account: AccountId(100),
                }],
            },
        ));
    }
    connection.write_raw(&bytes).await;
    for round in 0..ROUNDS {
        let frame = connection.read_frame().await.unwrap();
        assert!(
            matches!(frame.message, Message::Results { .. }),
            "{frame:?}"
        );
        let frame = connection.read_frame().await.unwrap();
        assert_eq!(frame.request_id, 11 + 2 * round);
        let Message::QueryResults { replies } = frame.message else {
            panic!("{frame:?}")
        };
        assert_eq!(balance(&replies[0]), round as i64 + 1);
    }
    drop(connection);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movement_position_is_command_index_times_256_plus_leg() {
    let (server, _dir) = start(LimitsConfig::default()).await;
    let mut connection = RawConnection::authenticated(server.addr, &gateway()).await;
    // One batch: [open A, open B, deposit A, transfer A -> B].
    let results = connection
        .submit(
            1,
            vec![
                open_customer(1, 100, Currency::CNY),
                open_customer(2, 200, Currency::CNY),
                deposit(3, 100, 500),
                transfer(4, 100, 200, 30),
            ],
        )
        .await;
    assert!(results
        .iter()
        .all(|result| result.status == payrail_engine::Status::Ok));
    // History is written after the acknowledgment: wait for it (bounded).
    let started = Instant::now();
    let entries = loop {
        connection
            .send(
                2,
                &Message::HistoryQuery {
                    account: AccountId(100),
                    from_ns: 0,
                    to_ns: u64::MAX,
                    cursor: 0,
                    limit: 10,
                },
            )
            .await;
        let frame = connection.read_frame().await.unwrap();
        let Message::HistoryPage { entries, .. } = frame.message else {
            panic!("{frame:?}")
        };
        if entries.len() == 2 || started.elapsed() > Duration::from_secs(10) {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Newest first: the transfer's debit (index 3, leg 0), then the
    // deposit's credit (index 2, leg 1).
    let positions: Vec<(String, u32)> = entries
        .iter()
        .map(|movement| (movement.kind.to_string(), movement.position))
        .collect();
    assert_eq!(
        positions,
        [
            ("transfer".to_owned(), 3 * 256),
            ("deposit".to_owned(), 2 * 256 + 1)
        ]
    );
    drop(connection);
    server.stop().await;
}

#[test]
fn the_document_holds_no_build_output() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines() {
        let trimmed = line.trim_start();
        for stray in [
            "Compiling ",
            "Finished `",
            "Running tests/",
            "Running unittests",
        ] {
            assert!(
                !trimmed.starts_with(stray),
                "docs/protocol.md holds build output: {line}"
            );
        }
    }
}
