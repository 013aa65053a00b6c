"""Evaluate the statements that change things: groups, tags, users, settings, drops,
servers. Texts, checks and their order are SiriDB 2.0.55's.

Every change is one record passed to ``Database.commit`` so the write-ahead log and
recovery see exactly what the query did (changes SiriDB makes before it fails, such
as the rights of ``grant ... set password <too short>``, are committed too).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tsconnector.server import shards as sh
from tsconnector.server.control import LOG_LEVELS
from tsconnector.server.model import Database
from tsconnector.server.query import syntax as s
from tsconnector.server.query.access import access_mask
from tsconnector.server.query.errors import NotAccessible, QueryFailure
from tsconnector.server.query.listing import server_where_row, shard_row
from tsconnector.server.query.selection import (
    WHERE_TOO_DEEP,
    filter_rows,
    group_source,
    select_series,
)
from tsconnector.server.query.tee import parse_tee_address
from tsconnector.server.query.timeexpr import TimeContext, evaluate
from tsconnector.server.query.timezones import canonical_timezone

if TYPE_CHECKING:
    from tsconnector.server.query import Session

_MAX_U32 = 4294967296
_DAY = 86400
_LOG = logging.getLogger("tsconnector.server")

MIN_USER_LEN = 2
MAX_USER_LEN = 60
MIN_PASSWORD_LEN = 4
MAX_PASSWORD_LEN = 128
MIN_GROUP_LEN = 1
MAX_GROUP_LEN = 255
MIN_TAG_LEN = 1
MAX_TAG_LEN = 255
ERR_SERVER_ADDRESS = (
    "Its only possible to change a servers address or port when the server is not "
    "connected."
)


def _ok(message: str) -> dict[str, str]:
    return {"success_msg": message}


def _blen(text: str) -> int:
    """Length in bytes (SiriDB's ``strlen``)."""
    return len(text.encode("utf-8", "surrogateescape"))


def _is_graph(text: str) -> bool:
    """Only printable ASCII without spaces (C's ``isgraph`` for every byte)."""
    return all("!" <= c <= "~" for c in text)


def require_accessible(session: Session) -> None:
    """SiriDB refuses data changes and selects while the server is in backup mode."""
    if not session.control.accessible:
        raise NotAccessible(session.server_name)


# -- groups and tags -----------------------------------------------------------------------

def _check_group_name(db: Database, name: str) -> None:
    if _blen(name) < MIN_GROUP_LEN:
        raise QueryFailure(f"Group name should be at least {MIN_GROUP_LEN} characters.")
    if _blen(name) > MAX_GROUP_LEN:
        raise QueryFailure(f"Group name should be at most {MAX_GROUP_LEN} characters.")
    if name in db.groups:
        raise QueryFailure(f"Group '{name}' already exists.")
    if name in db.tags:
        raise QueryFailure(f"Tag '{name}' already exists.")


def _check_tag_name(name: str) -> None:
    if _blen(name) < MIN_TAG_LEN:
        raise QueryFailure(f"Tag name should be at least {MIN_TAG_LEN} characters.")
    if _blen(name) > MAX_TAG_LEN:
        raise QueryFailure(f"Tag name should be at most {MAX_TAG_LEN} characters.")


def create_group(stmt: s.CreateGroup, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    source, flags = group_source(stmt.regex)
    _check_group_name(db, stmt.name)
    db.commit(("group_create", stmt.name, stmt.regex.text, source, flags))
    return _ok(f"Successfully created group '{stmt.name}'.")


def alter_group(stmt: s.AlterGroup, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    if stmt.name not in db.groups:
        raise QueryFailure(f"Cannot find group: '{stmt.name}'")
    name = stmt.name
    if stmt.new_name is not None:
        _check_group_name(db, stmt.new_name)
        db.commit(("group_rename", name, stmt.new_name))
        name = stmt.new_name
    if stmt.regex is not None:
        source, flags = group_source(stmt.regex)
        db.commit(("group_expression", name, stmt.regex.text, source, flags))
    return _ok(f"Successfully updated group '{name}'.")


def drop_group(stmt: s.DropGroup, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    if stmt.name not in db.groups:
        raise QueryFailure(f"Group '{stmt.name}' does not exist.")
    db.commit(("group_drop", stmt.name))
    return _ok(f"Successfully dropped group '{stmt.name}'.")


def alter_series(stmt: s.AlterSeries, session: Session, ctx: TimeContext) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    matched = select_series(db, stmt.match, None, ctx)
    if isinstance(stmt.where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)
    require_accessible(session)
    if stmt.untag:
        if stmt.tag not in db.tags:
            raise QueryFailure(f"Cannot find tag: '{stmt.tag}'")
    elif stmt.tag not in db.tags:
        if stmt.tag in db.groups:
            raise QueryFailure(
                f"Cannot create tag `{stmt.tag}` because a group with this name "
                "already exist.")
        _check_tag_name(stmt.tag)
    if stmt.where is None:
        names = [x.name for x in matched]
        count = len(names)
    else:
        names = [x.name for x in select_series(db, None, stmt.where, ctx) if x in matched]
        count = len(names)
    if stmt.untag:
        db.commit(("tag_remove", stmt.tag, names))
        return _ok(f"Successfully untagged {count} series.")
    db.commit(("tag_add", stmt.tag, names))
    return _ok(f"Successfully tagged {count} series.")


def alter_tag(stmt: s.AlterTag, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    if stmt.name not in db.tags:
        raise QueryFailure(f"Cannot find tag: '{stmt.name}'")
    _check_tag_name(stmt.new_name)
    if stmt.new_name in db.tags:
        raise QueryFailure(f"Tag '{stmt.new_name}' already exists.")
    if stmt.new_name in db.groups:
        raise QueryFailure(f"Group '{stmt.new_name}' already exists.")
    db.commit(("tag_rename", stmt.name, stmt.new_name))
    return _ok(f"Successfully updated tag '{stmt.new_name}'.")


def drop_tag(stmt: s.DropTag, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    if stmt.name not in db.tags:
        raise QueryFailure(f"Tag '{stmt.name}' does not exist.")
    db.commit(("tag_drop", stmt.name))
    return _ok(f"Successfully dropped tag '{stmt.name}'.")


# -- users ---------------------------------------------------------------------------------

def _check_password(password: str) -> None:
    if _blen(password) < MIN_PASSWORD_LEN:
        raise QueryFailure(f"Password should be at least {MIN_PASSWORD_LEN} characters.")
    if _blen(password) > MAX_PASSWORD_LEN:
        raise QueryFailure(f"Password should be at most {MAX_PASSWORD_LEN} characters.")
    if not _is_graph(password):
        raise QueryFailure(
            "Password contains illegal characters. (only graphical characters are "
            "allowed, no spaces, tabs etc.)")


def _check_user_name(db: Database, name: str) -> None:
    if _blen(name) < MIN_USER_LEN:
        raise QueryFailure(f"User name should be at least {MIN_USER_LEN} characters.")
    if _blen(name) > MAX_USER_LEN:
        # (SiriDB's text says "at least" for the upper limit too)
        raise QueryFailure(f"User name should be at least {MAX_USER_LEN} characters.")
    if not _is_graph(name):
        raise QueryFailure(
            "User name contains illegal characters. (only graphical characters are "
            "allowed, no spaces, tabs etc.)")
    if name in db.users:
        raise QueryFailure(f"User '{name}' already exists.")


def _need_user(db: Database, name: str) -> None:
    if name not in db.users:
        raise QueryFailure(f"Cannot find user: '{name}'")


def create_user(stmt: s.CreateUser, session: Session) -> dict[str, str]:
    db = session.db
    _check_password(stmt.password)
    require_accessible(session)
    _check_user_name(db, stmt.name)
    db.commit(("user_create", stmt.name, stmt.password))
    return _ok(f"Successfully created user '{stmt.name}'.")


def alter_user(stmt: s.AlterUser, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    _need_user(db, stmt.name)
    name = stmt.name
    if stmt.password is not None:
        _check_password(stmt.password)
        db.commit(("user_password", name, stmt.password))
    if stmt.new_name is not None:
        _check_user_name(db, stmt.new_name)
        db.commit(("user_rename", name, stmt.new_name))
        name = stmt.new_name
    return _ok(f"Successfully updated user '{name}'.")


def drop_user(stmt: s.DropUser, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    if stmt.name not in db.users:
        raise QueryFailure(f"User '{stmt.name}' does not exist.")
    db.commit(("user_drop", stmt.name))
    return _ok(f"Successfully dropped user '{stmt.name}'.")


def grant(stmt: s.Grant, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    _need_user(db, stmt.user)
    access = db.users[stmt.user].access | access_mask(stmt.access)
    db.commit(("user_access", stmt.user, access))
    if stmt.password is not None:
        _check_password(stmt.password)
        db.commit(("user_password", stmt.user, stmt.password))
    return _ok(f"Successfully granted permissions to user '{stmt.user}'.")


def revoke(stmt: s.Revoke, session: Session) -> dict[str, str]:
    db = session.db
    require_accessible(session)
    _need_user(db, stmt.user)
    access = db.users[stmt.user].access & ~access_mask(stmt.access)
    db.commit(("user_access", stmt.user, access))
    return _ok(f"Successfully revoked permissions from user '{stmt.user}'.")


# -- database settings ---------------------------------------------------------------------

def _c_double(text: str) -> float:
    """``xstr_to_double`` of a float literal of the grammar."""
    try:
        return float(text)
    except ValueError:  # pragma: no cover - the grammar only lets numbers through
        return 0.0


def _fmt_g(value: float) -> str:
    """C's ``%g``."""
    return f"{value:g}"


def alter_database(stmt: s.AlterDatabase, session: Session, ctx: TimeContext) -> dict[str, str]:
    db = session.db
    key, value = stmt.setting, stmt.value
    require_accessible(session)
    if key == "drop_threshold":
        threshold = _c_double(str(value))
        if not 0.0 <= threshold <= 1.0:
            raise QueryFailure(
                "Drop threshold should be a value between or equal to 0 and 1.0 "
                f"but got {threshold:.3f}")
        old = db.drop_threshold
        db.commit(("setting", key, threshold))
        return _ok(
            f"Successfully changed drop_threshold from {_fmt_g(old)} to {_fmt_g(threshold)}.")
    if key == "list_limit":
        if not 1000 <= value < _MAX_U32:
            raise QueryFailure(
                "List limit should be a value greater than or equal to 1000 and smaller "
                f"than {_MAX_U32} but got {value}")
        old_limit = db.list_limit
        db.commit(("setting", key, value))
        return _ok(f"Successfully changed list limit from {old_limit} to {value}.")
    if key == "select_points_limit":
        if not 1 <= value < _MAX_U32:
            raise QueryFailure(
                "Select points limit should be a value greater than 0 and smaller than "
                f"{_MAX_U32} but got {value}")
        old_limit = db.select_points_limit
        db.commit(("setting", key, value))
        return _ok(f"Successfully changed select points limit from {old_limit} to {value}.")
    if key == "timezone":
        tz = canonical_timezone(value)
        if tz is None:
            raise QueryFailure(
                f"Unknown time zone: '{value}'. "
                "(see 'help timezones' for a list of valid time zones)")
        if tz == db.timezone:
            raise QueryFailure(f"Database '{db.name}' is already set to time-zone '{value}'.")
        old_tz = db.timezone
        db.commit(("setting", key, tz))
        return _ok(f"Successfully changed timezone from '{old_tz}' to '{tz}'.")
    if key == "tee":
        return _set_tee(db, value)
    return _set_expiration(stmt, session, ctx)


def _set_tee(db: Database, value: Any) -> dict[str, str]:
    if value == "false":
        db.commit(("setting", "tee", None))
        return _ok("Successfully disabled tee.")
    if value == "":
        raise QueryFailure("Tee address must not be empty")
    parsed = parse_tee_address(str(value))
    if parsed is None:
        raise QueryFailure("Invalid tee address; expecting ADDRESS[:PORT]")
    db.commit(("setting", "tee", list(parsed)))
    return _ok(f"Successfully configured tee to {parsed[0]}.")


def _set_expiration(
    stmt: s.AlterDatabase, session: Session, ctx: TimeContext
) -> dict[str, str]:
    db = session.db
    key = stmt.setting
    expiration = evaluate(stmt.value, ctx)
    if expiration:
        now_ts = int((session.now() - _DAY) * db.factor)
        if expiration >= now_ts:
            raise QueryFailure(
                "Shard expiration time should be a value greater than or equal to zero "
                f"(0) and smaller than {now_ts} but got {expiration}")
        tp = sh.NUMBER if key == "expiration_num" else sh.LOG
        percent = _expired_percent(db, now_ts - expiration, tp)
        if not stmt.ignore_threshold and percent >= db.drop_threshold:
            raise QueryFailure(
                f"This query would drop {percent * 100:.2f}% of the shards in pool 0. "
                "Add 'set ignore_threshold true' to the query statement if you really "
                "want to do this.")
    old = getattr(db, key) or 0
    db.commit(("setting", key, expiration or None))
    # The new expiration time counts at once, also while a journal makes it durable.
    now = int(session.now() * db.factor)
    if key == "expiration_num":
        db.exp_at_num = now - expiration if expiration else 0
    else:
        db.exp_at_log = now - expiration if expiration else 0
    return _ok(f"Successfully changed expiration from {old} to {expiration}.")


def _expired_percent(db: Database, end_ts: int, tp: int) -> float:
    """SiriDB's share of shards of one kind that end before ``end_ts``, measured with
    the database's default duration of that kind (not the shard's own)."""
    duration = db.duration_num if tp == sh.NUMBER else db.duration_log
    total = count = 0
    for shard in db.shards.values():
        if shard.tp == tp:
            total += 1
            if shard.sid - shard.sid % duration + duration < end_ts:
                count += 1
    return count / total if total else 0.0


# -- drops ---------------------------------------------------------------------------------

def drop_series(stmt: s.DropSeries, session: Session, ctx: TimeContext) -> dict[str, str]:
    db = session.db
    matched = select_series(db, stmt.match, None, ctx)
    if isinstance(stmt.where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)
    require_accessible(session)
    if stmt.where is not None:
        wanted = {x.name for x in select_series(db, None, stmt.where, ctx)}
        matched = [x for x in matched if x.name in wanted]
    names = [x.name for x in matched]
    total = len(db.series)
    if names and not stmt.ignore_threshold and total:
        percent = len(names) / total
        if percent >= db.drop_threshold:
            raise QueryFailure(
                f"This query would drop {percent * 100:.2f}% of the series in pool 0. "
                "Add 'set ignore_threshold true' to the query statement if you really "
                "want to do this.")
    if names:
        db.commit(("drop_series", names))
    return _ok(f"Successfully dropped {len(names)} series.")


def drop_shards(stmt: s.DropShards, session: Session, ctx: TimeContext) -> dict[str, str]:
    db = session.db
    if isinstance(stmt.where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)
    require_accessible(session)
    shards = db.shard_list()
    rows = [shard_row(x, session) for x in shards]
    chosen = filter_rows(rows, stmt.where, ctx)
    total = len(shards)
    if chosen and not stmt.ignore_threshold and total:
        percent = len(chosen) / total
        if percent >= db.drop_threshold:
            raise QueryFailure(
                f"This query would drop {percent * 100:.2f}% of the shards in pool 0. "
                "Add 'set ignore_threshold true' to the query statement if you really "
                "want to do this.")
    if chosen:
        db.drop_shards([(int(r["sid"]), int(r["duration"])) for r in chosen])
    return _ok(
        f"Successfully dropped {len(chosen)} shards. (this number does not include shards "
        "which are dropped on replica servers)")


# -- servers -------------------------------------------------------------------------------

def _find_server(session: Session, ident: str, raw: str) -> None:
    if ident not in (session.db.uuid, session.server_name):
        raise QueryFailure(f"Cannot find server: {raw}")


def alter_server(stmt: s.AlterServer, session: Session, ctx: TimeContext) -> dict[str, Any]:
    control = session.control
    if stmt.uuid is not None:
        _find_server(session, stmt.uuid, stmt.raw_ident or stmt.uuid)
    if stmt.setting == "log_level":
        level = str(stmt.value)
        if stmt.uuid is None:
            count = 1
            if stmt.where is not None and not filter_rows(
                    [server_where_row(session)], stmt.where, ctx):
                count = 0
            if count:
                control.set_log_level(level)
            return _ok(f"Successfully set log level to '{level}' on {count} servers.")
        control.set_log_level(level)
        return _ok(f"Successfully set log level to '{level}' on '{session.server_name}'.")
    if stmt.setting == "backup_mode":
        enable = stmt.value == "true"
        word = "enabled" if enable else "disabled"
        if enable == control.backup_mode:
            raise QueryFailure(f"Backup mode is already {word} on '{session.server_name}'.")
        control.backup_mode = enable
        return _ok(f"Successfully {word} backup mode on '{session.server_name}'.")
    # address / port of this (connected) server cannot change
    raise QueryFailure(ERR_SERVER_ADDRESS)


def drop_server(stmt: s.DropServer, session: Session) -> dict[str, Any]:
    _find_server(session, stmt.uuid, stmt.raw_ident or stmt.uuid)
    raise QueryFailure(
        f"Cannot remove server '{session.server_name}' because this is the only server "
        "for pool 0")


__all__ = [
    "LOG_LEVELS",
    "alter_database",
    "alter_group",
    "alter_series",
    "alter_server",
    "alter_tag",
    "alter_user",
    "create_group",
    "create_user",
    "drop_group",
    "drop_series",
    "drop_server",
    "drop_shards",
    "drop_tag",
    "drop_user",
    "grant",
    "require_accessible",
    "revoke",
]
