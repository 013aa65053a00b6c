"""Answers in another time precision than the database's, converted as SiriDB does.

A query may ask for time-stamps in another precision (the second item of the query
package). SiriDB then turns the difference into a *single-precision* float factor,
``(float) pow(1000, asked - database)``, and multiplies each answer time-stamp, as a
double, by that factor:

- point time-stamps are unsigned: the product is truncated to an unsigned 64-bit
  value (0 from 2**64 on) and sent as a signed one (so values from 2**63 on wrap);
- ``calc`` answers and the time of an empty query are truncated to a signed 64-bit
  value (out of range gives the most negative value).

Asking for the database's own precision still multiplies by 1.0: time-stamps above
2**53 lose their lowest bits, as on the real server.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["effective_precision", "query_factor", "scale_calc", "scale_timestamp"]

_FLOAT: Final = struct.Struct("f")
_TWO_63: Final = float(1 << 63)
_TWO_64: Final = float(1 << 64)
_INT64_MIN: Final = -(1 << 63)
_DEFAULT: Final = -1


def effective_precision(value: int | None, db_precision: int) -> int | None:
    """The precision SiriDB uses for a query's integer argument, or None (the
    database's own): the value as a C ``int``, taken modulo 4 (C's remainder, so it
    may be negative) unless it equals the database's precision; -1 means none."""
    if value is None:
        return None
    tp = (value + (1 << 31)) % (1 << 32) - (1 << 31)
    if tp != db_precision:
        tp = -((-tp) % 4) if tp < 0 else tp % 4
    return None if tp == _DEFAULT else tp


def query_factor(precision: int | None, db_precision: int) -> float | None:
    """The factor for a query's ``precision`` (SiriDB's number, possibly negative) or
    None when the query keeps the database's time-stamps as they are."""
    if precision is None or precision == _DEFAULT:
        return None
    value: float = _FLOAT.unpack(_FLOAT.pack(1000.0 ** (precision - db_precision)))[0]
    return value


def scale_timestamp(ts: int, factor: float | None) -> int:
    """A point's time-stamp times ``factor``: unsigned truncation, sent as int64."""
    if factor is None:
        return ts
    value = float(ts) * factor
    if value >= _TWO_64:
        return 0
    result = int(value)
    return result - (1 << 64) if result >= 1 << 63 else result


def scale_calc(value: int, factor: float | None) -> int:
    """A ``calc`` answer (or the time of an empty query) times ``factor`` as int64."""
    if factor is None:
        return value
    product = float(value) * factor
    if product >= _TWO_63 or product < -_TWO_63 or product != product:
        return _INT64_MIN
    return int(product)
