"""What the blocking and the asyncio client share, without I/O: the
configuration, the handshake, each request's body and how its reply is
read."""

import os
import re
import ssl
from dataclasses import dataclass

from . import types as t
from . import wire
from .codes import ErrorCode, Status
from .errors import (
    BatchTooLarge,
    ConnectError,
    ConnectionRefused,
    GatewayRefused,
    ProtocolError,
    ServerError,
)

CONNECT_TIMEOUT_DEFAULT = 5.0
REQUEST_TIMEOUT_DEFAULT = 30.0
AUTO_BATCH_MAX_DEFAULT = wire.BATCH_COMMANDS_MAX_DEFAULT
AUTO_BATCH_DELAY_DEFAULT = 0.0002
CONNECT_ATTEMPTS_DEFAULT = 3
# First wait between two connection attempts; it doubles each time.
CONNECT_BACKOFF_FIRST = 0.05
# Most times a request that was never written is tried on a new connection.
REQUEST_SEND_ATTEMPTS_MAX = 3
# A risk audit asks for every entry a customer may have, in one request.
AUDIT_ENTRIES_MAX = 32
LOCAL_GATEWAY_FILE = "gateway.toml"


@dataclass
class Config:
    """Where the server is, who this client is, and its timeouts (seconds)."""

    addr: str
    gateway: str
    secret: bytes
    connect_timeout: float = CONNECT_TIMEOUT_DEFAULT
    request_timeout: float = REQUEST_TIMEOUT_DEFAULT
    auto_batch_max: int = AUTO_BATCH_MAX_DEFAULT
    auto_batch_delay: float = AUTO_BATCH_DELAY_DEFAULT
    connect_attempts: int = CONNECT_ATTEMPTS_DEFAULT
    # TLS (an ssl.SSLContext, see tls_context), for a server with [tls] on;
    # None: plain TCP. The asyncio client only.
    tls: object = None
    # The server's name in its certificate; None: the host of addr.
    tls_server_name: str = None

    def __repr__(self):
        # Secrets never appear in logs.
        return f"Config(addr={self.addr!r}, gateway={self.gateway!r}, secret=<redacted>)"

    @property
    def host_port(self):
        host, _, port = self.addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConnectError(f"{self.addr!r} is not host:port")
        return host.strip("[]"), int(port)


def tls_context(ca_file, cert_file=None, key_file=None):
    """An ``ssl.SSLContext`` for ``tls=``: trusts the CA certificates (PEM)
    in ``ca_file`` for the server's certificate and checks its name; with
    ``cert_file`` and ``key_file`` (PEM), presents that client certificate
    to a server that asks for one (``tls.client_ca``)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.fspath(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(os.fspath(cert_file), None if key_file is None else os.fspath(key_file))
    return context


def make_config(addr, gateway, secret, options):
    if isinstance(secret, str):
        secret = bytes.fromhex(secret)
    config = Config(addr, gateway, bytes(secret))
    for name, value in options.items():
        if not hasattr(config, name):
            raise TypeError(f"unknown option {name!r}")
        setattr(config, name, value)
    return config


def read_local_gateway(data_dir):
    """(name, secret) of the local gateway of a server's data directory:
    ``gateway.toml``, which ``payrail serve`` creates on its first start."""
    path = os.path.join(os.fspath(data_dir), LOCAL_GATEWAY_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConnectError(
            f"no gateway secret in {path}: start the server once with `payrail serve`, "
            "or pass its data directory"
        ) from None
    except OSError as error:
        raise ConnectError(f"cannot read the gateway secret in {path}: {error.strerror}") from None
    # The file holds two plain `key = "value"` lines (and comments).
    values = dict(re.findall(r'^\s*(name|secret)\s*=\s*"([^"]*)"\s*$', text, re.MULTILINE))
    try:
        secret = bytes.fromhex(values["secret"].strip())
        name = values["name"]
    except (KeyError, ValueError):
        raise ConnectError(f"{path} holds no valid gateway name and secret") from None
    if len(secret) < 16:
        raise ConnectError(f"{path} holds no valid secret (hex, at least 16 bytes)")
    return name, secret


# -------------------------------------------------------------- handshake


def hello_body(config, challenge):
    """The body of the Hello that answers this Challenge."""
    if not isinstance(challenge, t.Challenge):
        raise _refusal_or_protocol(config, challenge, "a challenge")
    proof = wire.proof(config.secret, challenge.nonce, config.gateway)
    return wire.encode_hello(config.gateway, proof)


def welcome_limits(config, message):
    """The limits in the server's Welcome, or the refusal as an error."""
    if isinstance(message, t.Limits):
        if message.batch_commands_max == 0 or message.inflight_max == 0:
            raise ProtocolError(f"unusable limits in the server's welcome: {message}")
        return message
    if isinstance(message, t.ErrorReply) and message.code in (
        ErrorCode.unknown_gateway,
        ErrorCode.bad_proof,
    ):
        raise GatewayRefused(config.gateway, message.code, message.message)
    raise _refusal_or_protocol(config, message, "a welcome")


def _refusal_or_protocol(config, message, expected):
    if isinstance(message, t.ErrorReply):
        return ConnectionRefused(config.addr, message.code, message.message)
    return ProtocolError(f"payrail at {config.addr} sent {type(message).__name__} instead of {expected}")


