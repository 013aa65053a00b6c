"""Fast decoding of query answers: qpack without the garbage-collector penalty, and
series answers (``{name: [[ts, value], ...]}``) straight from bytes into numpy arrays.

Decoding a large answer creates millions of small lists; with the garbage collector
running, CPython keeps re-scanning them while they are built, which makes qpack's C
decoder several times slower. :func:`decode_answer` pauses the collector around large
payloads (exception-safe, nesting- and thread-aware) and restores it afterwards.

:func:`decode_series_arrays` never builds those lists. A server writes each point as
``0xef`` (array of 2), a timestamp integer and a value (integers in their smallest
width, doubles as ``0xec`` + 8 bytes, -1.0/0.0/1.0 as one byte). Point starts are found
for the whole payload at once with numpy: candidates are ``0xef`` followed by an
integer marker, each candidate's successor follows from the marker sizes, and a true
point is one that another point leads to (or that starts a series, found by walking
the few structural bytes in Python). Timestamps and values are then gathered in one
vectorised pass. Series that do not fit this pattern (string values, timestamps under
64, anything unusual) are decoded by qpack, or by a small Python reader, and
converted; the result is the same either way.
"""

from __future__ import annotations

import gc
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import qpack

from .codec import unpack
from .nesting import MAX_NESTING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "GC_PAUSE_THRESHOLD",
    "decode_answer",
    "decode_series_arrays",
    "gc_paused",
    "points_to_arrays",
]

#: Payloads at least this large are decoded with the garbage collector paused.
GC_PAUSE_THRESHOLD = 32 * 1024

_gc_lock = threading.Lock()
_gc_depth = 0
_gc_restore = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block; nested and thread safe.

    The collector is re-enabled when the outermost block exits, and only if it was
    enabled when the first one entered.
    """
    global _gc_depth, _gc_restore
    with _gc_lock:
        if _gc_depth == 0:
            _gc_restore = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_restore:
                gc.enable()


def decode_answer(payload: bytes) -> Any:
    """Decode a qpack answer (strings as ``str``), pausing gc for large payloads.

    Malformed data raises ``ProtocolError``, as ``codec.unpack`` does.
    """
    if len(payload) < GC_PAUSE_THRESHOLD:
        return unpack(payload)
    with gc_paused():
        return unpack(payload)


# --- numpy decoding ------------------------------------------------------------------

# Extra bytes after an integer marker (e8..eb); small integers carry no extra byte.
_INT_WIDTH = {0xE8: 1, 0xE9: 2, 0xEA: 4, 0xEB: 8}
_LUTS: dict[str, Any] = {}


def _luts() -> dict[str, Any]:
    """Per-marker tables: item size, payload width, kind (0 int, 1 float, 2 other)."""
    if not _LUTS:
        import numpy as np

        size = np.zeros(256, dtype=np.int64)  # total item size; 0 = not a plain scalar
        width = np.zeros(256, dtype=np.uint64)  # bytes of payload after the marker
        kind = np.full(256, 2, dtype=np.int8)
        size[0x00:0x7C] = 1
        kind[0x00:0x7C] = 0
        size[0x7D:0x80] = 1
        kind[0x7D:0x80] = 1
        size[0x80:0xE4] = np.arange(1, 101)  # short strings (kind "other")
        for marker, nbytes in _INT_WIDTH.items():
            size[marker] = 1 + nbytes
            width[marker] = nbytes
            kind[marker] = 0
        size[0xEC] = 9
        width[0xEC] = 8
        kind[0xEC] = 1
        small = np.zeros(256, dtype=np.int64)
        small[0x00:0x40] = np.arange(0, 64)
        small[0x40:0x7C] = 63 - np.arange(0x40, 0x7C)
        special = np.zeros(256, dtype=np.float64)
        special[0x7D:0x80] = (-1.0, 0.0, 1.0)
        _LUTS.update(
            size=size, width=width, kind=kind, small=small, special=special,
            size_list=size.tolist(),
        )
    return _LUTS


def decode_series_arrays(payload: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse a qpack series answer straight into ``{name: (timestamps, values)}``.

    Timestamps are int64; values float64 (any double in the series; integers there are
    converted), int64 (integers only) or object (strings, mixed with text). Raises
    ``ValueError`` when the payload is not a map of series to lists of points.
    """
    return _SeriesDecoder(payload).decode()


