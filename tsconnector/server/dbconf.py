"""``database.conf`` of a database directory: the buffer path and size, as SiriDB reads them.

SiriDB reads ``[buffer] path`` and ``[buffer] size`` from ``<dbpath>/database.conf``
each time it loads a database: the path is only reported (``show buffer_path``), a new
valid size (a multiple of 512 up to 1 MiB) resizes every series buffer.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Final

__all__ = ["MAX_BUFFER_SIZE", "DatabaseConf", "buffer_path_text", "read_database_conf"]

MAX_BUFFER_SIZE: Final = 1048576
CONF_FILE: Final = "database.conf"
_BUFFER_FILE: Final = "buffer.dat"


class DatabaseConf:
    """The buffer settings found in ``database.conf`` (None where not given or invalid)."""

    __slots__ = ("buffer_path", "buffer_size")

    def __init__(self, buffer_path: str | None = None, buffer_size: int | None = None) -> None:
        self.buffer_path = buffer_path
        self.buffer_size = buffer_size


def valid_buffer_size(size: int) -> bool:
    return size >= 512 and size % 512 == 0 and size <= MAX_BUFFER_SIZE


def buffer_path_text(path: str) -> str:
    """The buffer path as SiriDB keeps it: a directory with a trailing slash."""
    if path.endswith("/"):
        return path
    if path.endswith("/" + _BUFFER_FILE):
        return path[: -len(_BUFFER_FILE)]
    return path + "/"


def read_database_conf(directory: Path) -> DatabaseConf:
    """The buffer settings of ``directory/database.conf`` (none when it is missing)."""
    parser = configparser.RawConfigParser()
    try:
        found = parser.read(directory / CONF_FILE)
    except (configparser.Error, UnicodeDecodeError):
        return DatabaseConf()
    if not found or not parser.has_section("buffer"):
        return DatabaseConf()
    path = parser.get("buffer", "path", fallback=None)
    size_text = parser.get("buffer", "size", fallback=None)
    size = None
    if size_text is not None and size_text.strip().lstrip("-").isdigit():
        value = int(size_text.strip())
        size = value if valid_buffer_size(value) else None
    return DatabaseConf(buffer_path_text(path) if path else None, size)
