"""Why a request (or connecting) failed.

Every error is a ``PayrailError``. Two mean the outcome is unknown: the
commands may or may not have been applied. ``ConnectionLost`` and
``RequestTimeout`` have ``outcome_unknown = True``: retry them **with the
same command ids**; the server answers a retried id with its first result,
so a retry never applies a command twice.
"""


class PayrailError(Exception):
    """Base of every error this client raises."""

    #: Whether the request may have been applied although no result came back.
    outcome_unknown = False


class ConnectError(PayrailError):
    """No connection could be made (after every attempt)."""


class GatewayRefused(PayrailError):
    """The server turned the gateway away in the handshake (unknown name,
    wrong secret)."""

    def __init__(self, gateway, code, message):
        self.gateway = gateway
        self.code = code
        self.message = message
        super().__init__(f"the server refused gateway {gateway!r}: {code} ({message})")


class ConnectionRefused(PayrailError):
    """The server refused the connection itself (too many connections,
    shutting down, ...)."""

    def __init__(self, addr, code, message):
        self.addr = addr
        self.code = code
        self.message = message
        super().__init__(f"payrail at {addr} refused the connection: {message} ({code})")


class ServerError(PayrailError):
    """The server answered the request with an ``Error`` frame (for example
    ``too_many_in_flight``, ``overloaded``, ``backup_failed``). The request
    was not applied."""

    def __init__(self, code, message):
        self.code = code
        self.message = message
        super().__init__(f"the server refused the request: {message} ({code})")


class ConnectionLost(PayrailError):
    """The connection dropped while the request was in flight."""

    outcome_unknown = True

    def __init__(self, addr, reason):
        self.addr = addr
        self.reason = reason
        super().__init__(
            f"the connection to payrail at {addr} was lost ({reason}): the request may or "
            "may not have been applied; retry it with the same command ids"
        )


class RequestTimeout(PayrailError):
    """No reply came within the request timeout."""

    outcome_unknown = True

    def __init__(self, addr, after):
        self.addr = addr
        self.after = after
        super().__init__(
            f"no reply from payrail at {addr} within {after:g} s: the request may or may "
            "not have been applied; retry it with the same command ids"
        )


class BatchTooLarge(PayrailError, ValueError):
    """The batch is larger than the server accepts; nothing was sent."""

    def __init__(self, count, maximum):
        self.count = count
        self.maximum = maximum
        super().__init__(
            f"a batch of {count} entries is more than the server accepts ({maximum}); split it"
        )


class EncodeError(PayrailError, ValueError):
    """A value cannot be encoded (out of its range, too long); nothing was sent."""


class ProtocolError(PayrailError):
    """The server sent something this client does not understand."""
