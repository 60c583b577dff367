//! The async client library: one pipelined connection to a payrail server.
//!
//! ```text
//! Client::submit / query / status ──▶ writer task: assign request id, encode, write
//!                                      (many requests in flight, bounded by the
//!                                      server's `inflight_max`: a semaphore)
//! Client::execute ──▶ batcher task: collect single commands for up to
//!                     `auto_batch_delay` or `auto_batch_max` ──▶ one submit
//! socket ──▶ reader task: decode replies, route each by request id to its caller
//! ```
//!
//! A [`Client`] is cheap to clone (an `Arc` inside) and can be used from
//! many tasks at once. It must be created and used inside a tokio runtime.
//!
//! # Retries and idempotency
//!
//! When the connection drops, every request in flight fails with
//! [`ClientError::ConnectionLost`], and a request that gets no reply in time
//! fails with [`ClientError::Timeout`]. In both cases the commands may or may
//! not have been applied. Retry them **with the same command ids**: the
//! engine remembers every command id it applied and answers a retry with the
//! first result, so a retry never applies a command twice. The next request
//! after a drop reconnects by itself (a bounded number of attempts, with
//! backoff). Requests that were never written to the socket are retried on a
//! new connection automatically.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use payrail_engine::budget::Category;
use payrail_engine::history::{HistoryPage, Movement};
use payrail_engine::instrument::InstrumentView;
use payrail_engine::risk::bounds::AUDIT_ENTRIES_MAX;
use payrail_engine::risk::{AuditEntry, RiskPolicy, RuleSet};
use payrail_engine::{
    AccountId, Command, CommandId, CommandKind, CommandResult, InstrumentBind, InstrumentId, Query,
    QueryReply, Status,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

/// The reading half of a connection: a TCP socket's or a TLS stream's.
type Reader = Box<dyn AsyncRead + Unpin + Send>;
/// The writing half of a connection.
type Writer = Box<dyn AsyncWrite + Unpin + Send>;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::auth;
use crate::config::{self, ConfigError};
use crate::wire::{self, ErrorCode, Message, QrPaymentRequest, TxSource, WireLimits, QR_BATCH_MAX};

/// Default for [`ClientConfig::auto_batch_max`]: the engine's batch limit.
pub const AUTO_BATCH_MAX_DEFAULT: usize = payrail_engine::limits::BATCH_COMMANDS_MAX;
/// Default for [`ClientConfig::auto_batch_delay`].
pub const AUTO_BATCH_DELAY_DEFAULT: Duration = Duration::from_micros(200);
/// Default for [`ClientConfig::connect_timeout`].
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default for [`ClientConfig::request_timeout`].
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default for [`ClientConfig::connect_attempts`].
pub const CONNECT_ATTEMPTS_DEFAULT: u32 = 3;

/// First wait between two connection attempts; it doubles each time.
const CONNECT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// Most times a request that was never written is tried on a new connection.
const REQUEST_SEND_ATTEMPTS_MAX: u32 = 3;
/// Most automatic batches submitted at once (the connection's in-flight
/// semaphore bounds what reaches the server; this bounds waiting tasks).
const AUTO_BATCHES_INFLIGHT_MAX: usize = 64;

/// Where the server is and who this client is.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub addr: String,
    /// The gateway name the server knows this client by.
    pub gateway: String,
    /// The gateway's shared secret (never sent; only an HMAC proof is).
    pub secret: Vec<u8>,
    /// Longest wait for one connection attempt, handshake included.
    pub connect_timeout: Duration,
    /// Longest wait for one request's reply, from the moment it has a
    /// connection (waiting for an in-flight slot included).
    pub request_timeout: Duration,
    /// Most commands [`Client::execute`] puts in one request (capped by the
    /// server's batch limit).
    pub auto_batch_max: usize,
    /// How long [`Client::execute`] waits after the first command of a batch
    /// for more to join it.
    pub auto_batch_delay: Duration,
    /// Connection attempts before a request gives up (at least 1).
    pub connect_attempts: u32,
    /// TLS to the server (which must have `[tls]` on); None: plain TCP.
    pub tls: Option<crate::tls::ClientTls>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never appear in logs.
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("gateway", &self.gateway)
            .field("secret", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("auto_batch_max", &self.auto_batch_max)
            .field("auto_batch_delay", &self.auto_batch_delay)
            .field("connect_attempts", &self.connect_attempts)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientConfig {
    /// A config with the default timeouts and batching.
    pub fn new(addr: impl Into<String>, gateway: impl Into<String>, secret: Vec<u8>) -> Self {
        ClientConfig {
            addr: addr.into(),
            gateway: gateway.into(),
            secret,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            auto_batch_max: AUTO_BATCH_MAX_DEFAULT,
            auto_batch_delay: AUTO_BATCH_DELAY_DEFAULT,
            connect_attempts: CONNECT_ATTEMPTS_DEFAULT,
            tls: None,
        }
    }

    /// The same config, connecting over TLS.
    pub fn with_tls(self, tls: crate::tls::ClientTls) -> Self {
        ClientConfig {
            tls: Some(tls),
            ..self
        }
    }

    /// A config for the local gateway of a server's data directory: the
    /// secret that `payrail serve` created there on its first start.
    pub fn local(addr: impl Into<String>, data_dir: impl AsRef<Path>) -> Result<Self, ClientError> {
        let data_dir = data_dir.as_ref();
        let gateway = config::read_local_gateway(data_dir)
            .map_err(|error| local_gateway_error(data_dir, error))?;
        let path = data_dir.join(config::LOCAL_GATEWAY_FILE);
        let secret = gateway.secret_bytes().ok_or_else(|| ClientError::Config {
            message: format!(
                "{} holds no valid secret (hex, at least 16 bytes)",
                path.display()
            ),
        })?;
        Ok(ClientConfig::new(addr, gateway.name, secret))
    }
}

fn local_gateway_error(data_dir: &Path, error: ConfigError) -> ClientError {
    let path = data_dir.join(config::LOCAL_GATEWAY_FILE);
    let message = match error {
        ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => format!(
            "no gateway secret in {}: start the server once with `payrail serve`, or pass --data-dir",
            path.display()
        ),
        ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => format!(
            "cannot read the gateway secret in {}: permission denied (only the user who runs `payrail serve` can read it)",
            path.display()
        ),
        ConfigError::Read { source, .. } => {
            format!("cannot read the gateway secret in {}: {}", path.display(), io_reason(&source))
        }
        other => format!("the gateway secret file is not valid: {other}"),
    };
    ClientError::Config { message }
}

/// The limits the server announced in its `Welcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest frame the server accepts, header included.
    pub frame_bytes_max: u32,
    /// Most commands (or queries) in one request.
    pub batch_commands_max: u32,
    /// Most requests in flight on one connection.
    pub inflight_max: u32,
}

/// Why a request (or connecting) failed. Every message reads as a sentence.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection could be made (after every attempt).
    #[error("cannot reach payrail at {addr}: {reason} (is `payrail serve` running?)")]
    Connect { addr: String, reason: String },
    /// The server turned the gateway away during the handshake.
    #[error("the server refused gateway '{gateway}': {}", gateway_refusal(*code, message))]
    GatewayRefused {
        gateway: String,
        code: ErrorCode,
        message: String,
    },
    /// The server refused the connection itself (too many connections,
    /// shutting down, ...).
    #[error("payrail at {addr} refused the connection: {} ({})", clause(message), snake_case(code.name()))]
    ConnectionRefused {
        addr: String,
        code: ErrorCode,
        message: String,
    },
    /// The server answered the request with an `Error` frame.
    #[error("the server refused the request: {} ({})", clause(message), snake_case(code.name()))]
    Server { code: ErrorCode, message: String },
    /// The connection dropped while the request was in flight.
    #[error(
        "the connection to payrail at {addr} was lost ({reason}): the request may or may not \
         have been applied; retry it with the same command ids"
    )]
    ConnectionLost { addr: String, reason: String },
    /// No reply came within the request timeout.
    #[error(
        "no reply from payrail at {addr} within {}: the request may or may not have been \
         applied; retry it with the same command ids",
        human_duration(*after)
    )]
    Timeout { addr: String, after: Duration },
    /// The batch is larger than the server accepts; nothing was sent.
    #[error("a batch of {count} entries is more than the server accepts ({max}); split it")]
    BatchTooLarge { count: usize, max: u32 },
    /// The request does not fit in a frame the server accepts; nothing was sent.
    #[error("the request cannot be sent: {reason}")]
    Encode { reason: String },
    /// The server sent something this client does not understand.
    #[error("payrail at {addr} sent something unexpected: {reason}")]
    Protocol { addr: String, reason: String },
    /// The client's configuration is unusable (for example no secret).
    #[error("{message}")]
    Config { message: String },
}

