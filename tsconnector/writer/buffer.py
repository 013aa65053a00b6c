"""The writer's buffer: points in add order, taken off the front as batches."""

from __future__ import annotations

from collections import deque
from typing import Any

from .points import Piece, count, merge, split

__all__ = ["PointBuffer"]


class _Piece:
    """Points of one series added together (or by consecutive ``add`` calls)."""

    __slots__ = ("data", "n", "owned", "series", "t")

    def __init__(self, series: str, data: Piece, n: int, t: float, owned: bool) -> None:
        self.series = series
        self.data = data
        self.n = n
        self.t = t
        self.owned = owned  # a list of single adds that later single adds may extend


class PointBuffer:
    """Pieces in add order; ``points`` counts them. Batches are taken off the front with
    each series' pieces merged into one (one run of points per series per insert)."""

    def __init__(self) -> None:
        self._pieces: deque[_Piece] = deque()
        self.points = 0

    def __bool__(self) -> bool:
        return bool(self._pieces)

    @property
    def oldest(self) -> float:
        """When the oldest buffered piece was added (``loop.time()``)."""
        return self._pieces[0].t

    def add_point(self, series: str, ts: int, value: Any, now: float) -> None:
        """One point: extends the last piece when it holds single adds of that series."""
        last = self._pieces[-1] if self._pieces else None
        if last is not None and last.owned and last.series == series:
            last.data.append((ts, value))
            last.n += 1
        else:
            self._pieces.append(_Piece(series, [(ts, value)], 1, now, True))
        self.points += 1

    def add_piece(self, series: str, piece: Piece, n: int, now: float) -> None:
        self._pieces.append(_Piece(series, piece, n, now, False))
        self.points += n

    def take(self, limit: int) -> tuple[dict[str, Piece], int]:
        """Up to ``limit`` points off the front as ``{series: piece}`` and their count."""
        parts: dict[str, list[Piece]] = {}
        taken = 0
        pieces = self._pieces
        while taken < limit and pieces:
            piece = pieces[0]
            room = limit - taken
            if piece.n <= room:
                pieces.popleft()
                data, k = piece.data, piece.n
            else:
                data, piece.data = split(piece.data, room)
                piece.n -= room
                k = room
            parts.setdefault(piece.series, []).append(data)
            taken += k
        self.points -= taken
        return {s: merge(p) for s, p in parts.items()}, taken

    def untake(self, data: dict[str, Piece], now: float) -> int:
        """Put a batch back at the front (it could not be spooled); returns its points."""
        total = 0
        for series, piece in reversed(list(data.items())):
            n = count(piece)
            self._pieces.appendleft(_Piece(series, piece, n, now, False))
            total += n
        self.points += total
        return total
