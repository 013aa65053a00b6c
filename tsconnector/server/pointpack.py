"""qpack encoding of point columns, vectorised: the same bytes as ``qpack.packb`` of the
``[[ts, value], ...]`` list, without building that list.

SiriDB (and qpack) write each integer in the smallest form (a single byte for -60..63,
else int8/16/32/64 behind a marker) and the doubles -1.0, 0.0 and 1.0 as single bytes, so
points differ in size. The encoder computes every point's size, places each point by a
cumulative sum, and scatters the bytes of each size class with numpy: a million points
take tens of milliseconds instead of a million Python objects.
"""

from __future__ import annotations

import numpy as np
import qpack

__all__ = ["pack_point_columns"]

_ARRAY2 = 0xEF
_OPEN_ARRAY = b"\xfc"
_CLOSE_ARRAY = b"\xfe"
# (low, high, marker, width) of the fixed-width integer forms after the single bytes.
_INT_FORMS = (
    (-(2**7), 2**7 - 1, 0xE8, 1),
    (-(2**15), 2**15 - 1, 0xE9, 2),
    (-(2**31), 2**31 - 1, 0xEA, 4),
    (-(2**63), 2**63 - 1, 0xEB, 8),
)


def pack_point_columns(ts: np.ndarray, values: np.ndarray) -> bytes:
    """``qpack.packb([[t, v] for t, v in zip(ts, values)])``, byte for byte.

    ``ts`` is an int64 array; ``values`` an int64 or float64 array (anything else, such
    as strings, is packed through qpack on lists).
    """
    n = len(ts)
    if values.dtype.kind not in "if" or n < 6:
        packed: bytes = qpack.packb([list(p) for p in zip(ts.tolist(), values.tolist())])
        return packed
    ts = ts.astype(np.int64, copy=False)
    if values.dtype.kind == "i":
        values = values.astype(np.int64, copy=False)
    else:
        values = values.astype(np.float64, copy=False)
    uniform = _pack_uniform(ts, values)
    if uniform is not None:
        return uniform
    # Every point laid out at its widest (19 bytes), then the used bytes kept in order.
    wide = np.zeros((n, 19), dtype=np.uint8)
    wide[:, 0] = _ARRAY2
    ts_size = _put_int_wide(wide, 1, ts)
    if values.dtype.kind == "i":
        value_size = _put_int_wide(wide, 10, values)
    else:
        value_size = _put_double_wide(wide, 10, values)
    used = np.empty((n, 19), dtype=bool)
    used[:, 0] = True
    used[:, 1:10] = _USED_BY_SIZE[ts_size]
    used[:, 10:19] = _USED_BY_SIZE[value_size]
    body = wide[used]
    return _OPEN_ARRAY + body.tobytes() + _CLOSE_ARRAY


#: Row ``size``: which of the 9 bytes of a widest-form number an encoding of ``size`` uses.
_USED_BY_SIZE = np.arange(9) < np.arange(10)[:, None]
#: Marker byte by encoded size (sizes 2, 3, 5 and 9 are the fixed-width integers).
_MARKER_BY_SIZE = np.zeros(10, dtype=np.uint8)
_MARKER_BY_SIZE[[2, 3, 5, 9]] = [0xE8, 0xE9, 0xEA, 0xEB]


def _put_int_wide(wide: np.ndarray, col: int, arr: np.ndarray) -> np.ndarray:
    """Write integers at column ``col`` of ``wide`` (marker, then 8 little-endian bytes;
    the caller keeps only the first ``size`` bytes); returns each one's encoded size."""
    size = _int_sizes(arr)
    small = size == 1
    marker = _MARKER_BY_SIZE[size]
    marker[small] = np.where(arr[small] >= 0, arr[small], 63 - arr[small]).astype(np.uint8)
    wide[:, col] = marker
    wide[:, col + 1 : col + 9] = arr.astype("<i8", copy=False).view(np.uint8).reshape(-1, 8)
    return size


def _put_double_wide(wide: np.ndarray, col: int, values: np.ndarray) -> np.ndarray:
    """Write doubles at column ``col`` (``0xEC`` and 8 bytes, or one byte for -1, 0, 1)."""
    small = _single_byte_double(values)
    size = np.where(small, 1, 9)
    marker = np.full(len(values), 0xEC, dtype=np.uint8)
    v = values[small]
    marker[small] = np.where(v == 0.0, 0x7E, np.where(v == 1.0, 0x7F, 0x7D))
    wide[:, col] = marker
    wide[:, col + 1 : col + 9] = values.astype("<f8", copy=False).view(np.uint8).reshape(-1, 8)
    return size


_MARKER_OF_SIZE = {2: 0xE8, 3: 0xE9, 5: 0xEA, 9: 0xEB}


def _uniform_int_size(arr: np.ndarray) -> int | None:
    """The encoded size shared by every integer of ``arr`` (from its minimum and
    maximum alone), or None when they may differ or are single bytes."""
    low, high = int(arr.min()), int(arr.max())
    inner_low, inner_high = -60, 63
    for form_low, form_high, _marker, width in _INT_FORMS:
        if form_low <= low and high <= form_high:
            if high < inner_low or low > inner_high:
                return 1 + width
            return None
        inner_low, inner_high = form_low, form_high
    return None


def _pack_uniform(ts: np.ndarray, values: np.ndarray) -> bytes | None:
    """The common case, every point in one fixed-width layout, as one structured array;
    None when sizes may differ or a value is a single byte."""
    tsz = _uniform_int_size(ts)
    if tsz is None:
        return None
    is_float = values.dtype.kind == "f"
    if is_float:
        if _single_byte_double(values).any():
            return None
        vsz: int | None = 9
    else:
        vsz = _uniform_int_size(values)
        if vsz is None:
            return None
    assert vsz is not None
    tw, vw = tsz - 1, vsz - 1
    record = np.dtype({
        "names": ["a", "tm", "ts", "vm", "v"],
        "formats": ["u1", "u1", f"<i{tw}", "u1", "<f8" if is_float else f"<i{vw}"],
        "offsets": [0, 1, 2, 2 + tw, 3 + tw],
        "itemsize": 1 + tsz + vsz,
    })
    out = np.empty(len(ts) * record.itemsize + 2, dtype=np.uint8)
    out[0] = _OPEN_ARRAY[0]
    out[-1] = _CLOSE_ARRAY[0]
    rec = out[1:-1].view(record)
    rec["a"] = _ARRAY2
    rec["tm"] = _MARKER_OF_SIZE[tsz]
    rec["ts"] = ts
    rec["vm"] = 0xEC if is_float else _MARKER_OF_SIZE[vsz]
    rec["v"] = values
    return out.tobytes()


def _int_sizes(arr: np.ndarray) -> np.ndarray:
    """Encoded size of each integer: 1 for -60..63, else 2, 3, 5 or 9."""
    size = np.full(len(arr), 9, dtype=np.int64)
    for low, high, _marker, width in reversed(_INT_FORMS[:-1]):
        size[(arr >= low) & (arr <= high)] = 1 + width
    size[(arr >= -60) & (arr <= 63)] = 1
    return size


def _single_byte_double(values: np.ndarray) -> np.ndarray:
    """Doubles qpack writes as one byte: -1.0, 0.0 (either sign) and 1.0."""
    result: np.ndarray = (values == 0.0) | (values == 1.0) | (values == -1.0)
    return result
