"""Series answers as numpy arrays, pandas DataFrames or ``Series`` objects.

``client.query()`` returns plain dicts; these helpers convert a series answer
(``{name: [[ts, value], ...]}``). Give them the raw answer payload (``bytes``) for the
fast path, which decodes straight into numpy arrays without building Python lists,
or an already decoded dict. numpy and pandas are imported only when used.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .protocol.answers import decode_answer, decode_series_arrays, points_to_arrays
from .protocol.constants import PRECISION_NAMES
from .timeutil import from_db_time, parse_precision

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["Series", "series", "to_arrays", "to_dataframe"]

Answer = Mapping[str, Any] | bytes | bytearray | memoryview


def _series_items(answer: Any) -> Mapping[str, Any]:
    if not isinstance(answer, Mapping):
        raise TypeError(f"expected a series answer (dict or payload bytes), got {answer!r}")
    for name, points in answer.items():
        if not isinstance(points, list):
            raise ValueError(f"not a series answer: {name!r} maps to {type(points).__name__}")
    return answer


def to_arrays(answer: Answer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{name: (timestamps, values)}`` as numpy arrays.

    Timestamps are int64 (database units); values float64 when the series holds any
    double, int64 when it holds only integers, object when it holds strings. Raw
    payload bytes are decoded straight into arrays (the fast path).
    """
    if isinstance(answer, (bytes, bytearray, memoryview)):
        return decode_series_arrays(bytes(answer))
    return {name: points_to_arrays(points) for name, points in _series_items(answer).items()}


def _pandas() -> Any:
    """The pandas module, or an ImportError that names the extra to install."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "data frames need pandas, an optional dependency: pip install 'tsconnector[pandas]'"
        ) from exc
    return pandas


def _time_index(timestamps: np.ndarray, precision: int | str | None, name: str) -> Any:
    """A UTC DatetimeIndex in the database unit, or the integers when no precision."""
    import numpy as np

    pd = _pandas()

    if precision is None:
        return pd.Index(timestamps, name=name)
    unit = PRECISION_NAMES[parse_precision(precision)]
    stamps = np.asarray(timestamps, dtype=np.int64).view(f"datetime64[{unit}]")
    return pd.DatetimeIndex(stamps, name=name).tz_localize("UTC")


def to_dataframe(
    answer: Answer,
    *,
    precision: int | str | None = None,
    layout: Literal["wide", "long"] = "wide",
) -> pd.DataFrame:
    """Return a pandas DataFrame of a series answer.

    ``layout="wide"``: one column per series, indexed by timestamp (outer join; a
    series with duplicate timestamps raises ``ValueError``, use the long layout).
    ``layout="long"``: columns ``series``, ``time``, ``value``, one row per point, in
    answer order. With ``precision`` (the database's, 0..3 or ``"s"``..``"ns"``) times
    become a UTC ``DatetimeIndex`` in that unit (exact); without it they stay integers.
    """
    import numpy as np

    pd = _pandas()
    arrays = to_arrays(answer)
    if layout == "long":
        names = list(arrays)
        sizes = [len(arrays[n][0]) for n in names]
        ts = (
            np.concatenate([arrays[n][0] for n in names])
            if names
            else np.zeros(0, dtype=np.int64)
        )
        value_arrays = [arrays[n][1] for n in names]
        kinds = {v.dtype.kind for v in value_arrays}
        if len(kinds) > 1:
            value_arrays = [v.astype(object) for v in value_arrays]
        values = np.concatenate(value_arrays) if names else np.zeros(0, dtype=np.float64)
        frame = pd.DataFrame(
            {
                "series": np.repeat(np.array(names, dtype=object), sizes),
                "time": _time_index(ts, precision, "time"),
                "value": values,
            }
        )
        return frame
    if layout != "wide":
        raise ValueError(f"layout must be 'wide' or 'long', got {layout!r}")
    columns: dict[str, Any] = {}
    for name, (ts, values) in arrays.items():
        index = _time_index(ts, precision, "time")
        if not index.is_unique:
            raise ValueError(
                f"series {name!r} has duplicate timestamps; use layout='long' to keep them"
            )
        columns[name] = pd.Series(values, index=index, name=name)
    if not columns:
        return pd.DataFrame(index=_time_index(np.zeros(0, dtype=np.int64), precision, "time"))
    frame = pd.concat(columns, axis=1, sort=True)
    frame.index.name = "time"
    return frame


@dataclass
class Series:
    """One series of an answer: its name and ``(ts, value)`` points in database units."""

    name: str
    points: list[tuple[int, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return iter(self.points)

    @property
    def timestamps(self) -> list[int]:
        """The timestamps, in database units."""
        return [ts for ts, _ in self.points]

    @property
    def values(self) -> list[Any]:
        """The values, in point order."""
        return [value for _, value in self.points]

    def datetimes(self, precision: int | str) -> list[_dt.datetime]:
        """The timestamps as UTC datetimes (sub-microsecond parts are floored)."""
        p = parse_precision(precision)
        return [from_db_time(ts, p) for ts, _ in self.points]

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(int64 timestamps, values)`` as numpy arrays."""
        return points_to_arrays(self.points)


def series(answer: Answer) -> list[Series]:
    """The series of an answer, in answer order, with points as ``(ts, value)`` tuples."""
    if isinstance(answer, (bytes, bytearray, memoryview)):
        answer = decode_answer(bytes(answer))
    return [
        Series(name, [(ts, value) for ts, value in points])
        for name, points in _series_items(answer).items()
    ]
