"""Fast qpack packing of insert payloads from lists, numpy arrays and pandas objects.

``pack_insert`` returns bytes that any qpack decoder reads as ``{series: [[ts, value],
...]}`` (or the list form ``[{"name": ..., "points": ...}]``). Plain lists go straight
to qpack's C ``packb``. Points given as numpy arrays (or pandas objects) are written
vectorised: every point is one fixed-size record ``0xef`` (array of 2), ``0xea`` + int32
or ``0xeb`` + int64 timestamp, ``0xec`` + float64 or ``0xeb`` + int64 value, which qpack
decoders accept because they read integers by their marker, not by their magnitude.

Type rules where the packer looks at points (numpy and pandas input, ``validate=True``,
and lists that qpack cannot pack as they are): timestamps must be integers (or
``datetime``/``datetime64`` with ``precision=`` given); values must be int, float or
str; ``bool`` and other types raise ``TypeError`` naming the series, integers outside
int64 raise ``OverflowError`` naming the value. Plain lists of pairs are handed to qpack
unchanged (``validate=False``), so a ``bool`` there reaches the server, which rejects it
with ``InsertError`` exactly as SiriDB does. Odd shapes (a non-pair point, a payload
that is neither a map nor the list form) pass through to qpack so the server answers
with its own error. Floats, including NaN, infinities and -0.0, are written bit-exact
from numpy; qpack itself writes -0.0 from lists as 0.0.

numpy and pandas are optional: they are imported only when such an object is seen. A
pandas DataFrame packs one series per column (the index gives the timestamps) and skips
missing cells (NaN/NA), since a wide frame marks absent points that way; pass a Series
or arrays to insert NaN values.
"""

from __future__ import annotations

import datetime as dt
import struct
import sys
from collections.abc import Mapping
from itertools import pairwise
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import qpack

from ..timeutil import INT64_MAX, INT64_MIN, Rounding, datetime64_to_db, parse_precision, to_db_time

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PrecisionRequired",
    "pack_insert",
    "pack_insert_buffer",
    "pack_insert_for_wire",
    "point_timestamp",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

_ARRAY_OPEN = b"\xfc"
_ARRAY_CLOSE = b"\xfe"
_MAP_OPEN = b"\xfd"
_MAP_CLOSE = b"\xff"

# Record layouts (timestamp width 4 or 8) -> {value dtype: structured dtype}
_RECORDS: dict[tuple[int, str], Any] = {}


def pack_insert(
    data: Any,
    *,
    precision: int | str | None = None,
    rounding: Rounding = "exact",
    validate: bool = False,
) -> bytes:
    """Pack an insert payload to qpack bytes, fast for numpy/pandas points.

    ``data``: ``{series: points}``, ``[{"name": series, "points": points}, ...]`` or a
    pandas DataFrame (one series per column). ``points``: a list/tuple of ``(ts, value)``
    pairs, a ``(timestamps, values)`` pair of numpy arrays, an ``(n, 2)`` integer array,
    or a pandas Series. ``precision`` (0..3 or ``"s"``..``"ns"``) is needed for
    ``datetime64``/``datetime`` timestamps, converted exactly (``rounding`` for sub-unit
    values). ``validate=True`` also checks plain lists point by point.
    """
    if not validate:
        try:
            packed: bytes = qpack.packb(data)
            return packed
        except Exception:
            pass  # numpy/pandas objects, datetimes, bad values: look closer below
    parts = _Packer(precision, rounding, validate).pack(data)
    if any(type(part) is _GroupBlock for part in parts):
        blob: bytes = _assemble(parts, 0).tobytes()
        return blob
    return b"".join(parts)


def pack_insert_buffer(
    data: Any,
    *,
    headroom: int = 0,
    precision: int | str | None = None,
    rounding: Rounding = "exact",
    validate: bool = False,
) -> memoryview:
    """Like :func:`pack_insert`, into one writable buffer with ``headroom`` free bytes first.

    For the write path: numpy points are written straight into this buffer and never
    copied again; the caller puts the frame header into the first ``headroom`` bytes
    and sends the whole buffer at once. The payload is ``buffer[headroom:]``.
    """
    if headroom < 0:
        raise ValueError("headroom must be >= 0")
    if not validate:
        try:
            parts: list[Any] = [qpack.packb(data)]
        except Exception:
            parts = _Packer(precision, rounding, validate).pack(data)
    else:
        parts = _Packer(precision, rounding, validate).pack(data)
    out = _assemble(parts, headroom)
    return out if type(out) is memoryview else memoryview(out)


