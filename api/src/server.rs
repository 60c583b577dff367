//! The gateway-facing TCP server.
//!
//! `run(listener, engine, config, shutdown)` accepts connections until
//! `shutdown` resolves, then stops accepting, lets every connection finish the
//! requests it has in flight, and returns. A semaphore bounds connections.
//!
//! Each connection: (1) the server sends a `Challenge`; (2) the gateway
//! answers `Hello` with its name and an HMAC proof; (3) the server answers
//! `Welcome` or an `Error` and closes; (4) requests are read, decoded and
//! handed to the engine as they arrive (pipelined), and a writer task sends
//! the replies back in request order. A frame that breaks the framing (bad
//! magic, checksum, length, kind or body) gets an `Error` frame and closes
//! that connection only; nothing it carried is applied.
//!
//! Each gateway has its own queue into the engine (an engine lane, weighted
//! by its `share`), so one gateway's flood waits in its own queue, and its
//! own bounds: connections open (`max_connections`) and commands in flight
//! over all its connections (`max_in_flight_commands`).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use payrail_engine::pipeline::{EngineHandle, SubmitError};
use payrail_engine::storage::RocksStorage;
use payrail_engine::{Command, CommandKind, CommandResult, QueryReply, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Roles};
use crate::config::{GatewayConfig, LimitsConfig};
use crate::operations;
use crate::qr_pay;
use crate::wire::{self, error_message, Check, ErrorCode, Frame, Message, WireError, WireLimits};

/// Counters of the server itself, reported by `Status` next to the engine's.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub frames_refused: AtomicU64,
    pub requests: AtomicU64,
    pub requests_refused: AtomicU64,
    /// Requests refused because the gateway's roles do not allow them (also
    /// counted in `requests_refused`).
    pub requests_not_permitted: AtomicU64,
    /// Connections refused because their gateway had `max_connections` open
    /// (also counted in `handshakes_failed`).
    pub gateway_connections_refused: AtomicU64,
    /// Requests refused because their gateway had `max_in_flight_commands`
    /// in flight (also counted in `requests_refused`).
    pub gateway_in_flight_refused: AtomicU64,
}

impl ServerStats {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        vec![
            ("connections_accepted", get(&self.connections_accepted)),
            ("connections_open", get(&self.connections_open)),
            ("connections_refused", get(&self.connections_refused)),
            ("handshakes_failed", get(&self.handshakes_failed)),
            ("frames_refused", get(&self.frames_refused)),
            ("requests", get(&self.requests)),
            ("requests_refused", get(&self.requests_refused)),
            ("requests_not_permitted", get(&self.requests_not_permitted)),
            (
                "gateway_connections_refused",
                get(&self.gateway_connections_refused),
            ),
            (
                "gateway_in_flight_refused",
                get(&self.gateway_in_flight_refused),
            ),
        ]
    }
}

/// The reading half of a connection: a TCP socket's, or a TLS stream's.
type Reader = Box<dyn AsyncRead + Unpin + Send>;
/// The writing half of a connection.
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// How the server treats gateways: bounds, who may connect, transport.
#[derive(Clone)]
pub struct Settings {
    pub limits: LimitsConfig,
    pub gateways: Vec<GatewayConfig>,
    /// TLS on every connection (`[tls]` in the config); None: plain TCP.
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("limits", &self.limits)
            .field("gateways", &self.gateways)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What every connection shares.
struct Context {
    engine: EngineHandle,
    /// The engine's storage, read directly for history and backups (never
    /// through the executor); `None` when the server runs without one.
    store: Option<Store>,
    limits: LimitsConfig,
    wire_limits: WireLimits,
    /// Gateway name to what the server knows and counts of it.
    gateways: HashMap<String, Arc<GatewayEntry>>,
    stats: Arc<ServerStats>,
    guesses: GuessThrottle,
    tls: Option<TlsAcceptor>,
}

/// One configured gateway: its secret, roles, engine lane and bounds, and
/// what it has open and in flight now.
struct GatewayEntry {
    secret: Vec<u8>,
    roles: Roles,
    /// A handle on the gateway's own engine lane.
    engine: EngineHandle,
    connections: AtomicU32,
    connections_max: u32,
    in_flight_commands: AtomicU64,
    in_flight_commands_max: u64,
}

impl GatewayEntry {
    /// Takes one of the gateway's connections, if it has one left; the
    /// slot gives it back when dropped.
    fn open_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let taken = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.connections_max).then_some(open + 1)
            });
        taken.is_ok().then(|| ConnectionSlot(Arc::clone(self)))
    }

    /// Counts `commands` more in flight, if that stays within the bound.
    fn reserve(self: &Arc<Self>, commands: u64) -> Option<Reservation> {
        self.in_flight_commands
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_flight| {
                in_flight
                    .checked_add(commands)
                    .filter(|&total| total <= self.in_flight_commands_max)
            })
            .ok()?;
        Some(Reservation {
            gateway: Arc::clone(self),
            commands,
        })
    }
}

