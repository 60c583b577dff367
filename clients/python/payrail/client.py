"""The blocking client: one pipelined connection, usable from many threads.

::

    Client.submit / query / ... ──▶ assign a request id, register it, write
                                    (up to the server's inflight_max requests
                                    in flight; more wait for a slot)
    Client.execute ──▶ batcher thread: single commands that arrive within
                       auto_batch_delay go out as one Submit
    socket ──▶ reader thread: decode replies, hand each to the request with
               its request id

Every request method has a ``*_future`` twin that sends at once and returns a
``concurrent.futures.Future``, so one thread can pipeline many requests.

When the connection drops, every request in flight fails with
``ConnectionLost`` (``outcome_unknown`` is True): retry it with the same
command ids, and the server answers with the first result. The next request
reconnects by itself. A request that was never written is sent on a new
connection automatically.
"""

import concurrent.futures
import queue
import socket
import threading
import time

from . import _core
from . import types as t
from . import wire
from .errors import (
    ConnectError,
    ConnectionLost,
    PayrailError,
    ProtocolError,
    RequestTimeout,
)

_RECEIVE_BYTES = 1 << 18


class _NotSent(Exception):
    """The request never reached the socket: safe to send elsewhere."""


class _Slots:
    """The in-flight bound of one connection; closing it wakes every waiter."""

    def __init__(self, count):
        self._condition = threading.Condition()
        self._free = count
        self._closed = False

    def acquire(self, timeout):
        with self._condition:
            if not self._condition.wait_for(lambda: self._free > 0 or self._closed, timeout):
                return False
            if self._closed:
                raise _NotSent("the connection closed")
            self._free -= 1
            return True

    def release(self):
        with self._condition:
            self._free += 1
            self._condition.notify()

    def close(self):
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class _Connection:
    """One authenticated connection with its reader thread."""

    def __init__(self, config):
        self.addr = config.addr
        host, port = config.host_port
        if config.tls is not None:
            # One ssl socket may not be read by the reader thread while
            # another thread writes to it; the asyncio client has TLS.
            raise ConnectError(
                "the blocking Client speaks plain TCP only: use payrail.aio.AsyncClient for TLS"
            )
        try:
            sock = socket.create_connection((host, port), timeout=config.connect_timeout)
        except OSError as error:
            raise ConnectError(
                f"cannot reach payrail at {config.addr}: {_reason(error)} "
                "(is `payrail serve` running?)"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.limits, reader = self._handshake(config, sock)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = reader
        # Replies may be as large as what the server accepts (a larger
        # batch_commands_max), never above the protocol's ceiling.
        reader.frame_bytes_max = max(
            reader.frame_bytes_max,
            min(self.limits.frame_bytes_max, wire.FRAME_BYTES_MAX_CEILING),
        )
        self._slots = _Slots(self.limits.inflight_max)
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._waiting = {}
        self._next_request_id = 1
        self.closed = False
        self._thread = threading.Thread(
            target=self._read_replies, name=f"payrail-reader-{config.addr}", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _handshake(config, sock):
        reader = wire.FrameReader()

        def read_message():
            while True:
                try:
                    frame = reader.next()
                except ProtocolError as error:
                    raise ConnectError(f"payrail at {config.addr} sent an undecodable frame: {error}")
                if frame is not None:
                    return wire.decode_body(frame[1], frame[2])
                try:
                    data = sock.recv(4096)
                except OSError as error:
                    raise ConnectError(
                        f"the connection to {config.addr} failed during the handshake: "
                        f"{_reason(error)}"
                    ) from None
                if not data:
                    raise ConnectError(
                        f"payrail at {config.addr} closed the connection during the handshake"
                    )
                reader.feed(data)

        hello = _core.hello_body(config, read_message())
        try:
            sock.sendall(wire.frame(0, wire.Kind.HELLO, hello))
        except OSError as error:
            raise ConnectError(
                f"the connection to {config.addr} failed during the handshake: {_reason(error)}"
            ) from None
        return _core.welcome_limits(config, read_message()), reader

    def send(self, request, timeout):
        """Writes the request; its future gets the answer. Raises _NotSent if
        the connection closed before anything was written."""
        if not self._slots.acquire(timeout):
            raise RequestTimeout(self.addr, timeout)
        future = concurrent.futures.Future()
        body_crc = wire.crc32c(request.body)
        with self._write_lock:
            with self._state_lock:
                if self.closed:
                    self._slots.release()
                    raise _NotSent("the connection closed")
                request_id = self._next_request_id
                self._next_request_id += 1
                self._waiting[request_id] = (future, request)
            data = wire.frame_with_checksum(request_id, request.kind, request.body, body_crc)
            try:
                self._sock.sendall(data)
            except OSError as error:
                # Part of it may have been written: the outcome is unknown.
                self._fail(_reason(error))
        return future

    def _read_replies(self):
        reader = self._reader
        sock = self._sock
        try:
            while True:
                frame = reader.next()
                if frame is None:
                    data = sock.recv(_RECEIVE_BYTES)
                    if not data:
                        self._fail("the server closed the connection")
                        return
                    reader.feed(data)
                    continue
                request_id, kind, body = frame
                message = wire.decode_body(kind, body, self.limits.batch_commands_max)
                if request_id == 0:
                    # Never ours: the server speaks about the connection
                    # (idle timeout, shutdown, a refused frame) and closes it.
                    if isinstance(message, t.ErrorReply):
                        reason = f"the server said: {message.message} ({message.code})"
                    else:
                        reason = f"an unexpected {type(message).__name__} message"
                    self._fail(reason)
                    return
                with self._state_lock:
                    entry = self._waiting.pop(request_id, None)
                if entry is None:
                    continue
                self._slots.release()
                future, request = entry
                try:
                    value = request.answer(message)
                except PayrailError as error:
                    _settle(future, error=error)
                else:
                    _settle(future, value)
        except ProtocolError as error:
            self._fail(f"an undecodable reply: {error}")
        except OSError as error:
            self._fail(_reason(error))
        except Exception as error:  # a bug here must not leave requests hanging
            self._fail(f"the client's reader failed: {error!r}")
            raise

    def _fail(self, reason):
        """Marks the connection closed and fails every request in flight."""
        with self._state_lock:
            if self.closed:
                return
            self.closed = True
            drained = list(self._waiting.values())
            self._waiting.clear()
        self._slots.close()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for future, _ in drained:
            _settle(future, error=ConnectionLost(self.addr, reason))

    def close(self):
        self._fail("the client closed the connection")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def _settle(future, value=None, error=None):
    """Completes a future unless its caller cancelled it."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


def _reason(error):
    """An OSError as the end of a sentence: "connection refused"."""
    if isinstance(error, socket.timeout):
        return "timed out"
    text = error.strerror or str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


class Client:
    """A pipelined, thread-safe connection to a payrail server.

    ``Client("127.0.0.1:7400", "local", secret)`` connects and authenticates
    at once; ``Client.local(addr, data_dir)`` reads the local gateway's name
    and secret from the server's data directory. Options (seconds):
    ``connect_timeout``, ``request_timeout``, ``auto_batch_max``,
    ``auto_batch_delay``, ``connect_attempts``.
    """

    def __init__(self, addr, gateway, secret, **options):
        self.config = _core.make_config(addr, gateway, secret, options)
        self._lock = threading.Lock()
        self._connection = None
        self._batcher = None
        self._batch_queue = None
        self._closed = False
        self._current()

    @classmethod
    def local(cls, addr="127.0.0.1:7400", data_dir="payrail-data", **options):
        gateway, secret = _core.read_local_gateway(data_dir)
        return cls(addr, gateway, secret, **options)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Stops the batcher and closes the connection; requests in flight
        fail with ConnectionLost."""
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            self._batch_queue.put(None)
            batcher.join(timeout=5)
        if connection is not None:
            connection.close()

    @property
    def limits(self):
        """The limits of the current connection (``t.Limits``)."""
        return self._current().limits

    # ------------------------------------------------------------ plumbing

    def _current(self):
        with self._lock:
            if self._closed:
                raise ConnectionLost(self.config.addr, "the client was closed")
            connection = self._connection
            if connection is not None and not connection.closed:
                return connection
            attempts = max(1, self.config.connect_attempts)
            backoff = _core.CONNECT_BACKOFF_FIRST
            for attempt in range(1, attempts + 1):
                try:
                    self._connection = _Connection(self.config)
                    return self._connection
                except PayrailError as error:
                    if attempt == attempts or not _core.may_connect_later(error):
                        raise
                time.sleep(backoff)
                backoff *= 2
            raise AssertionError("unreachable")

    def _send(self, request):
        reason = "the connection closed"
        for _ in range(_core.REQUEST_SEND_ATTEMPTS_MAX):
            connection = self._current()
            try:
                return connection.send(request, self.config.request_timeout)
            except _NotSent as not_sent:
                reason = str(not_sent)
        raise ConnectionLost(self.config.addr, reason)

    def _wait(self, future):
        try:
            return future.result(timeout=self.config.request_timeout)
        except concurrent.futures.TimeoutError:
            raise RequestTimeout(self.config.addr, self.config.request_timeout) from None

    def _call(self, request):
        return self._wait(self._send(request))

    @staticmethod
    def _done(value):
        future = concurrent.futures.Future()
        future.set_result(value)
        return future

    # ------------------------------------------------------------ requests

    def submit_future(self, commands):
        """Sends one batch of commands as one request; the future gets one
        ``CommandResult`` per command, in order."""
        commands = list(commands)
        if not commands:
            return self._done([])
        _core.check_batch(len(commands), self._current().limits)
        return self._send(_core.submit(commands))

    def submit(self, commands):
        """One batch of commands as one request: one ``CommandResult`` per
        command, in order. Larger than the server's batch limit: refused
        here (``BatchTooLarge``), nothing sent."""
        return self._wait(self.submit_future(commands))

    def execute_future(self, command):
        """One command, batched automatically with the commands other
        callers execute at about the same time."""
        future = concurrent.futures.Future()
        self._batcher_queue().put((command, future))
        return future

    def execute(self, command):
        """One command, batched automatically with concurrent callers'
        (``auto_batch_delay``, ``auto_batch_max``); its ``CommandResult``."""
        return self._wait(self.execute_future(command))

    def submit_qr_future(self, payments):
        payments = list(payments)
        if not payments:
            return self._done([])
        _core.check_batch(len(payments), self._current().limits, wire.QR_BATCH_MAX)
        return self._send(_core.submit_qr(payments))

    def submit_qr(self, payments):
        """Merchant-presented QR payments (``QrPayment``, raw payloads parsed
        by the server) as one request: one ``CommandResult`` per payment."""
        return self._wait(self.submit_qr_future(payments))

    def query_future(self, queries):
        queries = list(queries)
        if not queries:
            return self._done([])
        _core.check_batch(len(queries), self._current().limits)
        return self._send(_core.query(queries))

    def query(self, queries):
        """A batch of read-only queries: one reply per query, in order
        (``AccountView``, ``CommandOutcome``, ``Refused``, ...)."""
        return self._wait(self.query_future(queries))

    def status(self):
        """The server's counters (``engine.*``, ``server.*``) by name."""
        return self._call(_core.status())

    def history(self, account, from_ns=0, to_ns=wire.U64_MAX, cursor=0, limit=0):
        """A ``HistoryPage`` of the account's movements, newest first;
        ``limit`` 0 is the server's default (50), at most 1,000."""
        return self._call(_core.history(account, from_ns, to_ns, cursor, limit))

    def tx(self, command_id):
        """What became of one command: a ``TxReply`` (source, status, legs)."""
        return self._call(_core.tx(command_id))

    def backup(self, directory):
        """Writes a consistent backup to ``directory`` on the server's machine
        (it must not exist); the last log sequence it holds."""
        return self._call(_core.backup(directory))

    def set_risk_policy(self, policy):
        """Puts a ``RiskPolicy`` in force through the log; ``RiskPolicySet``."""
        return self._call(_core.set_risk_policy(policy))

    def balance(self, account):
        """The account's ``AccountView``, or None if there is no such account."""
        return _core.balance_reply(self.query([t.BalanceQuery(account)])[0])

    def command_status(self, command_id):
        """The first result's status of a command (``CommandOutcome``), or
        ``Refused(unknown_command)``."""
        return self.query([t.CommandQuery(command_id)])[0]

    def risk_policy(self):
        """The digest of the risk policy in force and the rules that are on."""
        reply = self.query([t.RiskPolicyQuery()])[0]
        if not isinstance(reply, t.RiskPolicyReply):
            raise ProtocolError(f"{reply!r} as the answer to a risk policy query")
        return reply

    def risk_audit(self, account):
        """The customer's audited risk decisions, newest first, or the
        ``Refused`` reply (unknown account, not a customer)."""
        return _core.risk_audit_entries(self.query(_core.risk_audit_queries(account)))

    def spending(self, account, month=0):
        """One ``SpendingReply`` per category, or the ``Refused`` reply."""
        return _core.spending_lines(self.query(_core.spending_queries(account, month)))

    def instruments(self, account):
        """The funding instruments (``InstrumentView``, number order, unbound
        ones still remembered included) of the customer holding ``account``,
        or the ``Refused`` reply. Bind, verify and unbind them, top up from
        and withdraw to them with ``BindInstrument``, ``VerifyInstrument``,
        ``UnbindInstrument``, ``DepositFrom`` and ``WithdrawHoldTo``."""
        return _core.instrument_list(self.query(_core.instrument_queries(account)))

    # ------------------------------------------------------------- batcher

    def _batcher_queue(self):
        with self._lock:
            if self._closed:
                raise ConnectionLost(self.config.addr, "the client was closed")
            if self._batcher is None:
                self._batch_queue = queue.SimpleQueue()
                self._batcher = threading.Thread(
                    target=self._run_batcher, name="payrail-batcher", daemon=True
                )
                self._batcher.start()
            return self._batch_queue

    def _run_batcher(self):
        pending = self._batch_queue
        while True:
            first = pending.get()
            if first is None:
                return
            batch = [first]
            largest = max(1, min(self.config.auto_batch_max, self._current_batch_max()))
            if self.config.auto_batch_delay > 0:
                time.sleep(self.config.auto_batch_delay)
            stop = False
            while len(batch) < largest:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._submit_batch(batch)
            if stop:
                return

    def _current_batch_max(self):
        connection = self._connection
        if connection is None:
            return wire.BATCH_COMMANDS_MAX_DEFAULT
        return connection.limits.batch_commands_max

    def _submit_batch(self, batch):
        futures = [future for _, future in batch]
        try:
            sent = self.submit_future([command for command, _ in batch])
        except PayrailError as error:
            for future in futures:
                _settle(future, error=error)
            return

        def distribute(done):
            error = done.exception()
            if error is not None:
                for future in futures:
                    _settle(future, error=error)
                return
            for future, result in zip(futures, done.result()):
                _settle(future, result)

        sent.add_done_callback(distribute)
