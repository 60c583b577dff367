"""The asyncio client: the same surface as ``payrail.Client``, as coroutines.

::

    client = await AsyncClient.connect("127.0.0.1:7400", "local", secret)
    results = await client.submit([...])        # one request
    result = await client.execute(command)      # batched with concurrent calls

Requests from many tasks are pipelined on one connection (up to the
server's ``inflight_max``); a reader task hands each reply to its request by
request id. On a dropped connection every request in flight fails with
``ConnectionLost`` (``outcome_unknown``): retry with the same command ids.
The next request reconnects by itself.
"""

import asyncio
import ssl

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


def _reason(error):
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


class _Connection:
    """One authenticated connection with its reader task."""

    def __init__(self, config, reader, writer, frames, limits):
        self.addr = config.addr
        self.limits = limits
        self._reader = reader
        self._writer = writer
        self._frames = frames
        self._slots = asyncio.Semaphore(limits.inflight_max)
        self._waiting = {}
        self._next_request_id = 1
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._read_replies())

    @classmethod
    async def open(cls, config):
        host, port = config.host_port

        async def connect():
            try:
                if config.tls is None:
                    reader, writer = await asyncio.open_connection(host, port)
                else:
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        ssl=config.tls,
                        server_hostname=config.tls_server_name or host,
                    )
            except ssl.SSLError as error:
                raise ConnectError(
                    f"TLS with payrail at {config.addr} failed: {_reason(error)}"
                ) from None
            except OSError as error:
                raise ConnectError(
                    f"cannot reach payrail at {config.addr}: {_reason(error)} "
                    "(is `payrail serve` running?)"
                ) from None
            try:
                limits, frames = await cls._handshake(config, reader, writer)
            except BaseException:
                writer.close()
                raise
            return reader, writer, frames, limits

        try:
            reader, writer, frames, limits = await asyncio.wait_for(
                connect(), config.connect_timeout
            )
        except asyncio.TimeoutError:
            raise ConnectError(
                f"cannot reach payrail at {config.addr}: no answer within "
                f"{config.connect_timeout:g} s"
            ) from None
        frames.frame_bytes_max = max(
            frames.frame_bytes_max, min(limits.frame_bytes_max, wire.FRAME_BYTES_MAX_CEILING)
        )
        return cls(config, reader, writer, frames, limits)

    @staticmethod
    async def _handshake(config, reader, writer):
        frames = wire.FrameReader()

        async def read_message():
            while True:
                try:
                    frame = frames.next()
                except ProtocolError as error:
                    raise ConnectError(f"payrail at {config.addr} sent an undecodable frame: {error}")
                if frame is not None:
                    return wire.decode_body(frame[1], frame[2])
                try:
                    data = await reader.read(4096)
                except OSError as error:
                    raise ConnectError(
                        f"the connection to {config.addr} failed during the handshake: "
                        f"{_reason(error)}"
                    ) from None
                if not data:
                    raise ConnectError(
                        f"payrail at {config.addr} closed the connection during the handshake"
                    )
                frames.feed(data)

        hello = _core.hello_body(config, await read_message())
        writer.write(wire.frame(0, wire.Kind.HELLO, hello))
        try:
            await writer.drain()
        except OSError as error:
            raise ConnectError(
                f"the connection to {config.addr} failed during the handshake: {_reason(error)}"
            ) from None
        return _core.welcome_limits(config, await read_message()), frames

    async def send(self, request):
        """Writes the request and returns the future of its answer. Raises
        _NotSent if the connection closed before anything was written."""
        await self._slots.acquire()
        if self.closed:
            self._slots.release()
            raise _NotSent("the connection closed")
        request_id = self._next_request_id
        self._next_request_id += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (future, request)
        self._writer.write(wire.frame(request_id, request.kind, request.body))
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as error:
            self._fail(_reason(error))
        return future

    async def _read_replies(self):
        frames = self._frames
        try:
            while True:
                frame = frames.next()
                if frame is None:
                    data = await self._reader.read(_RECEIVE_BYTES)
                    if not data:
                        self._fail("the server closed the connection")
                        return
                    frames.feed(data)
                    continue
                request_id, kind, body = frame
                message = wire.decode_body(kind, body, self.limits.batch_commands_max)
                if request_id == 0:
                    if isinstance(message, t.ErrorReply):
                        reason = f"the server said: {message.message} ({message.code})"
                    else:
                        reason = f"an unexpected {type(message).__name__} message"
                    self._fail(reason)
                    return
                entry = self._waiting.pop(request_id, None)
                if entry is None:
                    continue
                self._slots.release()
                future, request = entry
                if future.done():
                    continue
                try:
                    future.set_result(request.answer(message))
                except PayrailError as error:
                    future.set_exception(error)
        except ProtocolError as error:
            self._fail(f"an undecodable reply: {error}")
        except OSError as error:
            self._fail(_reason(error))
        except Exception as error:  # a bug here must not leave requests hanging
            self._fail(f"the client's reader failed: {error!r}")
            raise

    def _fail(self, reason):
        if self.closed:
            return
        self.closed = True
        drained = list(self._waiting.values())
        self._waiting.clear()
        # Wake every task waiting for a slot: it sees `closed` and goes elsewhere.
        for _ in range(self.limits.inflight_max + 1):
            self._slots.release()
        self._writer.close()
        for future, _ in drained:
            if not future.done():
                future.set_exception(ConnectionLost(self.addr, reason))

    async def close(self):
        self._fail("the client closed the connection")
        if self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await self._writer.wait_closed()
        except OSError:
            pass


