//! payrail-api: how gateways and operators reach the engine.
//!
//! # Layout
//! - [`wire`]: the binary frame codec (docs/protocol.md).
//! - [`auth`]: gateway authentication (HMAC-SHA256 over a server nonce).
//! - [`config`]: the server's TOML configuration and the local gateway secret.
//! - [`durable`]: crash-safe writes of the files kept outside RocksDB.
//! - [`server`]: the tokio TCP server: handshake, bounds, pipelined requests.
//! - [`serve`]: `payrail serve`: storage, engine and server wired together.
//! - [`tls`]: TLS for gateway connections (rustls), server and client side.
//! - [`client`]: the async, pipelined client library.

pub mod auth;
pub mod client;
pub mod config;
pub mod durable;
pub mod operations;
pub mod qr;
pub mod qr_pay;
pub mod serve;
pub mod server;
pub mod tls;
pub mod wire;
