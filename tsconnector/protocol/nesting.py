"""A depth guard for qpack payloads, run before the qpack C decoder sees them.

qpack's C decoder recurses once per nested array or map without any limit, so a payload
of 100,000 container openers crashes the process (SIGSEGV). :func:`check_nesting`
walks the structure of the payload's first item (all the decoder reads) with an explicit
stack and refuses nesting deeper than a limit. It stays cheap on real answers by never
looking at most bytes from Python: runs of points of one shape are checked with strided
byte slices, runs of scalars and of small containers of scalars are skipped by one
compiled regular expression, and only real containers reach the Python loop.

The walk follows the decoder's reading rules exactly (marker sizes, fixed counts, open
containers that end at their close marker or at the end of the data), so the depth it
finds is the depth the decoder would recurse to. Malformed payloads that the decoder
would refuse are left to it, except close markers where no open container can take
them (the decoder mishandles one at the top level), which are refused here.
"""

from __future__ import annotations

import re
import struct

from ..exceptions import ProtocolError

__all__ = ["MAX_NESTING", "NestingError", "check_nesting", "nesting_is_trivial"]

#: Deepest nesting accepted from a server. SiriDB answers nest three or four levels
#: (a map of series, an array of points, a point); this leaves ample room.
MAX_NESTING = 64


class NestingError(ProtocolError):
    """A payload nests deeper than the limit (or misplaces a close marker)."""


# -- regular expressions for what cannot nest ----------------------------------------

def _marker(byte: int) -> bytes:
    """A regex matching the byte ``byte`` literally."""
    return rb"\x%02x" % byte


_NUMBER = rb"\xec........|\xea....|\xeb........|[\x00-\x7f\xf9-\xfb]|\xe9..|\xe8."
# 100 alternatives, one per length; the lookahead skips them all at once for other bytes
_SHORT_STRING = rb"(?=[\x80-\xe3])(?:" + b"|".join(
    _marker(0x80 + n) + (b".{%d}" % n if n else b"") for n in range(100)
) + b")"
_SCALAR = b"(?:" + _NUMBER + b"|" + _SHORT_STRING + b")"


def _times(n: int) -> bytes:
    """A regex for ``n`` scalars in a row."""
    return b"" if n == 0 else _SCALAR if n == 1 else _SCALAR + b"{%d}" % n


# Containers whose items are all scalars: one item one level deeper than their parent.
# Points ([timestamp, value], marker 0xef) come first: they are most of every answer.
_SMALL = b"|".join(
    [_marker(0xED + n) + _times(n) for n in range(6) if n != 2]
    + [_marker(0xF3 + n) + _times(2 * n) for n in range(6)]
    + [rb"\xfc\xfe", rb"\xfd\xff"]
)
_ITEM = (
    b"(?:" + _marker(0xEF) + _times(2) + b"|" + _SCALAR
    + rb"|(?=[\xed-\xf8\xfc\xfd])(?:" + _SMALL + b"))"
)
#: Items are skipped this many at a time (bounds the regex engine's own state).
_RUN = 4096

_ITEMS_RUN = re.compile(b"(?s)" + _ITEM + b"{0,%d}" % _RUN)
_SCALARS_RUN = re.compile(b"(?s)" + _SCALAR + b"{0,%d}" % _RUN)
_ONE_ITEM = re.compile(b"(?s)" + _ITEM)
_ONE_SCALAR = re.compile(b"(?s)" + _SCALAR)
_POINT_RUNS: dict[int, re.Pattern[bytes]] = {}

# -- markers ---------------------------------------------------------------------------

_FIXED_ARRAY = range(0xED, 0xF3)
_FIXED_MAP = range(0xF3, 0xF9)
_OPEN_ARRAY, _OPEN_MAP, _CLOSE_ARRAY, _CLOSE_MAP = 0xFC, 0xFD, 0xFE, 0xFF
_LONG_STRING = {0xE4: struct.Struct("<B"), 0xE5: struct.Struct("<H"),
                0xE6: struct.Struct("<I"), 0xE7: struct.Struct("<Q")}
# Width of the number after a fixed-width marker (timestamps: integers only).
_TS_WIDTH = {0xE8: 1, 0xE9: 2, 0xEA: 4, 0xEB: 8}
_VALUE_WIDTH = {0xE8: 1, 0xE9: 2, 0xEA: 4, 0xEB: 8, 0xEC: 8}
_POINT = 0xEF  # a fixed array of two items: [timestamp, value]
_FIRST_WINDOW = 256
_LAST_WINDOW = 1 << 20

_OPENERS = frozenset([*_FIXED_ARRAY, *_FIXED_MAP, _OPEN_ARRAY, _OPEN_MAP])
_NOT_OPENERS = bytes(b for b in range(256) if b not in _OPENERS)
# Open containers on the stack; fixed ones hold the number of items still to come.
_IN_OPEN_ARRAY = -1
_IN_OPEN_MAP = -2


def nesting_is_trivial(data: bytes | bytearray, limit: int = MAX_NESTING) -> bool:
    """True when ``data`` holds at most ``limit`` container markers at all (a quick test
    for small payloads: it cannot nest deeper than that)."""
    return len(data) <= limit or len(data.translate(None, _NOT_OPENERS)) <= limit


