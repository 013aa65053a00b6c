"""Printing answers: aligned tables, JSON or CSV; series points become one row per point.

Answers of the query language come in a few shapes, each turned into columns and rows:
``{series: [[ts, value], ...]}`` (select), ``{"columns": [...], key: [[...], ...]}``
(list), ``{"data": [{...}, ...]}`` (show), ``{key: scalar}`` (count, calc) and messages
(``success_msg``, ``help``). Anything else is printed as JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..timeutil import from_db_time

__all__ = ["FORMATS", "Table", "render", "tabulate"]

FORMATS = ("table", "json", "csv")
_MESSAGE_KEYS = ("success_msg", "error_msg", "help")


@dataclass
class Table:
    """Columns and rows of an answer."""

    columns: list[str]
    rows: list[list[Any]]


def _is_points(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in value
    )


def tabulate(answer: Any) -> Table | str | None:
    """``answer`` as a :class:`Table`, as message text, or None when it has no table shape."""
    if not isinstance(answer, dict):
        return None
    answer = {k: v for k, v in answer.items() if k != "__timeit__"}
    if len(answer) == 1:
        key, value = next(iter(answer.items()))
        if key in _MESSAGE_KEYS and isinstance(value, str):
            return value
    columns = answer.get("columns")
    if isinstance(columns, list) and len(answer) == 2:
        (rows,) = (v for k, v in answer.items() if k != "columns")
        if isinstance(rows, list) and all(isinstance(r, list) for r in rows):
            return Table([str(c) for c in columns], rows)
    data = answer.get("data")
    if len(answer) == 1 and isinstance(data, list) and all(isinstance(d, dict) for d in data):
        keys: list[str] = []
        for item in data:
            keys.extend(k for k in item if k not in keys)
        return Table(keys, [[item.get(k, "") for k in keys] for item in data])
    if all(_is_points(v) for v in answer.values()):
        rows = [[name, p[0], p[1]] for name, points in answer.items() for p in points]
        return Table(["series", "timestamp", "value"], rows)
    if answer and all(not isinstance(v, (dict, list)) for v in answer.values()):
        return Table(list(answer), [list(answer.values())])
    return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _with_times(table: Table, precision: int) -> Table:
    def when(ts: Any) -> str:
        try:
            return from_db_time(ts, precision).strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0")
        except (ValueError, OverflowError, TypeError):
            return ""

    rows = [[name, ts, when(ts).rstrip("."), value] for name, ts, value in table.rows]
    return Table(["series", "timestamp", "time (UTC)", "value"], rows)


def format_table(table: Table) -> str:
    """Aligned columns (numbers right-aligned), a rule under the header, a row count."""
    cells = [[_cell(v) for v in row] for row in table.rows]
    widths = [len(c) for c in table.columns]
    for row in cells:
        for i, text in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], len(text))
    numeric = [
        bool(table.rows)
        and all(
            isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
            for row in table.rows
            if i < len(row) and row[i] is not None
        )
        for i in range(len(widths))
    ]

    def line(texts: Sequence[str]) -> str:
        parts = [
            t.rjust(w) if num else t.ljust(w)
            for t, w, num in zip(texts, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    out = [line(table.columns), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    count = len(table.rows)
    out.append(f"({count} row{'' if count == 1 else 's'})")
    return "\n".join(out) + "\n"


def format_csv(table: Table) -> str:
    """RFC 4180 CSV with a header line (points: ``series,timestamp,value``, as import reads)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([_cell(v) for v in row] for row in table.rows)
    return buffer.getvalue()


def render(answer: Any, fmt: str, *, precision: int | None = None, compact: bool = False) -> str:
    """The text to print for ``answer`` in format ``fmt`` (``table``, ``json`` or ``csv``).

    With ``precision`` known, tables of points get a human-readable UTC time column.
    """
    if fmt == "json":
        return json.dumps(answer, indent=None if compact else 2, ensure_ascii=False) + "\n"
    shape = tabulate(answer)
    if shape is None:
        return json.dumps(answer, indent=2, ensure_ascii=False) + "\n"
    if isinstance(shape, str):
        return shape if shape.endswith("\n") else shape + "\n"
    if fmt == "csv":
        return format_csv(shape)
    if precision is not None and shape.columns == ["series", "timestamp", "value"]:
        shape = _with_times(shape, precision)
    return format_table(shape)