class _SeriesDecoder:
    """One decoding run over a payload (see the module docstring for the method)."""

    def __init__(self, payload: bytes) -> None:
        self.data = bytes(payload)
        self.scanned = False
        self.sizes: list[int] = _luts()["size_list"]
        self.ts_marker: int | None = None
        self.runs: dict[int, tuple[int, int, int]] = {}
        self.starts: Any = None

    # -- structure ----------------------------------------------------------------------
    def decode(self) -> dict[str, tuple[Any, Any]]:
        data = self.data
        if not data:
            return {}
        marker = data[0]
        if 0xF3 <= marker <= 0xF8:
            remaining: int | None = marker - 0xF3
        elif marker == 0xFD:
            remaining = None
        else:
            raise ValueError("not a series answer: the payload is not a map")
        pos = 1
        # name, first point, first and last index of its run in `starts`, end of array
        fast: list[tuple[str, int, int, int, int]] = []
        slow: dict[str, tuple[Any, Any]] = {}
        order: list[str] = []
        end = len(data)
        while True:
            if remaining is None:
                if pos >= end or data[pos] == 0xFF:
                    break
            elif remaining == 0:
                break
            else:
                remaining -= 1
            marker = data[pos] if pos < end else 0
            if 0x80 <= marker <= 0xE3:  # short string, inline
                stop = pos + 1 + marker - 0x80
                name = data[pos + 1 : stop].decode("utf-8")
                pos = stop
            else:
                name, pos = _read_str(data, pos)
            order.append(name)
            pos = self._series(name, pos, fast, slow)
        result = self._gather(fast)
        result.update(slow)
        return {name: result[name] for name in order if name in result}

    def _series(
        self, name: str, pos: int, fast: list[tuple[str, int, int, int, int]],
        slow: dict[str, tuple[Any, Any]],
    ) -> int:
        """Locate one series' points; returns the position after its array."""
        data = self.data
        end = len(data)
        if pos >= end:
            raise ValueError(f"not a series answer: series {name!r} has no points array")
        marker = data[pos]
        if 0xED <= marker <= 0xF2:
            count: int | None = marker - 0xED
        elif marker == 0xFC:
            count = None
        else:
            raise ValueError(f"not a series answer: series {name!r} is not a list of points")
        first = pos + 1
        if count == 0 or (count is None and (first >= end or data[first] == 0xFE)):
            slow[name] = _empty()
            return first if count == 0 else min(first + 1, end)
        located = self._locate(first, count)
        if located is None:
            points, after = _read(data, pos)
            slow[name] = points_to_arrays(_check_points(name, points))
            return after
        run_first, run_last, after = located
        fast.append((name, first, run_first, run_last, after))
        return after

    def _locate(self, first: int, count: int | None) -> tuple[int, int, int] | None:
        """Find the run of points after ``first``; None when it is irregular."""
        data = self.data
        end = len(data)
        if first + 2 >= end or data[first] != 0xEF or data[first + 1] & 0xFC != 0xE8:
            return None
        if self.ts_marker is None:
            self.ts_marker = data[first + 1]
        elif data[first + 1] != self.ts_marker:
            return None  # one timestamp width per payload on the fast path
        vpos = first + 2 + _INT_WIDTH[data[first + 1]]
        if vpos >= end:
            return None
        vsize = self.sizes[data[vpos]]
        if vsize == 0:
            return None
        nxt = vpos + vsize
        if count == 1 or (count is None and (nxt >= end or data[nxt] == 0xFE)):
            return (-1, -2, _after(data, nxt, count))
        if not self.scanned:
            self._scan()
        run = self.runs.get(nxt)
        if run is None:
            return None
        run_first, run_last, stop = run
        n = 1 + run_last - run_first + 1
        if count is not None:
            return (run_first, run_last, stop) if n == count else None
        if stop < end and data[stop] != 0xFE:
            return None
        return (run_first, run_last, _after(data, stop, None))

    # -- vectorised scan ----------------------------------------------------------------
    def _scan(self) -> None:
        """Find all non-first points of the payload and their runs (see module doc)."""
        import numpy as np

        self.scanned = True
        luts = _luts()
        buf = np.frombuffer(self.data, dtype=np.uint8)
        # pad so that reads past the end (of a truncated last item) stay in bounds
        self.padded = a = np.concatenate((buf, np.zeros(24, dtype=np.uint8)))
        n = len(buf)
        marker = self.ts_marker
        assert marker is not None
        mask = a[: n - 1] == 0xEF
        mask &= a[1:n] == marker
        cand = np.flatnonzero(mask)
        vpos = cand + (2 + _INT_WIDTH[marker])
        vsize = luts["size"][a[vpos]]
        nxt = vpos + vsize
        valid = (vsize > 0) & (nxt <= n)
        pointed = np.zeros(n + 24, dtype=bool)
        pointed[nxt[valid]] = True
        keep = valid & pointed[cand]
        starts = cand[keep]
        nexts = nxt[keep]
        self.starts = starts
        if not len(starts):
            return
        linked = nexts[:-1] == starts[1:]
        breaks = np.flatnonzero(~linked)
        run_first = np.concatenate(([0], breaks + 1))
        run_last = np.concatenate((breaks, [len(starts) - 1]))
        self.runs = dict(
            zip(
                starts[run_first].tolist(),
                zip(run_first.tolist(), run_last.tolist(), nexts[run_last].tolist()),
            )
        )

    def _gather(self, fast: list[tuple[str, int, int, int, int]]) -> dict[str, tuple[Any, Any]]:
        """Decode the timestamps and values of all located series at once."""
        if not fast:
            return {}
        import numpy as np
        from numpy.lib.stride_tricks import as_strided

        luts = _luts()
        if not self.scanned:
            self.padded = np.concatenate(
                (np.frombuffer(self.data, dtype=np.uint8), np.zeros(24, dtype=np.uint8))
            )
            self.starts = np.zeros(0, dtype=np.int64)
        a = self.padded
        starts = self.starts
        _, first_list, first_runs, last_runs, _ = zip(*fast)
        firsts = np.array(first_list, dtype=np.int64)
        run_first = np.array(first_runs, dtype=np.int64)
        run_last = np.array(last_runs, dtype=np.int64)
        # the run points of the located series (a run is marked +1 at its first index
        # and -1 after its last; a running sum > 0 is inside a run)
        has_run = run_last >= run_first
        marks = np.zeros(len(starts) + 1, dtype=np.int64)
        np.add.at(marks, run_first[has_run], 1)
        np.add.at(marks, run_last[has_run] + 1, -1)
        kept = starts[np.cumsum(marks[:-1]) > 0]
        # every series' first point goes in front of its run
        insert_at = np.searchsorted(kept, firsts)
        points = np.insert(kept, insert_at, firsts)
        series_start = insert_at + np.arange(len(fast))
        step = a.strides[0]
        ts_size = _INT_WIDTH[self.ts_marker] if self.ts_marker is not None else 8
        ts_window = as_strided(a, (len(a) - 8, ts_size), (step, step))
        timestamps = ts_window[points + 2].view(f"<i{ts_size}").reshape(-1)
        if ts_size != 8:
            timestamps = timestamps.astype(np.int64)
        vpos = points + (2 + ts_size)
        vmarker = a[vpos]
        window = as_strided(a, (len(a) - 8, 8), (step, step))
        raw = window[vpos + 1].view("<u8").reshape(-1)
        is_double = vmarker == 0xEC
        if is_double.all():  # the common float answer: every value a full double
            n_float = [stop - start for start, stop in zip(series_start.tolist(),
                                                          [*series_start[1:].tolist(),
                                                           len(points)])]
            n_other = [0] * len(fast)
            floats: Any = raw.view(np.float64)
            ints: Any = None
        else:
            vkind = luts["kind"][vmarker]
            vwidth = luts["width"][vmarker]
            ints = np.where(vwidth > 0, _sign_extend(raw, vwidth), luts["small"][vmarker])
            is_float = vkind == 1
            n_float = np.add.reduceat(is_float, series_start, dtype=np.int64).tolist()
            n_other = np.add.reduceat(vkind == 2, series_start, dtype=np.int64).tolist()
            floats = None
            if any(n_float):
                # doubles as written; integers in a series with doubles become doubles
                floats = np.where(
                    is_double,
                    raw.view(np.float64),
                    np.where(is_float, luts["special"][vmarker], ints.astype(np.float64)),
                )
        bounds = [*series_start.tolist(), len(points)]
        result: dict[str, tuple[Any, Any]] = {}
        for (name, first, _rf, _rl, after), start, stop, nf, no in zip(
            fast, bounds[:-1], bounds[1:], n_float, n_other
        ):
            if no:  # strings: let qpack decode this series' bytes
                with gc_paused():
                    items = qpack.unpackb(self.data[first - 1 : after], decode="utf-8")
                result[name] = points_to_arrays(_check_points(name, items))
            elif nf:
                result[name] = (timestamps[start:stop], floats[start:stop])
            else:
                result[name] = (timestamps[start:stop], ints[start:stop])
        return result


