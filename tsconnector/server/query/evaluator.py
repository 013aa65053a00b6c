"""Run one query: size check, parse, access check, evaluation, and the answer package."""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from tsconnector.protocol.constants import UNITS_PER_SECOND, AnswerType
from tsconnector.server.model import ACCESS_BITS
from tsconnector.server.query import admin, listing
from tsconnector.server.query import syntax as s
from tsconnector.server.query.builder import build
from tsconnector.server.query.errors import AccessDenied, NotAccessible, QueryFailure
from tsconnector.server.query.grammar import ParseFailure, truncate_error
from tsconnector.server.query.helptext import help_text
from tsconnector.server.query.select import (
    SelectPlan,
    calc_answer,
    plan_select,
    run_select,
    run_single,
)
from tsconnector.server.query.timeexpr import TimeContext, check_time, evaluate

if TYPE_CHECKING:
    from tsconnector.server.query import Session

#: Longest query (in UTF-8 bytes) the server accepts.
MAX_QUERY_BYTES = 65535
#: Parsed statements kept, keyed by query text (parsing dominates small queries).
PARSE_CACHE_SIZE = 1024

_LOG = logging.getLogger("tsconnector.server.query")
_UNITS = UNITS_PER_SECOND
_ACCESS_BITS = ACCESS_BITS

#: The access right each statement needs (statements not listed need none).
_REQUIRED_ACCESS: dict[type, str] = {
    s.Select: "select",
    s.ListStmt: "list",
    s.CountStmt: "count",
    s.Show: "show",
    s.CreateGroup: "create",
    s.CreateUser: "create",
    s.AlterDatabase: "alter",
    s.AlterGroup: "alter",
    s.AlterTag: "alter",
    s.AlterUser: "alter",
    s.AlterSeries: "alter",
    s.AlterServer: "alter",
    s.DropGroup: "drop",
    s.DropTag: "drop",
    s.DropSeries: "drop",
    s.DropShards: "drop",
    s.DropServer: "drop",
    s.DropUser: "drop",
    s.Grant: "grant",
    s.Revoke: "revoke",
}


def run(session: Session, query: Any, time_precision: int | None) -> tuple[int, Any]:
    """Evaluate ``query`` for ``session``; always returns an answer, never raises."""
    try:
        if not isinstance(query, str):
            raise QueryFailure("Expecting the query to be a string.")
        # A code point takes at most 4 bytes in UTF-8: short queries need no encoding.
        if len(query) * 4 > MAX_QUERY_BYTES and (
            len(query.encode("utf-8", "surrogatepass")) > MAX_QUERY_BYTES
        ):
            raise QueryFailure("Query too long.")
        if "\0" in query:
            query = query.split("\0", 1)[0]  # SiriDB reads the query as a C string
        parsed = parse_cached(query)
        statement = parsed.statement
        db = session.db
        started = time.perf_counter() if parsed.timeit else 0.0
        ctx = _context(session) if parsed.exprs else None
        if ctx is not None:
            # SiriDB evaluates every expression while walking the parse tree, before
            # any statement runs: their errors come first.
            for expr in parsed.exprs:
                value = evaluate(expr, ctx)
                if expr.time:
                    check_time(value, ctx)
        _check_access(session, statement)
        answer: dict[str, Any]
        if type(statement) is s.Select:
            plan = plan_cached(query, db.precision, db.timezone)
            if plan is not None and plan.single is not None and plan.bounds is not None:
                answer = run_single(plan, statement, db, time_precision)  # needs no clock
            else:
                answer = run_select(
                    statement, db, ctx or _context(session), time_precision, plan)
        else:
            answer = _dispatch(statement, session, ctx or _context(session), time_precision)
        if parsed.timeit:
            timeit: Any = [
                {"server": session.server_name, "time": time.perf_counter() - started}]
            answer["__timeit__"] = timeit
        return AnswerType.RES_QUERY, answer
    except ParseFailure as exc:
        return AnswerType.ERR_QUERY, {"error_msg": str(exc)}
    except QueryFailure as exc:
        return exc.answer_type, {"error_msg": truncate_error(str(exc))}
    except Exception:
        _LOG.exception("query failed: %.200r", query)
        return AnswerType.ERR_QUERY, {"error_msg": "Internal error while processing the query."}


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_cached(query: str) -> s.Query:
    """``build(query)``, remembered by query text; the syntax tree is immutable.

    Time expressions such as ``now`` stay unevaluated in the tree, so a cached
    statement is valid for later runs. Syntax errors are not cached (they raise).
    """
    return build(query)