/// Commands counted in a gateway's commands in flight, given back when
/// dropped: once the request is answered, or if it never reaches the engine
/// or its reply is never written (the connection ended).
struct Reservation {
    gateway: Arc<GatewayEntry>,
    commands: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let before = self
            .gateway
            .in_flight_commands
            .fetch_sub(self.commands, Ordering::AcqRel);
        debug_assert!(before >= self.commands, "released more than reserved");
    }
}

/// One open connection of a gateway, counted while it lives.
struct ConnectionSlot(Arc<GatewayEntry>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per gateway: how many unknown payment codes it charged in the current
/// window (wall time at the edge; the ledger never sees it). Past
/// `limits.payment_code_misses_max` in `limits.payment_code_window_ms`, its
/// charges are refused with `payment_code_throttled` for one window. The
/// map holds one entry per configured gateway at most.
#[derive(Debug, Default)]
struct GuessThrottle {
    gateways: std::sync::Mutex<HashMap<Arc<str>, GuessWindow>>,
}

#[derive(Debug, Clone, Copy)]
struct GuessWindow {
    started: std::time::Instant,
    misses: u32,
    blocked_until: Option<std::time::Instant>,
}

impl GuessThrottle {
    fn is_blocked(&self, gateway: &Arc<str>) -> bool {
        let gateways = self
            .gateways
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        gateways
            .get(gateway)
            .and_then(|window| window.blocked_until)
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    fn record_misses(&self, gateway: &Arc<str>, misses: u32, limits: &LimitsConfig) {
        let now = std::time::Instant::now();
        let window_length = Duration::from_millis(limits.payment_code_window_ms);
        let mut gateways = self
            .gateways
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = gateways.entry(Arc::clone(gateway)).or_insert(GuessWindow {
            started: now,
            misses: 0,
            blocked_until: None,
        });
        if now.duration_since(window.started) >= window_length {
            *window = GuessWindow {
                started: now,
                misses: 0,
                blocked_until: window.blocked_until,
            };
        }
        window.misses = window.misses.saturating_add(misses);
        if window.misses > limits.payment_code_misses_max {
            window.blocked_until = Some(now + window_length);
            tracing::warn!(%gateway, misses = window.misses, "gateway charges too many unknown payment codes: throttled");
        }
    }
}

fn is_charge(command: &Command) -> bool {
    matches!(command.kind, CommandKind::ChargePaymentCode { .. })
}

/// A bind carrying something that looks like a card number: refused here,
/// at the edge, so that the number never reaches the log (the ledger
/// refuses it too, for any other way in).
fn carries_card_number(command: &Command) -> bool {
    matches!(command.kind, CommandKind::BindInstrument(bind) if bind.carries_card_number())
}

/// The data directory as the server reads it for history and backups.
#[derive(Clone, Debug)]
pub struct Store {
    pub storage: RocksStorage,
    /// The data directory (its gateway.toml goes into backups).
    pub data_dir: PathBuf,
    /// Where backups may be written (config `backup_root`); None: nowhere.
    pub backup_root: Option<PathBuf>,
}

/// Serves gateways on `listener` until `shutdown` resolves. Returns once every
/// connection has finished.
pub async fn run(
    listener: TcpListener,
    engine: EngineHandle,
    store: Option<Store>,
    settings: Settings,
    stats: Arc<ServerStats>,
    shutdown: impl Future<Output = ()>,
) {
    let Settings {
        limits,
        gateways,
        tls,
    } = settings;
    let gateways = gateways
        .iter()
        .filter_map(|gateway| {
            let lane = engine
                .open_lane(gateway.share, gateway.lane_requests_max(&limits))
                .unwrap_or_else(|error| {
                    // The config allows fewer gateways than lanes; an engine
                    // served many times over may still run out.
                    tracing::warn!(gateway = gateway.name, %error, "the gateway shares the engine's own queue");
                    engine.clone()
                });
            let entry = GatewayEntry {
                secret: gateway.secret_bytes()?,
                roles: Roles::new(&gateway.roles),
                engine: lane,
                connections: AtomicU32::new(0),
                connections_max: gateway.max_connections,
                in_flight_commands: AtomicU64::new(0),
                in_flight_commands_max: gateway.max_in_flight_commands,
            };
            Some((gateway.name.clone(), Arc::new(entry)))
        })
        .collect();
    let context = Arc::new(Context {
        engine,
        store,
        wire_limits: limits.wire(),
        gateways,
        limits,
        stats,
        guesses: GuessThrottle::default(),
        tls,
    });
    let (notify_shutdown, _) = broadcast::channel::<()>(1);
    // Every connection task holds a clone; recv() returns once all are gone.
    let (done_sender, mut done_receiver) = mpsc::channel::<()>(1);
    let connections = Arc::new(Semaphore::new(context.limits.connections_max as usize));

    tokio::select! {
        () = accept_loop(&listener, &context, &connections, &notify_shutdown, &done_sender) => {}
        () = shutdown => {}
    }
    drop(listener);
    drop(notify_shutdown);
    drop(done_sender);
    let _ = done_receiver.recv().await;
}

async fn accept_loop(
    listener: &TcpListener,
    context: &Arc<Context>,
    connections: &Arc<Semaphore>,
    notify_shutdown: &broadcast::Sender<()>,
    done: &mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(1);
                accepted
            }
            Err(error) => {
                // Out of file descriptors and the like: wait, don't spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let context = Arc::clone(context);
        match Arc::clone(connections).try_acquire_owned() {
            Ok(permit) => {
                context
                    .stats
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
                let shutdown = notify_shutdown.subscribe();
                let done = done.clone();
                tokio::spawn(async move {
                    let connection = Connection {
                        context,
                        _permit: permit,
                        _done: done,
                    };
                    connection.serve(socket, shutdown).await;
                });
            }
            Err(_) => {
                context
                    .stats
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "connection refused: too many connections");
                tokio::spawn(refuse(
                    socket,
                    context.tls.clone(),
                    ErrorCode::TooManyConnections,
                ));
            }
        }
    }
}

