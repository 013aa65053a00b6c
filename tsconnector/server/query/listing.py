"""Evaluate ``list``, ``count`` and ``show``: rows about series, groups, tags, users,
pools, servers and shards of the one embedded server.
"""

from __future__ import annotations

import bisect
import resource
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tsconnector.protocol.constants import PRECISION_NAMES
from tsconnector.server.model import ACCESS_BITS, ACCESS_PROFILES
from tsconnector.server.query import syntax as s
from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.selection import (
    BUFFER_POINTS,
    filter_rows,
    select_series,
    series_row,
)
from tsconnector.server.query.timeexpr import TimeContext, evaluate

if TYPE_CHECKING:
    from tsconnector.server.query import Session

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

_LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def access_text(mask: int) -> str:
    """An access mask the way SiriDB prints it: profile names first, then single rights."""
    if mask == 0:
        return "no access"
    parts = []
    rest = mask
    for name in ("full", "modify", "write", "read"):
        bits = ACCESS_PROFILES[name]
        if rest & bits == bits:
            parts.append(name)
            rest &= ~bits
    parts.extend(name for name, bit in ACCESS_BITS.items() if rest & bit)
    return ", ".join(parts)


def access_mask(words: tuple[str, ...] | list[str]) -> int:
    mask = 0
    for word in words:
        mask |= ACCESS_PROFILES.get(word, ACCESS_BITS.get(word, 0))
    return mask


def _mem_usage_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def server_row(session: Session) -> dict[str, Any]:
    """Properties of the one server, for ``list servers`` and ``show``."""
    db = session.db
    host, _, port = session.server_name.rpartition(":")
    path = f"/var/lib/siridb/{db.name}/"
    topology = session.topology()
    own = topology.own if topology is not None else None
    return {
        "address": host,
        "port": int(port) if port.isdigit() else 0,
        "name": session.server_name,
        "buffer_path": path,
        "dbpath": path,
        "buffer_size": 8192,
        "ip_support": "IPV4ONLY",
        "libuv": "1.44.2",
        "uuid": db.uuid,
        "pool": own.pool if own is not None else 0,
        "version": session.version,
        "online": True,
        "startup_time": 0,
        "status": own.status if own is not None else "running",
        "active_handles": session.active_handles(),
        "active_tasks": 1,
        "fifo_files": 0,
        "idle_percentage": 100,
        "idle_time": 0,
        "log_level": "info",
        "max_open_files": 512,
        "mem_usage": _mem_usage_mb(),
        "open_files": 0,
        "received_points": db.received_points,
        "reindex_progress": "not available",
        "selected_points": db.selected_points,
        "sync_progress": "not available",
        "tee": "disabled",
        "uptime": max(int(session.now() - session.started_at), 0),
    }


def show_values(session: Session) -> dict[str, Any]:
    db = session.db
    values = server_row(session)
    values.update(
        dbname=db.name,
        drop_threshold=float(db.drop_threshold),
        duration_log=db.duration_log,
        duration_num=db.duration_num,
        expiration_log=db.expiration_log,
        expiration_num=db.expiration_num,
        list_limit=db.list_limit,
        select_points_limit=db.select_points_limit,
        server=session.server_name,
        timezone=db.timezone,
        time_precision=PRECISION_NAMES[db.precision],
        who_am_i=session.user,
    )
    return values


def shard_rows(session: Session) -> list[dict[str, Any]]:
    """Shards as the server would hold them: one per duration window and kind of data."""
    db = session.db
    found: dict[tuple[int, bool], list[int]] = {}
    for series in db.ordered_series():
        log = series.tp == "string"
        if not log and series.length < BUFFER_POINTS:
            continue
        duration = db.duration_log if log else db.duration_num
        ts = series.ts
        i = 0
        while i < len(ts):
            start = ts[i] - ts[i] % duration
            j = bisect.bisect_left(ts, start + duration, i)
            entry = found.setdefault((start, log), [0, 0])
            entry[0] += j - i
            if log:
                entry[1] += sum(len(str(v)) + 8 for v in series.values[i:j])
            else:
                entry[1] += 16 * (j - i)
            i = j
    rows = []
    factor = (1, 1000, 1_000_000, 1_000_000_000)[db.precision]
    for (start, log), (_, size) in sorted(found.items()):
        duration = db.duration_log if log else db.duration_num
        rows.append({
            "sid": start // factor * 2 + int(log),
            "pool": 0,
            "server": session.server_name,
            "size": size,
            "start": start,
            "end": start + duration,
            "type": "log" if log else "number",
            "status": "",
        })
    return rows


