"""What the aggregate layer asks the SiriDB server: point counts and points in a range.

Series are selected with one anchored regex per chunk of names, so a name that does not
exist (yet) simply has no entry (count 0) instead of failing the whole query. Ranges are
``[start, end)`` in database units, SiriDB's ``between start and end``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..client import TsClient
from ..ql import Regex

#: Names per query: keeps each regex (and each answer) small.
CHUNK = 200


def names_regex(names: Sequence[str]) -> Regex:
    """A regex matching exactly the given series names."""
    return Regex("^(?:" + "|".join(re.escape(n) for n in names) + ")$")


def _chunks(names: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(names), CHUNK):
        yield names[i : i + CHUNK]


async def count_points(
    client: TsClient,
    names: Sequence[str],
    start: int | None = None,
    end: int | None = None,
    *,
    timeout: float = 30,
) -> dict[str, int]:
    """Points per series in ``[start, end)`` (the whole series when both are None)."""
    counts = {name: 0 for name in names}
    for chunk in _chunks(sorted(set(names))):
        if start is None or end is None:
            answer = await client.query(
                "select count() from $1", timeout=timeout, params=[names_regex(chunk)]
            )
        else:
            answer = await client.query(
                "select count() from $1 between $2 and $3",
                timeout=timeout,
                params=[names_regex(chunk), start, end],
            )
        for name, points in answer.items():
            if name in counts and points:
                counts[name] = int(sum(p[1] for p in points))
    return counts


async def read_points(
    client: TsClient, name: str, start: int, end: int, *, timeout: float = 60
) -> list[tuple[int, Any]]:
    """The points of series ``name`` in ``[start, end)``, as ``(ts, value)`` tuples."""
    answer = await client.query(
        "select * from $1 between $2 and $3",
        timeout=timeout,
        params=[names_regex([name]), start, end],
    )
    return [(int(p[0]), p[1]) for p in answer.get(name, [])]


def multiset(points: Iterable[tuple[int, Any]]) -> Counter[tuple[int, Any]]:
    """Points as a multiset, so duplicates (which SiriDB keeps) count."""
    return Counter((int(ts), value) for ts, value in points)


def contains(have: Counter[tuple[int, Any]], want: Counter[tuple[int, Any]]) -> bool:
    """True when every point of ``want`` is in ``have`` at least as often."""
    return all(have.get(key, 0) >= n for key, n in want.items())