class PrecisionRequired(TypeError):
    """Datetime timestamps were given without the database's time precision."""


def point_timestamp(
    name: Any, ts: Any, precision: int | None, rounding: Rounding = "exact"
) -> int:
    """One point's timestamp as an int64 in database units, as inserts take it.

    An int (or numpy integer) is checked against int64; a ``datetime``, ``date`` or
    ``numpy.datetime64`` is converted exactly with ``precision`` (``PrecisionRequired``
    without one). Shared by the insert packer and the writer, so both accept the same
    timestamps; ``name`` is the series, for the error messages.
    """
    if isinstance(ts, bool):
        raise TypeError(f"series {name!r}: bool timestamp {ts!r}")
    if isinstance(ts, int):
        if not INT64_MIN <= ts <= INT64_MAX:
            raise OverflowError(
                f"timestamp {ts} in series {name!r} does not fit in a signed 64-bit integer"
            )
        return int(ts)
    mod = _module(ts)
    if mod == "numpy" and type(ts).__name__ not in ("datetime64", "timedelta64"):
        item = ts.item()
        if isinstance(item, int) and not isinstance(item, bool):
            return point_timestamp(name, item, precision, rounding)
    if isinstance(ts, dt.datetime | dt.date) or type(ts).__name__ == "datetime64":
        if precision is None:
            raise PrecisionRequired(
                f"series {name!r}: datetime timestamps need precision= (the database's "
                "time precision: 's', 'ms', 'us' or 'ns')"
            )
        return to_db_time(ts, precision, rounding=rounding)
    raise TypeError(f"series {name!r}: timestamp {ts!r} is not an integer")


def pack_insert_for_wire(
    data: Any, *, headroom: int, precision: int | str | None = None
) -> tuple[bytes | memoryview, bool]:
    """The payload for an insert request and whether it is framed.

    Plain Python data is packed by qpack into bytes, which are sent as they are after
    a separate header (framed ``False``): copying them into a buffer with header room
    would double the peak memory. Anything else (numpy, pandas, datetimes) is written
    straight into one buffer with ``headroom`` free bytes first (framed ``True``).
    """
    try:
        return qpack.packb(data), False
    except Exception:
        pass
    return pack_insert_buffer(data, headroom=headroom, precision=precision), True


class _Batch:
    """Numpy points of many series, written as one block of fixed-size records.

    Each series' bytes go to its own slot in the output parts (used where the order of
    series is fixed, as in the list form, or for series that share no group).
    """

    __slots__ = ("kinds", "slots", "ts", "values")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.ts: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.kinds: list[str] = []

    def add(self, slot: int, ts: np.ndarray, values: np.ndarray, kind: str) -> None:
        self.slots.append(slot)
        self.ts.append(ts)
        self.values.append(values)
        self.kinds.append(kind)

    def write(self, parts: list[Any]) -> None:
        """Build all records at once and put a view of each series' bytes in its slot."""
        import numpy as np

        ts_list, val_list, kinds = self.ts, self.values, self.kinds
        sizes = [len(t) for t in ts_list]
        total = sum(sizes)
        ts = ts_list[0] if len(ts_list) == 1 else np.concatenate(ts_list)
        first = kinds[0]
        if all(k == first for k in kinds):
            vkind = first
            values = val_list[0] if len(val_list) == 1 else np.concatenate(val_list)
            markers: Any = _VALUE_MARKER[first]
        else:
            vkind = "u"
            values = np.concatenate([v.view(np.uint64) for v in val_list])
            markers = np.repeat(
                np.array([_VALUE_MARKER[k] for k in kinds], dtype=np.uint8), sizes
            )
        rec = np.empty(total, dtype=_record_dtype(_ts_width(ts), vkind))
        _fill_records(rec, ts, markers, values)
        raw = rec.view(np.uint8).data
        width = rec.dtype.itemsize
        pos = 0
        for slot, size in zip(self.slots, sizes):
            end = pos + size * width
            parts[slot] = raw[pos:end]
            pos = end


