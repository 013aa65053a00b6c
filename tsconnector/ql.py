"""Safe query building: ``$1``-style parameters, quoting and time literals.

``query('select * from $1 after $2', name, start)`` renders every parameter as one
literal of the query language, chosen by the parameter's type and the place it
appears in, so no value can change the structure of the statement:

================================  ============================================
value                             rendered as
================================  ============================================
``str`` where a series is named   ``"name"`` (double quotes, ``"`` doubled)
  (after ``from``, ``list/count/drop/alter series``, set operators there)
``str`` elsewhere                 ``'text'`` (single quotes, ``'`` doubled)
``re.Pattern`` / :class:`Regex`   ``/pattern/`` (``/`` escaped; ``i`` flag for IGNORECASE)
``int`` / ``float``               literal (``nan``/``inf`` keywords; no exponent)
``bool``                          ``true`` / ``false`` (only where a value goes)
``datetime`` / ``date`` /         integer in database units (``precision=``; naive
``numpy.datetime64``              datetimes are UTC)
``timedelta``                     duration: ``5m``, ``2h``, ``1w`` when whole seconds,
                                  else an integer in database units
``list`` / ``tuple``              comma-joined series names (series positions only)
================================  ============================================

Explicit wrappers override the context: :class:`Name`, :class:`Str`, :class:`Regex`,
:class:`Group` (backticks, for groups and tags), :class:`Duration`, :class:`Time`.

Time rounding: a time finer than the database unit is rounded where that keeps the
meaning exact, and refused elsewhere. Bounds after ``after``, ``before``, ``between``
and its ``and``, and after ``>=``/``<`` of ``start``/``end``, round up (``ts >= 10.5``
is ``ts >= 11``); after ``>``/``<=`` they round down; anywhere else (``==``, function
arguments) a sub-unit time raises ``ValueError`` unless wrapped as
``Time(value, rounding=...)``.

Wrong parameter types raise ``TypeError`` naming the parameter; missing or unused
parameters raise ``ValueError``; integers outside int64 raise ``OverflowError``. The
statement's own quoted strings, regexes and ``#`` comments are skipped when looking
for placeholders.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .timeutil import (
    INT64_MAX,
    INT64_MIN,
    Rounding,
    is_datetime64,
    parse_precision,
    timedelta_to_db,
    to_db_time,
)

__all__ = [
    "Duration",
    "Group",
    "Name",
    "Regex",
    "Str",
    "Time",
    "query",
    "quote_group",
    "quote_name",
    "quote_regex",
    "quote_str",
]


# --- quoting -------------------------------------------------------------------------


def quote_name(name: str) -> str:
    """A series name in double quotes, embedded ``"`` doubled (round-trips any string)."""
    _require_str(name, "series name")
    return '"' + name.replace('"', '""') + '"'


def quote_str(text: str) -> str:
    """A string literal in single quotes, embedded ``'`` doubled (round-trips any string)."""
    _require_str(text, "string")
    return "'" + text.replace("'", "''") + "'"


def quote_group(name: str) -> str:
    """A group or tag name in backticks, embedded backticks doubled."""
    _require_str(name, "group name")
    return "`" + name.replace("`", "``") + "`"


def quote_regex(pattern: str | re.Pattern[str], *, ignorecase: bool | None = None) -> str:
    """A regex literal ``/.../`` (``/.../i`` when case-insensitive).

    Unescaped ``/`` become ``\\/`` (which the regex engine reads as ``/``); escapes
    already in the pattern are kept. A pattern ending in a lone backslash is invalid
    and raises ``ValueError``. ``re.Pattern`` objects give their pattern and
    ``re.IGNORECASE``; other flags raise ``ValueError``.
    """
    if isinstance(pattern, re.Pattern):
        flags = pattern.flags & ~(re.UNICODE | re.IGNORECASE)
        if flags:
            raise ValueError(f"only re.IGNORECASE is supported in a query regex, got {pattern!r}")
        if ignorecase is None:
            ignorecase = bool(pattern.flags & re.IGNORECASE)
        pattern = pattern.pattern
    _require_str(pattern, "regex pattern")
    out: list[str] = []
    i = 0
    size = len(pattern)
    while i < size:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= size:
                raise ValueError(f"regex {pattern!r} ends with a lone backslash")
            nxt = pattern[i + 1]
            # the query grammar allows no newline after a backslash; \n means the same
            out.append("\\n" if nxt == "\n" else "\\" + nxt)
            i += 2
            continue
        out.append("\\/" if char == "/" else char)
        i += 1
    return "/" + "".join(out) + "/" + ("i" if ignorecase else "")