class AsyncClient:
    """A pipelined asyncio connection to a payrail server; create it with
    ``await AsyncClient.connect(addr, gateway, secret, **options)`` or
    ``await AsyncClient.local(addr, data_dir)``. Use it from one event loop."""

    def __init__(self, config):
        self.config = config
        self._connection = None
        self._connecting = asyncio.Lock()
        self._batch_queue = None
        self._batcher = None
        self._batches = set()
        self._closed = False

    @classmethod
    async def connect(cls, addr, gateway, secret, **options):
        client = cls(_core.make_config(addr, gateway, secret, options))
        await client._current()
        return client

    @classmethod
    async def local(cls, addr="127.0.0.1:7400", data_dir="payrail-data", **options):
        gateway, secret = _core.read_local_gateway(data_dir)
        return await cls.connect(addr, gateway, secret, **options)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self):
        """Closes the connection; requests in flight and commands waiting
        for a batch fail with ConnectionLost."""
        self._closed = True
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
            lost = ConnectionLost(self.config.addr, "the client was closed")
            while not self._batch_queue.empty():
                _, future = self._batch_queue.get_nowait()
                if not future.done():
                    future.set_exception(lost)
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    @property
    def limits(self):
        """The limits of the current connection, if there is one."""
        return None if self._connection is None else self._connection.limits

    # ------------------------------------------------------------ plumbing

    async def _current(self):
        if self._closed:
            raise ConnectionLost(self.config.addr, "the client was closed")
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        async with self._connecting:
            connection = self._connection
            if connection is not None and not connection.closed:
                return connection
            attempts = max(1, self.config.connect_attempts)
            backoff = _core.CONNECT_BACKOFF_FIRST
            for attempt in range(1, attempts + 1):
                try:
                    self._connection = await _Connection.open(self.config)
                    return self._connection
                except PayrailError as error:
                    if attempt == attempts or not _core.may_connect_later(error):
                        raise
                await asyncio.sleep(backoff)
                backoff *= 2
            raise AssertionError("unreachable")

    async def _call(self, request):
        timeout = self.config.request_timeout
        try:
            return await asyncio.wait_for(self._send_and_wait(request), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(self.config.addr, timeout) from None

    async def _send_and_wait(self, request):
        reason = "the connection closed"
        for _ in range(_core.REQUEST_SEND_ATTEMPTS_MAX):
            connection = await self._current()
            try:
                future = await connection.send(request)
            except _NotSent as not_sent:
                reason = str(not_sent)
                continue
            return await future
        raise ConnectionLost(self.config.addr, reason)

    # ------------------------------------------------------------ requests

    async def submit(self, commands):
        """One batch of commands as one request: one ``CommandResult`` per
        command, in order."""
        commands = list(commands)
        if not commands:
            return []
        _core.check_batch(len(commands), (await self._current()).limits)
        return await self._call(_core.submit(commands))

    async def execute(self, command):
        """One command, batched automatically with the commands other tasks
        execute at about the same time; its ``CommandResult``."""
        if self._closed:
            raise ConnectionLost(self.config.addr, "the client was closed")
        if self._batcher is None:
            self._batch_queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._run_batcher())
        future = asyncio.get_running_loop().create_future()
        self._batch_queue.put_nowait((command, future))
        return await future

    async def submit_qr(self, payments):
        payments = list(payments)
        if not payments:
            return []
        _core.check_batch(len(payments), (await self._current()).limits, wire.QR_BATCH_MAX)
        return await self._call(_core.submit_qr(payments))

    async def query(self, queries):
        queries = list(queries)
        if not queries:
            return []
        _core.check_batch(len(queries), (await self._current()).limits)
        return await self._call(_core.query(queries))

    async def status(self):
        return await self._call(_core.status())

    async def history(self, account, from_ns=0, to_ns=wire.U64_MAX, cursor=0, limit=0):
        return await self._call(_core.history(account, from_ns, to_ns, cursor, limit))

    async def tx(self, command_id):
        return await self._call(_core.tx(command_id))

    async def backup(self, directory):
        return await self._call(_core.backup(directory))

    async def set_risk_policy(self, policy):
        return await self._call(_core.set_risk_policy(policy))

    async def balance(self, account):
        return _core.balance_reply((await self.query([t.BalanceQuery(account)]))[0])

    async def command_status(self, command_id):
        return (await self.query([t.CommandQuery(command_id)]))[0]

    async def risk_policy(self):
        reply = (await self.query([t.RiskPolicyQuery()]))[0]
        if not isinstance(reply, t.RiskPolicyReply):
            raise ProtocolError(f"{reply!r} as the answer to a risk policy query")
        return reply

    async def risk_audit(self, account):
        return _core.risk_audit_entries(await self.query(_core.risk_audit_queries(account)))

    async def spending(self, account, month=0):
        return _core.spending_lines(await self.query(_core.spending_queries(account, month)))

    async def instruments(self, account):
        return _core.instrument_list(await self.query(_core.instrument_queries(account)))

    # ------------------------------------------------------------- batcher

    async def _run_batcher(self):
        pending = self._batch_queue
        while True:
            batch = [await pending.get()]
            connection = self._connection
            server_max = (
                wire.BATCH_COMMANDS_MAX_DEFAULT
                if connection is None
                else connection.limits.batch_commands_max
            )
            largest = max(1, min(self.config.auto_batch_max, server_max))
            if self.config.auto_batch_delay > 0:
                try:
                    await asyncio.sleep(self.config.auto_batch_delay)
                except asyncio.CancelledError:
                    # Closed while gathering: what was gathered fails too.
                    lost = ConnectionLost(self.config.addr, "the client was closed")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(lost)
                    raise
            while len(batch) < largest and not pending.empty():
                batch.append(pending.get_nowait())
            task = asyncio.get_running_loop().create_task(self._submit_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _submit_batch(self, batch):
        try:
            results = await self.submit([command for command, _ in batch])
        except PayrailError as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