class _Groups:
    """Series of a map grouped by name length, point count and value kind.

    A map's entries may come in any order, so each group is written as one numpy array
    of identical blocks ``[string head][UTF-8 name][array marker][records][0xfe]``: no
    per-series slicing. Keys are the UTF-8 bytes of the names.
    """

    __slots__ = ("groups",)

    #: Groups smaller than this go through :class:`_Batch` instead.
    MIN_SIZE = 4

    def __init__(self) -> None:
        self.groups: dict[tuple[int, int, str], tuple[list[bytes], list[Any], list[Any]]] = {}

    def add(self, key: bytes, ts: np.ndarray, values: np.ndarray, kind: str) -> None:
        gkey = (len(key), len(ts), kind)
        group = self.groups.get(gkey)
        if group is None:
            group = self.groups[gkey] = ([], [], [])
        group[0].append(key)
        group[1].append(ts)
        group[2].append(values)

    def add_many(self, keys: list[bytes], ts_list: Any, val_list: Any, kind: str) -> None:
        """Add many series at once (numpy does the grouping); all have ``kind`` values."""
        import numpy as np

        counts = list(map(len, ts_list))
        key_lens = list(map(len, keys))
        if len(set(counts)) == 1 and len(set(key_lens)) == 1:
            self.groups[(key_lens[0], counts[0], kind)] = (keys, ts_list, val_list)
            return
        combined = np.array(key_lens, dtype=np.int64) << 40
        combined |= np.array(counts, dtype=np.int64)
        order = np.argsort(combined, kind="stable")
        ranked = combined[order]
        bounds = [0, *(np.flatnonzero(ranked[1:] != ranked[:-1]) + 1).tolist(), len(order)]
        order_list = order.tolist()
        for start, stop in pairwise(bounds):
            index = order_list[start:stop]
            gkey = (key_lens[index[0]], counts[index[0]], kind)
            self.groups[gkey] = (
                [keys[i] for i in index],
                [ts_list[i] for i in index],
                [val_list[i] for i in index],
            )

    def write(self, parts: list[Any], batch: _Batch) -> None:
        """Append each large group as one block; small ones go to ``batch`` slots."""
        for (_, count, kind), (keys, ts_list, val_list) in self.groups.items():
            if len(keys) < self.MIN_SIZE or count == 0:
                head = _array_head(count)
                for key, ts, values in zip(keys, ts_list, val_list):
                    parts.append(_str_head(len(key)) + key)
                    parts.append(head)
                    if count:
                        parts.append(None)
                        batch.add(len(parts) - 1, ts, values, kind)
                        if count > 5:
                            parts.append(_ARRAY_CLOSE)
                continue
            parts.append(_GroupBlock(keys, ts_list, val_list, count, kind))
        self.groups.clear()


class _GroupBlock:
    """A group of equally shaped series, written straight into the output buffer."""

    __slots__ = ("block", "count", "head", "keys", "kind", "size", "ts", "ts_list",
                 "val_list", "values")

    def __init__(
        self, keys: list[bytes], ts_list: list[Any], val_list: list[Any], count: int, kind: str
    ) -> None:
        import numpy as np

        self.keys, self.ts_list, self.val_list = keys, ts_list, val_list
        self.count, self.kind = count, kind
        # long series are copied row by row; short ones are joined first (fewer calls)
        if count >= _ROW_MIN:
            self.ts = self.values = None
            width = max(_ts_width(ts) for ts in ts_list)
        else:
            self.ts = _join_arrays(ts_list, np.int64)
            self.values = _join_arrays(val_list, np.float64 if kind == "f" else np.int64)
            width = _ts_width(self.ts)
        rec = _record_dtype(width, kind)
        key_len = len(keys[0])
        self.head = np.frombuffer(_str_head(key_len), dtype=np.uint8)
        start = len(self.head) + key_len
        body = start + 1 + count * rec.itemsize
        names = ["head", "key", "open", "points"]
        formats: list[Any] = [("u1", (len(self.head),)), ("u1", (key_len,)), "u1", (rec, (count,))]
        offsets = [0, len(self.head), start, start + 1]
        if count > 5:
            names.append("close")
            formats.append("u1")
            offsets.append(body)
        self.block = np.dtype(
            {
                "names": names,
                "formats": formats,
                "offsets": offsets,
                "itemsize": body + (1 if count > 5 else 0),
            }
        )
        self.size = self.block.itemsize * len(keys)

    def write(self, out: np.ndarray) -> None:
        """Fill ``out`` (a uint8 array of exactly ``size`` bytes)."""
        import numpy as np

        rows = len(self.keys)
        count = self.count
        blocks = out.view(self.block)
        blocks["head"] = self.head
        key_len = self.block["key"].shape[0]
        blocks["key"] = np.frombuffer(b"".join(self.keys), dtype=np.uint8).reshape(
            rows, key_len
        )
        blocks["open"] = _array_head(count)[0]
        points = blocks["points"]
        marker = _VALUE_MARKER[self.kind]
        if self.ts is None or self.values is None:
            for row, ts, values in zip(points, self.ts_list, self.val_list):
                _fill_records(row, ts, marker, values)
        else:
            _fill_records(
                points, self.ts.reshape(rows, count), marker, self.values.reshape(rows, count)
            )
        if count > 5:
            blocks["close"] = 0xFE