/// Sends one error frame (inside TLS when it is on) and closes, giving up
/// after a second.
async fn refuse(mut socket: TcpStream, tls: Option<TlsAcceptor>, code: ErrorCode) {
    let mut frame = Vec::new();
    wire::encode_error(0, code, code.description(), &mut frame);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        match tls {
            None => {
                let _ = socket.write_all(&frame).await;
            }
            Some(acceptor) => {
                if let Ok(mut stream) = acceptor.accept(socket).await {
                    let _ = stream.write_all(&frame).await;
                    let _ = stream.shutdown().await;
                }
            }
        }
    })
    .await;
}

/// A reply the writer task waits for, in request order.
enum Pending {
    Results {
        request_id: u64,
        results: oneshot::Receiver<Vec<CommandResult>>,
        started: Instant,
        /// Its place in the gateway's commands in flight, until answered.
        reservation: Reservation,
    },
    Queries {
        request_id: u64,
        replies: oneshot::Receiver<Vec<QueryReply>>,
        started: Instant,
        reservation: Reservation,
    },
    PolicySet {
        request_id: u64,
        outcome: oneshot::Receiver<Result<[u8; 32], Status>>,
    },
    Ready {
        request_id: u64,
        message: Message,
    },
    /// Answered by a task of its own (history reads, backups).
    Later {
        request_id: u64,
        reply: oneshot::Receiver<Message>,
        started: Instant,
    },
}

/// The gateway a connection authenticated as.
struct Gateway {
    name: Arc<str>,
    roles: Roles,
    entry: Arc<GatewayEntry>,
}

struct Connection {
    context: Arc<Context>,
    _permit: OwnedSemaphorePermit,
    _done: mpsc::Sender<()>,
}

