"""Insert payload validation with SiriDB's exact error messages and precedence.

SiriDB reads an insert token by token (see :mod:`.qptokens`) and stops at the first
problem; the checks here follow the same order. Long runs of well-formed points are
matched with one regular expression and decoded with the qpack C extension (safe there,
because the run was validated first), so a million points take well under a second.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

import qpack  # type: ignore[import-untyped]

from . import qptokens as qt

ERR_EXPECTING_ARRAY = "Expecting an array with points."
ERR_EXPECTING_SERIES_NAME = (
    "Expecting a series name (string value) with an array of points where each point "
    "should be an integer time-stamp with a value."
)
ERR_EXPECTING_MAP_OR_ARRAY = "Expecting an array or map containing series and points."
ERR_EXPECTING_INTEGER_TS = "Expecting an integer value as time-stamp."
ERR_TIMESTAMP_OUT_OF_RANGE = "Received at least one time-stamp which is out-of-range."
ERR_UNSUPPORTED_VALUE = (
    "Unsupported value received. (only integer, float and string values are supported)."
)
ERR_EXPECTING_AT_LEAST_ONE_POINT = "Expecting a series to have at least one point."
ERR_EXPECTING_NAME_AND_POINTS = "Expecting a map with name and points."

#: Series names must be shorter than this many bytes (SiriDB's limit).
SERIES_NAME_LEN_MAX = 65535

#: Largest valid time-stamp per precision code (seconds are stored as 32-bit values).
MAX_TIMESTAMP = (2**32 - 1, 2**63 - 1, 2**63 - 1, 2**63 - 1)

# One or more points ``[int, int|double]`` in their wire form, matched in one C call.
_TS = rb"(?:\xea....|\xeb........|[\x00-\x7b]|\xe8.|\xe9..)"
_VAL = rb"(?:\xec........|[\x00-\x7b\x7d-\x7f]|\xe8.|\xe9..|\xea....|\xeb........)"
_POINT_RUN = re.compile(rb"(?:\xef" + _TS + _VAL + rb")+", re.DOTALL)


# Fixed-width wire forms: marker byte -> (struct code, size).
_FIXED = {0xE8: ("b", 1), 0xE9: ("h", 2), 0xEA: ("i", 4), 0xEB: ("q", 8), 0xEC: ("d", 8)}


def _decode_run(run: bytes) -> list[Any]:
    """Decode a validated run of points; uniform runs go through one ``struct`` pass."""
    ts_fmt = _FIXED.get(run[1])
    if ts_fmt is not None and ts_fmt[0] != "d":
        val_fmt = _FIXED.get(run[2 + ts_fmt[1]])
        if val_fmt is not None:
            stride = 3 + ts_fmt[1] + val_fmt[1]
            n, rest = divmod(len(run), stride)
            if not rest and all(
                run[off::stride] == run[off : off + 1] * n for off in (0, 1, 2 + ts_fmt[1])
            ):
                fmt = struct.Struct("<xx" + ts_fmt[0] + "x" + val_fmt[0])
                return list(fmt.iter_unpack(run))
    points: list[Any] = qpack.unpackb(b"\xfc" + run + b"\xfe")
    return points


class InsertRejected(Exception):
    """The payload is not a valid insert; ``str(exc)`` is SiriDB's error message."""


@dataclass(slots=True)
class InsertBatch:
    """A validated insert: points per series name, in the order they were received."""

    series: dict[str, list[Any]] = field(default_factory=dict)
    count: int = 0

    def add(self, name: str, points: list[Any]) -> None:
        existing = self.series.get(name)
        if existing is None:
            self.series[name] = points
        else:
            existing.extend(points)
        self.count += len(points)


def parse_insert(payload: bytes, precision: int = 0) -> InsertBatch:
    """Validate and decode an insert payload for a database of ``precision``.

    Raises :class:`InsertRejected` with the real server's message; nothing else.
    """
    parser = _Parser(payload, MAX_TIMESTAMP[precision])
    kind, _ = parser.reader.next()
    if qt.is_map(kind):
        parser.by_map()
    elif qt.is_array(kind):
        parser.by_array()
    else:
        raise InsertRejected(ERR_EXPECTING_MAP_OR_ARRAY)
    return parser.batch


