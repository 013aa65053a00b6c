"""A safe, token-level qpack reader for untrusted payloads (the server's view of a package).

SiriDB reads request payloads token by token and never builds a tree, so nesting is not
checked and trailing data is ignored. This module reproduces that view in pure Python.
It never raises on malformed input: a truncated or reserved token reads as ``ERR``. (The
``qpack`` C decoder is not used on untrusted bytes: some malformed inputs crash it.)
"""

from __future__ import annotations

import struct
from typing import Any

# Token kinds (the value, when any, comes with the token).
END = 0
ERR = 1
RAW = 2
INT = 3
DOUBLE = 4
ARRAY = 5  # fixed array; value = number of items (0..5)
MAP = 6  # fixed map; value = number of pairs (0..5)
ARRAY_OPEN = 7
MAP_OPEN = 8
ARRAY_CLOSE = 9
MAP_CLOSE = 10
TRUE = 11
FALSE = 12
NULL = 13
HOOK = 14

Token = tuple[int, Any]

_INT_FORMATS = {
    0xE8: struct.Struct("<b"),
    0xE9: struct.Struct("<h"),
    0xEA: struct.Struct("<i"),
    0xEB: struct.Struct("<q"),
}
_LEN_FORMATS = {
    0xE4: struct.Struct("<B"),
    0xE5: struct.Struct("<H"),
    0xE6: struct.Struct("<I"),
    0xE7: struct.Struct("<Q"),
}
_DOUBLE = struct.Struct("<d")
_SIMPLE: dict[int, Token] = {
    0x7C: (HOOK, None),
    0x7D: (DOUBLE, -1.0),
    0x7E: (DOUBLE, 0.0),
    0x7F: (DOUBLE, 1.0),
    0xF9: (TRUE, True),
    0xFA: (FALSE, False),
    0xFB: (NULL, None),
    0xFC: (ARRAY_OPEN, None),
    0xFD: (MAP_OPEN, None),
    0xFE: (ARRAY_CLOSE, None),
    0xFF: (MAP_CLOSE, None),
}


def is_array(kind: int) -> bool:
    """True for every array token (fixed or open), as ``qp_is_array`` in SiriDB."""
    return kind in (ARRAY, ARRAY_OPEN)


def is_map(kind: int) -> bool:
    """True for every map token (fixed or open)."""
    return kind in (MAP, MAP_OPEN)


class Reader:
    """Reads one token at a time from ``data``; ``pos`` is the offset of the next token."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)

    def next(self) -> Token:
        """The next token; ``(END, None)`` at the end, ``(ERR, None)`` when truncated."""
        data, pos = self.data, self.pos
        if pos >= self.end:
            return END, None
        b = data[pos]
        pos += 1
        if b < 0x40:
            self.pos = pos
            return INT, b
        if b < 0x7C:
            self.pos = pos
            return INT, 63 - b
        if b < 0x80 or b >= 0xF9:
            self.pos = pos
            return _SIMPLE[b]
        if b < 0xE4:
            stop = pos + (b - 0x80)
            if stop > self.end:
                self.pos = self.end
                return ERR, None
            self.pos = stop
            return RAW, data[pos:stop]
        if b < 0xE8:
            fmt = _LEN_FORMATS[b]
            if pos + fmt.size > self.end:
                self.pos = self.end
                return ERR, None
            (n,) = fmt.unpack_from(data, pos)
            pos += fmt.size
            if pos + n > self.end:
                self.pos = self.end
                return ERR, None
            self.pos = pos + n
            return RAW, data[pos : pos + n]
        if b < 0xEC:
            fmt = _INT_FORMATS[b]
            if pos + fmt.size > self.end:
                self.pos = self.end
                return ERR, None
            self.pos = pos + fmt.size
            return INT, fmt.unpack_from(data, pos)[0]
        if b == 0xEC:
            if pos + 8 > self.end:
                self.pos = self.end
                return ERR, None
            self.pos = pos + 8
            return DOUBLE, _DOUBLE.unpack_from(data, pos)[0]
        self.pos = pos
        if b < 0xF3:
            return ARRAY, b - 0xED
        return MAP, b - 0xF3


def decode_text(raw: bytes) -> str:
    """Bytes of a qpack string as text; invalid UTF-8 is replaced, never raised."""
    return raw.decode("utf-8", "replace")


def read_query(data: bytes) -> tuple[bytes, int | None] | None:
    """A query package ``[query, time_precision]`` as SiriDB reads it: the query's raw
    bytes and the precision when the second item is an integer (else None); None when
    the package is malformed (the server then does not answer).

    The common shape (a short string followed by ``null`` or a small integer) is read
    directly; everything else goes through :class:`Reader`.
    """
    end = len(data)
    if end > 2 and (0xED <= data[0] <= 0xF2 or data[0] == 0xFC) and 0x80 <= data[1] < 0xE4:
        stop = 2 + data[1] - 0x80
        if stop < end:
            last = data[stop]
            if last == 0xFB:
                return data[2:stop], None
            if last < 0x40:
                return data[2:stop], last
    return _read_query_tokens(data)


def _read_query_tokens(data: bytes) -> tuple[bytes, int | None] | None:
    reader = Reader(data)
    kind, _ = reader.next()
    if not is_array(kind):
        return None
    kind, raw = reader.next()
    if kind != RAW:
        return None
    kind, value = reader.next()
    return raw, value if kind == INT else None
