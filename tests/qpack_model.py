"""A reference model of how qpack's C decoder reads bytes, and hostile payload strategies.

``first_event(data, limit)`` walks the first item as the decoder does (recursively, in
plain Python) and reports what happens first: the nesting passes ``limit`` ("deep"),
the bytes are malformed ("malformed"), or the item is complete ("ok"). Tests compare
``tsconnector.protocol.unpack`` against it; they run in a subprocess (see
``test_protocol_nesting.py``), so a decoder crash fails a test instead of pytest.
"""

from __future__ import annotations

import struct
from typing import Any

import qpack
from hypothesis import strategies as st


class _Stop(Exception):
    def __init__(self, event: str) -> None:
        super().__init__(event)
        self.event = event


_CLOSE = object()
_SIZES = {0xE8: 1, 0xE9: 2, 0xEA: 4, 0xEB: 8, 0xEC: 8}
_LENGTHS = {0xE4: "<B", 0xE5: "<H", 0xE6: "<I", 0xE7: "<Q"}


def first_event(data: bytes, limit: int) -> str:
    """``"ok"``, ``"malformed"`` or ``"deep"``: what the decoder meets first."""
    if not data:
        return "ok"
    try:
        got = _item(data, 0, 0, limit)
    except _Stop as stop:
        return stop.event
    return "malformed" if got[0] is _CLOSE else "ok"


def _item(data: bytes, pos: int, depth: int, limit: int) -> tuple[Any, int]:
    """Read one item at ``pos`` inside ``depth`` containers; returns (_CLOSE or None, end)."""
    if pos >= len(data):
        raise _Stop("malformed")
    marker = data[pos]
    pos += 1
    if marker < 0x80 or 0xF9 <= marker <= 0xFB:
        return None, pos
    if marker < 0xE4:
        return None, _need(data, pos + marker - 0x80)
    if marker in _LENGTHS:
        fmt = _LENGTHS[marker]
        _need(data, pos + struct.calcsize(fmt))
        (size,) = struct.unpack_from(fmt, data, pos)
        return None, _need(data, pos + struct.calcsize(fmt) + size)
    if marker in _SIZES:
        return None, _need(data, pos + _SIZES[marker])
    if marker in (0xFE, 0xFF):
        return _CLOSE, pos
    if depth + 1 > limit:
        raise _Stop("deep")
    if 0xED <= marker <= 0xF8:
        count = marker - 0xED if marker <= 0xF2 else 2 * (marker - 0xF3)
        for _ in range(count):
            got, pos = _item(data, pos, depth + 1, limit)
            if got is _CLOSE:
                raise _Stop("malformed")
        return None, pos
    closer = 0xFE if marker == 0xFC else 0xFF
    is_map = marker == 0xFD
    while pos < len(data):
        at = pos
        got, pos = _item(data, pos, depth + 1, limit)
        if got is _CLOSE:
            if data[at] != closer:
                raise _Stop("malformed")
            break
        if is_map:
            got, pos = _item(data, pos, depth + 1, limit)
            if got is _CLOSE:
                raise _Stop("malformed")
    return None, pos


def _need(data: bytes, end: int) -> int:
    if end > len(data):
        raise _Stop("malformed")
    return end


# -- strategies ------------------------------------------------------------------------

OPENERS = [*range(0xED, 0xF9), 0xFC, 0xFD]
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=120),
    st.booleans(), st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=6),
    max_leaves=60,
)


@st.composite
def deep_payloads(draw: st.DrawFn) -> bytes:
    """A valid start, then a long chain of container openers, maybe with scalars between."""
    prefix = draw(st.sampled_from([b"", b"\xfd\x81a", b"\xfc", b"\xf4\x81a\xfc\x01",
                                   b"\xfd\x89error_msg", b"\xef\xea\x00\x00\x00\x01"]))
    depth = draw(st.sampled_from([31, 32, 33, 40, 1_000, 30_000, 200_000]))
    openers = draw(st.lists(st.sampled_from(OPENERS), min_size=1, max_size=4))
    filler = draw(st.sampled_from([b"", b"\x01", b"\x81x", b"\xec" + b"\x00" * 8]))
    unit = b"".join(bytes([o]) + filler for o in openers)
    chain = (unit * (depth // len(openers) + 1))[: depth * (1 + len(filler))]
    tail = draw(st.sampled_from([b"", b"\x01", b"\xfe" * 5, b"\xff\xfe"]))
    return prefix + chain + tail


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    """A valid encoding with bytes flipped, inserted or deleted (or openers spliced in)."""
    data = bytearray(qpack.packb(draw(values)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "openers"]))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and pos < len(data):
            del data[pos]
        elif kind == "openers":
            data[pos:pos] = bytes([draw(st.sampled_from(OPENERS))]) * draw(
                st.integers(1, 100_000)
            )
    return bytes(data)


hostile_payloads = st.one_of(
    deep_payloads(), mutated_payloads(), st.binary(max_size=300),
    values.map(qpack.packb),
)