impl Connection {
    async fn serve(self, socket: TcpStream, mut shutdown: broadcast::Receiver<()>) {
        let stats = Arc::clone(&self.context.stats);
        stats.connections_open.fetch_add(1, Ordering::Relaxed);
        let peer = socket.peer_addr().ok();
        if let Some((reader, writer)) = self.transport(socket, &mut shutdown).await {
            self.converse(reader, writer, peer, shutdown).await;
        }
        stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The connection's halves: the socket's own, or, with TLS on, the TLS
    /// stream's once its handshake is done (within the handshake timeout).
    async fn transport(
        &self,
        socket: TcpStream,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> Option<(Reader, Writer)> {
        let Some(acceptor) = &self.context.tls else {
            let (reader, writer) = socket.into_split();
            return Some((Box::new(reader), Box::new(writer)));
        };
        let peer = socket.peer_addr().ok();
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(
                self.context.limits.handshake_timeout(),
                acceptor.accept(socket),
            ) => accepted,
            _ = shutdown.recv() => return None,
        };
        match accepted {
            Ok(Ok(stream)) => {
                let (reader, writer) = tokio::io::split(stream);
                Some((Box::new(reader), Box::new(writer)))
            }
            Ok(Err(error)) => {
                self.context
                    .stats
                    .handshakes_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?peer, %error, "TLS handshake failed");
                None
            }
            Err(_elapsed) => {
                self.context
                    .stats
                    .handshakes_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?peer, "TLS handshake timed out");
                None
            }
        }
    }

    /// The payrail handshake, then requests until the connection ends.
    async fn converse(
        &self,
        mut reader: Reader,
        writer: Writer,
        peer: Option<std::net::SocketAddr>,
        mut shutdown: broadcast::Receiver<()>,
    ) {
        let stats = Arc::clone(&self.context.stats);
        let mut writer = BufWriter::new(writer);
        let mut buffer = BytesMut::with_capacity(64 * 1024);

        let handshake = tokio::time::timeout(
            self.context.limits.handshake_timeout(),
            self.handshake(&mut reader, &mut writer, &mut buffer),
        );
        let authenticated = tokio::select! {
            outcome = handshake => match outcome {
                Ok(Ok(gateway)) => Some(gateway),
                Ok(Err(code)) => {
                    stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(?peer, code = code.code(), "handshake refused: {}", code.description());
                    write_error(&mut writer, 0, code).await;
                    None
                }
                Err(_elapsed) => {
                    stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(?peer, "handshake timed out");
                    write_error(&mut writer, 0, ErrorCode::ReadTimeout).await;
                    None
                }
            },
            _ = shutdown.recv() => {
                write_error(&mut writer, 0, ErrorCode::ShuttingDown).await;
                None
            }
        };

        if let Some((gateway, slot)) = authenticated {
            let entry = Arc::clone(&slot.0);
            tracing::debug!(?peer, gateway, roles = ?entry.roles, "gateway connected");
            let capacity = self.context.limits.inflight_max as usize * 2 + 8;
            let (pending_sender, pending_receiver) = mpsc::channel::<Pending>(capacity);
            let inflight = Arc::new(AtomicU64::new(0));
            let writer_task = tokio::spawn(write_replies(
                writer,
                pending_receiver,
                Arc::clone(&inflight),
                self.context.limits.read_timeout(),
            ));
            let gateway = Gateway {
                name: Arc::from(gateway),
                roles: entry.roles,
                entry,
            };
            self.read_requests(
                &gateway,
                &mut reader,
                buffer,
                &pending_sender,
                &inflight,
                &mut shutdown,
            )
            .await;
            drop(pending_sender);
            // The writer finishes every reply already promised, then closes.
            let _ = writer_task.await;
            drop(slot);
        }
    }

    /// Challenge, Hello, Welcome. Returns the gateway's name and the
    /// connection's place among its `max_connections`, or the code to
    /// refuse it with.
    async fn handshake(
        &self,
        reader: &mut Reader,
        writer: &mut BufWriter<Writer>,
        buffer: &mut BytesMut,
    ) -> Result<(String, ConnectionSlot), ErrorCode> {
        let nonce = auth::nonce();
        let mut frame = Vec::new();
        wire::encode(0, &Message::Challenge { nonce }, &mut frame).map_err(|error| error.code())?;
        writer
            .write_all(&frame)
            .await
            .map_err(|_| ErrorCode::Internal)?;
        writer.flush().await.map_err(|_| ErrorCode::Internal)?;

        let hello = loop {
            match wire::decode(buffer, &self.context.wire_limits) {
                Ok(Some((frame, consumed))) => {
                    buffer.advance(consumed);
                    break frame;
                }
                Ok(None) => {
                    if reader
                        .read_buf(buffer)
                        .await
                        .map_err(|_| ErrorCode::Internal)?
                        == 0
                    {
                        return Err(ErrorCode::HandshakeRequired);
                    }
                }
                Err(error) => return Err(error.code()),
            }
        };
        let Message::Hello { gateway, proof } = hello.message else {
            return Err(ErrorCode::HandshakeRequired);
        };
        let Some(entry) = self.context.gateways.get(&gateway) else {
            return Err(ErrorCode::UnknownGateway);
        };
        if !auth::verify(&entry.secret, &nonce, &gateway, &proof) {
            return Err(ErrorCode::BadProof);
        }
        let Some(slot) = entry.open_connection() else {
            self.context
                .stats
                .gateway_connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(ErrorCode::GatewayTooManyConnections);
        };
        let welcome = Message::Welcome {
            frame_bytes_max: self.context.limits.frame_bytes_max,
            batch_commands_max: self.context.limits.batch_commands_max,
            inflight_max: self.context.limits.inflight_max,
        };
        frame.clear();
        wire::encode(hello.request_id, &welcome, &mut frame).map_err(|error| error.code())?;
        writer
            .write_all(&frame)
            .await
            .map_err(|_| ErrorCode::Internal)?;
        writer.flush().await.map_err(|_| ErrorCode::Internal)?;
        Ok((gateway, slot))
    }

    /// Reads frames until the peer closes, a frame breaks the framing, a
    /// timeout passes or the server shuts down.
    async fn read_requests(
        &self,
        gateway: &Gateway,
        reader: &mut Reader,
        mut buffer: BytesMut,
        pending: &mpsc::Sender<Pending>,
        inflight: &AtomicU64,
        shutdown: &mut broadcast::Receiver<()>,
    ) {
        let limits = &self.context.wire_limits;
        loop {
            match wire::check(&buffer, limits) {
                Ok(Check::Complete { frame_len }) => {
                    let decoded = wire::decode(&buffer[..frame_len], limits);
                    let request_id = wire::peek_request_id(&buffer).unwrap_or(0);
                    buffer.advance(frame_len);
                    match decoded {
                        Ok(Some((frame, _))) => {
                            if !self.dispatch(gateway, frame, pending, inflight).await {
                                return;
                            }
                        }
                        Ok(None) => {
                            // check() said complete; decode disagreeing is a bug
                            // in the codec: refuse rather than loop.
                            let message =
                                error_message(ErrorCode::Internal, "frame could not be decoded");
                            let _ = pending
                                .send(Pending::Ready {
                                    request_id,
                                    message,
                                })
                                .await;
                            return;
                        }
                        Err(error) if keeps_connection(error.code()) => {
                            self.context
                                .stats
                                .requests_refused
                                .fetch_add(1, Ordering::Relaxed);
                            let message = error_message(error.code(), &error.to_string());
                            if pending
                                .send(Pending::Ready {
                                    request_id,
                                    message,
                                })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(error) => {
                            self.refuse_frame(pending, request_id, &error).await;
                            return;
                        }
                    }
                }
                Ok(Check::Incomplete { .. }) => {
                    // Between frames a quiet gateway may idle; inside a frame
                    // it must keep sending.
                    let (timeout, code) = if buffer.is_empty() {
                        (self.context.limits.idle_timeout(), ErrorCode::IdleTimeout)
                    } else {
                        (self.context.limits.read_timeout(), ErrorCode::ReadTimeout)
                    };
                    if buffer.capacity() - buffer.len() < 16 * 1024 {
                        buffer.reserve(64 * 1024);
                    }
                    tokio::select! {
                        read = tokio::time::timeout(timeout, reader.read_buf(&mut buffer)) => match read {
                            Ok(Ok(0)) | Ok(Err(_)) => return,
                            Ok(Ok(_)) => {}
                            Err(_elapsed) => {
                                let message = error_message(code, code.description());
                                let _ = pending.send(Pending::Ready { request_id: 0, message }).await;
                                return;
                            }
                        },
                        _ = shutdown.recv() => return,
                        // The writer gave up (the gateway stopped reading).
                        () = pending.closed() => return,
                    }
                }
                Err(error) => {
                    self.refuse_frame(pending, 0, &error).await;
                    return;
                }
            }
        }
    }

    async fn refuse_frame(
        &self,
        pending: &mpsc::Sender<Pending>,
        request_id: u64,
        error: &WireError,
    ) {
        self.context
            .stats
            .frames_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(code = error.code().code(), %error, "frame refused; closing the connection");
        let message = error_message(error.code(), &error.to_string());
        let _ = pending
            .send(Pending::Ready {
                request_id,
                message,
            })
            .await;
    }

    /// Submits a batch holding payment-code charges or card numbers: while
    /// the gateway is throttled for guessing, its charges are refused at
    /// the edge, as is every bind carrying a card number; the unknown codes
    /// it charges count towards the throttle.
    fn submit_charges(
        &self,
        engine: &EngineHandle,
        gateway: &Arc<str>,
        commands: Vec<Command>,
        sender: oneshot::Sender<Vec<CommandResult>>,
    ) -> Result<(), SubmitError> {
        let blocked = self.context.guesses.is_blocked(gateway);
        let planned: Vec<Result<Command, Status>> = commands
            .into_iter()
            .map(|command| {
                if blocked && is_charge(&command) {
                    Err(Status::PaymentCodeThrottled)
                } else if carries_card_number(&command) {
                    Err(Status::LooksLikeCardNumber)
                } else {
                    Ok(command)
                }
            })
            .collect();
        let context = Arc::clone(&self.context);
        let gateway = Arc::clone(gateway);
        let count_misses = move |planned: &[Result<Command, Status>], results: &[CommandResult]| {
            let misses = planned
                .iter()
                .zip(results)
                .filter(|(plan, result)| {
                    matches!(plan, Ok(command) if is_charge(command))
                        && result.status == Status::UnknownPaymentCode
                })
                .count();
            if misses > 0 {
                let misses = u32::try_from(misses).unwrap_or(u32::MAX);
                context
                    .guesses
                    .record_misses(&gateway, misses, &context.limits);
            }
        };
        submit_planned(engine, planned, sender, count_misses)
    }

    /// Whether a request of `commands` commands (or queries) may go to the
    /// engine: within the connection's requests in flight, then within the
    /// gateway's commands in flight, which it then counts (released when
    /// its reply is sent).
    fn admit(
        &self,
        gateway: &Gateway,
        inflight: &AtomicU64,
        commands: u64,
    ) -> Result<Reservation, ErrorCode> {
        if inflight.load(Ordering::Relaxed) >= u64::from(self.context.limits.inflight_max) {
            return Err(ErrorCode::TooManyInFlight);
        }
        gateway.entry.reserve(commands).ok_or_else(|| {
            self.context
                .stats
                .gateway_in_flight_refused
                .fetch_add(1, Ordering::Relaxed);
            ErrorCode::GatewayTooManyInFlight
        })
    }

    /// Hands one request to the engine. Returns false to close the connection.
    async fn dispatch(
        &self,
        gateway: &Gateway,
        frame: Frame,
        pending: &mpsc::Sender<Pending>,
        inflight: &AtomicU64,
    ) -> bool {
        let request_id = frame.request_id;
        let stats = &self.context.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        if let Some(refusal) = auth::not_permitted(gateway.roles, &frame.message) {
            stats.requests_refused.fetch_add(1, Ordering::Relaxed);
            stats.requests_not_permitted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                gateway = %gateway.name,
                operation = refusal.operation,
                role = refusal.role.name(),
                "request not permitted"
            );
            metrics::counter!(
                "payrail_requests_not_permitted_total",
                "gateway" => gateway.name.to_string(),
                "operation" => refusal.operation
            )
            .increment(1);
            let message = error_message(ErrorCode::NotPermitted, &refusal.message(&gateway.name));
            return pending
                .send(Pending::Ready {
                    request_id,
                    message,
                })
                .await
                .is_ok();
        }
        let engine = &gateway.entry.engine;
        let item = match frame.message {
            Message::Submit { commands } => {
                let count = commands.len() as u64;
                match self.admit(gateway, inflight, count) {
                    Err(code) => refused(stats, request_id, code),
                    Ok(reservation) => {
                        let (sender, receiver) = oneshot::channel();
                        let charges = commands.iter().filter(|command| is_charge(command)).count();
                        let card_numbers = commands.iter().any(carries_card_number);
                        let submitted = if charges == 0 && !card_numbers {
                            engine.submit(
                                commands,
                                Box::new(move |results| drop(sender.send(results))),
                            )
                        } else {
                            self.submit_charges(engine, &gateway.name, commands, sender)
                        };
                        match submitted {
                            Ok(()) => {
                                inflight.fetch_add(1, Ordering::Relaxed);
                                Pending::Results {
                                    request_id,
                                    results: receiver,
                                    started,
                                    reservation,
                                }
                            }
                            Err(error) => refused(stats, request_id, submit_error_code(error)),
                        }
                    }
                }
            }
            Message::Query { queries } => {
                let count = queries.len() as u64;
                match self.admit(gateway, inflight, count) {
                    Err(code) => refused(stats, request_id, code),
                    Ok(reservation) => {
                        let (sender, receiver) = oneshot::channel();
                        match engine
                            .query(queries, Box::new(move |replies| drop(sender.send(replies))))
                        {
                            Ok(()) => {
                                inflight.fetch_add(1, Ordering::Relaxed);
                                Pending::Queries {
                                    request_id,
                                    replies: receiver,
                                    started,
                                    reservation,
                                }
                            }
                            Err(error) => refused(stats, request_id, submit_error_code(error)),
                        }
                    }
                }
            }
            Message::SubmitQr { payments } => {
                let count = payments.len() as u64;
                match self.admit(gateway, inflight, count) {
                    Err(code) => refused(stats, request_id, code),
                    Ok(reservation) => {
                        // Parse at the edge: refused payloads get their status
                        // here; the rest go to the ledger as one batch.
                        let planned = payments.iter().map(qr_pay::command).collect();
                        let (sender, receiver) = oneshot::channel();
                        match submit_planned(engine, planned, sender, |_, _| {}) {
                            Ok(()) => {
                                inflight.fetch_add(1, Ordering::Relaxed);
                                Pending::Results {
                                    request_id,
                                    results: receiver,
                                    started,
                                    reservation,
                                }
                            }
                            Err(error) => refused(stats, request_id, submit_error_code(error)),
                        }
                    }
                }
            }
            Message::SetRiskPolicy { policy } => {
                if inflight.load(Ordering::Relaxed) >= u64::from(self.context.limits.inflight_max) {
                    refused(stats, request_id, ErrorCode::TooManyInFlight)
                } else {
                    let (sender, receiver) = oneshot::channel();
                    match engine.set_risk_policy(
                        *policy,
                        Box::new(move |outcome| {
                            let _ = sender.send(outcome);
                        }),
                    ) {
                        Ok(()) => {
                            inflight.fetch_add(1, Ordering::Relaxed);
                            Pending::PolicySet {
                                request_id,
                                outcome: receiver,
                            }
                        }
                        Err(error) => refused(stats, request_id, submit_error_code(error)),
                    }
                }
            }
            Message::HistoryQuery { .. } | Message::TxQuery { .. } | Message::Backup { .. } => {
                if inflight.load(Ordering::Relaxed) >= u64::from(self.context.limits.inflight_max) {
                    refused(stats, request_id, ErrorCode::TooManyInFlight)
                } else {
                    let (sender, reply) = oneshot::channel();
                    let context = Arc::clone(&self.context);
                    // The gateway's lane: a tx lookup sees the batches the
                    // connection submitted before it.
                    let engine = engine.clone();
                    let message = frame.message;
                    tokio::spawn(async move {
                        let answer =
                            operations::answer(&engine, context.store.as_ref(), message).await;
                        drop(sender.send(answer));
                    });
                    inflight.fetch_add(1, Ordering::Relaxed);
                    Pending::Later {
                        request_id,
                        reply,
                        started,
                    }
                }
            }
            Message::Status => {
                let history = self
                    .context
                    .store
                    .as_ref()
                    .map(|store| store.storage.history_stats());
                let fields = status_fields(self.context.engine.stats(), stats, history);
                Pending::Ready {
                    request_id,
                    message: Message::StatusReply { fields },
                }
            }
            other => {
                // Challenge, Hello again, or a server-side message from a client.
                tracing::warn!(
                    kind = other.kind_name(),
                    "unexpected message; closing the connection"
                );
                stats.frames_refused.fetch_add(1, Ordering::Relaxed);
                let code = ErrorCode::UnexpectedMessage;
                let message = error_message(
                    code,
                    &format!("a gateway cannot send {}", other.kind_name()),
                );
                let _ = pending
                    .send(Pending::Ready {
                        request_id,
                        message,
                    })
                    .await;
                return false;
            }
        };
        pending.send(item).await.is_ok()
    }
}

