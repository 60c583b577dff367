//! Raw bytes against a real server on 127.0.0.1:0: every framing and
//! handshake error gets its documented error frame, closes only its own
//! connection, applies nothing, and the server keeps serving others.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_api::auth;
use payrail_api::config::{GatewayConfig, LimitsConfig, ServerConfig};
use payrail_api::serve::{self, RunningServer};
use payrail_api::wire::{ErrorCode, Message};
use payrail_engine::{AccountId, Command, Currency, Query, QueryReply, Status};

mod common;

use common::{deposit, encode, open_customer, reseal, RawConnection};

struct TestServer {
    server: Option<RunningServer>,
    gateway: GatewayConfig,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(limits: LimitsConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            limits,
            ..ServerConfig::default()
        };
        let server = serve::start(config).await.unwrap();
        let gateway = server.gateways[0].clone();
        TestServer {
            server: Some(server),
            gateway,
            _dir: dir,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    async fn connect(&self) -> (RawConnection, [u8; 32]) {
        RawConnection::connect(self.addr()).await
    }

    async fn authenticated(&self) -> RawConnection {
        RawConnection::authenticated(self.addr(), &self.gateway).await
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

fn open(id: u128, account: u64) -> Command {
    open_customer(id, account, Currency::CNY)
}

#[tokio::test]
async fn submit_and_query_round_trip() {
    let server = TestServer::start(LimitsConfig::default()).await;
    let mut stream = server.authenticated().await;
    let results = stream
        .submit(
            5,
            vec![open(1, 10), deposit(2, 10, 1_250), deposit(3, 99, 1)],
        )
        .await;
    let statuses: Vec<Status> = results.iter().map(|result| result.status).collect();
    assert_eq!(statuses, [Status::Ok, Status::Ok, Status::UnknownAccount]);
    assert_eq!(stream.balance(10).await, 1_250);
    server.stop().await;
}

/// Each malformed frame: the documented error, the connection closed, nothing
/// applied, and a second connection unaffected throughout.
#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let server = TestServer::start(LimitsConfig::default()).await;
    let mut bystander = server.authenticated().await;
    bystander.submit(1, vec![open(1, 10)]).await;

    let valid = encode(
        9,
        &Message::Submit {
            commands: vec![deposit(100, 10, 5)],
        },
    );
    let mut cases: Vec<(&str, Vec<u8>, ErrorCode)> = Vec::new();

    let mut bad_magic = valid.clone();
    bad_magic[0] = b'X';
    reseal(&mut bad_magic);
    cases.push(("wrong magic", bad_magic, ErrorCode::BadMagic));

    let mut bad_version = valid.clone();
    bad_version[4] = 9;
    reseal(&mut bad_version);
    cases.push((
        "unsupported version",
        bad_version,
        ErrorCode::UnsupportedVersion,
    ));

    let mut bad_header = valid.clone();
    bad_header[29] ^= 0xFF;
    cases.push(("header checksum", bad_header, ErrorCode::HeaderChecksum));

    let mut bad_body = valid.clone();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 0x01;
    cases.push(("body checksum", bad_body, ErrorCode::BodyChecksum));

    let mut unknown_kind = valid.clone();
    unknown_kind[6..8].copy_from_slice(&4242u16.to_le_bytes());
    reseal(&mut unknown_kind);
    cases.push(("unknown kind", unknown_kind, ErrorCode::UnknownMessageKind));

    let mut reserved = valid.clone();
    reserved[20] = 1;
    reseal(&mut reserved);
    cases.push(("reserved bits", reserved, ErrorCode::ReservedNotZero));

    // Header only, claiming a body far over the frame limit: refused before
    // any body byte is sent.
    let mut oversized = valid[..32].to_vec();
    oversized[16..20].copy_from_slice(&(64u32 << 20).to_le_bytes());
    let header_checksum = crc32c::crc32c(&oversized[..28]);
    oversized[28..32].copy_from_slice(&header_checksum.to_le_bytes());
    cases.push(("oversized length", oversized, ErrorCode::FrameTooLarge));

    // One command whose kind has no such variant.
    let mut garbage_body = valid[..32].to_vec();
    garbage_body.extend_from_slice(&1u64.to_le_bytes());
    garbage_body.extend_from_slice(&[7u8; 16]);
    garbage_body.extend_from_slice(&[0xFF; 24]);
    garbage_body[16..20].copy_from_slice(&48u32.to_le_bytes());
    reseal(&mut garbage_body);
    cases.push(("malformed body", garbage_body, ErrorCode::MalformedBody));

    for (name, bytes, code) in cases {
        let mut stream = server.authenticated().await;
        stream.write_raw(&bytes).await;
        stream.expect_error(code).await;
        stream.expect_closed().await;
        // Nothing it carried was applied, and the other connection still works.
        assert_eq!(bystander.balance(10).await, 0, "{name}");
    }
    let results = bystander.submit(2, vec![deposit(3, 10, 7)]).await;
    assert_eq!(results[0].status, Status::Ok);
    assert_eq!(bystander.balance(10).await, 7);
    server.stop().await;
}

#[tokio::test]
async fn batch_limits_refuse_the_request_and_keep_the_connection() {
    let server = TestServer::start(LimitsConfig::default()).await;
    let mut stream = server.authenticated().await;
    stream.submit(1, vec![open(1, 10)]).await;

    let too_many: Vec<Command> = (0..8_191u128)
        .map(|id| deposit(1_000 + id, 10, 1))
        .collect();
    stream
        .send(2, &Message::Submit { commands: too_many })
        .await;
    let frame = stream.read_frame().await.unwrap();
    assert_eq!(frame.request_id, 2);
    assert!(
        matches!(
            frame.message,
            Message::Error {
                code: ErrorCode::BatchTooLarge,
                ..
            }
        ),
        "{frame:?}"
    );

    let mut empty = encode(
        3,
        &Message::Submit {
            commands: vec![deposit(5, 10, 1)],
        },
    );
    // An empty Vec: bincode fixed-int length prefix of 0 (8 bytes).
    empty.truncate(32);
    empty.extend_from_slice(&0u64.to_le_bytes());
    empty[16..20].copy_from_slice(&8u32.to_le_bytes());
    reseal(&mut empty);
    stream.write_raw(&empty).await;
    let frame = stream.read_frame().await.unwrap();
    assert!(
        matches!(
            frame.message,
            Message::Error {
                code: ErrorCode::EmptyBatch,
                ..
            }
        ),
        "{frame:?}"
    );

    // The connection is still good and nothing was applied.
    assert_eq!(stream.balance(10).await, 0);
    let full: Vec<Command> = (0..8_190u128)
        .map(|id| deposit(100_000 + id, 10, 1))
        .collect();
    let results = stream.submit(4, full).await;
    assert_eq!(results.len(), 8_190);
    assert!(results.iter().all(|result| result.status == Status::Ok));
    assert_eq!(stream.balance(10).await, 8_190);
    server.stop().await;
}

#[tokio::test]
async fn bad_handshakes_are_refused() {
    let server = TestServer::start(LimitsConfig::default()).await;
    let secret = server.gateway.secret_bytes().unwrap();

    // Unknown gateway.
    let (mut stream, nonce) = server.connect().await;
    let proof = auth::proof(&secret, &nonce, "intruder");
    stream
        .send(
            1,
            &Message::Hello {
                gateway: "intruder".into(),
                proof,
            },
        )
        .await;
    stream.expect_error(ErrorCode::UnknownGateway).await;
    stream.expect_closed().await;

    // Right name, wrong secret.
    let (mut stream, nonce) = server.connect().await;
    let proof = auth::proof(b"not-the-secret-at-all", &nonce, &server.gateway.name);
    stream
        .send(
            1,
            &Message::Hello {
                gateway: server.gateway.name.clone(),
                proof,
            },
        )
        .await;
    stream.expect_error(ErrorCode::BadProof).await;
    stream.expect_closed().await;

    // A proof for another connection's nonce (replay).
    let (mut stream, _nonce) = server.connect().await;
    let proof = auth::proof(&secret, &[0u8; 32], &server.gateway.name);
    stream
        .send(
            1,
            &Message::Hello {
                gateway: server.gateway.name.clone(),
                proof,
            },
        )
        .await;
    stream.expect_error(ErrorCode::BadProof).await;

    // Commands before the handshake.
    let (mut stream, _nonce) = server.connect().await;
    stream
        .send(
            1,
            &Message::Submit {
                commands: vec![open(1, 10)],
            },
        )
        .await;
    stream.expect_error(ErrorCode::HandshakeRequired).await;
    stream.expect_closed().await;

    // And nothing of it was applied.
    let mut good = server.authenticated().await;
    good.send(
        2,
        &Message::Query {
            queries: vec![Query::Balance {
                account: AccountId(10),
            }],
        },
    )
    .await;
    let frame = good.read_frame().await.unwrap();
    assert!(matches!(
        frame.message,
        Message::QueryResults { ref replies } if replies[..] == [QueryReply::Refused(Status::UnknownAccount)]
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_half_frame_is_dropped_and_idle_connections_close() {
    let limits = LimitsConfig {
        read_timeout_ms: 300,
        idle_timeout_ms: 600,
        handshake_timeout_ms: 300,
        ..LimitsConfig::default()
    };
    let server = TestServer::start(limits).await;

    let mut stalled = server.authenticated().await;
    let frame = encode(
        1,
        &Message::Submit {
            commands: vec![open(1, 10)],
        },
    );
    stalled.write_raw(&frame[..20]).await;
    stalled.expect_error(ErrorCode::ReadTimeout).await;
    stalled.expect_closed().await;

    let mut idle = server.authenticated().await;
    idle.expect_error(ErrorCode::IdleTimeout).await;
    idle.expect_closed().await;

    // A silent client that never completes the handshake is dropped too.
    let (mut silent, _nonce) = server.connect().await;
    assert!(silent
        .read_frame()
        .await
        .is_some_and(|frame| matches!(frame.message, Message::Error { .. })));
    server.stop().await;
}

#[tokio::test]
async fn connection_and_inflight_bounds_are_enforced() {
    let limits = LimitsConfig {
        connections_max: 2,
        inflight_max: 1,
        ..LimitsConfig::default()
    };
    let server = TestServer::start(limits).await;
    let mut first = server.authenticated().await;
    let _second = server.authenticated().await;

    // The third connection gets an error frame instead of a challenge.
    let mut third = RawConnection::open(server.addr()).await;
    third.expect_error(ErrorCode::TooManyConnections).await;
    third.expect_closed().await;

    // 50 requests written at once with one allowed in flight: the ones that
    // arrive while another is being logged are refused, each with its own id;
    // every request gets exactly one answer, in order.
    first.submit(1, vec![open(1, 10)]).await;
    let mut burst = Vec::new();
    for request in 0..50u64 {
        burst.extend(encode(
            100 + request,
            &Message::Submit {
                commands: vec![deposit(1_000 + request as u128, 10, 1)],
            },
        ));
    }
    first.write_raw(&burst).await;
    let (mut done, mut refused) = (0i64, 0);
    for expected_id in 100..150 {
        let frame = first.read_frame().await.unwrap();
        assert_eq!(
            frame.request_id, expected_id,
            "replies come in request order"
        );
        match frame.message {
            Message::Results { .. } => done += 1,
            Message::Error {
                code: ErrorCode::TooManyInFlight,
                ..
            } => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(done >= 1 && refused >= 1, "done {done}, refused {refused}");
    assert_eq!(first.balance(10).await, done);
    server.stop().await;
}

/// A gateway that keeps sending but never reads its replies fills the
/// server's socket buffer; after the read timeout without progress the
/// server drops it, so it cannot pin a connection or block shutdown.
#[tokio::test]
async fn a_gateway_that_stops_reading_is_disconnected() {
    let limits = LimitsConfig {
        read_timeout_ms: 300,
        ..LimitsConfig::default()
    };
    let server = TestServer::start(limits).await;
    let mut setup = server.authenticated().await;
    setup.submit(1, vec![open(1, 10)]).await;

    let lazy = server.authenticated().await;
    let (stream, _) = lazy.into_parts();
    let (reader, mut writer) = stream.into_split();
    // Each reply is about 0.5 MB (8,190 balances); 64 of them far exceed
    // what the sockets buffer. Written from a task: once the server stops
    // reading, these writes block too.
    let query = Message::Query {
        queries: vec![
            Query::Balance {
                account: AccountId(10)
            };
            8_190
        ],
    };
    let frame = encode(2, &query);
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for _ in 0..64 {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        // Keep the write half open without reading anything.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });

    let stats = std::sync::Arc::clone(&server.server.as_ref().unwrap().stats);
    let open = |stats: &payrail_api::server::ServerStats| {
        stats
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Bounded: 10 s for the server to give up on the reader (it waits 300 ms).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while open(&stats) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled gateway is still connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The other connection still works, and shutdown is prompt.
    assert_eq!(setup.balance(10).await, 0);
    flood.abort();
    drop(reader);
    tokio::time::timeout(std::time::Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown is not held up by a stalled gateway");
}
