"""Answer payloads packed the way SiriDB packs them, so replies match it byte for byte.

SiriDB writes its answers incrementally: the top-level map is opened and never closed,
arrays are open arrays closed with ``0xfe``, a point is a fixed two-item array, and small
maps inside arrays are fixed maps. Plain qpack (``qpack.packb``) is used for scalars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import qpack

from .pointpack import pack_point_columns
from .points import Columns
from .query.answer import PointColumns

#: ``qpack.packb`` with its type spelled out (the package ships no annotations).
packb: Callable[[Any], bytes] = qpack.packb

OPEN_MAP = b"\xfd"
CLOSE_MAP = b"\xff"
OPEN_ARRAY = b"\xfc"
CLOSE_ARRAY = b"\xfe"
ARRAY2 = b"\xef"
_FIXED_MAP_BASE = 0xF3
_SCALARS = (str, int, float, bool, bytes, type(None))
_TIMEIT_KEY = "__timeit__"


def error_payload(message: str) -> bytes:
    """``{"error_msg": message}`` as SiriDB sends it."""
    return OPEN_MAP + b"\x89error_msg" + packb(message)


def success_payload(message: str) -> bytes:
    """``{"success_msg": message}`` as SiriDB sends it."""
    return OPEN_MAP + b"\x8bsuccess_msg" + packb(message)


def pack_answer(obj: Any) -> bytes:
    """Pack a query answer (usually a dict) in SiriDB's layout."""
    if type(obj) is dict and "columns" not in obj and _TIMEIT_KEY not in obj:
        return _pack_plain(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if not isinstance(obj, Mapping):
        return packb(obj)
    columns = obj.get("columns")
    rows = isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    parts = [OPEN_MAP]
    for key, value in obj.items():
        parts.append(packb(key))
        if key == _TIMEIT_KEY and isinstance(value, list):
            # SiriDB appends the timing list last and never closes it.
            parts.append(OPEN_ARRAY)
            parts.extend(_pack_value(item, rows) for item in value)
        else:
            parts.append(_pack_value(value, rows))
    return b"".join(parts)


def _pack_plain(obj: dict[Any, Any]) -> bytes:
    """A map without rows or timings (select answers, messages): the open map, each
    value packed as :func:`_pack_value` would, with point lists packed in one C call."""
    pack = packb
    parts = [OPEN_MAP]
    for key, value in obj.items():
        parts.append(pack(key))
        if type(value) is Columns:
            parts.append(_pack_columns(value))
        elif type(value) is PointColumns:
            parts.extend(_iter_pack_columns(value))
        elif type(value) is list and value and all(map(_is_point, value)):
            parts.append(_pack_points(value))
        else:
            parts.append(_pack_value(value, False))
    return b"".join(parts)


def iter_pack_answer(obj: Any) -> Iterator[bytes]:
    """:func:`pack_answer` in pieces: a large select answer chunk by chunk, so that
    the caller can let other work run between two pieces."""
    if type(obj) is dict and "columns" not in obj and _TIMEIT_KEY not in obj:
        yield OPEN_MAP
        for key, value in obj.items():
            if type(value) is PointColumns:
                yield packb(key)
                yield from _iter_pack_columns(value)
            else:
                yield _pack_plain({key: value})[1:]
        return
    yield pack_answer(obj)


def _iter_pack_columns(points: PointColumns) -> Iterator[bytes]:
    """An open array of points, packed one chunk of ``[ts, value]`` lists at a time."""
    yield OPEN_ARRAY
    for count, packed in points.packed_chunks(packb):
        yield packed[1:-1] if count >= 6 else packed[1:]
    yield CLOSE_ARRAY


def _is_point(item: Any) -> bool:
    return (
        (type(item) is list or isinstance(item, (list, tuple)))
        and len(item) == 2
        and isinstance(item[0], int)
        and isinstance(item[1], _SCALARS)
    )


def _pack_columns(cols: Columns) -> bytes:
    """A series answer held as columns, packed as its point list would be."""
    if len(cols) >= 6:
        return pack_point_columns(cols.ts, cols.values)
    return _pack_points(cols.points())


def _pack_value(value: Any, rows: bool) -> bytes:
    if type(value) is Columns:
        return _pack_columns(value)
    if type(value) is PointColumns:
        return b"".join(_iter_pack_columns(value))
    if type(value) is list and not rows and value and all(map(_is_point, value)):
        return _pack_points(value)  # the common series answer, without ABC checks
    if isinstance(value, _SCALARS):
        return packb(value)
    if isinstance(value, Mapping):
        n = len(value)
        head = bytes([_FIXED_MAP_BASE + n]) if n <= 5 else OPEN_MAP
        body = b"".join(packb(k) + _pack_value(v, rows) for k, v in value.items())
        return head + body + (b"" if n <= 5 else CLOSE_MAP)
    if isinstance(value, Sequence):
        if not rows and value and all(map(_is_point, value)):
            return _pack_points(value)
        return (
            OPEN_ARRAY
            + b"".join(_pack_item(item, rows) for item in value)
            + CLOSE_ARRAY
        )
    return packb(value)


def _pack_item(item: Any, rows: bool) -> bytes:
    if not rows and _is_point(item):
        return ARRAY2 + packb(item[0]) + packb(item[1])
    return _pack_value(item, rows)


def _pack_points(points: Sequence[Any]) -> bytes:
    """A list of ``[ts, value]`` points: one C call, header fixed to an open array."""
    packed = packb(points if isinstance(points, list) else list(points))
    if len(points) >= 6:
        return packed  # qpack already wrote 0xfc ... 0xfe
    return OPEN_ARRAY + packed[1:] + CLOSE_ARRAY
