"""Insert payload validation with SiriDB's exact error messages and precedence.

SiriDB reads an insert token by token (see :mod:`.qptokens`) and stops at the first
problem; the checks here follow the same order. Runs of points that share one
fixed-width layout (what numpy input and float lists are packed as) are checked and
decoded with numpy in a few vectorised passes straight into columns
(:class:`.points.Columns`); other runs of well-formed points are matched with one
regular expression and decoded with the qpack C extension (safe there, because the run
was validated first). A million points take a few milliseconds.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import qpack

from . import qptokens as qt
from .points import Columns, columns_from_points, concat

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
    """A validated insert: the points of each series name, in the order they were received
    (:attr:`series` holds one :class:`.points.Columns` per name)."""

    series: dict[str, Columns] = field(default_factory=dict)
    count: int = 0
    _parts: dict[str, list[Columns]] = field(default_factory=dict)

    def add(self, name: str, parts: list[Columns]) -> None:
        existing = self._parts.get(name)
        if existing is None:
            self._parts[name] = parts
        else:
            existing.extend(parts)
        self.count += sum(len(p) for p in parts)

    def points(self) -> dict[str, list[list[Any]]]:
        """``{name: [[ts, value], ...]}`` as Python lists (for tests and small inserts)."""
        return {name: cols.points() for name, cols in self.series.items()}

    def finish(self) -> InsertBatch:
        """Join each series' parts into one :class:`.points.Columns`."""
        self.series = {name: concat(parts) for name, parts in self._parts.items()}
        self._parts = {}
        return self


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
    return parser.batch.finish()


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
    __slots__ = ("batch", "buf", "max_ts", "reader")

    def __init__(self, payload: bytes, max_ts: int) -> None:
        self.reader = qt.Reader(payload)
        self.max_ts = max_ts
        self.batch = InsertBatch()
        self.buf: np.ndarray | None = None

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
            early: list[Columns] | None = None
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

    def read_points(self) -> tuple[list[Columns], qt.Token]:
        """Read one series' points; returns them (as parts) and the token that follows."""
        reader = self.reader
        kind, _ = reader.next()
        if not qt.is_array(kind):
            raise InsertRejected(ERR_EXPECTING_ARRAY)
        data = reader.data
        parts: list[Columns] = []
        single: list[list[Any]] = []  # points read token by token, not yet in parts
        if reader.pos >= reader.end or data[reader.pos] != 0xEF:
            raise InsertRejected(ERR_EXPECTING_AT_LEAST_ONE_POINT)
        max_ts = self.max_ts
        while reader.pos < reader.end and data[reader.pos] == 0xEF:
            run = _uniform_run(self._buffer(), reader.pos, reader.end)
            if run is not None:
                cols, stop = run
                if cols.ts.min() < 0 or cols.ts.max() > max_ts:
                    raise InsertRejected(ERR_TIMESTAMP_OUT_OF_RANGE)
                if single:
                    parts.append(columns_from_points(single))
                    single = []
                parts.append(cols)
                reader.pos = stop
                continue
            match = _POINT_RUN.match(data, reader.pos)
            if match is not None:
                start, stop = match.span()
                points = _decode_run(data[start:stop])
                stamps = [p[0] for p in points]
                if min(stamps) < 0 or max(stamps) > max_ts:
                    raise InsertRejected(ERR_TIMESTAMP_OUT_OF_RANGE)
                single.extend(points)
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
            single.append([ts, val])
        if single:
            parts.append(columns_from_points(single))
        token = reader.next()
        if token[0] == qt.ARRAY_CLOSE:
            token = reader.next()
        return parts, token

    def _buffer(self) -> np.ndarray:
        """The payload as a numpy byte array (made once, no copy)."""
        if self.buf is None:
            self.buf = np.frombuffer(self.reader.data, dtype=np.uint8)
        return self.buf


# -- vectorised runs of fixed-width points ----------------------------------------------

#: Fixed-width integer markers and their widths; 0xEC is a float64.
_INT_WIDTH = {0xE8: 1, 0xE9: 2, 0xEA: 4, 0xEB: 8}
_VALUE_WIDTH = {**_INT_WIDTH, 0xEC: 8}
#: Runs shorter than this go through the regular expression (fewer numpy calls).
_MIN_UNIFORM = 16
_FIRST_BLOCK = 256
_RECORD_DTYPES: dict[tuple[int, int], np.dtype[Any]] = {}


def _record_dtype(ts_marker: int, value_marker: int) -> np.dtype[Any]:
    """The structured dtype of one point ``0xEF, ts marker, ts, value marker, value``."""
    key = (ts_marker, value_marker)
    dtype = _RECORD_DTYPES.get(key)
    if dtype is None:
        tw, vw = _INT_WIDTH[ts_marker], _VALUE_WIDTH[value_marker]
        vfmt = "<f8" if value_marker == 0xEC else f"<i{vw}"
        dtype = np.dtype({
            "names": ["ts", "value"],
            "formats": [f"<i{tw}", vfmt],
            "offsets": [2, 3 + tw],
            "itemsize": 3 + tw + vw,
        })
        _RECORD_DTYPES[key] = dtype
    return dtype


def _uniform_run(buf: np.ndarray, pos: int, end: int) -> tuple[Columns, int] | None:
    """The run of points at ``pos`` that all share the first point's fixed-width layout,
    decoded, and the offset after it; None when it is shorter than ``_MIN_UNIFORM``.

    A point of another layout differs in one of the three marker bytes checked, so the
    run ends exactly where the regular expression's per-point reading would switch.
    """
    if end - pos < 3:
        return None
    ts_marker = int(buf[pos + 1])
    tw = _INT_WIDTH.get(ts_marker)
    if tw is None or pos + 2 + tw >= end:
        return None
    value_marker = int(buf[pos + 2 + tw])
    vw = _VALUE_WIDTH.get(value_marker)
    if vw is None:
        return None
    stride = 3 + tw + vw
    count, at, block = 0, pos, _FIRST_BLOCK
    while True:
        take = min(block, (end - at) // stride)
        if take <= 0:
            break
        rows = buf[at : at + take * stride].reshape(take, stride)
        ok = (rows[:, 0] == 0xEF) & (rows[:, 1] == ts_marker) & (rows[:, 2 + tw] == value_marker)
        if ok.all():
            count += take
            at += take * stride
            block *= 4
            continue
        count += int(ok.argmin())
        break
    if count < _MIN_UNIFORM:
        return None
    records = np.frombuffer(buf, dtype=_record_dtype(ts_marker, value_marker), count=count,
                            offset=pos)
    ts = records["ts"].astype(np.int64)
    values = records["value"].astype(np.float64 if value_marker == 0xEC else np.int64)
    return Columns(ts, values), pos + count * stride