def _require_str(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")


# --- explicit wrappers -----------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """A series name: always ``"..."``."""

    value: str


@dataclass(frozen=True)
class Str:
    """A string literal: always ``'...'``."""

    value: str


@dataclass(frozen=True)
class Group:
    """A group or tag name: always in backticks."""

    value: str


@dataclass(frozen=True)
class Regex:
    """A regex literal from a pattern string (or ``re.Pattern``)."""

    pattern: str | re.Pattern[str]
    ignorecase: bool | None = None


@dataclass(frozen=True)
class Duration:
    """A duration: ``timedelta``, ``int`` database units, or a literal such as ``"5m"``."""

    value: _dt.timedelta | int | str


@dataclass(frozen=True)
class Time:
    """A point in time, with an explicit rounding for sub-unit values."""

    value: Any
    rounding: Rounding | None = None


# --- literals --------------------------------------------------------------------------

_DURATION_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION_RE = re.compile(r"[0-9]+[smhdw]\Z")


def _int_literal(value: int, label: str) -> str:
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"{label}: integer {value} does not fit in a signed 64-bit integer")
    return str(int(value))


def _float_literal(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text if "." in text else text + ".0"  # always a float token, never an integer


def _duration_literal(value: _dt.timedelta, precision: int, label: str) -> str:
    micro = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    if micro >= 0 and micro % 1_000_000 == 0:
        seconds = micro // 1_000_000
        if seconds == 0:
            return "0s"
        for unit, size in _DURATION_UNITS:
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
    try:
        return str(timedelta_to_db(value, precision))
    except ValueError:
        raise ValueError(
            f"{label}: duration {value!r} is not a whole number of database units"
        ) from None


def _is_numpy_int(value: Any) -> bool:
    if type(value).__module__ != "numpy":
        return False
    import numpy as np

    return isinstance(value, np.integer)


def _is_time(value: Any) -> bool:
    return isinstance(value, (_dt.datetime, _dt.date)) or is_datetime64(value)


def _time_literal(value: Any, precision: int, rounding: Rounding, label: str) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{label}: expected a time, got bool")
    if isinstance(value, int) or _is_numpy_int(value):
        return _int_literal(int(value), label)  # already database units
    if isinstance(value, str):
        return quote_str(value)  # a date string the server parses
    if not _is_time(value):
        raise TypeError(
            f"{label}: expected a datetime, date, numpy.datetime64 or int, got "
            f"{type(value).__name__}"
        )
    try:
        return str(to_db_time(value, precision, rounding=rounding))
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    except OverflowError as exc:
        raise OverflowError(f"{label}: {exc}") from None


# --- contexts --------------------------------------------------------------------------

Context = Literal["name", "time", "value"]


@dataclass(frozen=True)
class _Slot:
    """Where a placeholder sits: its context and, for times, the rounding that applies."""

    context: Context
    rounding: Rounding = "exact"


def _render(value: Any, slot: _Slot, precision: int, label: str) -> str:
    context = slot.context
    if isinstance(value, Name):
        return quote_name(value.value)
    if isinstance(value, Str):
        return quote_str(value.value)
    if isinstance(value, Group):
        return quote_group(value.value)
    if isinstance(value, Regex):
        return quote_regex(value.pattern, ignorecase=value.ignorecase)
    if isinstance(value, re.Pattern):
        return quote_regex(value)
    if isinstance(value, Duration):
        return _render_duration(value.value, precision, label)
    if isinstance(value, Time):
        rounding = value.rounding or (slot.rounding if context == "time" else "exact")
        return _time_literal(value.value, precision, rounding, label)
    if context == "name":
        if isinstance(value, str):
            return quote_name(value)
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"{label}: empty list of series names")
            return ", ".join(_render_name_item(item, precision, label) for item in value)
        raise TypeError(
            f"{label}: a series name is expected here (str, Name, Regex, re.Pattern, "
            f"Group or a list of them), got {type(value).__name__}"
        )
    if isinstance(value, (list, tuple)):
        raise TypeError(f"{label}: lists are only accepted where series names are expected")
    if context == "time":
        if isinstance(value, _dt.timedelta):
            return _duration_literal(value, precision, label)
        if isinstance(value, float):
            raise TypeError(f"{label}: a time is expected here, got float")
        return _time_literal(value, precision, slot.rounding, label)
    # a plain value
    if isinstance(value, str):
        return quote_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or _is_numpy_int(value):
        return _int_literal(int(value), label)
    if isinstance(value, float) or (
        type(value).__module__ == "numpy" and type(value).__name__.startswith("float")
    ):
        return _float_literal(float(value))
    if isinstance(value, _dt.timedelta):
        return _duration_literal(value, precision, label)
    if _is_time(value):
        return _time_literal(value, precision, "exact", label)
    raise TypeError(f"{label}: cannot use a {type(value).__name__} in a query")