def _context(session: Session) -> TimeContext:
    """The time context of one query: the database's precision and zone, and now."""
    db = session.db
    return TimeContext(db.precision, db.timezone, int(session.now() * _UNITS[db.precision]))


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def plan_cached(query: str, precision: int, tz: str) -> SelectPlan | None:
    """The reusable plan of a select query, remembered by text, precision and zone
    (what the plan's evaluated arguments depend on); only valid select texts come here."""
    statement = parse_cached(query).statement
    assert isinstance(statement, s.Select)
    return plan_select(statement, precision, tz)


def _check_access(session: Session, statement: s.Statement) -> None:
    needed = _REQUIRED_ACCESS.get(type(statement))
    if needed is None:
        return
    user = session.current_user()
    if user is None or not user.access & _ACCESS_BITS[needed]:
        raise AccessDenied(session.user_name, needed)
    if type(statement) is s.Select and not session.control.accessible:
        raise NotAccessible(session.server_name)


def _dispatch(
    st: s.Statement, session: Session, ctx: TimeContext, precision: int | None
) -> dict[str, Any]:
    db = session.db
    if isinstance(st, s.Select):
        return run_select(st, db, ctx, precision)
    if isinstance(st, s.Calc):
        if st.expr is None:
            return {"calc": calc_answer(ctx.now, db.precision, precision)}
        return {"calc": calc_answer(evaluate(st.expr, ctx), db.precision, precision)}
    if isinstance(st, s.ListStmt):
        return listing.run_list(st, session, ctx)
    if isinstance(st, s.CountStmt):
        return listing.run_count(st, session, ctx)
    if isinstance(st, s.Show):
        return listing.run_show(st, session)
    if isinstance(st, s.Help):
        return {"help": help_text(st.topic)}
    return _dispatch_admin(st, session, ctx)


def _dispatch_admin(st: s.Statement, session: Session, ctx: TimeContext) -> dict[str, Any]:
    if isinstance(st, s.CreateGroup):
        return admin.create_group(st, session)
    if isinstance(st, s.CreateUser):
        return admin.create_user(st, session)
    if isinstance(st, s.AlterDatabase):
        return admin.alter_database(st, session, ctx)
    if isinstance(st, s.AlterGroup):
        return admin.alter_group(st, session)
    if isinstance(st, s.AlterTag):
        return admin.alter_tag(st, session)
    if isinstance(st, s.AlterUser):
        return admin.alter_user(st, session)
    if isinstance(st, s.AlterSeries):
        return admin.alter_series(st, session, ctx)
    if isinstance(st, s.AlterServer):
        return admin.alter_server(st, session, ctx)
    if isinstance(st, s.DropGroup):
        return admin.drop_group(st, session)
    if isinstance(st, s.DropTag):
        return admin.drop_tag(st, session)
    if isinstance(st, s.DropSeries):
        return admin.drop_series(st, session, ctx)
    if isinstance(st, s.DropShards):
        return admin.drop_shards(st, session, ctx)
    if isinstance(st, s.DropServer):
        return admin.drop_server(st, session)
    if isinstance(st, s.DropUser):
        return admin.drop_user(st, session)
    if isinstance(st, s.Grant):
        return admin.grant(st, session)
    if isinstance(st, s.Revoke):
        return admin.revoke(st, session)
    raise QueryFailure("Unsupported statement.")