def _join_arrays(arrays: list[Any], dtype: Any) -> np.ndarray:
    """Concatenate 1-D arrays of ``dtype``; joining their buffers is the fastest way."""
    import numpy as np

    try:
        return np.frombuffer(b"".join(arrays), dtype=dtype)
    except (BufferError, TypeError, ValueError):  # a non-contiguous array
        return np.concatenate(arrays)


def _assemble(parts: list[Any], headroom: int) -> Any:
    """Write all parts into one new buffer after ``headroom`` free bytes."""
    sizes = [part.size if type(part) is _GroupBlock else len(part) for part in parts]
    total = headroom + sum(sizes)
    np = sys.modules.get("numpy")
    out: Any = bytearray(total) if np is None else np.empty(total, dtype=np.uint8)
    view = memoryview(out)
    pos = headroom
    for part, size in zip(parts, sizes):
        end = pos + size
        if type(part) is _GroupBlock:
            part.write(out[pos:end])
        else:
            view[pos:end] = part
        pos = end
    return out


#: Series with at least this many points are copied into their block row by row.
_ROW_MIN = 2048

_VALUE_MARKER = {"f": 0xEC, "i": 0xEB}


def _ts_width(ts: np.ndarray) -> int:
    """4 when every timestamp fits in int32 (written as 0xea), else 8 (0xeb)."""
    if not ts.size:
        return 4
    return 4 if int(ts.min()) >= INT32_MIN and int(ts.max()) <= INT32_MAX else 8


def _fill_records(rec: np.ndarray, ts: np.ndarray, markers: Any, values: np.ndarray) -> None:
    """Write records: markers and timestamp go in as one or two little-endian words.

    Narrow (15 bytes): ``c`` = bytes 0..7 = 0xef, 0xea, int32 ts, value marker, and one
    byte that the value then overwrites. Wide (19 bytes): ``c`` = 0xef, 0xeb, ts bytes
    0..5; ``d`` = ts bytes 6..7, value marker, one byte overwritten by the value.
    """
    import numpy as np

    u64 = np.uint64
    bits = ts.view(u64) if ts.dtype.kind == "i" else ts.astype(np.int64).view(u64)
    vm: Any = u64(markers) if isinstance(markers, int) else np.asarray(markers, dtype=u64)
    word = bits << u64(16)
    if "d" in (rec.dtype.names or ()):
        word |= u64(0xEBEF)
        rec["c"] = word
        high = bits >> u64(48)
        high |= vm << u64(16)
        rec["d"] = high
    else:
        word &= u64(0x0000_FFFF_FFFF_0000)
        word |= u64(0xEAEF)
        word |= vm << u64(48)
        rec["c"] = word
    rec["v"] = values


def _record_dtype(ts_width: int, vkind: str) -> Any:
    """Record layout for ``ts_width`` 4 (15 bytes) or 8 (19 bytes) and value kind."""
    key = (ts_width, vkind)
    dtype = _RECORDS.get(key)
    if dtype is None:
        import numpy as np

        value = f"<{vkind}8"
        if ts_width == 4:
            spec = {"names": ["c", "v"], "formats": ["<u8", value], "offsets": [0, 7]}
        else:
            spec = {
                "names": ["c", "d", "v"],
                "formats": ["<u8", "<u4", value],
                "offsets": [0, 8, 11],
            }
        layout: Any = {**spec, "itemsize": 15 if ts_width == 4 else 19}
        dtype = np.dtype(layout)
        _RECORDS[key] = dtype
    return dtype


