"""Leases: named, expiring ownership records in ``tsconnector_agg_leases``.

A lease is ``(scope, key) -> (owner, expires_at)`` on the database's clock. Taking one
succeeds when nobody holds it, the holder is the caller, or the holder's lease has
expired; it is one statement (an upsert with a condition), so two processes racing for
it cannot both win. Leases never block: a taken lease is reported, not waited for.
A process that dies keeps its leases until they expire, then anyone may take them over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .schema import db_clock

if TYPE_CHECKING:
    from ..catalog import Session


def _take_sql(dialect: str) -> str:
    now = db_clock(dialect)
    return (
        "INSERT INTO tsconnector_agg_leases (scope, key, owner, expires_at) "
        f"VALUES ($1, $2, $3, {now} + $4) "
        "ON CONFLICT (scope, key) DO UPDATE SET owner = excluded.owner, "
        "expires_at = excluded.expires_at "
        "WHERE tsconnector_agg_leases.owner = excluded.owner "
        f"OR tsconnector_agg_leases.expires_at < {now} "
        "RETURNING owner"
    )


async def relaxed(session: Session) -> None:
    """Let this transaction commit without waiting for the disk (PostgreSQL only).

    For transactions that only move leases: a lease lost in a database crash is as if it
    had expired, which every user of leases already handles.
    """
    if session.dialect == "postgresql":
        await session.execute("SET LOCAL synchronous_commit = off")


async def take(session: Session, scope: str, key: str, owner: str, seconds: float) -> bool:
    """Take or renew the lease ``(scope, key)`` for ``seconds``; False if another holds it."""
    row = await session.fetchrow(_take_sql(session.dialect), scope, key, owner, float(seconds))
    return row is not None


async def take_all(
    session: Session, scope: str, keys: Sequence[str], owner: str, seconds: float
) -> list[str]:
    """Take each of ``keys``; returns the keys held by another owner (none taken then)."""
    busy = [key for key in keys if not await take(session, scope, key, owner, seconds)]
    return busy


async def holds(session: Session, scope: str, key: str, owner: str) -> bool:
    """True when ``owner`` holds ``(scope, key)`` and it has not expired (as of now)."""
    now = db_clock(session.dialect)
    value = await session.fetchval(
        "SELECT 1 FROM tsconnector_agg_leases WHERE scope = $1 AND key = $2 "
        f"AND owner = $3 AND expires_at >= {now}",
        scope,
        key,
        owner,
    )
    return value is not None


async def release(session: Session, scope: str, keys: Sequence[str], owner: str) -> None:
    """Give up the leases of ``owner`` on ``keys`` (those held by others are left alone)."""
    for key in keys:
        await session.execute(
            "DELETE FROM tsconnector_agg_leases WHERE scope = $1 AND key = $2 AND owner = $3",
            scope,
            key,
            owner,
        )


async def holders(session: Session, scope: str) -> dict[str, str]:
    """``key -> owner`` of the unexpired leases of ``scope``."""
    now = db_clock(session.dialect)
    rows = await session.fetch(
        f"SELECT key, owner FROM tsconnector_agg_leases WHERE scope = $1 AND expires_at >= {now}",
        scope,
    )
    return {str(r["key"]): str(r["owner"]) for r in rows}
