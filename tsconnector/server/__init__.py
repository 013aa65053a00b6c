"""The embedded SiriDB-protocol server: ``EmbeddedServer`` and ``python -m tsconnector.server``."""

from __future__ import annotations

from .app import EmbeddedServer, parse_precision
from .errors import DamagedDataError, DataDirLocked, InvalidDatabaseName, ServerStartError
from .internal import InternalError, InternalErrors
from .limits import ServerLimits
from .storage import JournalError

__all__ = [
    "DamagedDataError",
    "DataDirLocked",
    "EmbeddedServer",
    "InternalError",
    "InternalErrors",
    "InvalidDatabaseName",
    "JournalError",
    "ServerLimits",
    "ServerStartError",
    "parse_precision",
]