def _render_name_item(item: Any, precision: int, label: str) -> str:
    if isinstance(item, (list, tuple)):
        raise TypeError(f"{label}: nested lists are not series names")
    return _render(item, _Slot("name"), precision, label)


def _render_duration(value: Any, precision: int, label: str) -> str:
    if isinstance(value, _dt.timedelta):
        return _duration_literal(value, precision, label)
    if isinstance(value, bool):
        raise TypeError(f"{label}: a duration cannot be a bool")
    if isinstance(value, int) or _is_numpy_int(value):
        return _int_literal(int(value), label)
    if isinstance(value, str):
        if not _DURATION_RE.match(value):
            raise ValueError(f"{label}: {value!r} is not a duration such as '5m' or '2h'")
        return value
    raise TypeError(f"{label}: a duration is a timedelta, int or str, got {type(value).__name__}")


# --- statement scanning ----------------------------------------------------------------

_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?[A-Za-z]*")
_PLACEHOLDER_RE = re.compile(r"\$([0-9]+)")
_OPERATOR_RE = re.compile(r"==|!=|<=|>=|!~|=>|[-+*/%<>~,|&^()=!.:;?]")

_SET_OPERATORS = frozenset(
    {",", "|", "&", "^", "-", "union", "difference", "intersection", "symmetric_difference"}
)
_SERIES_COLUMNS = frozenset({"name", "type", "length", "start", "end", "pool"})
_SERIES_STARTERS = frozenset({"list", "count", "drop", "alter"})
_TIME_BOUNDS = frozenset({"after", "before", "between"})
_COMPARE_ROUNDING: dict[str, Rounding] = {
    ">=": "ceil",
    "<": "ceil",
    ">": "floor",
    "<=": "floor",
    "==": "exact",
    "!=": "exact",
}


@dataclass
class _Token:
    kind: str  # "word", "number", "string", "regex", "op", "param"
    text: str
    start: int
    end: int


def _skip_quoted(stmt: str, pos: int) -> int:
    """End of the quoted string starting at ``pos`` (doubled quotes stay inside)."""
    quote = stmt[pos]
    i = pos + 1
    while True:
        j = stmt.find(quote, i)
        if j < 0:
            raise ValueError(f"unterminated {quote} string at position {pos} of the statement")
        if j + 1 < len(stmt) and stmt[j + 1] == quote:
            i = j + 2
            continue
        return j + 1


def _skip_regex(stmt: str, pos: int) -> int:
    i = pos + 1
    while i < len(stmt):
        char = stmt[i]
        if char == "\\":
            i += 2
            continue
        if char == "/":
            i += 1
            if i < len(stmt) and stmt[i] == "i":
                i += 1
            return i
        i += 1
    raise ValueError(f"unterminated regex at position {pos} of the statement")


def _is_operand(token: _Token | None) -> bool:
    if token is None:
        return False
    if token.kind in ("number", "string", "regex", "param"):
        return True
    if token.kind == "word":
        return token.text.lower() == "now"
    return token.text == ")"


