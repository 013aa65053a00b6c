"""Evaluate the statements that change things: groups, tags, users, settings, drops.

Every change is one record passed to ``Database.commit`` so the write-ahead log and
recovery see exactly what the query did.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tsconnector.server.model import Database
from tsconnector.server.query import syntax as s
from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.listing import access_mask, shard_rows
from tsconnector.server.query.selection import (
    filter_rows,
    group_source,
    select_series,
)
from tsconnector.server.query.timeexpr import TimeContext, evaluate

if TYPE_CHECKING:
    from tsconnector.server.query import Session

_MAX_U32 = 4294967296
_LOG = logging.getLogger("tsconnector.server")


def _ok(message: str) -> dict[str, str]:
    return {"success_msg": message}


# -- groups and tags -----------------------------------------------------------------------

def create_group(stmt: s.CreateGroup, db: Database) -> dict[str, str]:
    if stmt.name in db.groups:
        raise QueryFailure(f"Group '{stmt.name}' already exists.")
    source, flags = group_source(stmt.regex)
    db.commit(("group_create", stmt.name, stmt.regex.text, source, flags))
    return _ok(f"Successfully created group '{stmt.name}'.")


def alter_group(stmt: s.AlterGroup, db: Database) -> dict[str, str]:
    if stmt.name not in db.groups:
        raise QueryFailure(f"Group '{stmt.name}' does not exist.")
    name = stmt.name
    if stmt.new_name is not None:
        if stmt.new_name != name and stmt.new_name in db.groups:
            raise QueryFailure(f"Group '{stmt.new_name}' already exists.")
        db.commit(("group_rename", name, stmt.new_name))
        name = stmt.new_name
    if stmt.regex is not None:
        source, flags = group_source(stmt.regex)
        db.commit(("group_expression", name, stmt.regex.text, source, flags))
    return _ok(f"Successfully updated group '{name}'.")


def drop_group(stmt: s.DropGroup, db: Database) -> dict[str, str]:
    if stmt.name not in db.groups:
        raise QueryFailure(f"Group '{stmt.name}' does not exist.")
    db.commit(("group_drop", stmt.name))
    return _ok(f"Successfully dropped group '{stmt.name}'.")


def alter_series(stmt: s.AlterSeries, db: Database, ctx: TimeContext) -> dict[str, str]:
    names = [x.name for x in select_series(db, stmt.match, stmt.where, ctx)]
    if stmt.untag:
        if stmt.tag not in db.tags:
            raise QueryFailure(f"Tag '{stmt.tag}' does not exist.")
        db.commit(("tag_remove", stmt.tag, names))
        return _ok(f"Successfully untagged {len(names)} series.")
    db.commit(("tag_add", stmt.tag, names))
    return _ok(f"Successfully tagged {len(names)} series.")


def alter_tag(stmt: s.AlterTag, db: Database) -> dict[str, str]:
    if stmt.name not in db.tags:
        raise QueryFailure(f"Tag '{stmt.name}' does not exist.")
    if stmt.new_name != stmt.name and stmt.new_name in db.tags:
        raise QueryFailure(f"Tag '{stmt.new_name}' already exists.")
    db.commit(("tag_rename", stmt.name, stmt.new_name))
    return _ok(f"Successfully updated tag '{stmt.new_name}'.")


def drop_tag(stmt: s.DropTag, db: Database) -> dict[str, str]:
    if stmt.name not in db.tags:
        raise QueryFailure(f"Tag '{stmt.name}' does not exist.")
    db.commit(("tag_drop", stmt.name))
    return _ok(f"Successfully dropped tag '{stmt.name}'.")


# -- users ---------------------------------------------------------------------------------

def _check_password(password: str) -> None:
    if len(password) < 4:
        raise QueryFailure("Password should be at least 4 characters.")


def _need_user(db: Database, name: str) -> None:
    if name not in db.users:
        raise QueryFailure(f"Cannot find user: '{name}'")


def create_user(stmt: s.CreateUser, db: Database) -> dict[str, str]:
    if len(stmt.name) < 2:
        raise QueryFailure("User name should be at least 2 characters.")
    if stmt.name in db.users:
        raise QueryFailure(f"User '{stmt.name}' already exists.")
    _check_password(stmt.password)
    db.commit(("user_create", stmt.name, stmt.password))
    return _ok(f"Successfully created user '{stmt.name}'.")


def alter_user(stmt: s.AlterUser, db: Database) -> dict[str, str]:
    _need_user(db, stmt.name)
    name = stmt.name
    if stmt.password is not None:
        _check_password(stmt.password)
        db.commit(("user_password", name, stmt.password))
    if stmt.new_name is not None:
        if len(stmt.new_name) < 2:
            raise QueryFailure("User name should be at least 2 characters.")
        if stmt.new_name != name and stmt.new_name in db.users:
            raise QueryFailure(f"User '{stmt.new_name}' already exists.")
        db.commit(("user_rename", name, stmt.new_name))
        name = stmt.new_name
    return _ok(f"Successfully updated user '{name}'.")


def drop_user(stmt: s.DropUser, db: Database) -> dict[str, str]:
    if stmt.name not in db.users:
        raise QueryFailure(f"User '{stmt.name}' does not exist.")
    db.commit(("user_drop", stmt.name))
    return _ok(f"Successfully dropped user '{stmt.name}'.")


def grant(stmt: s.Grant, db: Database) -> dict[str, str]:
    _need_user(db, stmt.user)
    if stmt.password is not None:
        _check_password(stmt.password)
        db.commit(("user_password", stmt.user, stmt.password))
    access = db.users[stmt.user].access | access_mask(stmt.access)
    db.commit(("user_access", stmt.user, access))
    return _ok(f"Successfully granted permissions to user '{stmt.user}'.")


def revoke(stmt: s.Revoke, db: Database) -> dict[str, str]:
    _need_user(db, stmt.user)
    access = db.users[stmt.user].access & ~access_mask(stmt.access)
    db.commit(("user_access", stmt.user, access))
    return _ok(f"Successfully revoked permissions from user '{stmt.user}'.")


# -- database settings ---------------------------------------------------------------------

def _valid_timezone(name: str) -> str | None:
    if name.upper() == "NAIVE":
        return "NAIVE"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return name


def alter_database(stmt: s.AlterDatabase, db: Database, ctx: TimeContext) -> dict[str, str]:
    key, value = stmt.setting, stmt.value
    if key == "drop_threshold":
        if not 0.0 <= value <= 1.0:
            raise QueryFailure(
                f"Drop threshold should be a value between or equal to 0 and 1.0 "
                f"but got {value:.3f}")
        old = db.drop_threshold
        db.commit(("setting", key, float(value)))
        return _ok(f"Successfully changed drop_threshold from {old:g} to {value:g}.")
    if key == "list_limit":
        if not 1000 <= value < _MAX_U32:
            raise QueryFailure(
                "List limit should be a value greater than or equal to 1000 and smaller "
                f"than {_MAX_U32} but got {value}")
        old = db.list_limit
        db.commit(("setting", key, value))
        return _ok(f"Successfully changed list limit from {old} to {value}.")
    if key == "select_points_limit":
        if not 1 <= value < _MAX_U32:
            raise QueryFailure(
                "Select points limit should be a value greater than or equal to 1 and "
                f"smaller than {_MAX_U32} but got {value}")
        old = db.select_points_limit
        db.commit(("setting", key, value))
        return _ok(f"Successfully changed select points limit from {old} to {value}.")
    if key == "timezone":
        tz = _valid_timezone(value)
        if tz is None:
            raise QueryFailure(
                f"Unknown time zone: '{value}'. "
                "(see 'help timezones' for a list of valid time zones)")
        old = db.timezone
        db.commit(("setting", key, tz))
        return _ok(f"Successfully changed timezone from '{old}' to '{tz}'.")
    # expiration_num / expiration_log: a time span (0 switches expiration off)
    span = evaluate(value, ctx)
    if span < 0:
        raise QueryFailure("Expiration time should be a positive value.")
    old_span = getattr(db, key) or 0
    db.commit(("setting", key, span or None))
    return _ok(f"Successfully changed {key} from {old_span} to {span}.")


# -- drops ---------------------------------------------------------------------------------

def _threshold_check(db: Database, n: int, total: int, ignore: bool) -> None:
    if ignore or n == 0 or total == 0:
        return
    fraction = n / total
    if fraction >= db.drop_threshold:
        raise QueryFailure(
            f"This query would drop {fraction * 100:.2f}% of the series in pool 0. Add "
            "'set ignore_threshold true' to the query statement if you really want to do "
            "this.")


def drop_series(stmt: s.DropSeries, db: Database, ctx: TimeContext) -> dict[str, str]:
    names = [x.name for x in select_series(db, stmt.match, stmt.where, ctx)]
    _threshold_check(db, len(names), len(db.series), stmt.ignore_threshold)
    if names:
        db.commit(("drop_series", names))
    return _ok(f"Successfully dropped {len(names)} series.")


def drop_shards(stmt: s.DropShards, session: Session, ctx: TimeContext) -> dict[str, str]:
    db = session.db
    all_rows = shard_rows(session)
    rows = filter_rows(all_rows, stmt.where, ctx)
    if rows and not stmt.ignore_threshold and len(rows) / len(all_rows) >= db.drop_threshold:
        raise QueryFailure(
            f"This query would drop {len(rows) / len(all_rows) * 100:.2f}% of the shards in "
            "pool 0. Add 'set ignore_threshold true' to the query statement if you really "
            "want to do this.")
    if rows:
        ranges = [[r["start"], r["end"], r["type"] == "log"] for r in rows]
        db.commit(("drop_points", ranges))
    return _ok(
        f"Successfully dropped {len(rows)} shards. (this number does not include shards "
        "which are dropped on replica servers)")


# -- servers -------------------------------------------------------------------------------

def _is_this_server(session: Session, ident: str) -> bool:
    return ident in (session.db.uuid, session.server_name)


def alter_server(stmt: s.AlterServer, session: Session, ctx: TimeContext) -> dict[str, str]:
    if stmt.uuid is not None and not _is_this_server(session, stmt.uuid):
        raise QueryFailure(f"Cannot find server: '{stmt.uuid}'")
    if stmt.setting != "log_level":
        raise QueryFailure(
            f"Changing '{stmt.setting}' is not supported by the embedded server.")
    level = str(stmt.value)
    if stmt.where is not None:
        from tsconnector.server.query.listing import server_row

        if not filter_rows([server_row(session)], stmt.where, ctx):
            return _ok(f"Successfully changed log level to '{level}' on 0 servers.")
    _LOG.setLevel(level.upper())
    if stmt.uuid is None:
        return _ok(f"Successfully changed log level to '{level}' on 1 servers.")
    return _ok(f"Successfully changed log level of server '{session.server_name}' to '{level}'.")


def drop_server(stmt: s.DropServer, session: Session) -> dict[str, Any]:
    if not _is_this_server(session, stmt.uuid):
        raise QueryFailure(f"Cannot find server: '{stmt.uuid}'")
    raise QueryFailure(
        f"Cannot drop server '{session.server_name}': it is the only server of this database.")
