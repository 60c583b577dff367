//! Test helpers: a raw-frame connection to a real server, and command builders.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use payrail_api::auth;
use payrail_api::config::GatewayConfig;
use payrail_api::wire::{self, ErrorCode, Frame, Message, WireLimits};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, CommandResult, Currency, OpenAccount, Query,
    QueryReply,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(15);

/// One connection speaking frames, with its own read buffer.
pub struct RawConnection {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

pub fn encode(request_id: u64, message: &Message) -> Vec<u8> {
    let mut frame = Vec::new();
    wire::encode(request_id, message, &mut frame).unwrap();
    frame
}

/// Recomputes both checksums of a hand-edited frame.
pub fn reseal(frame: &mut [u8]) {
    let body_checksum = crc32c::crc32c(&frame[32..]);
    frame[24..28].copy_from_slice(&body_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&frame[..28]);
    frame[28..32].copy_from_slice(&header_checksum.to_le_bytes());
}

impl RawConnection {
    /// Connects without reading anything.
    pub async fn open(addr: SocketAddr) -> RawConnection {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        RawConnection {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Connects and reads the server's challenge.
    pub async fn connect(addr: SocketAddr) -> (RawConnection, [u8; 32]) {
        let mut connection = RawConnection::open(addr).await;
        let frame = connection.read_frame().await.expect("a challenge");
        let Message::Challenge { nonce } = frame.message else {
            panic!("expected a challenge, got {frame:?}")
        };
        (connection, nonce)
    }

    /// Connects and completes the handshake.
    pub async fn authenticated(addr: SocketAddr, gateway: &GatewayConfig) -> RawConnection {
        let (mut connection, nonce) = RawConnection::connect(addr).await;
        let secret = gateway.secret_bytes().unwrap();
        let proof = auth::proof(&secret, &nonce, &gateway.name);
        connection
            .send(
                1,
                &Message::Hello {
                    gateway: gateway.name.clone(),
                    proof,
                },
            )
            .await;
        let frame = connection.read_frame().await.expect("a welcome");
        assert!(
            matches!(frame.message, Message::Welcome { .. }),
            "{frame:?}"
        );
        connection
    }

    /// The socket and any bytes read past the last frame.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buffer)
    }

    pub async fn send(&mut self, request_id: u64, message: &Message) {
        self.write_raw(&encode(request_id, message)).await;
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one frame; None if the server closed the connection first.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let limits = WireLimits::default();
        let mut chunk = vec![0u8; 256 * 1024];
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((frame, consumed)) = wire::decode(&self.buffer, &limits).unwrap() {
                    self.buffer.drain(..consumed);
                    return Some(frame);
                }
                let read = self.stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                self.buffer.extend_from_slice(&chunk[..read]);
            }
        })
        .await
        .expect("the server answered in time")
    }

    pub async fn expect_error(&mut self, code: ErrorCode) {
        let frame = self.read_frame().await.expect("an error frame");
        match frame.message {
            Message::Error { code: got, message } => {
                assert_eq!(got, code, "message: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }

    pub async fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut byte))
            .await
            .expect("closed in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "expected the connection to be closed, read {read:?}"
        );
    }

    pub async fn submit(&mut self, request_id: u64, commands: Vec<Command>) -> Vec<CommandResult> {
        self.send(request_id, &Message::Submit { commands }).await;
        let frame = self.read_frame().await.expect("results");
        assert_eq!(frame.request_id, request_id);
        match frame.message {
            Message::Results { results } => results,
            other => panic!("expected results, got {other:?}"),
        }
    }

    pub async fn query(&mut self, request_id: u64, queries: Vec<Query>) -> Vec<QueryReply> {
        self.send(request_id, &Message::Query { queries }).await;
        let frame = self.read_frame().await.expect("query results");
        assert_eq!(frame.request_id, request_id);
        match frame.message {
            Message::QueryResults { replies } => replies,
            other => panic!("expected query results, got {other:?}"),
        }
    }

    pub async fn balance(&mut self, account: u64) -> i64 {
        match self
            .query(
                u64::MAX,
                vec![Query::Balance {
                    account: AccountId(account),
                }],
            )
            .await[..]
        {
            [QueryReply::Balance(view)] => view.balance,
            ref other => panic!("unexpected replies {other:?}"),
        }
    }
}

pub fn open_customer(id: u128, account: u64, currency: Currency) -> Command {
    Command::new(
        id,
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind: AccountKind::Customer,
            currency,
            kyc_tier: 1,
            mcc: 0,
        }),
    )
}

pub fn deposit(id: u128, account: u64, amount: u64) -> Command {
    Command::new(
        id,
        CommandKind::Deposit {
            account: AccountId(account),
            amount,
            currency: Currency::CNY,
        },
    )
}

pub fn transfer(id: u128, from: u64, to: u64, amount: u64) -> Command {
    Command::new(
        id,
        CommandKind::Transfer {
            from: AccountId(from),
            to: AccountId(to),
            amount,
            currency: Currency::CNY,
            context: payrail_engine::RiskContext::NONE,
        },
    )
}
pub mod process;