def _tokenize(stmt: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    size = len(stmt)
    while pos < size:
        char = stmt[pos]
        if char.isspace():
            pos += 1
            continue
        if char in "'\"`":
            end = _skip_quoted(stmt, pos)
            tokens.append(_Token("string", stmt[pos:end], pos, end))
        elif char == "#":
            end = stmt.find("\n", pos)
            pos = size if end < 0 else end
            continue
        elif char == "/" and not _is_operand(tokens[-1] if tokens else None):
            end = _skip_regex(stmt, pos)
            tokens.append(_Token("regex", stmt[pos:end], pos, end))
        elif char == "$":
            match = _PLACEHOLDER_RE.match(stmt, pos)
            if not match:
                raise ValueError(f"'$' at position {pos} is not a placeholder like $1")
            end = match.end()
            if end < size and (stmt[end].isalnum() or stmt[end] == "_"):
                raise ValueError(
                    f"placeholder {match.group()} at position {pos} is followed by "
                    f"{stmt[end]!r}; separate it with a space"
                )
            if pos > 0 and (stmt[pos - 1].isalnum() or stmt[pos - 1] in "_\"'`/"):
                raise ValueError(
                    f"placeholder {match.group()} at position {pos} is glued to the text "
                    "before it; separate it with a space"
                )
            tokens.append(_Token("param", match.group(1), pos, end))
        elif char.isdigit():
            match = _NUMBER_RE.match(stmt, pos)
            assert match is not None
            end = match.end()
            tokens.append(_Token("number", match.group(), pos, end))
        elif char.isalpha() or char == "_":
            match = _WORD_RE.match(stmt, pos)
            assert match is not None
            end = match.end()
            tokens.append(_Token("word", match.group(), pos, end))
        else:
            match = _OPERATOR_RE.match(stmt, pos)
            end = match.end() if match else pos + 1
            tokens.append(_Token("op", stmt[pos:end], pos, end))
        pos = end
    return tokens


def _slots(tokens: list[_Token]) -> dict[int, _Slot]:
    """Context of every placeholder token (by token index)."""
    slots: dict[int, _Slot] = {}
    in_series = False  # inside a series match (after from / list series ...)
    in_time = False  # inside a time expression (after after / before / between)
    between_open = False
    bound_next = False  # the next operand is a range bound (rounds up)
    for index, token in enumerate(tokens):
        text = token.text.lower() if token.kind == "word" else token.text
        prev = tokens[index - 1] if index else None
        prev_text = (prev.text.lower() if prev.kind == "word" else prev.text) if prev else ""
        if token.kind == "param":
            if in_series:
                slots[index] = _Slot("name")
            elif bound_next:
                slots[index] = _Slot("time", "ceil")
            elif in_time:
                slots[index] = _Slot("time", "exact")
            elif prev_text in _COMPARE_ROUNDING and index >= 2 and tokens[index - 2].kind == (
                "word"
            ) and tokens[index - 2].text.lower() in ("start", "end"):
                slots[index] = _Slot("time", _COMPARE_ROUNDING[prev_text])
            else:
                slots[index] = _Slot("value")
            bound_next = False
            continue
        if in_series:
            keeps = (
                token.kind in ("string", "regex")
                or text in _SET_OPERATORS
                or text in ("*", "all")
                or (token.kind == "word" and text in _SERIES_COLUMNS)
            )
            if keeps:
                continue
            in_series = False
        if token.kind == "word":
            if text == "from" or (text == "series" and prev_text in _SERIES_STARTERS):
                in_series = True
                in_time = bound_next = False
                continue
            if text in _TIME_BOUNDS:
                in_time = bound_next = True
                between_open = text == "between"
                continue
            if text == "and" and in_time and between_open:
                between_open = False
                bound_next = True
                continue
            if text != "now":
                in_time = bound_next = False
                between_open = False
            else:
                bound_next = False
            continue
        if in_time and token.kind in ("number", "string", "op"):
            bound_next = False
            continue
        bound_next = False
    return slots


def query(stmt: str, *params: Any, precision: int | str | None = 0) -> str:
    """Render ``stmt`` with ``$1``, ``$2``... replaced by safely quoted ``params``.

    ``precision`` is the database's time precision (0..3 or ``"s"``, ``"ms"``, ``"us"``,
    ``"ns"``; default seconds), used for ``datetime`` and ``timedelta`` parameters.
    """
    if not isinstance(stmt, str):
        raise TypeError(f"statement must be a str, got {type(stmt).__name__}")
    p = parse_precision(precision, default=0)
    tokens = _tokenize(stmt)
    slots = _slots(tokens)
    out: list[str] = []
    last = 0
    used: set[int] = set()
    for index, token in enumerate(tokens):
        if token.kind != "param":
            continue
        number = int(token.text)
        if number < 1:
            raise ValueError(f"placeholders are numbered from $1, got ${token.text}")
        if number > len(params):
            raise ValueError(
                f"statement uses ${number} but only {len(params)} parameter(s) were given"
            )
        used.add(number)
        label = f"parameter ${number}"
        out.append(stmt[last : token.start])
        out.append(_render(params[number - 1], slots[index], p, label))
        last = token.end
    out.append(stmt[last:])
    unused = sorted(set(range(1, len(params) + 1)) - used)
    if unused:
        raise ValueError(
            "unused parameter(s): " + ", ".join(f"${n}" for n in unused)
        )
    return "".join(out)
