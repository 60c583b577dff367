"""A real `payrail serve` for the tests, on 127.0.0.1 with a free port and a
temporary data directory, and a loopback proxy that can drop a connection
at the worst moment.

The server binary is $PAYRAIL_BIN, or the repository's target/debug/payrail
(what `cargo test --workspace` builds).
"""

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package, also when not installed

REPOSITORY = HERE.parent.parent.parent
PROTOCOL_MD = REPOSITORY / "docs" / "protocol.md"
START_SECONDS_MAX = 60
STOP_SECONDS_MAX = 30


def free_addr():
    """A 127.0.0.1 address that was free a moment ago."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return "127.0.0.1:%d" % probe.getsockname()[1]


def payrail_binary():
    path = os.environ.get("PAYRAIL_BIN") or str(REPOSITORY / "target" / "debug" / "payrail")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"no payrail binary at {path}: run `cargo build --bin payrail` or set PAYRAIL_BIN"
        )
    return path


class Server:
    """`payrail serve` as a child process; `addr` is where it listens."""

    def __init__(self, directory, listen="127.0.0.1:0", extra_args=()):
        self.directory = Path(directory)
        self.extra_args = list(extra_args)
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "serve.log"
        self.listen = listen
        self.process = None
        self.addr = None

    def start(self):
        """Starts the server (again: a restart keeps the data and the log)."""
        log_offset = len(self.log())
        log = open(self.log_path, "ab")
        # No prefault of the tables allocated at start: it changes nothing a
        # client sees and takes seconds in a debug build.
        environment = dict(os.environ, RUST_LOG="info", NO_COLOR="1", PAYRAIL_PREFAULT="false")
        self.process = subprocess.Popen(
            [
                payrail_binary(),
                "serve",
                "--listen",
                self.listen,
                "--data-dir",
                str(self.data_dir),
                "--no-metrics",
                # Backups go under the tests' temporary directory.
                "--backup-root",
                str(self.directory.parent),
            ]
            + self.extra_args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=environment,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS_MAX
        while time.monotonic() < deadline:
            found = re.findall(r"listening addr=(127\.0\.0\.1:\d+)", self.log()[log_offset:])
            if found:
                self.addr = found[-1]
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"payrail serve exited with {self.process.returncode}: {self.log()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"payrail serve did not listen within {START_SECONDS_MAX} s: {self.log()}")

    def log(self):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return re.sub(r"\x1b\[[0-9;]*m", "", text)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self, **options):
        import payrail

        return payrail.Client.local(self.addr, self.data_dir, **options)

    def gateway(self):
        from payrail import _core

        return _core.read_local_gateway(self.data_dir)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server for the tests that share it (they use distinct account ids)."""
    running = Server(tmp_path_factory.mktemp("payrail")).start()
    yield running
    running.stop()


class Proxy:
    """A loopback TCP proxy in front of a server. ``drop_next_reply()`` makes
    it close the connection as soon as the server's next reply arrives,
    without passing it on: the request was applied, and the client never
    hears of it."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self._drop = threading.Event()
        self.dropped = threading.Event()
        self._stall = threading.Event()
        self._closed = False
        self._sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_reply(self):
        self.dropped.clear()
        self._drop.set()

    def stall_replies(self):
        """Passes no more replies on, and keeps the connections open."""
        self._stall.set()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source, destination, replies):
        # The server's first two writes are the Challenge and the Welcome
        # (the Welcome waits for the Hello, so they never arrive together).
        writes_seen = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if replies:
                    if self._stall.is_set():
                        continue
                    writes_seen += 1
                    if writes_seen > 2 and self._drop.is_set():
                        self._drop.clear()
                        self.dropped.set()
                        break
                destination.sendall(data)
        except OSError:
            pass
        for sock in (source, destination):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self._closed = True
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass


@pytest.fixture
def proxy(server):
    running = Proxy(server.addr)
    yield running
    running.close()


_ACCOUNT_IDS = itertools.count(100_000)


@pytest.fixture
def new_account():
    """Fresh account ids, distinct across the tests that share a server."""
    return lambda: next(_ACCOUNT_IDS)
