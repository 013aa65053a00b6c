"""Internal errors of the embedded server: answered, counted, and visible to tests.

A bug in the server (handler, packing, query evaluation, journal apply) must never be
silent: the request gets an error answer (or its connection is closed), and the error is
recorded here. Each server has an :class:`InternalErrors` (``EmbeddedServer.internal_errors``)
with a count, the recent errors and hooks; the process-wide :func:`total` lets a test
fixture fail the test that caused one. Exceptions that the query engine catches and logs
itself are picked up from its log records (``logger.exception`` under
``tsconnector.server``), attributed to the server whose query was running.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from .ratelog import RateLimitedLog

__all__ = ["InternalError", "InternalErrors", "check_since", "recent", "running", "total"]

log = logging.getLogger("tsconnector.server")
_MARK = "tsc_internal_recorded"


@dataclass(frozen=True)
class InternalError:
    """One internal error: where it happened, the exception, and its traceback."""

    where: str
    error: str
    traceback: str
    time: float


Hook = Callable[[InternalError], None]

_total = 0
_recent: deque[InternalError] = deque(maxlen=50)
#: The errors of the server whose request is being handled right now (for log records).
running: ContextVar[InternalErrors | None] = ContextVar("tsconnector_server_errors", default=None)


def total() -> int:
    """Internal errors recorded in this process so far (all servers)."""
    return _total


def recent() -> list[InternalError]:
    """The last internal errors recorded in this process (all servers)."""
    return list(_recent)


def check_since(before: int) -> str | None:
    """None when no internal error was recorded since :func:`total` was ``before``;
    else a report of them (for a test fixture to fail with)."""
    new = _total - before
    if new <= 0:
        return None
    shown = list(_recent)[-min(new, len(_recent)) :]
    lines = [f"{new} internal server error(s) recorded:"]
    for error in shown[-3:]:
        lines.append(f"- {error.where}: {error.error}")
        if error.traceback:
            lines.append(error.traceback.rstrip())
    return "\n".join(lines)


class InternalErrors:
    """The internal errors of one server."""

    def __init__(self, rate_log: RateLimitedLog | None = None) -> None:
        self.count = 0
        self.recent: deque[InternalError] = deque(maxlen=100)
        self._hooks: list[Hook] = []
        self._log = rate_log or RateLimitedLog(log)

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(error)`` for every internal error from now on."""
        self._hooks.append(hook)

    def remove_hook(self, hook: Hook) -> None:
        self._hooks.remove(hook)

    def record(self, where: str, exc: BaseException | None = None) -> InternalError:
        """Count, keep and log (rate-limited) one internal error."""
        if exc is None:
            text, tb = "internal error", ""
        else:
            text = f"{type(exc).__name__}: {exc}"
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = InternalError(where, text, tb, time.time())
        self._keep(error)
        self._log.error(
            "internal:" + where, "internal error (%s): %s", where, text,
            exc_info=exc, extra={_MARK: True},
        )
        return error

    def _keep(self, error: InternalError) -> None:
        global _total
        self.count += 1
        self.recent.append(error)
        _total += 1
        _recent.append(error)
        for hook in list(self._hooks):
            try:
                hook(error)
            except Exception:  # a broken hook must not hide the error it reports
                log.warning("internal error hook failed", exc_info=True)

    def record_log(self, record: logging.LogRecord) -> None:
        """Keep an error that other server code caught and logged with its traceback."""
        tb = ""
        if record.exc_info and record.exc_info[0] is not None:
            tb = "".join(traceback.format_exception(*record.exc_info))
        self._keep(InternalError(record.name, record.getMessage(), tb, record.created))


class _Watcher(logging.Handler):
    """Turns logged exceptions of server code into recorded internal errors."""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or getattr(record, _MARK, False):
            return
        errors = running.get()
        if errors is None:
            errors = _orphans
        errors.record_log(record)


#: Errors logged while no server was handling a request (direct use of the engine).
_orphans = InternalErrors()
log.addHandler(_Watcher(logging.ERROR))
