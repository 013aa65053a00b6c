"""Time arguments of the streams API: exact nanoseconds in, database units on the wire.

Public methods take ``datetime`` (naive = UTC), ``int`` nanoseconds, ``numpy.datetime64``
or a pandas ``Timestamp``, and return integer nanoseconds. A half-open range
``[start, end)`` in nanoseconds becomes the half-open range of database units whose
times fall inside it (``ceil`` of both bounds), clipped to what a SiriDB server stores
(``0 .. 2**63 - 1``). Everything is integer arithmetic: nothing goes through a float.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any

from ..timeutil import INT64_MAX, NS_PER_UNIT, to_ns

__all__ = [
    "MAXIMUM_TIME",
    "MINIMUM_TIME",
    "SERVER_END",
    "UnitRange",
    "duration_ns",
    "now_ns",
    "to_nanoseconds",
    "unit_range",
]

#: BTrDB's smallest and largest times (ns); the defaults of open ranges.
MINIMUM_TIME = -(16 << 56)
MAXIMUM_TIME = (48 << 56) - 1

#: One past the largest timestamp a SiriDB server stores (in any unit).
SERVER_END = INT64_MAX + 1


def to_nanoseconds(value: Any, what: str = "time") -> int:
    """``value`` as integer nanoseconds since the epoch, exactly.

    ``int`` values are nanoseconds already; ``datetime`` without a timezone is UTC;
    ``numpy.datetime64`` of any unit and pandas ``Timestamp`` keep their nanoseconds.
    Floats and strings raise ``TypeError`` (a float cannot hold a nanosecond time).
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a datetime, int nanoseconds or numpy.datetime64, not bool")
    if isinstance(value, int):
        return int(value)
    tp = type(value)
    if tp.__module__.startswith("pandas") and hasattr(value, "value") and hasattr(value, "tz"):
        if value != value:  # NaT
            raise ValueError(f"{what} is NaT")
        return int(value.value)  # Timestamp.value: ns since the epoch, UTC
    try:
        return to_ns(value, 3)
    except TypeError:
        raise TypeError(
            f"{what} must be a datetime, int nanoseconds or numpy.datetime64, "
            f"not {tp.__name__}"
        ) from None


def duration_ns(value: Any, what: str = "width") -> int:
    """A duration as integer nanoseconds: ``int`` ns, ``timedelta`` or ``numpy.timedelta64``."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be int nanoseconds or a timedelta, not bool")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, _dt.timedelta):
        return ((value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds) * 1000
    if type(value).__name__ == "timedelta64" or (
        type(value).__module__.startswith("pandas") and hasattr(value, "value")
    ):
        import numpy as np

        return int(np.timedelta64(value, "ns").astype(np.int64))
    if type(value).__module__ == "numpy":
        import numpy as np

        if isinstance(value, np.integer):
            return int(value)
    raise TypeError(f"{what} must be int nanoseconds or a timedelta, not {type(value).__name__}")


def now_ns() -> int:
    """The current time in nanoseconds."""
    return time.time_ns()


def _ceil_div(num: int, den: int) -> int:
    return -((-num) // den)


@dataclass(frozen=True)
class UnitRange:
    """A half-open range ``[start, end)`` of database units inside ``0 .. 2**63``."""

    start: int
    end: int

    @property
    def empty(self) -> bool:
        """True when no timestamp lies in the range."""
        return self.end <= self.start

    def clause(self) -> str:
        """The query's time clause: ``between a and b``, ``after a`` or nothing."""
        if self.end >= SERVER_END:
            return "" if self.start <= 0 else f" after {self.start}"
        return f" between {self.start} and {self.end}"


def unit_range(start_ns: int, end_ns: int, precision: int) -> UnitRange:
    """The database units ``t`` with ``start_ns <= t * unit < end_ns``, clipped to the server."""
    unit = NS_PER_UNIT[precision]
    start = min(max(_ceil_div(start_ns, unit), 0), SERVER_END)
    end = min(max(_ceil_div(end_ns, unit), 0), SERVER_END)
    return UnitRange(start, end)
