"""Read-back check: which points of a batch whose insert outcome is unknown are stored.

SiriDB keeps duplicates, so sending such a batch again could store its points twice
(DESIGN decision 1). The batch's time window is read back, in answers of bounded size
(counted first, split by series, then by time), and only the shortfall is sent again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import AnswerTooLarge, QueryError
from ..ql import quote_name
from .points import Piece, bounds, pairs, value_key

if TYPE_CHECKING:
    from ..client import TsClient

__all__ = ["CHECK_GROUP", "ReadBack"]

#: Series per read-back query when checking an insert whose outcome is unknown.
CHECK_GROUP = 64


class ReadBack:
    """Reads stored points back through ``client`` (``read_back_points`` per answer)."""

    def __init__(self, client: TsClient, query_timeout: float, read_back_points: int) -> None:
        self.client = client
        self.query_timeout = query_timeout
        self.read_back_points = read_back_points

    async def missing(self, data: Mapping[str, Piece]) -> tuple[dict[str, list[Any]], int]:
        """``(points not stored, points found stored)`` for ``data`` by reading it back.

        Stored points are counted per (timestamp, value), so only the shortfall of
        duplicates is returned.
        """
        names = list(data)
        spans = {name: bounds(data[name]) for name in names}
        missing: dict[str, list[Any]] = {}
        present = 0
        for i in range(0, len(names), CHECK_GROUP):
            group = names[i : i + CHECK_GROUP]
            start = min(spans[n][0] for n in group)
            end = max(spans[n][1] for n in group)
            stored = await self._read_back(group, start, end)
            for name in group:
                lo, hi = spans[name]
                have = Counter(
                    (p[0], value_key(p[1])) for p in stored.get(name, ()) if lo <= p[0] <= hi
                )
                lost = []
                for point in pairs(data[name]):
                    key = (point[0], value_key(point[1]))
                    if have[key] > 0:
                        have[key] -= 1
                        present += 1
                    else:
                        lost.append(point)
                if lost:
                    missing[name] = lost
        return missing, present

    async def _read_back(
        self, names: Sequence[str], start: int, end: int, depth: int = 0
    ) -> dict[str, list[Any]]:
        """Stored points of ``names`` in ``[start, end]``, read in bounded pieces.

        The points are counted first; a range holding more than ``read_back_points``
        (a busy series) is split by series, then by time, so that no answer is large.
        """
        counts = await self._count(names, start, end)
        names = [n for n in names if counts.get(n)]
        total = sum(counts[n] for n in names)
        if not names:
            return {}
        if total <= self.read_back_points or (len(names) == 1 and start >= end) or depth > 64:
            return await self._select(names, start, end)
        if len(names) > 1:
            half = len(names) // 2
            first = await self._read_back(names[:half], start, end, depth + 1)
            first.update(await self._read_back(names[half:], start, end, depth + 1))
            return first
        middle = (start + end) // 2
        low = await self._read_back(names, start, middle, depth + 1)
        high = await self._read_back(names, middle + 1, end, depth + 1)
        return {names[0]: low.get(names[0], []) + high.get(names[0], [])}

    async def _count(self, names: Sequence[str], start: int, end: int) -> dict[str, int]:
        """Stored points per series in ``[start, end]`` (one small answer)."""
        answer = await self.client.query(
            f"select count() from {', '.join(quote_name(n) for n in names)} "
            f"between {start} and {end + 1}",
            timeout=self.query_timeout,
        )
        counts: dict[str, int] = {}
        for name, points in dict(answer).items():
            counts[str(name)] = int(points[0][1]) if points else 0
        return counts

    async def _select(self, names: Sequence[str], start: int, end: int) -> dict[str, list[Any]]:
        """Stored points of ``names`` with ``start <= ts <= end``; splits when the server's
        points limit or the client's frame limit refuses the answer."""
        query = (
            f"select * from {', '.join(quote_name(n) for n in names)} "
            f"between {start} and {end + 1}"
        )
        try:
            answer = await self.client.query(query, timeout=self.query_timeout)
        except (QueryError, AnswerTooLarge) as exc:
            if isinstance(exc, QueryError) and "maximum number of selected points" not in str(exc):
                raise
            if len(names) > 1:
                half = len(names) // 2
                first = await self._select(names[:half], start, end)
                first.update(await self._select(names[half:], start, end))
                return first
            if start >= end:
                raise
            middle = (start + end) // 2
            low = await self._select(names, start, middle)
            high = await self._select(names, middle + 1, end)
            return {names[0]: low.get(names[0], []) + high.get(names[0], [])}
        return {str(k): v for k, v in dict(answer).items()}
