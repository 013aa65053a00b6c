"""Evaluate time and integer expressions exactly as SiriDB 2.0.55 does.

SiriDB writes an expression into a 512-byte text buffer (durations, ``now`` and date
strings already turned into numbers in the database's precision) and evaluates that
text with 64-bit integers that wrap around; division and modulo truncate towards zero
and a zero divisor is an error reported after the whole expression was read. A time
expression must then be a valid time-stamp. Date strings are read as SiriDB's own
ISO 8601 reader reads them, in the database's time zone.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo

from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.syntax import Expr

__all__ = [
    "DURATION_SECONDS",
    "UNITS_PER_SECOND",
    "TimeContext",
    "check_time",
    "evaluate",
    "evaluate_time",
    "expression_text",
    "parse_date",
    "wrap64",
    "zone",
]

UNITS_PER_SECOND: Final = (1, 1_000, 1_000_000, 1_000_000_000)
DURATION_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: SiriDB's expression buffer; the text of an expression must stay below this size.
EXPR_MAX_SIZE: Final = 512

_U64: Final = 1 << 64
_I64_MAX: Final = (1 << 63) - 1

ERR_DIVISION: Final = "Division by zero error."
ERR_MODULO: Final = "Modulo by zero error."
ERR_TOO_LONG: Final = f"Expression too long. (max {EXPR_MAX_SIZE} characters)"
ERR_OUT_OF_RANGE: Final = "Time expression out-of-range."
ERR_DATE: Final = "Invalid date string."


class TimeContext(NamedTuple):
    """What an expression needs: database precision, time zone and the current time.

    A named tuple: one is built per query, and that is cheaper than a frozen dataclass.
    """

    precision: int
    tz: str
    now: int  # in database units

    @property
    def factor(self) -> int:
        return UNITS_PER_SECOND[self.precision]

    @property
    def max_ts(self) -> int:
        return 4294967295 if self.precision == 0 else _I64_MAX


def wrap64(value: int) -> int:
    """``value`` as a C ``int64_t`` (two's complement wrap-around)."""
    return (value + (1 << 63)) % _U64 - (1 << 63)


def zone(name: str) -> timezone | ZoneInfo:
    """The zone for a database time-zone setting (``NAIVE`` is the server's, UTC)."""
    if name.upper() in ("NAIVE", "UTC"):
        return timezone.utc
    return ZoneInfo(name)


# -- date strings ------------------------------------------------------------------------

def _digits(text: str, pos: int) -> int:
    end = pos
    while end < len(text) and text[end].isascii() and text[end].isdigit():
        end += 1
    return end


#: The fields of a date string: (largest number of digits, lowest, highest value).
_FIELDS: Final = ((4, 0, 9999), (2, 1, 12), (2, 1, 31), (2, 0, 23), (2, 0, 59), (2, 0, 61))
#: What separates a field from the one before it (``" T"``: a space or a ``T``).
_SEPARATORS: Final = ("", "-", "-", " T", ":", ":")


def parse_date(text: str, tz: str) -> int:
    """Seconds since the epoch for a date string, or -1 where SiriDB finds it invalid.

    SiriDB checks the shape (``YYYY[-M[-D[ H[:M[:S]]]]]`` with ``T`` for the space
    allowed, each part one or two digits) and tries, after each part, whether the
    string ends there, ends with ``Z`` or continues with an offset (``+HH[:MM]``, or
    ``-HH[:MM]`` from the day on); then glibc's ``strptime`` reads the fields (which
    stops a field early at a too large first digit: ``10:60`` is 10:06) and ``mktime``
    rolls over days (``2023-02-30`` is March 2).
    """
    text = text.split("\0", 1)[0]
    use_t = False
    pos = 0
    for index in range(len(_FIELDS)):
        if index:
            if pos >= len(text) or text[pos] not in _SEPARATORS[index]:
                return -1
            if text[pos] == "T":
                use_t = True
            pos += 1
        end = _digits(text, pos)
        size = end - pos
        if (size != 4) if index == 0 else not 0 < size <= 2:
            return -1
        pos = end
        fields = index + 1
        check_min = index >= 2
        if pos == len(text):
            return _strptime_ts(text, fields, use_t, False, tz, None)
        if text[pos] == "Z" and pos + 1 == len(text):
            return _strptime_ts(text, fields, use_t, True, "UTC", None)
        if text[pos] == "+" or (check_min and text[pos] == "-"):
            offset = _offset(text, pos)
            if offset is None:
                return -1
            return _strptime_ts(text, fields, use_t, False, "UTC", offset)
    return -1


def _offset(text: str, pos: int) -> int | None:
    """Seconds to add for a ``+HH[[:]MM]`` / ``-HH[[:]MM]`` suffix, or None."""
    sign = 1 if text[pos] == "-" else -1
    digits = text[pos + 1 : pos + 3]
    if len(digits) < 2 or not (digits.isascii() and digits.isdigit()):
        return None
    offset = int(digits[0]) * 36000 + int(digits[1]) * 3600
    pos += 3
    if pos < len(text) and text[pos] == ":":
        pos += 1
    if pos < len(text):
        minutes = text[pos : pos + 2]
        if len(minutes) < 2 or not (minutes.isascii() and minutes.isdigit()):
            return None
        offset += int(minutes[0]) * 600 + int(minutes[1]) * 60
        if pos + 2 != len(text):
            return None
    return offset * sign


def _strptime(text: str, fields: int, use_t: bool, zulu: bool) -> list[int] | None:
    """glibc's ``strptime`` with ``%Y-%m-%d %H:%M:%S`` cut to ``fields`` (and ``Z``)."""
    values: list[int] = []
    pos = 0
    size = len(text)
    for index in range(fields):
        if index:
            separator = ("T" if use_t else " ") if index == 3 else _SEPARATORS[index]
            if separator == " ":
                while pos < size and text[pos] in " \t\n\v\f\r":
                    pos += 1
            elif pos < size and text[pos] == separator:
                pos += 1
            else:
                return None
        width, low, high = _FIELDS[index]
        while pos < size and text[pos] == " ":
            pos += 1
        if pos >= size or not "0" <= text[pos] <= "9":
            return None
        value = 0
        while True:
            value = value * 10 + ord(text[pos]) - 48
            pos += 1
            width -= 1
            if not (width > 0 and value * 10 <= high and pos < size and "0" <= text[pos] <= "9"):
                break
        if not low <= value <= high:
            return None
        values.append(value)
    if zulu and (pos >= size or text[pos] != "Z"):
        return None
    return values


def _strptime_ts(
    text: str, fields: int, use_t: bool, zulu: bool, tz: str, offset: int | None
) -> int:
    values = _strptime(text, fields, use_t, zulu)
    if values is None:
        return -1
    return _timestamp(values, tz, offset)


def _timestamp(values: list[int], tz: str, offset: int | None) -> int:
    """``mktime`` of the fields in UTC, then moved by an offset or the zone's offset."""
    year = values[0]
    month = values[1] if len(values) > 1 else 1
    day = values[2] if len(values) > 2 else 1
    hour = values[3] if len(values) > 3 else 0
    minute = values[4] if len(values) > 4 else 0
    second = values[5] if len(values) > 5 else 0
    if year < 1:
        return -1  # far before the epoch (negative, so invalid)
    ts = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if offset is not None:
        ts += offset
    elif tz.upper() not in ("UTC", "NAIVE"):
        moment = datetime.fromtimestamp(ts, timezone.utc).astimezone(ZoneInfo(tz))
        delta = moment.utcoffset()
        if delta is not None:
            ts -= int(delta.total_seconds())
    return ts


# -- expressions ---------------------------------------------------------------------------

def expression_text(expr: Expr, ctx: TimeContext) -> str:
    """The text SiriDB evaluates for ``expr``; raises its errors on the way."""
    parts: list[str] = []
    size = 0
    factor = ctx.factor
    for tok in expr.tokens:
        kind = tok.kind
        if kind == "op":
            piece = tok.value[0]
        elif kind == "num":
            piece = tok.value
        elif kind == "dur":
            amount = min(int(tok.value[:-1]), _I64_MAX)  # atoll() saturates
            piece = str(amount * DURATION_SECONDS[tok.value[-1]] * factor % _U64)
        elif kind == "now":
            piece = str(ctx.now % _U64)
        else:  # date
            seconds = parse_date(tok.value, ctx.tz)
            if seconds < 0:
                raise QueryFailure(ERR_DATE)
            piece = str(wrap64(seconds * factor))
        size += len(piece)
        if size >= EXPR_MAX_SIZE:
            raise QueryFailure(ERR_TOO_LONG)
        parts.append(piece)
    return "".join(parts)


class _Reader:
    """SiriDB's recursive evaluator over the expression text (int64 arithmetic)."""

    __slots__ = ("error", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.error: str | None = None

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def number(self) -> int:
        text = self.text
        result = ord(text[self.pos]) - 48
        self.pos += 1
        while self.pos < len(text) and "0" <= text[self.pos] <= "9":
            result = wrap64(10 * result + ord(text[self.pos]) - 48)
            self.pos += 1
        return result

    def factor(self) -> int:
        char = self.peek()
        if "0" <= char <= "9" and char:
            return self.number()
        if char == "(":
            self.pos += 1
            result = self.expression()
            self.pos += 1
            return result
        if char == "-":
            self.pos += 1
            return wrap64(-self.factor())
        return 0

    def term(self) -> int:
        result = self.factor()
        while True:
            char = self.peek()
            if char == "*":
                self.pos += 1
                result = wrap64(result * self.factor())
            elif char in ("/", "%"):
                self.pos += 1
                divisor = self.factor()
                if divisor == 0:
                    # SiriDB divides by its error code (-1) and reports the error later
                    self.error = ERR_DIVISION if char == "/" else ERR_MODULO
                    divisor = -1 if char == "/" else -2
                result = _cdiv(result, divisor) if char == "/" else _cmod(result, divisor)
            else:
                return result

    def expression(self) -> int:
        result = self.term()
        while self.peek() in ("+", "-") and self.peek():
            char = self.text[self.pos]
            self.pos += 1
            term = self.term()
            result = wrap64(result + term if char == "+" else result - term)
        return result


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return wrap64(q if (a >= 0) == (b >= 0) else -q)


def _cmod(a: int, b: int) -> int:
    return wrap64(a - b * _cdiv(a, b)) if a != -(1 << 63) or b != -1 else 0


def evaluate(expr: Expr, ctx: TimeContext) -> int:
    """The int64 value of an expression (no range check); raises SiriDB's errors."""
    reader = _Reader(expression_text(expr, ctx))
    result = reader.expression()
    if reader.error is not None:
        raise QueryFailure(reader.error)
    return result


def check_time(value: int, ctx: TimeContext) -> int:
    """``value`` when it is a valid time-stamp for the database, else SiriDB's error."""
    if value < 0 or (ctx.precision == 0 and value >= 1 << 32):
        raise QueryFailure(ERR_OUT_OF_RANGE)
    return value


def evaluate_time(expr: Expr, ctx: TimeContext) -> int:
    """A time expression's value; it must be a valid time-stamp."""
    return check_time(evaluate(expr, ctx), ctx)
