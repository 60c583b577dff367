package payrail.client;

import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.security.InvalidKeyException;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * A pipelined connection to a payrail server, safe to use from many threads at once.
 *
 * <pre>
 * submitAsync / queryAsync / ...  encode in the caller's thread, then a writer thread writes
 *                                 (at most the server's inflight_max requests unanswered)
 * executeAsync(command)           a batcher thread gathers single commands for up to
 *                                 autoBatchDelay or autoBatchMax, then one Submit
 * socket                          a reader thread matches each reply to its request id
 * </pre>
 *
 * <p>Retries and idempotency: when the connection drops, every request in flight fails with
 * {@link PayrailException.Kind#CONNECTION_LOST}, and a request without a reply in time with
 * {@link PayrailException.Kind#TIMEOUT}; {@link PayrailException#outcomeUnknown()} is true for
 * both. The commands may or may not have been applied: retry them with the same command ids, and
 * the server answers with the first result. The next request after a drop reconnects by itself
 * (a bounded number of attempts, with backoff); requests never written to the socket are sent on
 * the new connection automatically.
 *
 * <p>Every method without {@code Async} waits for the reply and throws {@link PayrailException}.
 * The futures of the {@code Async} methods complete in the client's reader thread: never block in
 * a callback attached to them (use {@code thenApplyAsync} and the like for slow work), or the
 * replies behind it wait.
 */
public final class PayrailClient implements AutoCloseable {
    /** Most times a request that was never written is tried on a new connection. */
    private static final int SEND_ATTEMPTS_MAX = 3;
    /** Most automatic batches in flight at once. */
    private static final int AUTO_BATCHES_INFLIGHT_MAX = 64;
    /** Single commands waiting for the batcher before executeAsync blocks its caller. */
    private static final int AUTO_BATCH_QUEUE_MAX = 65_536;

    private final ClientConfig config;
    private final AtomicLong nextRequestId = new AtomicLong(1);
    private final Object connecting = new Object();
    private volatile Connection current;
    private volatile boolean closed;
    private final ExecutorService retries;
    private final BlockingQueue<Single> singles = new ArrayBlockingQueue<>(AUTO_BATCH_QUEUE_MAX);
    private final Semaphore autoBatches = new Semaphore(AUTO_BATCHES_INFLIGHT_MAX);
    private final Thread batcher;

    private PayrailClient(ClientConfig config) {
        this.config = config;
        this.retries = Executors.newCachedThreadPool(runnable -> {
            Thread thread = new Thread(runnable, "payrail-retry");
            thread.setDaemon(true);
            return thread;
        });
        this.batcher = new Thread(this::runBatcher, "payrail-batcher");
        this.batcher.setDaemon(true);
    }

    /**
     * Connects and authenticates (Challenge, Hello, Welcome).
     *
     * @throws PayrailException CONNECT, GATEWAY_REFUSED, CONNECTION_REFUSED, PROTOCOL
     */
    public static PayrailClient connect(ClientConfig config) {
        PayrailClient client = new PayrailClient(config);
        try {
            client.connection();
        } catch (RuntimeException error) {
            client.close();
            throw error;
        }
        client.batcher.start();
        return client;
    }

    /** The limits the server announced on the current connection. */
    public ServerLimits serverLimits() {
        return connection().limits;
    }

    public ClientConfig config() {
        return config;
    }

    // ---- requests ----

    /** Submits commands as one batch; one result per command, in order. */
    public CompletableFuture<List<CommandResult>> submitAsync(List<Command> commands) {
        if (commands.isEmpty()) {
            return CompletableFuture.completedFuture(List.of());
        }
        int count = commands.size();
        return checkBatch(count).thenCompose(ignored -> request(new Message.Submit(List.copyOf(commands)), reply -> {
            if (reply instanceof Message.Results results && results.results().size() == count) {
                return results.results();
            }
            throw unexpected(reply, count + " results");
        }));
    }

    public List<CommandResult> submit(List<Command> commands) {
        return await(submitAsync(commands));
    }

    /** Submits merchant-presented QR payments (at most 256 per request); one result per payment. */
    public CompletableFuture<List<CommandResult>> submitQrAsync(List<QrPayment> payments) {
        if (payments.isEmpty()) {
            return CompletableFuture.completedFuture(List.of());
        }
        int count = payments.size();
        if (count > Message.QR_BATCH_MAX) {
            return CompletableFuture.failedFuture(new PayrailException(PayrailException.Kind.BATCH_TOO_LARGE,
                    "a batch of " + count + " QR payments is more than the server accepts (" + Message.QR_BATCH_MAX
                            + "); split it"));
        }
        return checkBatch(count).thenCompose(ignored -> request(new Message.SubmitQr(List.copyOf(payments)), reply -> {
            if (reply instanceof Message.Results results && results.results().size() == count) {
                return results.results();
            }
            throw unexpected(reply, count + " results");
        }));
    }

    public List<CommandResult> submitQr(List<QrPayment> payments) {
        return await(submitQrAsync(payments));
    }

    /** Asks queries in one request; one reply per query, in order. */
    public CompletableFuture<List<QueryReply>> queryAsync(List<Query> queries) {
        if (queries.isEmpty()) {
            return CompletableFuture.completedFuture(List.of());
        }
        int count = queries.size();
        return checkBatch(count).thenCompose(ignored -> request(new Message.QueryRequest(List.copyOf(queries)), reply -> {
            if (reply instanceof Message.QueryResults results && results.replies().size() == count) {
                return results.replies();
            }
            throw unexpected(reply, count + " query replies");
        }));
    }

    public List<QueryReply> query(List<Query> queries) {
        return await(queryAsync(queries));
    }

    /** One query. */
    public QueryReply query(Query query) {
        return query(List.of(query)).get(0);
    }

    /** An account's balances, or empty if no account has this id. */
    public Optional<AccountView> account(long account) {
        QueryReply reply = query(new Query.Balance(account));
        if (reply instanceof QueryReply.Balance balance) {
            return Optional.of(balance.account());
        }
        if (reply instanceof QueryReply.Refused refused && refused.status() == Status.UNKNOWN_ACCOUNT) {
            return Optional.empty();
        }
        throw new PayrailException(PayrailException.Kind.PROTOCOL, "a balance query answered with " + reply);
    }

    /**
     * The funding instruments of the customer holding {@code account}, in number order (unbound ones
     * still remembered included), or empty if the server refuses the list (no such account, or not a
     * customer's). Bind, verify and unbind them, top up from and withdraw to them with the commands
     * {@link Command.BindInstrument}, {@link Command.VerifyInstrument}, {@link Command.UnbindInstrument},
     * {@link Command.DepositFrom} and {@link Command.WithdrawHoldTo}.
     */
    public Optional<List<QueryReply.InstrumentView>> instruments(long account) {
        List<Query> queries = new java.util.ArrayList<>(INSTRUMENTS_LISTED_MAX);
        for (int index = 0; index < INSTRUMENTS_LISTED_MAX; index++) {
            queries.add(new Query.Instrument(account, index));
        }
        List<QueryReply.InstrumentView> views = new java.util.ArrayList<>();
        for (QueryReply reply : query(queries)) {
            if (reply instanceof QueryReply.Instrument instrument) {
                views.add(instrument.instrument());
            } else if (reply instanceof QueryReply.Refused refused) {
                return refused.status() == Status.UNKNOWN_INSTRUMENT ? Optional.of(views) : Optional.empty();
            } else {
                throw new PayrailException(PayrailException.Kind.PROTOCOL,
                        "an instrument query answered with " + reply);
            }
        }
        return Optional.of(views);
    }

    /** Instruments one customer may have at most (engine.customer_instruments_max is at most 64). */
    static final int INSTRUMENTS_LISTED_MAX = 64;

    /** The server's counters (name, value), in the order it sent them. */
    public CompletableFuture<Map<String, Long>> statusAsync() {
        return request(new Message.StatusRequest(), reply -> {
            if (reply instanceof Message.StatusReply status) {
                return status.fields();
            }
            throw unexpected(reply, "a status reply");
        });
    }

    public Map<String, Long> status() {
        return await(statusAsync());
    }

    /**
     * A page of an account's movements with timestamps in {@code fromNs..=toNs}, newest first;
     * {@code cursor} zero for the first page, else the previous page's next cursor; {@code limit}
     * 1 to 1,000 (0: 50).
     */
    public CompletableFuture<HistoryPage> historyAsync(long account, long fromNs, long toNs, CommandId cursor,
            int limit) {
        return request(new Message.HistoryQuery(account, fromNs, toNs, cursor, limit), reply -> {
            if (reply instanceof Message.HistoryPageReply page) {
                return page.page();
            }
            throw unexpected(reply, "a history page");
        });
    }

    public HistoryPage history(long account, long fromNs, long toNs, CommandId cursor, int limit) {
        return await(historyAsync(account, fromNs, toNs, cursor, limit));
    }

    /** The newest page of an account's movements, all time. */
    public HistoryPage history(long account, int limit) {
        return history(account, 0, -1L, CommandId.of(0), limit);
    }

    /** What became of one command: its status and the movements it made. */
    public CompletableFuture<TxReply> txAsync(CommandId id) {
        return request(new Message.TxQuery(id), reply -> {
            if (reply instanceof Message.TxReplyMessage tx) {
                return tx.reply();
            }
            throw unexpected(reply, "a tx reply");
        });
    }

    public TxReply tx(CommandId id) {
        return await(txAsync(id));
    }

    /**
     * Asks the server to write a consistent copy of its data directory to {@code dir} on the
     * server's machine (which must not exist); the last log sequence the backup holds.
     */
    public CompletableFuture<Long> backupAsync(String dir) {
        return request(new Message.Backup(dir), reply -> {
            if (reply instanceof Message.BackupReply backup) {
                return backup.lastSequence();
            }
            throw unexpected(reply, "a backup reply");
        });
    }

    public long backup(String dir) {
        return await(backupAsync(dir));
    }

    /** Puts a risk policy in force (durably); ok and its digest, or why not. */
    public CompletableFuture<RiskPolicySet> setRiskPolicyAsync(RiskPolicy policy) {
        byte[] encoded;
        try {
            encoded = policy.encode();
        } catch (PayrailException error) {
            return CompletableFuture.failedFuture(error);
        }
        return request(new Message.SetRiskPolicy(encoded), reply -> {
            if (reply instanceof Message.RiskPolicySetReply set) {
                return set.outcome();
            }
            throw unexpected(reply, "a risk policy set reply");
        });
    }

    public RiskPolicySet setRiskPolicy(RiskPolicy policy) {
        return await(setRiskPolicyAsync(policy));
    }

    /**
     * Executes one command. Commands from concurrent callers are gathered into one Submit (up to
     * {@link ClientConfig#autoBatchMax()}, waiting at most {@link ClientConfig#autoBatchDelay()});
     * on an error every command of the batch gets it.
     */
    public CompletableFuture<CommandResult> executeAsync(Command command) {
        CompletableFuture<CommandResult> result = new CompletableFuture<>();
        if (closed) {
            result.completeExceptionally(closedError());
            return result;
        }
        try {
            singles.put(new Single(command, result));
        } catch (InterruptedException error) {
            Thread.currentThread().interrupt();
            result.completeExceptionally(new PayrailException(PayrailException.Kind.CLOSED, "interrupted"));
        }
        return result;
    }

    public CommandResult execute(Command command) {
        return await(executeAsync(command));
    }

    /** Closes the connection; requests in flight fail with CONNECTION_LOST. */
    @Override
    public void close() {
        closed = true;
        batcher.interrupt();
        Connection connection = current;
        if (connection != null) {
            connection.fail("the client was closed");
        }
        Single single;
        while ((single = singles.poll()) != null) {
            single.result.completeExceptionally(closedError());
        }
        retries.shutdown();
    }

    /** Waits for a future; its failure is thrown as the PayrailException it holds. */
    public static <T> T await(CompletableFuture<T> future) {
        try {
            return future.get();
        } catch (ExecutionException error) {
            throw asPayrail(error.getCause());
        } catch (CancellationException error) {
            throw new PayrailException(PayrailException.Kind.CLOSED, "the request was cancelled");
        } catch (InterruptedException error) {
            Thread.currentThread().interrupt();
            throw new PayrailException(PayrailException.Kind.CLOSED, "interrupted while waiting for payrail");
        }
    }

    private static PayrailException asPayrail(Throwable error) {
        while ((error instanceof CompletionException || error instanceof ExecutionException) && error.getCause() != null) {
            error = error.getCause();
        }
        if (error instanceof PayrailException payrail) {
            return payrail;
        }
        return new PayrailException(PayrailException.Kind.PROTOCOL, "unexpected failure: " + error);
    }

    // ---- internals ----

    private PayrailException closedError() {
        return new PayrailException(PayrailException.Kind.CLOSED, "the client is closed");
    }

    private PayrailException unexpected(Message reply, String wanted) {
        return new PayrailException(PayrailException.Kind.PROTOCOL, "payrail at " + config.addr() + " sent "
                + reply.getClass().getSimpleName() + " where " + wanted + " were expected");
    }

    private CompletableFuture<Void> checkBatch(int count) {
        try {
            int max = connection().limits.batchCommandsMax();
            if (Integer.toUnsignedLong(max) < count) {
                return CompletableFuture.failedFuture(new PayrailException(PayrailException.Kind.BATCH_TOO_LARGE,
                        "a batch of " + count + " entries is more than the server accepts (" + max + "); split it"));
            }
            return CompletableFuture.completedFuture(null);
        } catch (PayrailException error) {
            return CompletableFuture.failedFuture(error);
        }
    }

    /** The open connection, or a new one (a bounded number of attempts, with backoff). */
    private Connection connection() {
        Connection connection = current;
        if (connection != null && !connection.closed) {
            return connection;
        }
        synchronized (connecting) {
            connection = current;
            if (connection != null && !connection.closed) {
                return connection;
            }
            if (closed) {
                throw closedError();
            }
            long backoffMs = 50;
            for (int attempt = 1; ; attempt++) {
                try {
                    connection = Connection.open(this);
                    current = connection;
                    return connection;
                } catch (PayrailException error) {
                    boolean later = error.kind() == PayrailException.Kind.CONNECT
                            || error.kind() == PayrailException.Kind.CONNECTION_LOST
                            || (error.kind() == PayrailException.Kind.CONNECTION_REFUSED
                                    && (error.errorCode() == ErrorCode.TOO_MANY_CONNECTIONS
                                            || error.errorCode() == ErrorCode.SHUTTING_DOWN
                                            || error.errorCode() == ErrorCode.OVERLOADED));
                    if (!later || attempt >= config.connectAttempts()) {
                        throw error;
                    }
                    try {
                        Thread.sleep(backoffMs);
                    } catch (InterruptedException interrupted) {
                        Thread.currentThread().interrupt();
                        throw error;
                    }
                    backoffMs *= 2;
                }
            }
        }
    }

    /** Sends one request and maps its reply; an Error reply becomes a SERVER failure. */
    private <T> CompletableFuture<T> request(Message message, Function<Message, T> map) {
        ByteBuffer frame;
        try {
            frame = Wire.encodeFrame(nextRequestId.getAndIncrement(), message);
        } catch (PayrailException error) {
            return CompletableFuture.failedFuture(error);
        }
        CompletableFuture<Message> reply = send(frame, 1);
        long timeoutNs = config.requestTimeout().toNanos();
        return reply.orTimeout(timeoutNs, TimeUnit.NANOSECONDS).handle((answer, error) -> {
            if (error != null) {
                Throwable cause = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
                if (cause instanceof TimeoutException) {
                    throw new PayrailException(PayrailException.Kind.TIMEOUT, "no reply from payrail at " + config.addr()
                            + " within " + config.requestTimeout().toMillis() + " ms: the request may or may not "
                            + "have been applied; retry it with the same command ids");
                }
                throw asPayrail(cause);
            }
            if (answer instanceof Message.ErrorReply refusal) {
                throw new PayrailException(PayrailException.Kind.SERVER, "the server refused the request: "
                        + refusal.message() + " (" + refusal.code().wireName() + ")", refusal.code());
            }
            return map.apply(answer);
        });
    }

    /** Sends a frame on the current connection; if it never reached the socket, on a new one. */
    private CompletableFuture<Message> send(ByteBuffer frame, int attempt) {
        Connection connection;
        try {
            connection = connection();
        } catch (PayrailException error) {
            return CompletableFuture.failedFuture(error);
        }
        CompletableFuture<Message> reply = new CompletableFuture<>();
        connection.enqueue(new Outgoing(frame.duplicate(), reply));
        return reply.exceptionallyCompose(error -> {
            if (!(error instanceof NotSent notSent)) {
                return CompletableFuture.failedFuture(error);
            }
            if (closed) {
                return CompletableFuture.failedFuture(closedError());
            }
            if (attempt >= SEND_ATTEMPTS_MAX) {
                return CompletableFuture.failedFuture(lost(notSent.getMessage()));
            }
            // Never written: send it again, connecting off the thread that saw the failure.
            return CompletableFuture.supplyAsync(() -> send(frame, attempt + 1), retries).thenCompose(next -> next);
        });
    }

    /** The Hello proof: HMAC-SHA256(secret, nonce || gateway). */
    static byte[] proof(byte[] secret, byte[] nonce, String gateway) {
        return Connection.proof(secret, nonce, gateway);
    }

    private PayrailException lost(String reason) {
        return new PayrailException(PayrailException.Kind.CONNECTION_LOST, "the connection to payrail at "
                + config.addr() + " was lost (" + reason + "): the request may or may not have been applied; "
                + "retry it with the same command ids");
    }

    private void runBatcher() {
        long delayNs = config.autoBatchDelay().toNanos();
        try {
            while (!closed) {
                Single first = singles.take();
                int max = Math.max(1, Math.min(config.autoBatchMax(), currentBatchMax()));
                List<Single> batch = new ArrayList<>(Math.min(max, 1_024));
                batch.add(first);
                long deadline = System.nanoTime() + delayNs;
                while (batch.size() < max) {
                    Single next = singles.poll();
                    if (next == null) {
                        long left = deadline - System.nanoTime();
                        if (left <= 0) {
                            break;
                        }
                        next = singles.poll(left, TimeUnit.NANOSECONDS);
                        if (next == null) {
                            break;
                        }
                    }
                    batch.add(next);
                }
                autoBatches.acquire();
                List<Command> commands = new ArrayList<>(batch.size());
                for (Single single : batch) {
                    commands.add(single.command);
                }
                submitAsync(commands).whenComplete((results, error) -> {
                    autoBatches.release();
                    for (int i = 0; i < batch.size(); i++) {
                        if (error != null) {
                            batch.get(i).result.completeExceptionally(asPayrail(error));
                        } else {
                            batch.get(i).result.complete(results.get(i));
                        }
                    }
                });
            }
        } catch (InterruptedException error) {
            // closed
        }
    }

    private int currentBatchMax() {
        Connection connection = current;
        return connection == null ? Wire.BATCH_COMMANDS_MAX_DEFAULT : connection.limits.batchCommandsMax();
    }

    private record Single(Command command, CompletableFuture<CommandResult> result) {}

    private record Outgoing(ByteBuffer frame, CompletableFuture<Message> reply) {
        long requestId() {
            return frame.duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(frame.position() + 8);
        }
    }

    /** A request that never reached the socket: safe to send again. */
    private static final class NotSent extends RuntimeException {
        private static final long serialVersionUID = 1L;

        NotSent(String reason) {
            super(reason, null, false, false);
        }
    }

    /** One authenticated connection with its reader and writer threads. */
    private static final class Connection {
        private static final Outgoing STOP = new Outgoing(ByteBuffer.allocate(0), new CompletableFuture<>());
        /** Most bytes gathered into one write. */
        private static final int WRITE_GATHER_BYTES = 1 << 20;

        private final PayrailClient client;
        private final SocketChannel channel;
        final ServerLimits limits;
        private final Semaphore inflight;
        private final ConcurrentHashMap<Long, CompletableFuture<Message>> waiting = new ConcurrentHashMap<>();
        private final LinkedBlockingQueue<Outgoing> outgoing = new LinkedBlockingQueue<>();
        private final Object lock = new Object();
        volatile boolean closed;
        private String closedReason = "the connection closed";

        private Connection(PayrailClient client, SocketChannel channel, ServerLimits limits) {
            this.client = client;
            this.channel = channel;
            this.limits = limits;
            this.inflight = new Semaphore(Math.max(1, limits.inflightMax()));
        }

        static Connection open(PayrailClient client) {
            ClientConfig config = client.config;
            SocketChannel channel;
            try {
                channel = SocketChannel.open();
            } catch (IOException error) {
                throw new PayrailException(PayrailException.Kind.CONNECT, "cannot open a socket: " + error.getMessage());
            }
            long timeoutMs = Math.max(1, config.connectTimeout().toMillis());
            try {
                channel.socket().connect(new InetSocketAddress(config.host(), config.port()), (int) timeoutMs);
                channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
                // The handshake must finish within the connect timeout too.
                channel.socket().setSoTimeout((int) timeoutMs);
                ServerLimits limits = handshake(config, channel);
                channel.socket().setSoTimeout(0);
                Connection connection = new Connection(client, channel, limits);
                connection.start();
                return connection;
            } catch (IOException error) {
                closeQuietly(channel);
                throw new PayrailException(PayrailException.Kind.CONNECT, "cannot reach payrail at " + config.addr()
                        + ": " + reason(error) + " (is `payrail serve` running?)");
            } catch (RuntimeException error) {
                closeQuietly(channel);
                throw error;
            }
        }

        private static String reason(IOException error) {
            String message = error.getMessage();
            return message == null ? error.getClass().getSimpleName() : message;
        }

        /** Reads Challenge, answers Hello, expects Welcome. */
        private static ServerLimits handshake(ClientConfig config, SocketChannel channel) throws IOException {
            // Blocking reads through the socket's stream honour the timeout set above.
            java.io.InputStream in = channel.socket().getInputStream();
            Message first = readFrame(in, config);
            byte[] nonce;
            if (first instanceof Message.Challenge challenge) {
                nonce = challenge.nonce();
            } else if (first instanceof Message.ErrorReply error) {
                throw new PayrailException(PayrailException.Kind.CONNECTION_REFUSED, "payrail at " + config.addr()
                        + " refused the connection: " + error.message() + " (" + error.code().wireName() + ")",
                        error.code());
            } else {
                throw new PayrailException(PayrailException.Kind.PROTOCOL,
                        "payrail at " + config.addr() + " sent " + first.getClass().getSimpleName() + " instead of a challenge");
            }
            byte[] hello = Wire.encode(0, new Message.Hello(config.gateway(), proof(config.secret(), nonce, config.gateway())));
            channel.socket().getOutputStream().write(hello);
            Message second = readFrame(in, config);
            if (second instanceof Message.Welcome welcome) {
                if (welcome.batchCommandsMax() == 0 || welcome.inflightMax() == 0) {
                    throw new PayrailException(PayrailException.Kind.PROTOCOL,
                            "payrail at " + config.addr() + " sent unusable limits in its welcome: " + welcome);
                }
                return new ServerLimits(welcome.frameBytesMax(), welcome.batchCommandsMax(), welcome.inflightMax());
            }
            if (second instanceof Message.ErrorReply error) {
                if (error.code() == ErrorCode.UNKNOWN_GATEWAY) {
                    throw new PayrailException(PayrailException.Kind.GATEWAY_REFUSED,
                            "the server refused gateway '" + config.gateway() + "': unknown gateway", error.code());
                }
                if (error.code() == ErrorCode.BAD_PROOF) {
                    throw new PayrailException(PayrailException.Kind.GATEWAY_REFUSED, "the server refused gateway '"
                            + config.gateway() + "': wrong secret (the proof does not match the server's secret for it)",
                            error.code());
                }
                throw new PayrailException(PayrailException.Kind.CONNECTION_REFUSED, "payrail at " + config.addr()
                        + " refused the connection: " + error.message() + " (" + error.code().wireName() + ")",
                        error.code());
            }
            throw new PayrailException(PayrailException.Kind.PROTOCOL,
                    "payrail at " + config.addr() + " sent " + second.getClass().getSimpleName() + " instead of a welcome");
        }

        private static Message readFrame(java.io.InputStream in, ClientConfig config) throws IOException {
            byte[] header = in.readNBytes(Wire.HEADER_LEN);
            if (header.length < Wire.HEADER_LEN) {
                throw new EOFException("the server closed the connection during the handshake");
            }
            try {
                Wire.Header parsed = Wire.parseHeader(header, Wire.FRAME_BYTES_MAX_CEILING);
                byte[] body = in.readNBytes(parsed.bodyLen());
                if (body.length < parsed.bodyLen()) {
                    throw new EOFException("the server closed the connection during the handshake");
                }
                return Wire.decodeBody(parsed, body, Wire.BATCH_COMMANDS_MAX_DEFAULT);
            } catch (WireException error) {
                throw new PayrailException(PayrailException.Kind.PROTOCOL,
                        "payrail at " + config.addr() + " sent something unexpected: " + error.getMessage());
            }
        }

        /** HMAC-SHA256(secret, nonce || gateway). */
        static byte[] proof(byte[] secret, byte[] nonce, String gateway) {
            try {
                Mac mac = Mac.getInstance("HmacSHA256");
                // HMAC pads its key with zeros: an empty secret is 64 zero bytes (SecretKeySpec refuses empty keys).
                mac.init(new SecretKeySpec(secret.length == 0 ? new byte[64] : secret, "HmacSHA256"));
                mac.update(nonce);
                mac.update(gateway.getBytes(java.nio.charset.StandardCharsets.UTF_8));
                return mac.doFinal();
            } catch (NoSuchAlgorithmException | InvalidKeyException error) {
                throw new PayrailException(PayrailException.Kind.CONFIG, "HMAC-SHA256 is not available: " + error);
            }
        }

        private void start() {
            Thread reader = new Thread(this::readReplies, "payrail-reader");
            reader.setDaemon(true);
            Thread writer = new Thread(this::writeRequests, "payrail-writer");
            writer.setDaemon(true);
            reader.start();
            writer.start();
        }

        /** Queues a request; if the connection is closed it fails at once as NotSent. */
        void enqueue(Outgoing request) {
            synchronized (lock) {
                if (!closed) {
                    outgoing.add(request);
                    return;
                }
            }
            request.reply().completeExceptionally(new NotSent(closedReason));
        }

        private void writeRequests() {
            List<Outgoing> batch = new ArrayList<>();
            try {
                while (true) {
                    Outgoing first = outgoing.take();
                    if (first == STOP) {
                        break;
                    }
                    if (!acquire(first)) {
                        continue;
                    }
                    batch.clear();
                    batch.add(first);
                    long bytes = first.frame().remaining();
                    // Gather what is queued and may be sent now into one write.
                    while (bytes < WRITE_GATHER_BYTES) {
                        Outgoing next = outgoing.peek();
                        if (next == null || next == STOP || !inflight.tryAcquire()) {
                            break;
                        }
                        outgoing.poll();
                        if (!register(next)) {
                            inflight.release();
                            next.reply().completeExceptionally(new NotSent(closedReason));
                            continue;
                        }
                        batch.add(next);
                        bytes += next.frame().remaining();
                    }
                    ByteBuffer[] buffers = new ByteBuffer[batch.size()];
                    for (int i = 0; i < buffers.length; i++) {
                        buffers[i] = batch.get(i).frame().duplicate();
                    }
                    long left = bytes;
                    while (left > 0) {
                        left -= channel.write(buffers);
                    }
                }
            } catch (IOException error) {
                fail("writing failed: " + reason(error));
            } catch (InterruptedException error) {
                fail("the client was closed");
            }
            // Whatever is still queued was never written.
            Outgoing left;
            while ((left = outgoing.poll()) != null) {
                if (left != STOP) {
                    left.reply().completeExceptionally(new NotSent(closedReason));
                }
            }
        }

        /** Waits for an in-flight slot and registers the request; false if the connection closed. */
        private boolean acquire(Outgoing request) throws InterruptedException {
            while (!inflight.tryAcquire(20, TimeUnit.MILLISECONDS)) {
                if (closed) {
                    request.reply().completeExceptionally(new NotSent(closedReason));
                    return false;
                }
            }
            if (!register(request)) {
                inflight.release();
                request.reply().completeExceptionally(new NotSent(closedReason));
                return false;
            }
            return true;
        }

        private boolean register(Outgoing request) {
            synchronized (lock) {
                if (closed) {
                    return false;
                }
                waiting.put(request.requestId(), request.reply());
                return true;
            }
        }

        private void readReplies() {
            ByteBuffer header = ByteBuffer.allocate(Wire.HEADER_LEN);
            try {
                while (true) {
                    header.clear();
                    readFully(header);
                    Wire.Header parsed = Wire.parseHeader(header.array(), Wire.FRAME_BYTES_MAX_CEILING);
                    ByteBuffer body = ByteBuffer.allocate(parsed.bodyLen());
                    readFully(body);
                    Message message = Wire.decodeBody(parsed, body.array(), limits.batchCommandsMax());
                    CompletableFuture<Message> reply = waiting.remove(parsed.requestId());
                    if (reply == null) {
                        if (message instanceof Message.ErrorReply error) {
                            // Sent on the server's own (idle_timeout, shutting_down ...): it closes next.
                            fail("the server sent " + error.code().wireName() + ": " + error.message());
                        } else {
                            fail("a reply to request " + parsed.requestId() + ", which is not waiting");
                        }
                        return;
                    }
                    inflight.release();
                    reply.complete(message);
                }
            } catch (EOFException error) {
                fail("the server closed the connection");
            } catch (IOException error) {
                fail(reason(error));
            } catch (WireException error) {
                fail("the server sent a frame this client refuses: " + error.getMessage());
            }
        }

        private void readFully(ByteBuffer buffer) throws IOException {
            while (buffer.hasRemaining()) {
                if (channel.read(buffer) < 0) {
                    throw new EOFException();
                }
            }
        }

        /** Marks the connection closed and fails every request in flight (outcome unknown). */
        void fail(String reason) {
            List<CompletableFuture<Message>> drained;
            synchronized (lock) {
                if (closed) {
                    return;
                }
                closedReason = reason;
                closed = true;
                drained = new ArrayList<>(waiting.values());
                waiting.clear();
                outgoing.add(STOP);
            }
            closeQuietly(channel);
            for (CompletableFuture<Message> reply : drained) {
                reply.completeExceptionally(client.lost(reason));
            }
        }

        private static void closeQuietly(SocketChannel channel) {
            try {
                channel.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }
}