_DTYPE_NDIM = attrgetter("dtype", "ndim")


def _plain_arrays(data: Mapping[Any, Any], groups: _Groups) -> bool:
    """Add every series to ``groups`` if all are ``(int64 array, float64/int64 array)``.

    The common bulk case, checked with C-level ``map`` passes instead of a Python loop
    per series. Returns False (and adds nothing) when any series is different.
    """
    np = sys.modules.get("numpy")
    if np is None or len(data) < 2:
        return False
    names = list(data)
    points = list(data.values())
    if set(map(type, names)) != {str}:
        return False
    if set(map(type, points)) != {tuple} or set(map(len, points)) != {2}:
        return False
    ts_list, val_list = zip(*points)
    ndarray = np.ndarray
    if set(map(type, ts_list)) != {ndarray} or set(map(type, val_list)) != {ndarray}:
        return False
    i8 = np.dtype(np.int64)
    if set(map(_DTYPE_NDIM, ts_list)) != {(i8, 1)}:
        return False
    value_types = set(map(_DTYPE_NDIM, val_list))
    if value_types == {(np.dtype(np.float64), 1)}:
        kind = "f"
    elif value_types == {(i8, 1)}:
        kind = "i"
    else:
        return False
    if list(map(len, ts_list)) != list(map(len, val_list)):
        return False
    groups.add_many(list(map(str.encode, names)), ts_list, val_list, kind)
    return True


def _module(obj: Any) -> str:
    return type(obj).__module__.partition(".")[0]


def _str_head(size: int) -> bytes:
    """qpack's header of a string of ``size`` UTF-8 bytes."""
    if size < 100:
        return bytes((0x80 + size,))
    for marker, fmt in ((0xE4, "<B"), (0xE5, "<H"), (0xE6, "<I")):
        if size < 1 << (8 * struct.calcsize(fmt)):
            return bytes((marker,)) + struct.pack(fmt, size)
    return b"\xe7" + struct.pack("<Q", size)


def _array_head(count: int) -> bytes:
    return bytes((0xED + count,)) if count <= 5 else _ARRAY_OPEN


