"""Why the embedded server refuses to start: each a clear, typed error with one message.

The command line prints ``str(error)`` on one line and exits with ``exit_code``.
"""

from __future__ import annotations

from ..exceptions import TsConnectorError

__all__ = [
    "DamagedDataError",
    "DataDirLocked",
    "InvalidDatabaseName",
    "ServerStartError",
]


class ServerStartError(TsConnectorError):
    """The server cannot start; nothing on disk was changed."""

    exit_code = 1


class DataDirLocked(ServerStartError):
    """Another server process already serves this data directory."""

    exit_code = 75  # EX_TEMPFAIL: try again once the other server stopped


class DamagedDataError(ServerStartError):
    """A snapshot or log file is damaged; start with ``repair=True`` (``--repair``)."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, damage: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        #: One entry per damaged region: file, offset, bytes, records, reason.
        self.damage = damage or []


class InvalidDatabaseName(ServerStartError, ValueError):
    """A database name SiriDB would refuse (its rule and message)."""

    exit_code = 2  # a usage error, like argparse's
