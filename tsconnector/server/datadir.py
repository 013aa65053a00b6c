"""The data directory: one server process at a time, and database names that stay inside.

:class:`DataDirLock` holds an ``fcntl.flock`` on ``<data-dir>/tsconnector.lock`` for the
server's lifetime (the file is never removed: removing a lock file races with the next
locker). Database names follow SiriDB's rule, so a name can never be a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

from .errors import DataDirLocked, InvalidDatabaseName

__all__ = ["LOCK_FILE", "DataDirLock", "database_directory", "validate_database_name"]

LOCK_FILE = "tsconnector.lock"
#: SiriDB 2.0.55 (``siri/service/request.c``): 2 to 20 characters, a letter first, a
#: letter or digit last, and letters, digits, ``-`` and ``_`` between.
_DBNAME = re.compile(r"[a-zA-Z][a-zA-Z0-9\-_]{0,18}[a-zA-Z0-9]")


def validate_database_name(name: str) -> str:
    """``name`` when SiriDB accepts it as a database name; else :class:`InvalidDatabaseName`
    with SiriDB's message."""
    if not isinstance(name, str) or _DBNAME.fullmatch(name) is None:
        raise InvalidDatabaseName(f"invalid database name: '{name}'")
    return name


def database_directory(data_dir: Path, name: str) -> Path:
    """Where database ``name`` keeps its files: always a direct child of ``data_dir``."""
    return data_dir / validate_database_name(name)


class DataDirLock:
    """An exclusive lock on a data directory, held until :meth:`release`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirLocked` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise DataDirLocked(
                f"data directory {self.path.parent} is in use by another server{who}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # the pid is only for the message above
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
