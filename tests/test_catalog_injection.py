"""Injection: hostile table names, field names, values and regexes never change a statement.

The store's schema (``sqlite_master`` / ``pg_tables``, ``pg_indexes``, ``pg_sequences``)
is snapshotted before and after; names are refused with ``ValueError``/``TypeError``
before any SQL runs, and values always arrive as parameters, so they round-trip.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from catalog_backends import Backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsconnector.catalog import Database, Eq, In, Like, Re, Reversed

HOSTILE_NAMES = [
    "people; DROP TABLE people",
    'people" ; DROP TABLE people; --',
    '"',
    "'",
    "a--",
    "a/*",
    "tsconnector_schema",
    "tsconnector_files",
    "sqlite_master",
    "pg_class",
    "pеople",  # Cyrillic e
    "people\x00",
    "People",
    "a.b",
    "$1",
    "{field}",
    "x->>'y'",
    "",
    " ",
]
# Valid as field names (harmless, they are quoted JSON keys), not as table names.
FIELD_ONLY = {"tsconnector_schema", "tsconnector_files", "sqlite_master", "pg_class", "People"}
HOSTILE_VALUES = [
    "'); DROP TABLE people; --",
    "' OR '1'='1",
    '" OR "1"="1',
    '", "role": "admin',
    "}",
    "$1",
    "$2::jsonb",
    "{field}",
    "\\",
    "\\'",
    "%",
    "*",
    "[",
    "?",
    "'; DELETE FROM tsconnector_schema; --",
    "\u2028\u2029",
    "$$; DROP TABLE people; $$",
]
HOSTILE_REGEXES = [
    "'; DROP TABLE people; --",
    "(a+)+$",
    ".*.*.*.*=",
    "\\'",
    "[']",
    "$1",
]


@pytest_asyncio.fixture
async def people_db(catalog_backend: Backend) -> Database:
    """A database of ``catalog_backend`` with table ``people`` (one row, one index)."""
    db = await catalog_backend.new_db().open()
    await setup_people(db)
    return db


async def setup_people(db: Database) -> None:
    async with db.session() as s:
        t = s["people"]
        await t.create_table()
        await t.create_index("name")
        await t.new(name="ada", role="admin")
        await s.commit()


async def test_hostile_names_values_and_regexes_change_nothing(
    catalog_backend: Backend,
) -> None:
    db = await catalog_backend.new_db().open()
    await setup_people(db)
    before = await catalog_backend.snapshot(db)
    async with db.session() as s:
        t = s["people"]
        for name in HOSTILE_NAMES:
            with pytest.raises(ValueError):
                s[name]
            if name in FIELD_ONLY:
                continue
            with pytest.raises(ValueError):
                await t.new(**{name: "x"})
            with pytest.raises(ValueError):
                await t.query(where={name: "x"})
            with pytest.raises(ValueError):
                await t.query(order_by=name)
            with pytest.raises(ValueError):
                await t.query(order_by=Reversed(name))
            with pytest.raises(ValueError):
                await t.create_index(name)
        for value in HOSTILE_VALUES:
            row = await t.new(name=value, role=value)
            assert await t.get(row.id) == {"name": value, "role": value}  # type: ignore[arg-type]
            for cond in (value, Eq(value), In([value, "x"])):
                found = await t.query(where={"name": cond, "role": value})
                assert [r.id for r in found] == [row.id]
            assert row.id in [r.id for r in await t.query(where={"name": Like("%")})]
            row["note"] = value
            await row.save()
            await t.save_if(row)
        for pattern in HOSTILE_REGEXES:
            assert await t.query(where={"name": Re(pattern)}, count=True) >= 0
        await s.commit()
    assert await catalog_backend.snapshot(db) == before
    async with db.session() as s:
        assert await s["people"].count() == 1 + len(HOSTILE_VALUES)
        assert await s["people"].count(role="admin") == 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.one_of(
        st.text(max_size=12), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
    ),
    value=st.text(max_size=12),
    pattern=st.text(max_size=8),
)
async def test_random_names_values_and_regexes_change_nothing(
    catalog_backend: Backend, people_db: Database, name: str, value: str, pattern: str
) -> None:
    db = people_db
    before = await catalog_backend.snapshot(db)
    async with db.session() as s:
        t = s["people"]
        try:
            s[name]
        except ValueError:
            pass
        fields: dict[str, Any] = {name: value}
        try:
            row = await t.new(**fields)
        except (ValueError, TypeError):
            row = None
        else:
            assert await t.get(row.id) == fields  # type: ignore[arg-type]
            found = await t.query(where={name: value})
            assert row.id in [r.id for r in found]
        try:
            regex = Re(pattern)
        except ValueError:
            regex = None
        if regex is not None and row is not None:
            await t.query(where={name: regex})
        await s.rollback()
    assert await catalog_backend.snapshot(db) == before
