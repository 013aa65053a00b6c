"""Payload encoding: qpack on the wire (C extension), with strict decoding helpers.

Every payload is checked by :mod:`.nesting` before the C decoder sees it: the decoder
recurses without a limit and crashes the process on deeply nested input.
"""

from __future__ import annotations

from typing import Any

import qpack

from ..exceptions import ProtocolError
from .nesting import MAX_NESTING, check_nesting, nesting_is_trivial

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_CLOSE_ARRAY = 0xFE  # 0xfe closes an array, 0xff a map
#: Payloads up to this size are first tested by counting their container markers.
_SMALL_PAYLOAD = 4096


def pack(obj: Any) -> bytes:
    """qpack-encode ``obj``; integers outside int64 raise ``OverflowError``."""
    try:
        packed: bytes = qpack.packb(obj)
        return packed
    except SystemError as exc:  # the C extension reports overflow this way
        _raise_overflow(obj)
        raise TypeError(f"cannot encode payload: {exc}") from None
    except OverflowError:
        raise
    except ValueError as exc:
        raise TypeError(f"cannot encode payload: {exc}") from None


def unpack(data: bytes | bytearray, max_nesting: int = MAX_NESTING) -> Any:
    """Decode a qpack payload, strings as ``str``; malformed data raises ProtocolError.

    Any bytes are safe here: nesting deeper than ``max_nesting`` levels is refused
    before the C decoder (which would crash on it) runs.
    """
    if not data:
        return None
    if data[0] >= _CLOSE_ARRAY:
        # qpack's C decoder crashes the process on a payload that starts with a
        # container close marker; such a payload is malformed anyway.
        raise ProtocolError(f"cannot decode payload: starts with close marker 0x{data[0]:02x}")
    if len(data) > _SMALL_PAYLOAD or not nesting_is_trivial(data, max_nesting):
        check_nesting(data, max_nesting)
    try:
        return qpack.unpackb(data, decode="utf-8")
    except Exception as exc:  # qpack raises ValueError/UnicodeDecodeError/SystemError
        raise ProtocolError(f"cannot decode payload: {exc}") from None


def _raise_overflow(obj: Any) -> None:
    """Find the out-of-range integer in ``obj`` and raise a clear OverflowError."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise OverflowError(f"integer {item} does not fit in a signed 64-bit integer")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
