"""The embedded SiriDB-protocol server: ``EmbeddedServer`` and ``python -m tsconnector.server``."""

from __future__ import annotations

from ..timeutil import parse_precision
from .app import EmbeddedServer
from .cluster import Arrivals, ClusterTopology, TopologyError, TopologyServer
from .errors import DamagedDataError, DataDirLocked, InvalidDatabaseName, ServerStartError
from .internal import InternalError, InternalErrors
from .limits import ServerLimits
from .storage import JournalError

__all__ = [
    "Arrivals",
    "ClusterTopology",
    "DamagedDataError",
    "DataDirLocked",
    "EmbeddedServer",
    "InternalError",
    "InternalErrors",
    "InvalidDatabaseName",
    "JournalError",
    "ServerLimits",
    "ServerStartError",
    "TopologyError",
    "TopologyServer",
    "parse_precision",
]