def check_nesting(data: bytes | bytearray, limit: int = MAX_NESTING) -> None:
    """Raise :class:`NestingError` if decoding ``data`` would nest deeper than ``limit``.

    Depth counts containers: ``[]`` is 1, ``[[1]]`` is 2. Also refused: a close marker
    where the decoder cannot take one (at the top level, or inside a fixed-size array
    or map), as the decoder itself does or worse.
    """
    end = len(data)
    pos = 0
    stack: list[int] = []
    while pos < end:
        top = stack[-1] if stack else 0
        if top < 0:
            pos = _skip_open(data, pos, end, len(stack) < limit)
            if pos >= end:
                return  # open containers end with the data
            marker = data[pos]
            if marker in (_CLOSE_ARRAY, _CLOSE_MAP):
                if (marker == _CLOSE_ARRAY) != (top == _IN_OPEN_ARRAY):
                    raise NestingError(
                        f"cannot decode payload: misplaced close marker at byte {pos}"
                    )
                stack.pop()
                pos += 1
                if _item_done(stack):
                    return
                continue
        else:
            one = _ONE_ITEM if len(stack) < limit else _ONE_SCALAR
            match = one.match(data, pos)
            if match is not None:
                pos = match.end()
                if _item_done(stack):
                    return
                continue
        marker = data[pos]
        pos += 1
        if marker in _OPENERS:
            if len(stack) >= limit:
                raise NestingError(
                    f"cannot decode payload: nested deeper than {limit} levels (byte {pos - 1})"
                )
            if marker == _OPEN_ARRAY:
                stack.append(_IN_OPEN_ARRAY)
            elif marker == _OPEN_MAP:
                stack.append(_IN_OPEN_MAP)
            else:
                count = marker - 0xED if marker in _FIXED_ARRAY else 2 * (marker - 0xF3)
                if count:
                    stack.append(count)
                elif _item_done(stack):
                    return
        elif marker in _LONG_STRING:
            fmt = _LONG_STRING[marker]
            if pos + fmt.size > end:
                return  # truncated: the decoder reports missing data
            pos += fmt.size + fmt.unpack_from(data, pos)[0]
            if _item_done(stack):
                return
        elif marker in (_CLOSE_ARRAY, _CLOSE_MAP):
            raise NestingError(f"cannot decode payload: misplaced close marker at byte {pos - 1}")
        else:
            return  # a scalar cut short by the end of the data: the decoder reports it


def _item_done(stack: list[int]) -> bool:
    """Count one finished item in the innermost container; True when the top item is done."""
    while stack:
        left = stack[-1]
        if left < 0:
            return False
        if left > 1:
            stack[-1] = left - 1
            return False
        stack.pop()  # the fixed container is complete: an item of its parent
    return True


def _skip_open(data: bytes | bytearray, pos: int, end: int, containers: bool) -> int:
    """Skip the items at ``pos`` inside an open container that cannot nest further.

    With ``containers`` points and small containers of scalars are skipped too (they
    are one level deeper); without, only scalars.
    """
    if not containers:
        while True:
            after = _run_end(_SCALARS_RUN, data, pos)
            if after == pos:
                return pos
            pos = after
    while True:
        while pos + 1 < end and data[pos] == _POINT:
            pos = _skip_uniform_points(data, pos, end)
            if pos + 1 >= end or data[pos] != _POINT:
                break
            after = _run_end(_point_run(data[pos + 1]), data, pos)
            if after == pos:
                break
            pos = after
        after = _run_end(_ITEMS_RUN, data, pos)
        if after == pos:
            return pos
        pos = after


def _point_run(ts_marker: int) -> re.Pattern[bytes]:
    """A run of points whose timestamps all use ``ts_marker`` (compiled once per marker)."""
    run = _POINT_RUNS.get(ts_marker)
    if run is None:
        width = _TS_WIDTH.get(ts_marker)
        if width is not None:
            stamp = _marker(ts_marker) + b"." * width
        elif ts_marker < 0x7C:
            stamp = rb"[\x00-\x7b]"  # a small integer in the marker itself
        else:
            stamp = _SCALAR
        run = re.compile(b"(?s)(?:" + _marker(_POINT) + stamp + _SCALAR + b"){0,%d}" % _RUN)
        _POINT_RUNS[ts_marker] = run
    return run


def _run_end(run: re.Pattern[bytes], data: bytes | bytearray, pos: int) -> int:
    """Where a ``{0,n}`` run that starts at ``pos`` ends (it always matches)."""
    match = run.match(data, pos)
    return pos if match is None else match.end()


def _skip_uniform_points(data: bytes | bytearray, pos: int, end: int) -> int:
    """Skip a run of points that all share the first one's markers (fixed widths).

    A run of ``[int, number]`` points of one shape is a sequence of records of one size
    whose marker bytes repeat; three strided slices compared with ``lstrip`` find where
    the pattern ends, at C speed. The window grows while the pattern holds.
    """
    if pos + 2 >= end:
        return pos
    ts_width = _TS_WIDTH.get(data[pos + 1])
    if ts_width is None:
        return pos
    value_at = 2 + ts_width
    if pos + value_at >= end:
        return pos
    value_width = _VALUE_WIDTH.get(data[pos + value_at])
    if value_width is None:
        return pos
    size = value_at + 1 + value_width
    markers = (
        (0, data[pos : pos + 1]),
        (1, data[pos + 1 : pos + 2]),
        (value_at, data[pos + value_at : pos + value_at + 1]),
    )
    window = _FIRST_WINDOW
    while True:
        rows = min((end - pos) // size, window)
        if rows == 0:
            return pos
        stop = pos + rows * size
        same = rows
        for offset, marker in markers:
            column = data[pos + offset : stop : size]
            same = min(same, rows - len(column.lstrip(marker)))
        pos += same * size
        if same < rows:
            return pos
        window = min(window * 4, _LAST_WINDOW)