def _series_name(raw: Any) -> str | None:
    """A usable series name from a RAW token value, or None. SiriDB keeps a name as a
    C string: it ends at a NUL byte (names equal up to there are one series)."""
    if not raw or len(raw) >= SERIES_NAME_LEN_MAX:
        return None
    raw = raw.split(b"\0", 1)[0]
    if not raw:
        return None  # SiriDB never answers such an insert; refuse it as a bad name
    try:
        name: str = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name


def _prefix_of(raw: bytes, word: bytes) -> bool:
    """SiriDB compares keys with ``strncmp(key, word, len(key))``: a prefix matches."""
    return word.startswith(raw)


class _Parser:
    __slots__ = ("batch", "max_ts", "reader")

    def __init__(self, payload: bytes, max_ts: int) -> None:
        self.reader = qt.Reader(payload)
        self.max_ts = max_ts
        self.batch = InsertBatch()

    def by_map(self) -> None:
        reader = self.reader
        kind, value = reader.next()
        while kind == qt.RAW:
            name = _series_name(value)
            if name is None:
                break
            points, (kind, value) = self.read_points()
            self.batch.add(name, points)
        if kind not in (qt.END, qt.MAP_CLOSE):
            raise InsertRejected(ERR_EXPECTING_SERIES_NAME)

    def by_array(self) -> None:
        reader = self.reader
        kind, value = reader.next()
        while kind == qt.MAP and value == 2:
            kind, key = reader.next()
            if kind != qt.RAW:
                raise InsertRejected(ERR_EXPECTING_NAME_AND_POINTS)
            early: list[Any] | None = None
            if _prefix_of(key, b"points"):
                early, (kind, key) = self.read_points()
                if kind != qt.RAW:
                    raise InsertRejected(ERR_EXPECTING_NAME_AND_POINTS)
            if not _prefix_of(key, b"name"):
                raise InsertRejected(ERR_EXPECTING_NAME_AND_POINTS)
            kind, raw = reader.next()
            name = _series_name(raw) if kind == qt.RAW else None
            if name is None:
                raise InsertRejected(ERR_EXPECTING_NAME_AND_POINTS)
            if early is not None:
                self.batch.add(name, early)
                kind, value = reader.next()
            else:
                kind, key = reader.next()
                if kind != qt.RAW or not _prefix_of(key, b"points"):
                    raise InsertRejected(ERR_EXPECTING_NAME_AND_POINTS)
                points, (kind, value) = self.read_points()
                self.batch.add(name, points)
        if kind not in (qt.END, qt.ARRAY_CLOSE):
            raise InsertRejected(ERR_EXPECTING_SERIES_NAME)

    def read_points(self) -> tuple[list[Any], qt.Token]:
        """Read one series' points; returns them and the token that follows them."""
        reader = self.reader
        kind, _ = reader.next()
        if not qt.is_array(kind):
            raise InsertRejected(ERR_EXPECTING_ARRAY)
        data = reader.data
        points: list[Any] = []
        if reader.pos >= reader.end or data[reader.pos] != 0xEF:
            raise InsertRejected(ERR_EXPECTING_AT_LEAST_ONE_POINT)
        max_ts = self.max_ts
        while reader.pos < reader.end and data[reader.pos] == 0xEF:
            match = _POINT_RUN.match(data, reader.pos)
            if match is not None:
                start, stop = match.span()
                run = _decode_run(data[start:stop])
                stamps = [p[0] for p in run]
                if min(stamps) < 0 or max(stamps) > max_ts:
                    raise InsertRejected(ERR_TIMESTAMP_OUT_OF_RANGE)
                points.extend(run)
                reader.pos = stop
                continue
            reader.pos += 1  # the point's ARRAY2 marker
            kind, ts = reader.next()
            if kind != qt.INT:
                raise InsertRejected(ERR_EXPECTING_INTEGER_TS)
            if not 0 <= ts <= max_ts:
                raise InsertRejected(ERR_TIMESTAMP_OUT_OF_RANGE)
            kind, val = reader.next()
            if kind == qt.RAW:
                val = qt.decode_text(val)
            elif kind != qt.INT and kind != qt.DOUBLE:
                raise InsertRejected(ERR_UNSUPPORTED_VALUE)
            points.append([ts, val])
        token = reader.next()
        if token[0] == qt.ARRAY_CLOSE:
            token = reader.next()
        return points, token