def _sign_extend(raw: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Little-endian ``raw`` words holding ``width``-byte signed integers (1..8) -> int64."""
    import numpy as np

    shift = (np.uint64(64) - width * np.uint64(8)) % np.uint64(64)
    extended: np.ndarray = (raw << shift).view(np.int64) >> shift.astype(np.int64)
    return extended


def _after(data: bytes, pos: int, count: int | None) -> int:
    """Position after an array whose last item ends at ``pos``."""
    if count is None and pos < len(data):
        return pos + 1  # the 0xfe close marker
    return pos


def _empty() -> tuple[Any, Any]:
    import numpy as np

    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)


def _check_points(name: str, points: Any) -> list[Any]:
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 2 and type(p[0]) is int for p in points
    ):
        raise ValueError(f"not a series answer: series {name!r} is not a list of points")
    return points


def points_to_arrays(points: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``[[ts, value], ...]`` to ``(int64 timestamps, values)``.

    Values become float64 when any is a float (integers converted), int64 when all are
    integers, and object when any is a string (or another type).
    """
    import numpy as np

    count = len(points)
    if not count:
        return _empty()
    timestamps = np.fromiter(map(_FIRST, points), dtype=np.int64, count=count)
    values = list(map(_SECOND, points))
    try:
        arr = np.array(values)
    except (OverflowError, ValueError):
        arr = np.empty(0)  # not numeric: handled below
    if arr.ndim != 1 or arr.dtype.kind not in "if" or len(arr) != count:
        arr = np.empty(count, dtype=object)
        arr[:] = values
    elif arr.dtype.kind == "i" and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    return timestamps, arr


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


# --- a small Python qpack reader (fallback for irregular series) -------------------------

_FIXED = {0xE8: "<b", 0xE9: "<h", 0xEA: "<i", 0xEB: "<q", 0xEC: "<d"}
_STR_LEN = {0xE4: "<B", 0xE5: "<H", 0xE6: "<I", 0xE7: "<Q"}


def _read_str(data: bytes, pos: int) -> tuple[str, int]:
    item, pos = _read(data, pos)
    if not isinstance(item, str):
        raise ValueError(f"not a series answer: map key {item!r} is not a string")
    return item, pos


def _read(data: bytes, pos: int, limit: int | None = None) -> tuple[Any, int]:
    """Read one qpack item at ``pos``; returns it and the position after it.

    ``limit`` stops an array after that many items (for reading a series' points).
    """
    try:
        return _read_item(data, pos, limit)
    except (IndexError, struct.error, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"malformed qpack data at byte {pos}: {exc}") from None


def _read_item(
    data: bytes, pos: int, limit: int | None = None, depth: int = 0
) -> tuple[Any, int]:
    marker = data[pos]
    pos += 1
    if marker < 0x40:
        return marker, pos
    if marker < 0x7C:
        return 63 - marker, pos
    if 0x7D <= marker <= 0x7F:
        return (-1.0, 0.0, 1.0)[marker - 0x7D], pos
    if 0x80 <= marker <= 0xE3:
        end = pos + marker - 0x80
        return data[pos:end].decode("utf-8"), end
    if marker in _STR_LEN:
        fmt = _STR_LEN[marker]
        (size,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return data[pos : pos + size].decode("utf-8"), pos + size
    if marker in _FIXED:
        fmt = _FIXED[marker]
        return struct.unpack_from(fmt, data, pos)[0], pos + struct.calcsize(fmt)
    if marker >= 0xED and marker not in (0xF9, 0xFA, 0xFB) and depth >= MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels at byte {pos - 1}")
    if 0xED <= marker <= 0xF2 or marker == 0xFC:
        count = marker - 0xED if marker != 0xFC else None
        items: list[Any] = []
        while True:
            if count is not None and len(items) == count:
                break
            if limit is not None and len(items) == limit:
                break
            if count is None and (pos >= len(data) or data[pos] == 0xFE):
                pos = min(pos + 1, len(data))
                break
            item, pos = _read_item(data, pos, None, depth + 1)
            items.append(item)
        return items, pos
    if 0xF3 <= marker <= 0xF8 or marker == 0xFD:
        pairs = marker - 0xF3 if marker != 0xFD else None
        result: dict[Any, Any] = {}
        while True:
            if pairs is not None and len(result) == pairs:
                break
            if pairs is None and (pos >= len(data) or data[pos] == 0xFF):
                pos = min(pos + 1, len(data))
                break
            key, pos = _read_item(data, pos, None, depth + 1)
            result[key], pos = _read_item(data, pos, None, depth + 1)
        return result, pos
    if marker in (0xF9, 0xFA, 0xFB):
        return (True, False, None)[marker - 0xF9], pos
    raise ValueError(f"unexpected qpack marker 0x{marker:02x} at byte {pos - 1}")

