"""tsconnector: an asyncio-native driver for SiriDB-protocol time-series servers.

The public API is re-exported here; the embedded server lives in
:mod:`tsconnector.server` and test helpers in :mod:`tsconnector.testing`.
"""

from __future__ import annotations

from .client import TsClient
from .dsn import Dsn, format_dsn, parse_dsn
from .events import HostEvent, HostState, HostStats
from .exceptions import (
    AnswerTooLarge,
    AuthenticationError,
    ClientClosedError,
    InsertError,
    InsertOutcomeUnknown,
    InsertPartlyApplied,
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
from .ql import Duration, Group, Name, Regex, Str, Time, quote_name, quote_regex, quote_str
from .results import Series, to_arrays, to_dataframe
from .routing import RoutingStats
from .spool import SpoolCorrupted, SpoolLocked
from .timeutil import from_db_time, to_db_time
from .topology import ClusterServer, Topology
from .version import __version__
from .writer import BufferedWriter, BufferFull, WriterClosedError, WriterStats

__all__ = [
    "MICROSECOND",
    "MILLISECOND",
    "NANOSECOND",
    "SECOND",
    "AnswerTooLarge",
    "AuthenticationError",
    "BufferFull",
    "BufferedWriter",
    "ClientClosedError",
    "ClusterServer",
    "Dsn",
    "Duration",
    "Group",
    "HostEvent",
    "HostState",
    "HostStats",
    "InsertError",
    "InsertOutcomeUnknown",
    "InsertPartlyApplied",
    "Name",
    "PoolError",
    "ProtocolError",
    "QueryError",
    "Regex",
    "RoutingStats",
    "Series",
    "ServerAnswerError",
    "ServerError",
    "ServerRuntimeError",
    "SpoolCorrupted",
    "SpoolLocked",
    "Str",
    "Time",
    "Topology",
    "TsClient",
    "TsConnectionError",
    "TsConnectorError",
    "TsTimeoutError",
    "UnexpectedAnswerError",
    "UserAuthError",
    "WriterClosedError",
    "WriterStats",
    "__version__",
    "async_server_info",
    "format_dsn",
    "from_db_time",
    "parse_dsn",
    "quote_name",
    "quote_regex",
    "quote_str",
    "to_arrays",
    "to_dataframe",
    "to_db_time",
]