def _resolve_keyword(prop: str, value: Any) -> Any:
    if prop == "access":
        return access_mask([value])
    if prop == "online":
        return value == "true"
    return value


def _rows(
    stmt: s.ListStmt | s.CountStmt, session: Session, ctx: TimeContext, what: str
) -> list[Mapping[str, Any]]:
    db = session.db
    rows: list[Mapping[str, Any]]
    if what == "series":
        return [series_row(x, db) for x in select_series(db, stmt.match, stmt.where, ctx)]
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
        rows = [{"name": u.name, "access": u.access} for u in db.users.values()]
    elif what == "pools":
        topology = session.topology()
        if topology is not None:
            rows = topology.pool_rows(len(db.series))
        else:
            rows = [{"pool": 0, "servers": 1, "series": len(db.series)}]
    elif what == "servers":
        row = server_row(session)
        row["log_level"] = _LOG_LEVELS["info"]
        rows = [row]
        topology = session.topology()
        if topology is not None:
            rows = topology.server_rows(row, _asks_servers(stmt))
    else:
        rows = shard_rows(session)
    return filter_rows(rows, stmt.where, ctx, _resolve_where(what))


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


def _resolve_where(what: str) -> Any:
    if what == "servers":
        return _server_resolver
    return _resolve_keyword


def _server_resolver(prop: str, value: Any) -> Any:
    if prop == "log_level":
        return _LOG_LEVELS.get(value, 0)
    return _resolve_keyword(prop, value)


def run_list(stmt: s.ListStmt, session: Session, ctx: TimeContext) -> dict[str, Any]:
    db = session.db
    limit = db.list_limit
    if stmt.limit is not None:
        limit = evaluate(stmt.limit, ctx)
        if limit <= 0 or limit > db.list_limit:
            raise QueryFailure(
                f"Limit must be a value between 1 and {db.list_limit} but received: {limit}")
    columns = stmt.columns or DEFAULT_COLUMNS[stmt.what]
    rows = _rows(stmt, session, ctx, stmt.what)[:limit]
    out = []
    for row in rows:
        line = []
        for col in columns:
            value = row.get(col)
            if stmt.what == "users" and col == "access":
                value = access_text(int(value or 0))
            if stmt.what == "servers" and col == "log_level":
                value = "info"
            line.append(value)
        out.append(line)
    return {"columns": list(columns), stmt.what: out}


def run_count(stmt: s.CountStmt, session: Session, ctx: TimeContext) -> dict[str, Any]:
    what = stmt.what
    if what == "series_length":
        rows = _rows(stmt, session, ctx, "series")
        return {what: sum(int(r["length"]) for r in rows)}
    if what in ("servers_received_points", "servers_selected_points"):
        rows = _rows(stmt, session, ctx, "servers")
        key = "received_points" if what == "servers_received_points" else "selected_points"
        return {what: sum(int(r[key]) for r in rows)}
    if what == "shards_size":
        rows = _rows(stmt, session, ctx, "shards")
        return {what: sum(int(r["size"]) for r in rows)}
    if what == "pools" and stmt.where is None and session.topology() is not None:
        return {what: session.topology().num_pools}  # offline pools count too
    return {what: len(_rows(stmt, session, ctx, what))}


def run_show(stmt: s.Show, session: Session) -> dict[str, Any]:
    values = show_values(session)
    names = stmt.names or SHOW_ORDER
    return {"data": [{"name": name, "value": values[name]} for name in names]}