impl ClientError {
    /// Whether the request may have been applied although no result came
    /// back: retry it with the same command ids to learn its outcome.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectionLost { .. } | ClientError::Timeout { .. }
        )
    }

    /// Whether trying to connect again may help.
    fn connect_may_succeed_later(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectionLost { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::ConnectionRefused { code, .. } => matches!(
                code,
                ErrorCode::TooManyConnections | ErrorCode::ShuttingDown | ErrorCode::Overloaded
            ),
            _ => false,
        }
    }
}

fn gateway_refusal(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::UnknownGateway => "unknown gateway".to_owned(),
        ErrorCode::BadProof => {
            "wrong secret (the proof does not match the server's secret for it)".to_owned()
        }
        _ => format!("{} ({})", clause(message), snake_case(code.name())),
    }
}

/// A stable name in snake_case ("TooManyInFlight" becomes
/// "too_many_in_flight"); a name already in snake_case is kept.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A server's sentence as part of ours: "The server is shutting down." becomes
/// "the server is shutting down" (an acronym such as "HMAC" is kept).
fn clause(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(message.chars().skip(1))
            .collect(),
        _ => message.to_owned(),
    }
}

fn human_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else if duration >= Duration::from_millis(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} µs", duration.as_micros())
    }
}

/// An io error as the end of a sentence: "connection refused", not
/// "Connection refused (os error 111)".
fn io_reason(error: &io::Error) -> String {
    let text = match error.kind() {
        io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
        io::ErrorKind::TimedOut => return "timed out".to_owned(),
        io::ErrorKind::PermissionDenied => return "permission denied".to_owned(),
        io::ErrorKind::UnexpectedEof => return "the server closed the connection".to_owned(),
        _ => error.to_string(),
    };
    let text = match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// A fresh user-presented payment code: 18 decimal digits, uniform over
/// [10^17, 10^18), drawn from the operating system's CSPRNG. Codes are
/// drawn here, at the edge, and enter the ledger through the log in
/// `CommandKind::IssuePaymentCode` (the ledger itself never draws anything).
/// A code that collides with a live one is refused with
/// `payment_code_taken`: draw another.
pub fn draw_payment_code() -> u64 {
    use rand::Rng as _;
    rand::rngs::OsRng.gen_range(
        payrail_engine::limits::PAYMENT_CODE_MIN..=payrail_engine::limits::PAYMENT_CODE_MAX,
    )
}

/// One category's spending in a month and its budget, in minor units of
/// the account's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendingLine {
    pub category: Category,
    pub spent: u64,
    pub budget: Option<u64>,
}

