"""A logger wrapper that keeps floods out of the log: a few messages per key and period.

Under an attack (thousands of bad connections a second) the server must keep logging
what happens without writing a traceback per event. :class:`RateLimitedLog` lets
``burst`` messages of one key through per ``period`` seconds, counts the rest, and
reports how many it held back with the next message of that key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog"]

#: Keys remembered at most; beyond that the table starts over (keys are few and fixed).
_MAX_KEYS = 1024


class RateLimitedLog:
    """Log through ``logger``, at most ``burst`` messages per key every ``period`` s."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        period: float = 10.0,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.period = period
        self.burst = burst
        self._clock = clock
        # key -> [window start, messages logged in it, messages held back]
        self._keys: dict[str, list[float]] = {}

    def log(self, level: int, key: str, msg: str, *args: Any, **kwargs: Any) -> bool:
        """Log unless ``key`` used up its burst in this period; True when logged."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None or now - entry[0] >= self.period:
            held = int(entry[2]) if entry is not None else 0
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            entry = self._keys[key] = [now, 0.0, 0.0]
            if held:
                self.logger.log(
                    level, "%d similar messages (%s) were suppressed in %.0f s",
                    held, key, self.period,
                )
        if entry[1] >= self.burst:
            entry[2] += 1
            return False
        entry[1] += 1
        self.logger.log(level, msg, *args, **kwargs)
        return True

    def suppressed(self, key: str) -> int:
        """Messages of ``key`` held back in the current period."""
        entry = self._keys.get(key)
        return int(entry[2]) if entry is not None else 0

    def info(self, key: str, msg: str, *args: Any, **kwargs: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args, **kwargs)

    def warning(self, key: str, msg: str, *args: Any, **kwargs: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args, **kwargs)

    def error(self, key: str, msg: str, *args: Any, **kwargs: Any) -> bool:
        return self.log(logging.ERROR, key, msg, *args, **kwargs)
