"""A one-line progress bar with a rate, redrawn in place on a terminal (10 times a second)."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 24


class Progress:
    """Shows ``[#####.....]  45%  450,000 points  120,000 points/s`` on ``stream``.

    ``total`` is the size of the input when known (for the percentage). A disabled
    progress bar prints nothing.
    """

    def __init__(self, stream: TextIO, *, enabled: bool, total: int | None = None) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total = total if total else None
        self.started = time.monotonic()
        self._next_draw = 0.0

    def elapsed(self) -> float:
        """Seconds since the start."""
        return max(time.monotonic() - self.started, 1e-9)

    def rate(self, points: int) -> float:
        """Points per second since the start."""
        return points / self.elapsed()

    def update(self, points: int, done: int | None = None, *, force: bool = False) -> None:
        """Redraw with ``points`` stored and ``done`` units of ``total`` read."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now < self._next_draw:
            return
        self._next_draw = now + 0.1
        bar = ""
        if self.total and done is not None:
            share = min(done / self.total, 1.0)
            filled = int(share * _WIDTH)
            bar = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {share * 100:3.0f}%  "
        self.stream.write(f"\r{bar}{points:,} points  {self.rate(points):,.0f} points/s\x1b[K")
        self.stream.flush()

    def finish(self, message: str) -> None:
        """Replace the bar by a final line."""
        if not self.enabled:
            return
        self.stream.write(f"\r{message}\x1b[K\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the bar (before an error message)."""
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