fn refused(stats: &ServerStats, request_id: u64, code: ErrorCode) -> Pending {
    stats.requests_refused.fetch_add(1, Ordering::Relaxed);
    Pending::Ready {
        request_id,
        message: error_message(code, code.description()),
    }
}

fn submit_error_code(error: SubmitError) -> ErrorCode {
    match error {
        SubmitError::Overloaded => ErrorCode::Overloaded,
        _ => ErrorCode::ShuttingDown,
    }
}

/// Submits the commands of a plan whose refused entries already carry their
/// status (from the edge: QR parsing, the guessing throttle); `sender` gets
/// one result per entry, in order. `inspect` sees the plan and the results
/// just before they are sent.
fn submit_planned(
    engine: &EngineHandle,
    planned: Vec<Result<Command, Status>>,
    sender: oneshot::Sender<Vec<CommandResult>>,
    inspect: impl FnOnce(&[Result<Command, Status>], &[CommandResult]) + Send + 'static,
) -> Result<(), SubmitError> {
    let to_ledger: Vec<Command> = planned
        .iter()
        .filter_map(|plan| plan.as_ref().ok().copied())
        .collect();
    let merge = move |results: Vec<CommandResult>| {
        let mut results = results.into_iter();
        let merged: Vec<CommandResult> = planned
            .iter()
            .map(|plan| match plan {
                Ok(_) => results
                    .next()
                    .unwrap_or(CommandResult::new(Status::Unavailable)),
                Err(status) => CommandResult::new(*status),
            })
            .collect();
        inspect(&planned, &merged);
        drop(sender.send(merged));
    };
    if to_ledger.is_empty() {
        merge(Vec::new());
        Ok(())
    } else {
        engine.submit(to_ledger, Box::new(merge))
    }
}

