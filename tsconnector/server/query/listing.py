"""Evaluate ``list``, ``count`` and ``show``: rows about series, groups, tags, users,
pools, servers and shards of the one embedded server, as SiriDB 2.0.55 answers them.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tsconnector.protocol.constants import PRECISION_NAMES
from tsconnector.server import shards as sh
from tsconnector.server.model import Database
from tsconnector.server.query import syntax as s
from tsconnector.server.query.access import access_text, siridb_access
from tsconnector.server.query.errors import NotAccessible, QueryFailure
from tsconnector.server.query.selection import (
    WHERE_TOO_DEEP,
    filter_rows,
    select_series,
    series_row,
)
from tsconnector.server.query.timeexpr import TimeContext, evaluate

if TYPE_CHECKING:
    from tsconnector.server.query import Session

__all__ = [
    "DEFAULT_COLUMNS",
    "SHOW_ORDER",
    "run_count",
    "run_list",
    "run_show",
    "server_row",
    "server_where_row",
    "shard_row",
    "show_values",
]

DEFAULT_COLUMNS = {
    "series": ("name",),
    "groups": ("name",),
    "tags": ("name",),
    "users": ("name", "access"),
    "pools": ("pool", "servers", "series"),
    "servers": ("name", "pool", "version", "online", "status"),
    "shards": ("sid", "pool", "server", "start", "end"),
}

#: Every setting ``show`` knows, in the order the real server lists them.
SHOW_ORDER = (
    "active_handles", "active_tasks", "buffer_path", "buffer_size", "dbname", "dbpath",
    "drop_threshold", "duration_log", "duration_num", "expiration_log", "expiration_num",
    "fifo_files", "idle_percentage", "idle_time", "ip_support", "libuv", "list_limit",
    "log_level", "max_open_files", "mem_usage", "open_files", "pool", "received_points",
    "reindex_progress", "selected_points", "select_points_limit", "server", "startup_time",
    "status", "sync_progress", "tee", "timezone", "time_precision", "uptime", "uuid",
    "version", "who_am_i",
)

SERIES_TYPE_NAMES = ("integer", "float", "string")
SHARD_TYPE_NAMES = ("number", "log")
#: Files SiriDB keeps open per database (buffer, dropped series, series store);
#: backup mode closes them.
_OPEN_FILES = 3


def _mem_usage_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def server_row(session: Session) -> dict[str, Any]:
    """Properties of the one server, for ``list servers``, ``show`` and ``where``."""
    db = session.db
    control = session.control
    host, _, port = session.server_name.rpartition(":")
    topology = session.topology()
    own = topology.own if topology is not None else None
    return {
        "address": host,
        "port": int(port) if port.isdigit() else 0,
        "name": session.server_name,
        "buffer_path": db.buffer_path or db.dbpath,
        "dbpath": db.dbpath,
        "buffer_size": db.buffer_size,
        "ip_support": "IPV4ONLY",
        "libuv": "1.44.2",
        "uuid": db.uuid,
        "pool": own.pool if own is not None else 0,
        "version": session.version,
        "online": True,
        "startup_time": 0,
        # A cluster layout may report another status for this server (re-indexing...).
        "status": own.status if own is not None and own.status != "running" else control.status,
        "active_handles": session.active_handles(),
        "active_tasks": 1,
        "fifo_files": 0,
        "idle_percentage": 100,
        "idle_time": 0,
        "log_level": control.log_level,
        "max_open_files": 512,
        "mem_usage": _mem_usage_mb(),
        "open_files": 0 if control.backup_mode else _OPEN_FILES,
        "received_points": db.received_points,
        "reindex_progress": "not available",
        "selected_points": db.selected_points,
        "sync_progress": "not available",
        "tee": _tee_text(db),
        "uptime": max(int(session.now() - session.started_at), 0),
    }


def _tee_text(db: Database) -> str:
    if db.tee_error is not None:  # kept until the tee is set again, as in SiriDB
        return db.tee_error
    return "disabled" if db.tee is None else f"{db.tee[0]}:{db.tee[1]}"


def server_where_row(session: Session) -> dict[str, Any]:
    """:func:`server_row` with the numbers ``where`` compares for keywords."""
    row = server_row(session)
    row["online"] = 1
    row["log_level"] = session.control.log_level_number
    return row


def show_values(session: Session) -> dict[str, Any]:
    db = session.db
    values = server_row(session)
    values.update(
        dbname=db.name,
        drop_threshold=float(db.drop_threshold),
        duration_log=db.duration_log,
        duration_num=db.duration_num,
        expiration_log=db.expiration_log or None,
        expiration_num=db.expiration_num or None,
        list_limit=db.list_limit,
        select_points_limit=db.select_points_limit,
        server=session.server_name,
        timezone=db.timezone,
        time_precision=PRECISION_NAMES[db.precision],
        who_am_i=session.user_name,
    )
    return values


def shard_row(shard: sh.ShardInfo, session: Session) -> dict[str, Any]:
    """A shard's properties (``type`` as SiriDB's number, for ``where``)."""
    return {
        "sid": shard.sid,
        "pool": 0,
        "server": session.server_name,
        "size": shard.size,
        "start": shard.start,
        "end": shard.end,
        "type": shard.tp,
        "status": sh.shard_status(shard),
        "duration": shard.duration,
    }


def _series_rows(
    stmt: s.ListStmt | s.CountStmt, session: Session, ctx: TimeContext
) -> list[dict[str, Any]]:
    db = session.db
    matched = select_series(db, stmt.match, None, ctx)
    return filter_rows([series_row(x, db) for x in matched], stmt.where, ctx)  # type: ignore[return-value]


def _rows(
    stmt: s.ListStmt | s.CountStmt, session: Session, ctx: TimeContext, what: str
) -> list[Mapping[str, Any]]:
    db = session.db
    rows: list[Mapping[str, Any]]
    if what == "series":
        return list(_series_rows(stmt, session, ctx))
    if what == "groups":
        rows = [
            {"name": g.name, "series": len(db.group_members(g.name)), "expression": g.expression}
            for g in db.groups.values()
        ]
    elif what == "tags":
        rows = [
            {"name": t.name, "series": len(t.series & db.series.keys())}
            for t in db.tags.values()
        ]
    elif what == "users":
        rows = [{"name": u.name, "access": siridb_access(u.access)} for u in db.users.values()]
    elif what == "pools":
        topology = session.topology()
        if topology is not None:
            rows = topology.pool_rows(len(db.series))
        else:
            rows = [{"pool": 0, "servers": 1, "series": len(db.series)}]
    elif what == "servers":
        rows = [server_where_row(session)]
        topology = session.topology()
        if topology is not None:
            rows = topology.server_rows(rows[0], _asks_servers(stmt))
    else:
        rows = [shard_row(x, session) for x in db.shard_list()]
    return filter_rows(rows, stmt.where, ctx)


def _check_where(stmt: s.ListStmt | s.CountStmt) -> None:
    if isinstance(stmt.where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)


def _asks_servers(stmt: s.ListStmt | s.CountStmt) -> bool:
    """True when a column or condition is one SiriDB asks every server for."""
    from tsconnector.server.cluster import REMOTE_SERVER_COLUMNS

    props = set(getattr(stmt, "columns", ()) or ())
    stack: list[Any] = [stmt.where] if stmt.where is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, s.BoolOp):
            stack += [node.left, node.right]
        elif isinstance(node, s.Condition):
            props.add(node.prop)
    return bool(props & REMOTE_SERVER_COLUMNS)


def run_list(stmt: s.ListStmt, session: Session, ctx: TimeContext) -> dict[str, Any]:
    db = session.db
    if stmt.what == "series":
        select_series(db, stmt.match, None, ctx)  # selection errors come first
    _check_where(stmt)
    limit = db.list_limit
    if stmt.limit is not None:
        limit = evaluate(stmt.limit, ctx)
        if limit <= 0 or limit > db.list_limit:
            raise QueryFailure(
                f"Limit must be a value between 1 and {db.list_limit} but received: "
                f"{limit} (optionally the limit can be changed, see 'help alter database')")
    columns = stmt.columns or DEFAULT_COLUMNS[stmt.what]
    rows = _rows(stmt, session, ctx, stmt.what)[:limit]
    out = []
    for row in rows:
        line = []
        for col in columns:
            line.append(_column(stmt.what, col, row, session))
        out.append(line)
    return {"columns": list(columns), stmt.what: out}


def _column(what: str, col: str, row: Mapping[str, Any], session: Session) -> Any:
    value = row.get(col)
    if what == "users" and col == "access":
        return access_text(_model_access(session, row))
    if what == "series" and col == "type":
        return SERIES_TYPE_NAMES[int(value or 0)]
    if what == "shards" and col == "type":
        return SHARD_TYPE_NAMES[int(value or 0)]
    if what == "servers":
        if col == "log_level":
            return session.control.log_level
        if col == "online":
            return bool(value)
    return value


def _model_access(session: Session, row: Mapping[str, Any]) -> int:
    user = session.db.users.get(str(row["name"]))
    return user.access if user is not None else 0


def run_count(stmt: s.CountStmt, session: Session, ctx: TimeContext) -> dict[str, Any]:
    what = stmt.what
    db = session.db
    if what in ("series", "series_length"):
        select_series(db, stmt.match, None, ctx)
    _check_where(stmt)
    if what == "series_length":
        if not session.control.accessible:
            raise NotAccessible(session.server_name)
        rows = _rows(stmt, session, ctx, "series")
        return {what: sum(int(r["length"]) for r in rows)}
    if what in ("servers_received_points", "servers_selected_points"):
        rows = _rows(stmt, session, ctx, "servers")
        key = "received_points" if what == "servers_received_points" else "selected_points"
        return {what: sum(int(r[key]) for r in rows)}
    if what == "shards_size":
        rows = _rows(stmt, session, ctx, "shards")
        return {what: sum(int(r["size"]) for r in rows)}
    if what == "pools" and stmt.where is not None and not session.control.accessible:
        raise NotAccessible(session.server_name)
    topology = session.topology()
    if what == "pools" and stmt.where is None and topology is not None:
        return {what: topology.num_pools}  # offline pools count too
    return {what: len(_rows(stmt, session, ctx, what))}


def run_show(stmt: s.Show, session: Session) -> dict[str, Any]:
    values = show_values(session)
    names = stmt.names or SHOW_ORDER
    return {"data": [{"name": name, "value": values[name]} for name in names]}