class _Packer:
    """One packing run: collects byte parts, with numpy points batched into blocks."""

    def __init__(self, precision: int | str | None, rounding: Rounding, validate: bool) -> None:
        self.precision = None if precision is None else parse_precision(precision)
        self.rounding: Rounding = rounding
        self.validate = validate
        self.parts: list[Any] = []
        self.batch = _Batch()

    # -- framing --------------------------------------------------------------------
    def pack(self, data: Any) -> list[Any]:
        """Return the payload as parts: bytes, memoryviews and group blocks."""
        if _module(data) == "pandas" and hasattr(data, "columns"):
            self._frame(data)
        elif isinstance(data, Mapping):
            self._map(data)
        elif isinstance(data, (list, tuple)) and data and all(
            isinstance(item, Mapping) and "points" in item for item in data
        ):
            self._list_form(data)
        else:
            return [_passthrough(data, None)]
        if self.batch.slots:
            self.batch.write(self.parts)
        return self.parts

    def _map(self, data: Mapping[Any, Any]) -> None:
        parts = self.parts
        parts.append(bytes((0xF3 + len(data),)) if len(data) <= 5 else _MAP_OPEN)
        groups = _Groups()
        if not _plain_arrays(data, groups):
            for name, points in data.items():
                key = _passthrough(name, name)
                self._points(name, points, key, groups)
        groups.write(parts, self.batch)
        if len(data) > 5:
            parts.append(_MAP_CLOSE)

    def _list_form(self, data: Any) -> None:
        parts = self.parts
        parts.append(_array_head(len(data)))
        for item in data:
            name = item.get("name")
            parts.append(bytes((0xF3 + len(item),)) if len(item) <= 5 else _MAP_OPEN)
            for key, value in item.items():
                parts.append(_passthrough(key, name))
                if key == "points":
                    self._points(name, value, None, None)
                else:
                    parts.append(_passthrough(value, name))
            if len(item) > 5:
                parts.append(_MAP_CLOSE)
        if len(data) > 5:
            parts.append(_ARRAY_CLOSE)

    def _frame(self, frame: Any) -> None:
        """One series per DataFrame column; missing cells are skipped."""
        import numpy as np

        ts = self._index_ts(frame.index, "DataFrame index")
        parts = self.parts
        columns = list(frame.columns)
        parts.append(bytes((0xF3 + len(columns),)) if len(columns) <= 5 else _MAP_OPEN)
        groups = _Groups()
        for position, name in enumerate(columns):
            if not isinstance(name, str):
                raise TypeError(f"DataFrame column names must be strings, got {name!r}")
            column = frame.iloc[:, position]
            mask = column.notna().to_numpy()
            col_ts = ts
            if not mask.all():
                column = column[mask]
                col_ts = ts[np.asarray(mask, dtype=bool)]
            self._arrays(name, col_ts, _series_values(column, name), qpack.packb(name), groups)
        groups.write(parts, self.batch)
        if len(columns) > 5:
            parts.append(_MAP_CLOSE)

    # -- points ---------------------------------------------------------------------
    def _points(self, name: Any, points: Any, key: bytes | None, groups: _Groups | None) -> None:
        """Pack one series' points; ``key`` (map form) is written before them."""
        mod = _module(points)
        if mod == "pandas" and hasattr(points, "index") and not hasattr(points, "columns"):
            ts = self._index_ts(points.index, name)
            self._arrays(name, ts, _series_values(points, name), key, groups)
        elif mod == "numpy" and getattr(points, "ndim", 0) == 2:
            if points.shape[1] != 2:
                raise ValueError(f"series {name!r}: expected an (n, 2) array of points")
            if points.dtype.kind in "iu":
                self._arrays(name, points[:, 0], points[:, 1], key, groups)
            else:
                self._listed(name, points.tolist(), key)
        elif (
            isinstance(points, (tuple, list))
            and len(points) == 2
            and _module(points[0]) in ("numpy", "pandas")
            and getattr(points[0], "ndim", 0) == 1
        ):
            self._arrays(name, points[0], points[1], key, groups)
        elif isinstance(points, (list, tuple)):
            self._listed(name, points, key)
        else:
            if key is not None:
                self.parts.append(key)
            self.parts.append(_passthrough(points, name))

    def _listed(self, name: Any, points: Any, key: bytes | None) -> None:
        """Plain points: qpack as they are, or after normalising them point by point."""
        if key is not None:
            self.parts.append(key)
        if not self.validate:
            try:
                self.parts.append(qpack.packb(points))
                return
            except Exception:
                pass
        normal = self._normalize(name, points)
        self.parts.append(_passthrough(normal, name))

    def _arrays(
        self, name: Any, ts: Any, values: Any, key: bytes | None, groups: _Groups | None
    ) -> None:
        import numpy as np

        ts_arr = self._ts_array(name, ts)
        vals = np.asarray(values)
        if vals.ndim != 1 or len(vals) != len(ts_arr):
            raise ValueError(
                f"series {name!r}: {len(ts_arr)} timestamps but values of shape {vals.shape}"
            )
        kind = vals.dtype.kind
        if kind == "f":
            vals = vals.astype(np.float64, copy=False)
            vkind = "f"
        elif kind == "i":
            vals = vals.astype(np.int64, copy=False)
            vkind = "i"
        elif kind == "u":
            if vals.size and int(vals.max()) > INT64_MAX:
                raise OverflowError(
                    f"integer {int(vals.max())} in series {name!r} does not fit in a "
                    "signed 64-bit integer"
                )
            vals = vals.astype(np.int64)
            vkind = "i"
        elif kind in "OUS":
            self._listed(name, list(zip(ts_arr.tolist(), vals.tolist())), key)
            return
        elif kind == "b":
            raise TypeError(f"series {name!r}: bool values are not supported (int, float, str)")
        else:
            raise TypeError(f"series {name!r}: unsupported value dtype {vals.dtype}")
        count = len(ts_arr)
        if groups is not None and type(name) is str:
            groups.add(name.encode(), ts_arr, vals, vkind)
            return
        parts = self.parts
        if key is not None:
            parts.append(key)
        parts.append(_array_head(count))
        if count:
            parts.append(None)
            self.batch.add(len(parts) - 1, ts_arr, vals, vkind)
            if count > 5:
                parts.append(_ARRAY_CLOSE)

    def _ts_array(self, name: Any, ts: Any) -> np.ndarray:
        import numpy as np

        arr = np.asarray(ts)
        if arr.ndim != 1:
            raise ValueError(f"series {name!r}: timestamps must be one-dimensional")
        kind = arr.dtype.kind
        if kind == "i":
            return arr.astype(np.int64, copy=False)
        if kind == "u":
            if arr.size and int(arr.max()) > INT64_MAX:
                raise OverflowError(
                    f"timestamp {int(arr.max())} in series {name!r} does not fit in a "
                    "signed 64-bit integer"
                )
            return arr.astype(np.int64)
        if kind == "M":
            if self.precision is None:
                raise PrecisionRequired(
                    f"series {name!r}: datetime64 timestamps need precision= (the "
                    "database's time precision: 's', 'ms', 'us' or 'ns')"
                )
            return datetime64_to_db(arr, self.precision, rounding=self.rounding)
        if kind == "O":
            return np.array(
                [self._ts_value(name, t) for t in arr.tolist()], dtype=np.int64
            ).reshape(-1)
        raise TypeError(f"series {name!r}: timestamps must be integers, got dtype {arr.dtype}")

    def _index_ts(self, index: Any, name: Any) -> np.ndarray:
        """Timestamps of a pandas index: a DatetimeIndex (needs precision) or integers."""
        if getattr(index, "tz", None) is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        return self._ts_array(name, index.to_numpy())

    def _ts_value(self, name: Any, ts: Any) -> int:
        if type(ts) is int and INT64_MIN <= ts <= INT64_MAX:
            return ts
        return point_timestamp(name, ts, self.precision, self.rounding)

    def _normalize(self, name: Any, points: Any) -> list[Any]:
        """Check and convert each point; odd shapes are kept for the server to reject."""
        out: list[Any] = []
        append = out.append
        ts_value = self._ts_value
        for point in points:
            if type(point) is not list and type(point) is not tuple:
                if _module(point) == "numpy" and getattr(point, "ndim", 0) == 1:
                    point = point.tolist()
                else:
                    append(point)
                    continue
            if len(point) != 2:
                append(point)
                continue
            ts, value = point
            append((ts_value(name, ts), _value(name, value)))
        return out


