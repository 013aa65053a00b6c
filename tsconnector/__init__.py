"""tsconnector: an asyncio-native driver for SiriDB-protocol time-series servers.

The public API is re-exported here; the embedded server lives in
:mod:`tsconnector.server` and test helpers in :mod:`tsconnector.testing`.
"""

from __future__ import annotations

from .client import TsClient
from .events import HostEvent, HostState, HostStats
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    InsertError,
    InsertOutcomeUnknown,
    PoolError,
    ProtocolError,
    QueryError,
    ServerAnswerError,
    ServerError,
    ServerRuntimeError,
    TsConnectionError,
    TsConnectorError,
    TsTimeoutError,
    UnexpectedAnswerError,
    UserAuthError,
)
from .info import async_server_info
from .protocol.constants import MICROSECOND, MILLISECOND, NANOSECOND, SECOND
from .version import __version__

__all__ = [
    "MICROSECOND",
    "MILLISECOND",
    "NANOSECOND",
    "SECOND",
    "AuthenticationError",
    "ClientClosedError",
    "HostEvent",
    "HostState",
    "HostStats",
    "InsertError",
    "InsertOutcomeUnknown",
    "PoolError",
    "ProtocolError",
    "QueryError",
    "ServerAnswerError",
    "ServerError",
    "ServerRuntimeError",
    "TsClient",
    "TsConnectionError",
    "TsConnectorError",
    "TsTimeoutError",
    "UnexpectedAnswerError",
    "UserAuthError",
    "__version__",
    "async_server_info",
]
