"""payrail: a pure-Python gateway client for the payrail payment engine.

Standard library only, Python 3.9+. Two clients with one surface:
``payrail.Client`` (blocking, thread-safe) and ``payrail.aio.AsyncClient``
(asyncio). Both pipeline requests on one connection, batch single commands
automatically (``execute``), speak every command and query the server has,
and turn a lost connection into ``ConnectionLost`` with ``outcome_unknown``
so a gateway retries with the same command ids.

Layout: ``wire`` (frames and bodies, no I/O), ``types`` (commands, queries,
results), ``codes`` (statuses and error codes), ``errors``, ``client``
(blocking), ``aio`` (asyncio); ``_core`` holds what the two clients share.
"""

from ._core import tls_context
from .aio import AsyncClient
from .client import Client
from .codes import ErrorCode, Status
from .errors import (
    BatchTooLarge,
    ConnectError,
    ConnectionLost,
    ConnectionRefused,
    EncodeError,
    GatewayRefused,
    PayrailError,
    ProtocolError,
    RequestTimeout,
    ServerError,
)
from .types import *  # noqa: F401,F403 (the commands, queries and results)
from .types import __all__ as _types_all

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BatchTooLarge",
    "Client",
    "ConnectError",
    "ConnectionLost",
    "ConnectionRefused",
    "EncodeError",
    "ErrorCode",
    "GatewayRefused",
    "PayrailError",
    "ProtocolError",
    "RequestTimeout",
    "ServerError",
    "Status",
    "tls_context",
] + list(_types_all)
