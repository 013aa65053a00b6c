"""Server-wide switches that queries change: log level and backup mode.

SiriDB keeps these per server process (not per database): ``alter server ... set
log_level`` and ``set backup_mode`` change them, ``show``/``list servers`` report them,
and backup mode makes the server refuse inserts and most queries (it is no longer
"accessible") so its files can be copied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

__all__ = ["LOG_LEVELS", "ServerControl"]

#: SiriDB's log levels, by the number it compares them with.
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

#: Flag values SiriDB reports in its "not accepting" error (running, backup mode).
_FLAG_RUNNING: Final = 1
_FLAG_BACKUP_MODE: Final = 8

_LOGGING_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


@dataclass
class ServerControl:
    """The embedded server's log level and backup mode."""

    log_level: str = "info"
    backup_mode: bool = False

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS.index(self.log_level)

    def set_log_level(self, level: str) -> None:
        """Change the level and the embedded server's own loggers with it."""
        self.log_level = level
        logging.getLogger("tsconnector.server").setLevel(_LOGGING_LEVELS[level])

    @property
    def flags(self) -> int:
        return _FLAG_RUNNING | (_FLAG_BACKUP_MODE if self.backup_mode else 0)

    @property
    def status(self) -> str:
        """The server status as ``show status`` writes it."""
        return "running | backup-mode" if self.backup_mode else "running"

    @property
    def accessible(self) -> bool:
        """Whether the server accepts data queries (not in backup mode)."""
        return not self.backup_mode

    def insert_refusal(self, server_name: str) -> str | None:
        """SiriDB's error for an insert the server does not accept now, or None."""
        if not self.backup_mode:
            return None
        return (
            f"Server '{server_name}' is not accepting the request because of having "
            f"status: {self.flags}"
        )