/// A pipelined connection to a payrail server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    core: Arc<Core>,
    batcher: Arc<BatcherHandle>,
}

impl Client {
    /// Connects and authenticates (retrying up to `connect_attempts` times).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let core = Arc::new(Core {
            config,
            current: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
        });
        core.connection().await?;
        let capacity = core.config.auto_batch_max.clamp(1, AUTO_BATCH_MAX_DEFAULT) * 2;
        let (sender, receiver) = mpsc::channel(capacity);
        let task = tokio::spawn(run_batcher(Arc::clone(&core), receiver)).abort_handle();
        Ok(Client {
            core,
            batcher: Arc::new(BatcherHandle { sender, task }),
        })
    }

    /// The limits of the current connection, if there is one.
    pub fn server_limits(&self) -> Option<ServerLimits> {
        self.core.current().map(|connection| connection.limits)
    }

    /// Submits one batch of commands as one request; one result per command,
    /// in order. A batch larger than the server's limit is refused here
    /// without sending anything; an empty batch sends nothing.
    pub async fn submit(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>, ClientError> {
        self.core.submit(commands).await
    }

    /// Submits merchant-presented QR payments (raw payloads, parsed by the
    /// server) as one `SubmitQr` request; one result per payment, in order.
    /// Each payment's id is its command id: refund it with
    /// `CommandKind::Refund { payment: id, .. }`. More than
    /// [`QR_BATCH_MAX`] payments (or the server's batch limit) are refused
    /// here without sending anything; an empty batch sends nothing.
    pub async fn submit_qr(
        &self,
        payments: Vec<QrPaymentRequest>,
    ) -> Result<Vec<CommandResult>, ClientError> {
        if payments.is_empty() {
            return Ok(Vec::new());
        }
        let count = payments.len();
        if count > QR_BATCH_MAX as usize {
            return Err(ClientError::BatchTooLarge {
                count,
                max: QR_BATCH_MAX,
            });
        }
        self.core.check_batch(count).await?;
        match self.core.request(Message::SubmitQr { payments }).await? {
            Message::Results { results } if results.len() == count => Ok(results),
            Message::Results { results } => Err(self
                .core
                .protocol(format!("{} results for {count} QR payments", results.len()))),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// Asks a batch of read-only queries; one reply per query, in order.
    pub async fn query(&self, queries: Vec<Query>) -> Result<Vec<QueryReply>, ClientError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let count = queries.len();
        self.core.check_batch(count).await?;
        match self.core.request(Message::Query { queries }).await? {
            Message::QueryResults { replies } if replies.len() == count => Ok(replies),
            Message::QueryResults { replies } => Err(self
                .core
                .protocol(format!("{} replies for {count} queries", replies.len()))),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// The server's counters (`engine.*` and `server.*`), by name.
    pub async fn status(&self) -> Result<Vec<(String, u64)>, ClientError> {
        match self.core.request(Message::Status).await? {
            Message::StatusReply { fields } => Ok(fields),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// Puts a risk policy in force through the server's log. `Ok(Ok(digest))`:
    /// in force from now on; `Ok(Err(status))`: the engine could not log it.
    pub async fn set_risk_policy(
        &self,
        policy: RiskPolicy,
    ) -> Result<Result<[u8; 32], Status>, ClientError> {
        let policy = Box::new(policy);
        match self.core.request(Message::SetRiskPolicy { policy }).await? {
            Message::RiskPolicySet {
                status: Status::Ok,
                digest,
            } => Ok(Ok(digest)),
            Message::RiskPolicySet { status, .. } => Ok(Err(status)),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// A page of `account`'s movements with timestamps in `from_ns..=to_ns`,
    /// newest first, after `cursor` (0: from the newest), at most `limit`
    /// entries (0: the server's default of 50; at most 1,000).
    pub async fn history(
        &self,
        account: AccountId,
        from_ns: u64,
        to_ns: u64,
        cursor: u128,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        let query = Message::HistoryQuery {
            account,
            from_ns,
            to_ns,
            cursor,
            limit,
        };
        match self.core.request(query).await? {
            Message::HistoryPage {
                entries,
                next_cursor,
            } => Ok(HistoryPage {
                entries,
                next_cursor,
            }),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// The digest of the risk policy in force and the rules that are on.
    pub async fn risk_policy(&self) -> Result<([u8; 32], RuleSet), ClientError> {
        match self.query(vec![Query::RiskPolicy]).await?.first() {
            Some(QueryReply::RiskPolicy { digest, rules }) => Ok((*digest, *rules)),
            other => Err(self
                .core
                .protocol(format!("{other:?} as the answer to a risk policy query"))),
        }
    }

    /// The audited risk decisions of the customer holding `account`, newest
    /// first (one query per entry, in one request), or why not.
    pub async fn risk_audit(
        &self,
        account: AccountId,
    ) -> Result<Result<Vec<AuditEntry>, Status>, ClientError> {
        let queries = (0..AUDIT_ENTRIES_MAX as u8)
            .map(|index| Query::RiskAudit { account, index })
            .collect();
        let mut entries = Vec::new();
        for (index, reply) in self.query(queries).await?.into_iter().enumerate() {
            match reply {
                QueryReply::RiskAudit {
                    entries: count,
                    entry,
                } => {
                    if index < usize::from(count) {
                        entries.push(entry);
                    }
                }
                QueryReply::Refused(status) => return Ok(Err(status)),
                other => {
                    return Err(self
                        .core
                        .protocol(format!("{other:?} as the answer to an audit query")))
                }
            }
        }
        Ok(Ok(entries))
    }

    /// A customer account's spending per category in `month` (0: the
    /// current month) with each category's budget, in category order, and
    /// the month answered; or why not.
    pub async fn spending(
        &self,
        account: AccountId,
        month: u32,
    ) -> Result<Result<(u32, Vec<SpendingLine>), Status>, ClientError> {
        let queries = Category::ALL
            .iter()
            .map(|category| Query::Spending {
                account,
                month,
                category: category.code(),
            })
            .collect();
        let mut lines = Vec::new();
        let mut answered = month;
        for reply in self.query(queries).await? {
            match reply {
                QueryReply::Spending {
                    month,
                    category,
                    spent,
                    budget,
                } => {
                    let Some(category) = Category::from_code(category) else {
                        return Err(self
                            .core
                            .protocol(format!("unknown category {category} in a reply")));
                    };
                    answered = month;
                    lines.push(SpendingLine {
                        category,
                        spent,
                        budget,
                    });
                }
                QueryReply::Refused(status) => return Ok(Err(status)),
                other => {
                    return Err(self
                        .core
                        .protocol(format!("{other:?} as the answer to a spending query")))
                }
            }
        }
        Ok(Ok((answered, lines)))
    }

    /// The funding instruments of the customer holding `account`, in
    /// number order (one query per place, in one request), or why not.
    pub async fn instruments(
        &self,
        account: AccountId,
    ) -> Result<Result<Vec<InstrumentView>, Status>, ClientError> {
        let queries = (0..payrail_engine::limits::CUSTOMER_INSTRUMENTS_MAX_LIMIT)
            .map(|index| Query::Instrument { account, index })
            .collect();
        let mut views = Vec::new();
        for reply in self.query(queries).await? {
            match reply {
                QueryReply::Instrument(view) => views.push(view),
                // Past the customer's last instrument.
                QueryReply::Refused(Status::UnknownInstrument) => break,
                QueryReply::Refused(status) => return Ok(Err(status)),
                other => {
                    return Err(self
                        .core
                        .protocol(format!("{other:?} as the answer to an instrument query")))
                }
            }
        }
        Ok(Ok(views))
    }

    /// Binds a funding instrument (docs/instruments.md) with command id `id`.
    pub async fn bind_instrument(
        &self,
        id: u128,
        bind: InstrumentBind,
    ) -> Result<CommandResult, ClientError> {
        self.execute(Command::new(id, CommandKind::BindInstrument(bind)))
            .await
    }

    /// Reports the gateway's check of an instrument.
    pub async fn verify_instrument(
        &self,
        id: u128,
        instrument: InstrumentId,
        passed: bool,
    ) -> Result<CommandResult, ClientError> {
        let kind = CommandKind::VerifyInstrument { instrument, passed };
        self.execute(Command::new(id, kind)).await
    }

    /// Unbinds an instrument.
    pub async fn unbind_instrument(
        &self,
        id: u128,
        instrument: InstrumentId,
    ) -> Result<CommandResult, ClientError> {
        let kind = CommandKind::UnbindInstrument { instrument };
        self.execute(Command::new(id, kind)).await
    }

    /// What became of one command: its status, where that comes from, and
    /// the movements it made.
    pub async fn tx(
        &self,
        id: CommandId,
    ) -> Result<(TxSource, Status, Vec<Movement>), ClientError> {
        match self.core.request(Message::TxQuery { id }).await? {
            Message::TxReply {
                source,
                status,
                legs,
            } => Ok((source, status, legs)),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// Asks the server to write a consistent backup of its data directory
    /// to `dir` on its own machine (which must not exist). Returns the log
    /// sequence the backup holds everything up to.
    pub async fn backup(&self, dir: &str) -> Result<u64, ClientError> {
        let request = Message::Backup {
            dir: dir.to_owned(),
        };
        match self.core.request(request).await? {
            Message::BackupReply { last_sequence } => Ok(last_sequence),
            other => Err(self.core.unexpected(other)),
        }
    }

    /// Executes one command. Commands from concurrent callers are batched
    /// automatically into one request (see [`ClientConfig::auto_batch_max`]
    /// and [`ClientConfig::auto_batch_delay`]); on an error every command of
    /// the batch gets it.
    pub async fn execute(&self, command: Command) -> Result<CommandResult, ClientError> {
        let (sender, receiver) = oneshot::channel();
        if self.batcher.sender.send((command, sender)).await.is_err() {
            return Err(self.core.lost("the client's batcher stopped"));
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(self.core.lost("the client's batcher stopped")))
    }
}

/// Owned by the `Client` clones only: when the last one goes, the batcher
/// task sees its channel close and ends.
#[derive(Debug)]
struct BatcherHandle {
    sender: mpsc::Sender<(Command, oneshot::Sender<Result<CommandResult, ClientError>>)>,
    task: AbortHandle,
}

impl Drop for BatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ExecuteReply = oneshot::Sender<Result<CommandResult, ClientError>>;

async fn run_batcher(core: Arc<Core>, mut receiver: mpsc::Receiver<(Command, ExecuteReply)>) {
    let batches = Arc::new(Semaphore::new(AUTO_BATCHES_INFLIGHT_MAX));
    while let Some(first) = receiver.recv().await {
        let max = core.auto_batch_max();
        let deadline = Instant::now() + core.config.auto_batch_delay;
        let mut commands = Vec::with_capacity(max.min(1_024));
        let mut replies = Vec::with_capacity(max.min(1_024));
        commands.push(first.0);
        replies.push(first.1);
        while commands.len() < max {
            let next = match receiver.try_recv() {
                Ok(item) => Some(item),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, receiver.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some((command, reply)) = next else { break };
            commands.push(command);
            replies.push(reply);
        }
        // The semaphore is never closed; if it were, submit without a permit.
        let permit = Arc::clone(&batches).acquire_owned().await.ok();
        let core = Arc::clone(&core);
        tokio::spawn(async move {
            let _permit = permit;
            match core.submit(commands).await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// Connection management, shared by the `Client` clones and the batcher.
#[derive(Debug)]
struct Core {
    config: ClientConfig,
    /// The connection requests use; replaced when it closes.
    current: RwLock<Option<Arc<Connection>>>,
    /// Held while connecting, so concurrent requests make one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl Core {
    fn current(&self) -> Option<Arc<Connection>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The open connection, or a new one.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        if let Some(connection) = self.current().filter(|connection| connection.is_open()) {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.current().filter(|connection| connection.is_open()) {
            return Ok(connection);
        }
        let attempts = self.config.connect_attempts.max(1);
        let mut backoff = CONNECT_BACKOFF_FIRST;
        let mut attempt = 1;
        loop {
            match Connection::open(&self.config).await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::clone(&connection));
                    return Ok(connection);
                }
                Err(error) if attempt < attempts && error.connect_may_succeed_later() => {
                    tracing::debug!(attempt, %error, "connecting to payrail failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn auto_batch_max(&self) -> usize {
        let server_max = self.current().map_or(AUTO_BATCH_MAX_DEFAULT, |connection| {
            connection.limits.batch_commands_max as usize
        });
        self.config.auto_batch_max.min(server_max).max(1)
    }

    async fn check_batch(&self, count: usize) -> Result<(), ClientError> {
        let max = self.connection().await?.limits.batch_commands_max;
        if count > max as usize {
            return Err(ClientError::BatchTooLarge { count, max });
        }
        Ok(())
    }

    async fn submit(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>, ClientError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let count = commands.len();
        self.check_batch(count).await?;
        match self.request(Message::Submit { commands }).await? {
            Message::Results { results } if results.len() == count => Ok(results),
            Message::Results { results } => {
                Err(self.protocol(format!("{} results for {count} commands", results.len())))
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Sends one request and waits for its reply. An `Error` reply becomes
    /// `ClientError::Server`.
    async fn request(&self, message: Message) -> Result<Message, ClientError> {
        let mut message = message;
        let mut attempt = 1;
        loop {
            let connection = self.connection().await?;
            let timeout = self.config.request_timeout;
            let outcome = tokio::time::timeout(timeout, connection.request(message)).await;
            match outcome {
                Err(_elapsed) => {
                    return Err(ClientError::Timeout {
                        addr: self.config.addr.clone(),
                        after: timeout,
                    })
                }
                Ok(Ok(Message::Error { code, message })) => {
                    return Err(ClientError::Server { code, message })
                }
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(RequestError::Failed(error))) => return Err(error),
                // Never written: safe to try again on a new connection.
                Ok(Err(RequestError::NotSent(unsent, reason))) => {
                    if attempt >= REQUEST_SEND_ATTEMPTS_MAX {
                        return Err(self.lost(&reason));
                    }
                    message = unsent;
                    attempt += 1;
                }
            }
        }
    }

    fn lost(&self, reason: &str) -> ClientError {
        ClientError::ConnectionLost {
            addr: self.config.addr.clone(),
            reason: reason.to_owned(),
        }
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            addr: self.config.addr.clone(),
            reason,
        }
    }

    fn unexpected(&self, message: Message) -> ClientError {
        self.protocol(format!("a {} message as a reply", message.kind_name()))
    }
}

/// How one request on one connection failed.
enum RequestError {
    /// The request never reached the socket; here it is back.
    NotSent(Message, String),
    Failed(ClientError),
}

/// What the writer task is asked to send.
struct Outgoing {
    message: Message,
    reply: oneshot::Sender<Result<Message, ClientError>>,
    /// Held until the reply arrives (or the connection fails), so the
    /// server never sees more than `inflight_max` requests from us.
    permit: OwnedSemaphorePermit,
}

/// A request written and waiting for its reply.
struct Waiting {
    reply: oneshot::Sender<Result<Message, ClientError>>,
    _permit: OwnedSemaphorePermit,
}

/// State the reader and writer tasks share.
struct Shared {
    addr: String,
    /// Set once, when the connection fails or closes; under the `waiting`
    /// lock, so nothing is registered after the waiting requests are failed.
    closed: AtomicBool,
    waiting: Mutex<HashMap<u64, Waiting>>,
    /// Closed together with the connection, so requests waiting for a slot
    /// go to a new connection.
    inflight: Arc<Semaphore>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a request about to be written; gives it back if closed.
    fn register(&self, request_id: u64, waiting: Waiting) -> Result<(), Waiting> {
        let mut map = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(waiting);
        }
        map.insert(request_id, waiting);
        Ok(())
    }

    fn take(&self, request_id: u64) -> Option<Waiting> {
        self.lock().remove(&request_id)
    }

    /// Marks the connection closed and fails every request in flight.
    fn fail(&self, reason: &str) {
        let drained: Vec<Waiting> = {
            let mut map = self.lock();
            self.closed.store(true, Ordering::Release);
            map.drain().map(|(_, waiting)| waiting).collect()
        };
        self.inflight.close();
        if !drained.is_empty() {
            tracing::debug!(addr = %self.addr, in_flight = drained.len(), reason, "connection to payrail lost");
        }
        for waiting in drained {
            let _ = waiting.reply.send(Err(ClientError::ConnectionLost {
                addr: self.addr.clone(),
                reason: reason.to_owned(),
            }));
        }
    }
}

/// One authenticated connection with its reader and writer tasks.
struct Connection {
    limits: ServerLimits,
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    reader: AbortHandle,
    writer: AbortHandle,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("limits", &self.limits)
            .field("open", &self.is_open())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Nobody can send on it any more: stop both tasks and close the socket.
        self.reader.abort();
        self.writer.abort();
        self.shared.fail("the client closed the connection");
    }
}

impl Connection {
    fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Connects, authenticates and starts the reader and writer tasks.
    async fn open(config: &ClientConfig) -> Result<Connection, ClientError> {
        let connect = async {
            let stream =
                TcpStream::connect(&config.addr)
                    .await
                    .map_err(|error| ClientError::Connect {
                        addr: config.addr.clone(),
                        reason: io_reason(&error),
                    })?;
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer): (Reader, Writer) = match &config.tls {
                None => {
                    let (reader, writer) = stream.into_split();
                    (Box::new(reader), Box::new(writer))
                }
                Some(tls) => {
                    let stream = tls
                        .connector()
                        .connect(tls.server_name(), stream)
                        .await
                        .map_err(|error| ClientError::Connect {
                            addr: config.addr.clone(),
                            reason: format!("the TLS handshake failed: {error}"),
                        })?;
                    let (reader, writer) = tokio::io::split(stream);
                    (Box::new(reader), Box::new(writer))
                }
            };
            let (buffer, limits) = handshake(config, &mut reader, &mut writer).await?;
            Ok::<_, ClientError>((reader, writer, buffer, limits))
        };
        let (reader, writer, buffer, limits) =
            tokio::time::timeout(config.connect_timeout, connect)
                .await
                .map_err(|_| ClientError::Connect {
                    addr: config.addr.clone(),
                    reason: format!(
                        "no answer within {}",
                        human_duration(config.connect_timeout)
                    ),
                })??;
        let shared = Arc::new(Shared {
            addr: config.addr.clone(),
            closed: AtomicBool::new(false),
            waiting: Mutex::new(HashMap::new()),
            inflight: Arc::new(Semaphore::new(limits.inflight_max.max(1) as usize)),
        });
        let (outgoing, receiver) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_replies(reader, buffer, Arc::clone(&shared))).abort_handle();
        let writer = tokio::spawn(write_requests(
            writer,
            receiver,
            limits,
            Arc::clone(&shared),
        ))
        .abort_handle();
        Ok(Connection {
            limits,
            shared,
            outgoing,
            reader,
            writer,
        })
    }

    async fn request(&self, message: Message) -> Result<Message, RequestError> {
        let permit = match Arc::clone(&self.shared.inflight).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => {
                return Err(RequestError::NotSent(
                    message,
                    "the connection closed".to_owned(),
                ))
            }
        };
        let (reply, receiver) = oneshot::channel();
        if let Err(mpsc::error::SendError(outgoing)) = self.outgoing.send(Outgoing {
            message,
            reply,
            permit,
        }) {
            return Err(RequestError::NotSent(
                outgoing.message,
                "the connection closed".to_owned(),
            ));
        }
        match receiver.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(RequestError::Failed(error)),
            Err(_) => Err(RequestError::Failed(ClientError::ConnectionLost {
                addr: self.shared.addr.clone(),
                reason: "the connection closed".to_owned(),
            })),
        }
    }
}

/// Reads a `Challenge`, answers `Hello`, expects `Welcome`.
async fn handshake(
    config: &ClientConfig,
    reader: &mut Reader,
    writer: &mut Writer,
) -> Result<(BytesMut, ServerLimits), ClientError> {
    let addr = &config.addr;
    let mut buffer = BytesMut::with_capacity(4 * 1024);
    let nonce = match read_frame(reader, &mut buffer, addr).await? {
        Message::Challenge { nonce } => nonce,
        Message::Error { code, message } => {
            return Err(ClientError::ConnectionRefused {
                addr: addr.clone(),
                code,
                message,
            })
        }
        other => {
            return Err(ClientError::Protocol {
                addr: addr.clone(),
                reason: format!("a {} message instead of a challenge", other.kind_name()),
            })
        }
    };
    let hello = Message::Hello {
        gateway: config.gateway.clone(),
        proof: auth::proof(&config.secret, &nonce, &config.gateway),
    };
    let mut frame = Vec::new();
    wire::encode(0, &hello, &mut frame).map_err(|error| ClientError::Config {
        message: format!("gateway name '{}' cannot be used: {error}", config.gateway),
    })?;
    writer
        .write_all(&frame)
        .await
        .map_err(|error| lost_in_handshake(addr, &error))?;
    // A TLS stream may hold the bytes until flushed.
    writer
        .flush()
        .await
        .map_err(|error| lost_in_handshake(addr, &error))?;
    match read_frame(reader, &mut buffer, addr).await? {
        Message::Welcome {
            frame_bytes_max,
            batch_commands_max,
            inflight_max,
        } => {
            let limits = ServerLimits {
                frame_bytes_max,
                batch_commands_max,
                inflight_max,
            };
            if batch_commands_max == 0 || inflight_max == 0 {
                return Err(ClientError::Protocol {
                    addr: addr.clone(),
                    reason: format!("unusable limits in its welcome: {limits:?}"),
                });
            }
            Ok((buffer, limits))
        }
        Message::Error { code, message } => match code {
            ErrorCode::UnknownGateway | ErrorCode::BadProof => Err(ClientError::GatewayRefused {
                gateway: config.gateway.clone(),
                code,
                message,
            }),
            _ => Err(ClientError::ConnectionRefused {
                addr: addr.clone(),
                code,
                message,
            }),
        },
        other => Err(ClientError::Protocol {
            addr: addr.clone(),
            reason: format!("a {} message instead of a welcome", other.kind_name()),
        }),
    }
}

fn lost_in_handshake(addr: &str, error: &io::Error) -> ClientError {
    ClientError::Connect {
        addr: addr.to_owned(),
        reason: format!(
            "the connection failed during the handshake: {}",
            io_reason(error)
        ),
    }
}

/// Reads one whole frame during the handshake.
async fn read_frame(
    stream: &mut Reader,
    buffer: &mut BytesMut,
    addr: &str,
) -> Result<Message, ClientError> {
    let limits = WireLimits::default();
    loop {
        match wire::decode(buffer, &limits) {
            Ok(Some((frame, consumed))) => {
                buffer.advance(consumed);
                return Ok(frame.message);
            }
            Ok(None) => match stream.read_buf(buffer).await {
                Ok(0) => {
                    return Err(ClientError::Connect {
                        addr: addr.to_owned(),
                        reason: "the server closed the connection during the handshake".to_owned(),
                    })
                }
                Ok(_) => {}
                Err(error) => return Err(lost_in_handshake(addr, &error)),
            },
            Err(error) => {
                return Err(ClientError::Protocol {
                    addr: addr.to_owned(),
                    reason: format!("an undecodable frame: {error}"),
                })
            }
        }
    }
}

/// Decodes replies and hands each to the request that waits for it.
async fn read_replies(mut reader: Reader, mut buffer: BytesMut, shared: Arc<Shared>) {
    let limits = WireLimits::default();
    loop {
        match wire::decode(&buffer, &limits) {
            Ok(Some((frame, consumed))) => {
                buffer.advance(consumed);
                if frame.request_id == 0 {
                    // Request id 0 is never ours: the server speaks about the
                    // connection (idle timeout, shutdown, a refused frame) and closes it.
                    let reason = match frame.message {
                        Message::Error { code, message } => {
                            format!(
                                "the server said: {} ({})",
                                clause(&message),
                                snake_case(code.name())
                            )
                        }
                        other => format!("an unexpected {} message", other.kind_name()),
                    };
                    shared.fail(&reason);
                    return;
                }
                match shared.take(frame.request_id) {
                    Some(waiting) => {
                        let _ = waiting.reply.send(Ok(frame.message));
                    }
                    None => {
                        tracing::debug!(
                            request_id = frame.request_id,
                            "reply to no request in flight; ignored"
                        )
                    }
                }
            }
            Ok(None) => {
                if buffer.capacity() - buffer.len() < 16 * 1024 {
                    buffer.reserve(64 * 1024);
                }
                match reader.read_buf(&mut buffer).await {
                    Ok(0) => {
                        shared.fail("the server closed the connection");
                        return;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        shared.fail(&io_reason(&error));
                        return;
                    }
                }
            }
            Err(error) => {
                shared.fail(&format!("an undecodable reply: {error}"));
                return;
            }
        }
    }
}

/// Assigns request ids (strictly increasing, from 1), registers each request
/// before writing it, and flushes whenever nothing more is queued.
async fn write_requests(
    writer: Writer,
    mut receiver: mpsc::UnboundedReceiver<Outgoing>,
    limits: ServerLimits,
    shared: Arc<Shared>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut frame = Vec::with_capacity(64 * 1024);
    let mut next_request_id: u64 = 1;
    let wire_limits = WireLimits {
        frame_bytes_max: limits.frame_bytes_max,
        batch_commands_max: limits.batch_commands_max,
    };
    while let Some(outgoing) = receiver.recv().await {
        let request_id = next_request_id;
        next_request_id += 1;
        frame.clear();
        // Refuses what the server would refuse for its size, before sending.
        if let Err(error) =
            wire::encode_with_limits(request_id, &outgoing.message, &wire_limits, &mut frame)
        {
            let _ = outgoing.reply.send(Err(ClientError::Encode {
                reason: error.to_string(),
            }));
            continue;
        }
        let waiting = Waiting {
            reply: outgoing.reply,
            _permit: outgoing.permit,
        };
        if let Err(waiting) = shared.register(request_id, waiting) {
            let _ = waiting.reply.send(Err(ClientError::ConnectionLost {
                addr: shared.addr.clone(),
                reason: "the connection closed".to_owned(),
            }));
            continue;
        }
        if let Err(error) = writer.write_all(&frame).await {
            shared.fail(&io_reason(&error));
            return;
        }
        if receiver.is_empty() {
            if let Err(error) = writer.flush().await {
                shared.fail(&io_reason(&error));
                return;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_sentences() {
        let error = ClientError::Connect {
            addr: "127.0.0.1:7400".into(),
            reason: io_reason(&io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach payrail at 127.0.0.1:7400: connection refused (is `payrail serve` running?)"
        );
        let error = ClientError::GatewayRefused {
            gateway: "x".into(),
            code: ErrorCode::UnknownGateway,
            message: String::new(),
        };
        assert_eq!(
            error.to_string(),
            "the server refused gateway 'x': unknown gateway"
        );
        assert_eq!(human_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(snake_case("TooManyInFlight"), "too_many_in_flight");
        assert_eq!(snake_case("insufficient_funds"), "insufficient_funds");
        assert_eq!(snake_case("Ok"), "ok");
        let error = ClientError::Server {
            code: ErrorCode::Overloaded,
            message: ErrorCode::Overloaded.description().to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "the server refused the request: the server is overloaded; retry later (overloaded)"
        );
        assert_eq!(clause("HMAC failed."), "HMAC failed");
        assert_eq!(human_duration(Duration::from_micros(1_500)), "1 ms");
    }

    #[test]
    fn io_reasons_drop_the_os_error_number() {
        let error = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&error), "no such file or directory");
    }

    #[test]
    fn missing_local_gateway_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let error = ClientConfig::local("127.0.0.1:7400", dir.path()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("payrail serve"), "{text}");
        assert!(text.contains("--data-dir"), "{text}");
        assert!(text.contains("gateway.toml"), "{text}");
    }

    #[test]
    fn payment_codes_have_18_digits() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            let code = draw_payment_code();
            assert_eq!(code.to_string().len(), 18, "{code}");
            seen.insert(code);
        }
        // 1,000 draws from 9 x 10^17 values: a repeat means a broken source.
        assert_eq!(seen.len(), 1_000);
        // Uniform over the range: the leading digit is not stuck.
        let leading: std::collections::BTreeSet<u64> = seen
            .iter()
            .map(|code| code / 100_000_000_000_000_000)
            .collect();
        assert!(leading.len() >= 8, "{leading:?}");
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let config = ClientConfig::new("a:1", "g", vec![0xAB; 32]);
        assert!(!format!("{config:?}").contains("171"));
    }
}