def may_connect_later(error):
    """Whether trying to connect again may help."""
    if isinstance(error, ConnectError):
        return True
    if isinstance(error, ConnectionRefused):
        return error.code in (
            ErrorCode.too_many_connections,
            ErrorCode.shutting_down,
            ErrorCode.overloaded,
        )
    return False


# --------------------------------------------------------------- requests


class Request:
    """One request: its kind and body, and how to read its reply."""

    __slots__ = ("kind", "body", "read")

    def __init__(self, kind, body, read):
        self.kind = kind
        self.body = body
        self.read = read

    def answer(self, message):
        """The caller's value from the reply message; an Error reply raises
        ``ServerError``."""
        if isinstance(message, t.ErrorReply):
            raise ServerError(message.code, message.message)
        return self.read(message)


def _expect(kind_type, what):
    def read(message):
        if not isinstance(message, kind_type):
            raise ProtocolError(f"a {type(message).__name__} message as the reply to {what}")
        return message

    return read


def check_batch(count, limits, maximum=None):
    largest = limits.batch_commands_max if maximum is None else min(maximum, limits.batch_commands_max)
    if count > largest:
        raise BatchTooLarge(count, largest)


def submit(commands):
    count = len(commands)
    read_results = _expect(t.Results, "a submit")

    def read(message):
        results = read_results(message).results
        if len(results) != count:
            raise ProtocolError(f"{len(results)} results for {count} commands")
        return results

    return Request(wire.Kind.SUBMIT, wire.encode_submit(commands), read)


def submit_qr(payments):
    count = len(payments)
    read_results = _expect(t.Results, "a QR submit")

    def read(message):
        results = read_results(message).results
        if len(results) != count:
            raise ProtocolError(f"{len(results)} results for {count} QR payments")
        return results

    return Request(wire.Kind.SUBMIT_QR, wire.encode_submit_qr(payments), read)


def query(queries):
    count = len(queries)
    read_replies = _expect(t.QueryResults, "a query")

    def read(message):
        replies = read_replies(message).replies
        if len(replies) != count:
            raise ProtocolError(f"{len(replies)} replies for {count} queries")
        return replies

    return Request(wire.Kind.QUERY, wire.encode_query(queries), read)


def status():
    read = _expect(t.StatusReply, "a status request")
    return Request(wire.Kind.STATUS, b"", lambda message: dict(read(message).fields))


def history(account, from_ns, to_ns, cursor, limit):
    body = wire.encode_history_query(account, from_ns, to_ns, cursor, limit)
    return Request(wire.Kind.HISTORY_QUERY, body, _expect(t.HistoryPage, "a history query"))


def tx(command_id):
    body = wire.encode_tx_query(command_id)
    return Request(wire.Kind.TX_QUERY, body, _expect(t.TxReply, "a tx query"))


def backup(directory):
    read = _expect(t.BackupReply, "a backup")
    return Request(
        wire.Kind.BACKUP, wire.encode_backup(directory), lambda m: read(m).last_sequence
    )


def set_risk_policy(policy):
    body = wire.encode_set_risk_policy(policy)
    return Request(wire.Kind.SET_RISK_POLICY, body, _expect(t.RiskPolicySet, "a risk policy"))


# Queries with a shape of their own, built from Query batches.


def balance_reply(reply):
    """The AccountView of a BalanceQuery reply, or None for an unknown account."""
    if isinstance(reply, t.AccountView):
        return reply
    if isinstance(reply, t.Refused):
        return None
    raise ProtocolError(f"{reply!r} as the answer to a balance query")


def risk_audit_queries(account):
    return [t.RiskAuditQuery(account, index) for index in range(AUDIT_ENTRIES_MAX)]


def risk_audit_entries(replies):
    """The audited decisions, newest first; a refusal raises nothing but
    returns its ``Refused``."""
    entries = []
    for index, reply in enumerate(replies):
        if isinstance(reply, t.Refused):
            return reply
        if not isinstance(reply, t.RiskAuditReply):
            raise ProtocolError(f"{reply!r} as the answer to an audit query")
        if index < reply.entries:
            entries.append(reply.entry)
    return entries


INSTRUMENTS_LISTED_MAX = 64


def instrument_queries(account):
    return [t.InstrumentQuery(account, index) for index in range(INSTRUMENTS_LISTED_MAX)]


def instrument_list(replies):
    """The customer's instruments in number order (a customer has at most
    64); a refusal (unknown account, not a customer) returns its ``Refused``."""
    views = []
    for reply in replies:
        if isinstance(reply, t.InstrumentView):
            views.append(reply)
        elif reply == t.Refused(Status.unknown_instrument):
            return views
        elif isinstance(reply, t.Refused):
            return reply
        else:
            raise ProtocolError(f"{reply!r} as the answer to an instrument query")
    return views


def spending_queries(account, month):
    return [t.SpendingQuery(account, month, int(category)) for category in t.Category]


def spending_lines(replies):
    for reply in replies:
        if isinstance(reply, t.Refused):
            return reply
        if not isinstance(reply, t.SpendingReply):
            raise ProtocolError(f"{reply!r} as the answer to a spending query")
    return list(replies)