/// Request-level refusals: the framing is intact, so the connection goes on.
fn keeps_connection(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::BatchTooLarge | ErrorCode::EmptyBatch)
}

async fn write_error(writer: &mut BufWriter<Writer>, request_id: u64, code: ErrorCode) {
    let mut frame = Vec::new();
    wire::encode_error(request_id, code, code.description(), &mut frame);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = writer.write_all(&frame).await;
        let _ = writer.flush().await;
    })
    .await;
}

/// Sends replies in request order; flushes whenever nothing more is ready.
/// The engine's answer as a message, or `ShuttingDown` if the engine went
/// away without answering.
async fn engine_reply<T>(
    answer: oneshot::Receiver<T>,
    message: impl FnOnce(T) -> Message,
) -> Message {
    match answer.await {
        Ok(answer) => message(answer),
        Err(_) => error_message(
            ErrorCode::ShuttingDown,
            ErrorCode::ShuttingDown.description(),
        ),
    }
}

/// End-to-end latency of one request, from its decoding to its reply being
/// ready to write (engine queue, log fsync, execution included).
fn record_latency(kind: &'static str, started: Instant) {
    metrics::histogram!("payrail_request_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}

/// A gateway that does not read its replies for `stall_timeout` (the read
/// timeout) is disconnected, so it cannot hold a connection, its buffers or
/// a graceful shutdown forever.
async fn write_replies(
    mut writer: BufWriter<Writer>,
    mut pending: mpsc::Receiver<Pending>,
    inflight: Arc<AtomicU64>,
    stall_timeout: Duration,
) {
    let mut frame = Vec::with_capacity(64 * 1024);
    while let Some(item) = pending.recv().await {
        frame.clear();
        let (request_id, message) = match item {
            Pending::Results {
                request_id,
                results,
                started,
                reservation,
            } => {
                let message = engine_reply(results, |results| Message::Results { results }).await;
                inflight.fetch_sub(1, Ordering::Relaxed);
                drop(reservation);
                record_latency("submit", started);
                (request_id, message)
            }
            Pending::Queries {
                request_id,
                replies,
                started,
                reservation,
            } => {
                let message =
                    engine_reply(replies, |replies| Message::QueryResults { replies }).await;
                inflight.fetch_sub(1, Ordering::Relaxed);
                drop(reservation);
                record_latency("query", started);
                (request_id, message)
            }
            Pending::PolicySet {
                request_id,
                outcome,
            } => {
                let message = engine_reply(outcome, |outcome| match outcome {
                    Ok(digest) => Message::RiskPolicySet {
                        status: Status::Ok,
                        digest,
                    },
                    Err(status) => Message::RiskPolicySet {
                        status,
                        digest: [0; 32],
                    },
                })
                .await;
                inflight.fetch_sub(1, Ordering::Relaxed);
                (request_id, message)
            }
            Pending::Ready {
                request_id,
                message,
            } => (request_id, message),
            Pending::Later {
                request_id,
                reply,
                started,
            } => {
                let message = engine_reply(reply, |message| message).await;
                inflight.fetch_sub(1, Ordering::Relaxed);
                record_latency("operation", started);
                (request_id, message)
            }
        };
        if wire::encode(request_id, &message, &mut frame).is_err() {
            // A reply larger than a frame cannot happen (one small result per
            // command of a bounded batch); answer with an error regardless.
            frame.clear();
            wire::encode_error(
                request_id,
                ErrorCode::Internal,
                "reply too large",
                &mut frame,
            );
        }
        let written = tokio::time::timeout(stall_timeout, async {
            writer.write_all(&frame).await?;
            if pending.is_empty() {
                writer.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_elapsed) => {
                tracing::warn!("a gateway stopped reading its replies; closing the connection");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(stall_timeout, async {
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    })
    .await;
}

/// Every counter of a `StatusReply`: the engine's (with one per shard and
/// per-shard counter), the server's, and the history store's when there is
/// one. `status_fields_fit_a_reply` checks the count at `SHARDS_MAX`.
pub(crate) fn status_fields(
    engine: &payrail_engine::pipeline::EngineStats,
    server: &ServerStats,
    history: Option<payrail_engine::storage::HistoryStats>,
) -> Vec<(String, u64)> {
    let mut fields: Vec<(String, u64)> = Vec::new();
    for (name, value) in engine.snapshot() {
        fields.push((format!("engine.{name}"), value));
    }
    // One field per shard: `engine.shard_steps.0`, ...
    for (name, values) in engine.per_shard() {
        for (shard, value) in values.into_iter().enumerate() {
            fields.push((format!("engine.{name}.{shard}"), value));
        }
    }
    for (name, value) in server.snapshot() {
        fields.push((format!("server.{name}"), value));
    }
    if let Some(history) = history {
        for (name, value) in [
            ("segments", history.segments),
            ("bytes", history.bytes),
            ("movements_kept", history.movements),
            ("oldest_timestamp_ns", history.oldest_timestamp),
            ("newest_timestamp_ns", history.newest_timestamp),
            ("retention_s", history.retention_ns / 1_000_000_000),
            ("accounts", history.accounts),
            ("accounts_max", history.accounts_max),
            ("movements_refused", history.movements_refused),
            ("segments_expired", history.segments_expired),
        ] {
            fields.push((format!("history.{name}"), value));
        }
    }
    debug_assert!(fields.len() <= wire::STATUS_FIELDS_MAX);
    fields
}

#[cfg(test)]
mod status_tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A server with the most shards still answers `Status` in one reply.
    #[test]
    fn status_fields_fit_a_reply() {
        let shards = payrail_engine::limits::SHARDS_MAX;
        let per_shard = || (0..shards).map(|_| AtomicU64::new(0)).collect();
        let engine = payrail_engine::pipeline::EngineStats {
            shard_steps: per_shard(),
            shard_queue_depths: per_shard(),
            shard_movements: per_shard(),
            ..payrail_engine::pipeline::EngineStats::default()
        };
        let fields = status_fields(
            &engine,
            &ServerStats::default(),
            Some(payrail_engine::storage::HistoryStats::default()),
        );
        assert!(fields.len() > 3 * shards);
        assert!(
            fields.len() <= wire::STATUS_FIELDS_MAX,
            "{} fields",
            fields.len()
        );
        let mut out = Vec::new();
        assert!(wire::encode(1, &Message::StatusReply { fields }, &mut out).is_ok());
    }
}
