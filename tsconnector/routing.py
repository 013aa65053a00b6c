"""Split an insert per owning pool, and put parts back together (no I/O).

An insert's data comes as ``{series: points}``, as the list form ``[{"name": series,
"points": points}, ...]`` or as a pandas DataFrame (one series per column); each part
keeps the form it came in, so a part can be sent, reported in an error or re-sent by the
caller as it is. Data of any other shape, or with a series name that is neither ``str``
nor ``bytes``, is not split: it goes to one server, which answers with its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["RoutingStats", "merge_parts", "series_names", "split_by_pool"]

PoolOf = Callable[[Any], int]


def split_by_pool(data: Any, pool_of: PoolOf) -> dict[int, Any] | None:
    """``{pool: part}`` in order of first appearance, or None when ``data`` cannot be
    split (unknown shape, no series, a name that is not a string or not encodable).

    Data that lies in one pool is returned as it is (no copy).
    """
    try:
        if isinstance(data, Mapping):
            parts = _split_mapping(data, pool_of)
        elif isinstance(data, list) and data and all(
            isinstance(item, Mapping) and "points" in item for item in data
        ):
            parts = _split_listed(data, pool_of)
        elif _is_dataframe(data):
            parts = _split_frame(data, pool_of)
        else:
            return None
    except (UnicodeEncodeError, _NotRoutable):
        return None
    return parts or None  # nothing to split: the server answers as it does


class _NotRoutable(Exception):
    """A series name the lookup cannot take (the server will reject it anyway)."""


def _pool(name: Any, pool_of: PoolOf) -> int:
    if type(name) is not str and not isinstance(name, (str, bytes)):
        raise _NotRoutable
    return pool_of(name)


def _split_mapping(data: Mapping[Any, Any], pool_of: PoolOf) -> dict[int, Any]:
    parts: dict[int, dict[Any, Any]] = {}
    for name, points in data.items():
        pool = pool_of(name) if type(name) is str else _pool(name, pool_of)
        part = parts.get(pool)
        if part is None:
            parts[pool] = {name: points}
        else:
            part[name] = points
    if len(parts) == 1:
        return {next(iter(parts)): data}
    return dict(parts)


def _split_listed(data: list[Any], pool_of: PoolOf) -> dict[int, Any]:
    parts: dict[int, list[Any]] = {}
    for item in data:
        pool = _pool(item.get("name"), pool_of)
        parts.setdefault(pool, []).append(item)
    if len(parts) == 1:
        return {next(iter(parts)): data}
    return dict(parts)


def _split_frame(frame: Any, pool_of: PoolOf) -> dict[int, Any]:
    positions: dict[int, list[int]] = {}
    for position, name in enumerate(frame.columns):
        positions.setdefault(_pool(name, pool_of), []).append(position)
    if len(positions) == 1:
        return {next(iter(positions)): frame}
    return {pool: frame.iloc[:, cols] for pool, cols in positions.items()}


def _is_dataframe(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns")


def merge_parts(parts: Sequence[Any]) -> Any:
    """One value of the form the parts have: the union of ``{series: points}`` parts,
    the concatenation of list-form parts, the DataFrame of all columns; None for none."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, Mapping):
        merged: dict[Any, Any] = {}
        for part in parts:
            merged.update(part)
        return merged
    if isinstance(first, list):
        return [item for part in parts for item in part]
    if _is_dataframe(first):
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        return pd.concat(list(parts), axis=1)
    raise TypeError(f"cannot merge insert parts of type {type(first).__name__}")


def series_names(part: Any) -> list[Any]:
    """The series names of one part, in its order."""
    if isinstance(part, Mapping):
        return list(part)
    if isinstance(part, list):
        return [item.get("name") for item in part]
    if _is_dataframe(part):
        return list(part.columns)
    return []


class RoutingStats:
    """How inserts were sent: split per pool or not, parts to their own pool or not."""

    __slots__ = ("fallback_parts", "routed_parts", "split_inserts", "unrouted_inserts")

    def __init__(self) -> None:
        #: Inserts sent whole to any server (no topology, re-indexing, one pool...).
        self.unrouted_inserts = 0
        #: Inserts split into several parts (one per pool).
        self.split_inserts = 0
        #: Parts sent to a server of the pool that owns their series.
        self.routed_parts = 0
        #: Parts sent elsewhere because no fit server of their pool was ready.
        self.fallback_parts = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}
