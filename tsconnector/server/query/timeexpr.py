"""Evaluate time and integer expressions: durations, ``now``, date strings, ``+ - * / %``.

Arithmetic follows the real server: integers, usual precedence, division and modulo
truncating towards zero; date strings are read in the database's time zone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.syntax import Expr, ExprToken

UNITS_PER_SECOND = (1, 1_000, 1_000_000, 1_000_000_000)
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_DATE = re.compile(
    r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T](\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?)?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


class TimeContext(NamedTuple):
    """What a time expression needs: database precision, time zone and the current time.

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
        return 4294967295 if self.precision == 0 else (1 << 63) - 1


def zone(name: str) -> timezone | ZoneInfo:
    """The zone for a database time-zone setting (``NAIVE`` is UTC)."""
    if name.upper() == "NAIVE" or name.upper() == "UTC":
        return timezone.utc
    return ZoneInfo(name)


def parse_date(text: str, ctx: TimeContext) -> int:
    """A date string as a timestamp in database units; raises QueryFailure if invalid."""
    m = _DATE.fullmatch(text.strip())
    if m is None:
        raise QueryFailure("Invalid date string.")
    year, month, day, hour, minute, second, offset = m.groups()
    try:
        naive = datetime(
            int(year), int(month or 1), int(day or 1),
            int(hour or 0), int(minute or 0), int(second or 0),
        )
    except ValueError as exc:
        raise QueryFailure("Invalid date string.") from exc
    if offset is None:
        aware = naive.replace(tzinfo=zone(ctx.tz))
    elif offset.upper() == "Z":
        aware = naive.replace(tzinfo=timezone.utc)
    else:
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        aware = naive.replace(tzinfo=timezone(delta if offset[0] == "+" else -delta))
    seconds = int(aware.timestamp())
    return seconds * ctx.factor


def _ctrunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _value(tok: ExprToken, ctx: TimeContext) -> int:
    if tok.kind == "int":
        return int(tok.value)
    if tok.kind == "duration":
        return int(tok.value) * DURATION_SECONDS[tok.unit] * ctx.factor
    if tok.kind == "now":
        return ctx.now
    if tok.kind == "date":
        return parse_date(tok.value, ctx)
    raise QueryFailure("Invalid time expression.")


class _Evaluator:
    """Precedence climbing over the flat token list of an :class:`Expr`."""

    def __init__(self, tokens: tuple[ExprToken, ...], ctx: TimeContext) -> None:
        self.tokens = tokens
        self.ctx = ctx
        self.i = 0

    def peek(self) -> ExprToken | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> ExprToken:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expression(self) -> int:
        left = self.term()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.value in "+-":
            self.take()
            right = self.term()
            left = left + right if tok.value == "+" else left - right
        return left

    def term(self) -> int:
        left = self.atom()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.value in "*/%":
            self.take()
            right = self.atom()
            if tok.value == "*":
                left *= right
            elif right == 0:
                raise QueryFailure(
                    "Division by zero error." if tok.value == "/" else "Modulo by zero error.")
            elif tok.value == "/":
                left = _ctrunc_div(left, right)
            else:
                left = left - right * _ctrunc_div(left, right)
        return left

    def atom(self) -> int:
        tok = self.take()
        if tok.kind == "(":
            value = self.expression()
            self.take()
            return value
        return _value(tok, self.ctx)


def evaluate(expr: Expr, ctx: TimeContext) -> int:
    """The integer value of an expression (no range check)."""
    return _Evaluator(expr.tokens, ctx).expression()


def evaluate_time(expr: Expr, ctx: TimeContext) -> int:
    """A timestamp: the value must lie in the database's valid time range."""
    value = evaluate(expr, ctx)
    if value < 0 or value > ctx.max_ts:
        raise QueryFailure("Time expression out-of-range.")
    return value