def _value(name: Any, value: Any) -> Any:
    tp = type(value)
    if tp is float or tp is str:
        return value
    if tp is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise OverflowError(
                f"integer {value} in series {name!r} does not fit in a signed 64-bit integer"
            )
        return value
    if isinstance(value, bool) or tp.__name__ == "bool_":
        raise TypeError(f"series {name!r}: bool value {value!r} (only int, float and str)")
    if isinstance(value, (int, float, str)):  # subclasses, e.g. numpy.float64, IntEnum
        return _value(name, _plain(value))
    if _module(value) == "numpy" and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, (int, float, str)):
            return _value(name, item)
    raise TypeError(
        f"series {name!r}: unsupported value {value!r} of type {tp.__name__} "
        "(only int, float and str)"
    )


def _base(value: Any) -> type:
    for base in (int, float, str):
        if isinstance(value, base):
            return base
    raise TypeError(value)


def _plain(value: Any) -> Any:
    return _base(value)(value)


def _series_values(series: Any, name: Any) -> Any:
    """The values of a pandas Series as numpy, refusing missing values."""
    values = series.to_numpy()
    if values.dtype.kind == "O" and series.isna().any():
        raise TypeError(f"series {name!r}: missing values (NA) cannot be inserted")
    return values


def _passthrough(obj: Any, name: Any) -> bytes:
    """qpack ``obj`` as it is, with errors that name the series."""
    try:
        packed: bytes = qpack.packb(obj)
        return packed
    except Exception as exc:
        _find_overflow(obj, name)
        where = "payload" if name is None else f"series {name!r}"
        raise TypeError(f"{where}: cannot pack {type(obj).__name__}: {exc}") from None


def _find_overflow(obj: Any, name: Any) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if type(item) is int or (isinstance(item, int) and not isinstance(item, bool)):
            if not INT64_MIN <= item <= INT64_MAX:
                where = "" if name is None else f" in series {name!r}"
                raise OverflowError(
                    f"integer {item}{where} does not fit in a signed 64-bit integer"
                )
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
