"""The catalog's behaviour, one suite run against every backend (``catalog_backend``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

import pytest
from catalog_backends import Backend

from tsconnector.catalog import (
    ConflictError,
    Database,
    Eq,
    In,
    IntegrityError,
    Like,
    Migration,
    MissingTable,
    MultipleRowsFound,
    NotSupportedError,
    Re,
    Reversed,
    Row,
    RowNotFound,
    SessionClosedError,
    Sql,
    SqliteDB,
    TransactionAborted,
    connect,
    quote_ident,
)
from tsconnector.catalog.errors import CatalogError
from tsconnector.exceptions import TsConnectorError


async def people(db: Database, rows: list[dict[str, str]] | None = None) -> None:
    """Create table ``people`` with ``rows`` (committed)."""
    async with db.session() as s:
        t = s["people"]
        await t.create_table()
        for fields in rows or []:
            await t.new(**fields)
        await s.commit()


SAMPLE = [
    {"name": "ada", "role": "admin", "city": "london"},
    {"name": "bob", "role": "user", "city": "paris"},
    {"name": "cy", "role": "user"},
    {"name": "Dan", "role": "guest", "city": "berlin"},
    {"name": "éva", "role": "user", "city": "paris"},
]


# ---------------------------------------------------------------------------- rows


async def test_new_get_save_delete_round_trip(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        t = s["people"]
        row = await t.new(name="ada", note="x'; DROP TABLE people; --")
        assert isinstance(row, Row)
        assert row.id is not None
        assert row.version == 1
        got = await t.get(row.id)
        assert got == {"name": "ada", "note": "x'; DROP TABLE people; --"}
        assert (got.id, got.version) == (row.id, 1)
        got["name"] = "ada lovelace"
        del got["note"]
        await got.save()
        assert got.version == 2
        assert await t.get(row.id) == {"name": "ada lovelace"}
        await got.delete()
        with pytest.raises(RowNotFound):
            await t.get(row.id)
        with pytest.raises(RowNotFound):
            await got.save()
        with pytest.raises(RowNotFound):
            await got.delete()


async def test_new_from_mapping_and_row_save_inserts(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        t = s["people"]
        a = await t.new({"name": "a", "role": "x"}, role="y")
        assert a == {"name": "a", "role": "y"}
        b = Row({"name": "b"})
        await t.save(b)
        assert b.id is not None
        assert b.id > a.id
        assert (await t.get(b.id)) == {"name": "b"}
        assert await t.new() == {}


async def test_new_many_inserts_in_order_with_ids(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE[:1])
    async with catalog_db.session() as s:
        t = s["people"]
        rows = await t.new_many([{"name": f"n{i}"} for i in range(500)])
        assert [r["name"] for r in rows] == [f"n{i}" for i in range(500)]
        ids = [r.id for r in rows]
        assert ids == sorted(ids)
        assert len(set(ids)) == 500
        assert all(r.version == 1 for r in rows)
        assert await t.new_many([]) == []
        with pytest.raises(TypeError, match="'n'"):
            await t.new_many([{"name": "ok"}, {"n": 1}])  # type: ignore[dict-item]
        single = await t.new(name="after")
        assert single.id is not None
        assert single.id > max(i for i in ids if i is not None)
        await s.commit()
    async with catalog_db.session() as s:
        got = await s["people"].get(rows[250].id)  # type: ignore[arg-type]
        assert got == {"name": "n250"}
        assert await s["people"].count() == 502


async def test_ids_are_not_reused_after_delete(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        t = s["people"]
        first = await t.new(name="a")
        await first.delete()
        second = await t.new(name="b")
        assert second.id > first.id


async def test_commit_rollback_and_session_end(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        kept = await s["people"].new(name="kept")
        await s.commit()
        await s["people"].new(name="rolled back")
        await s.rollback()
        await s["people"].new(name="never committed")
    async with catalog_db.session() as s:
        names = [r["name"] async for r in s["people"].find()]
    assert names == ["kept"]
    assert kept.id is not None


async def test_get_session_and_put_session(catalog_db: Database) -> None:
    await people(catalog_db)
    s = await catalog_db.get_session()
    await s["people"].new(name="a")
    await s.commit()
    await s["people"].new(name="b")
    await catalog_db.put_session(s)  # rolls back "b"
    assert s.closed
    with pytest.raises(SessionClosedError):
        await s["people"].new(name="c")
    with pytest.raises(RuntimeError):  # SessionClosedError is also a RuntimeError
        await s.commit()
    lazy = await catalog_db.get_session(lazy=True)
    assert await lazy["people"].count() == 1
    await catalog_db.put_session(lazy)


async def test_savepoints_nest_and_roll_back_alone(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        t = s["people"]

        async def fails_inside(exc: Exception | None) -> None:
            async with s.savepoint():
                await t.new(name="undone")
                if exc is not None:
                    raise exc
                await s["nothing_here"].get(1)

        await t.new(name="outer")
        async with s.savepoint():
            await t.new(name="kept inner")
            with pytest.raises(KeyError):
                await fails_inside(KeyError("boom"))
        with pytest.raises(MissingTable):
            await fails_inside(None)
        await t.new(name="after")  # the transaction is still usable
        await s.commit()
    async with catalog_db.session() as s:
        names = [r["name"] for r in await s["people"].query()]
    assert names == ["outer", "kept inner", "after"]


async def test_failed_statement_aborts_the_transaction(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        await s["people"].new(name="lost")
        with pytest.raises(MissingTable) as info:
            await s["missing"].new(name="x")
        assert isinstance(info.value, RuntimeError)
        with pytest.raises(TransactionAborted):
            await s["people"].new(name="refused")
        with pytest.raises(TransactionAborted):
            await s.commit()  # rolls back
        await s["people"].new(name="fresh")
        await s.commit()
    async with catalog_db.session() as s:
        assert [r["name"] for r in await s["people"].query()] == ["fresh"]


async def test_readonly_session_reads_and_refuses_writes(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session(readonly=True) as s:
        assert await s["people"].count() == len(SAMPLE)
        with pytest.raises(CatalogError):
            await s["people"].new(name="nope")
    async with catalog_db.session() as s:  # the connection is writable again
        await s["people"].new(name="yes")
        await s.commit()
    async with catalog_db.session() as s:
        assert await s["people"].count() == len(SAMPLE) + 1


# ---------------------------------------------------------------------------- queries


async def test_find_first_single(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session() as s:
        t = s["people"]
        users = [r async for r in t.find(role="user")]
        assert [r["name"] for r in users] == ["bob", "cy", "éva"]
        assert [r["name"] async for r in t.find(role="user", city="paris")] == ["bob", "éva"]
        assert (await t.find_first(role="user"))["name"] == "bob"  # type: ignore[index]
        assert await t.find_first(role="nobody") is None
        assert (await t.find_single(role="admin"))["name"] == "ada"
        with pytest.raises(MultipleRowsFound) as many:
            await t.find_single(role="user")
        assert isinstance(many.value, ValueError)
        with pytest.raises(RowNotFound) as none:
            await t.find_single(role="nobody")
        assert isinstance(none.value, KeyError)
        assert isinstance(none.value, TsConnectorError)


@pytest.mark.parametrize(
    "where, expected",
    [
        ({"role": "user"}, ["bob", "cy", "éva"]),
        ({"role": Eq("user"), "city": "paris"}, ["bob", "éva"]),
        ({"city": In(["paris", "berlin"])}, ["bob", "Dan", "éva"]),
        ({"city": In([])}, []),
        ({"name": Like("%a%")}, ["ada", "Dan", "éva"]),
        ({"name": Like("_y")}, ["cy"]),
        ({"name": Like("D%")}, ["Dan"]),  # case-sensitive on both backends
        ({"name": Like("d%")}, []),
        ({"name": Re("^[a-c]")}, ["ada", "bob", "cy"]),
        ({"name": Re("a$"), "role": "user"}, ["éva"]),
        ({"name": Re("(a|b)+")}, ["ada", "bob", "Dan", "éva"]),
        (
            {
                "city": Sql(
                    postgresql="length({field}) > $1", sqlite="length({field}) > $1", params=[5]
                )
            },
            ["ada", "Dan"],
        ),
        ({"nickname": "x"}, []),
    ],
)
async def test_query_filters(
    catalog_db: Database, where: dict[str, Any], expected: list[str]
) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session() as s:
        rows = await s["people"].query(where=where)
        assert [r["name"] for r in rows] == expected
        assert await s["people"].query(where=where, count=True) == len(expected)


async def test_like_escapes_and_glob_characters(catalog_db: Database) -> None:
    await people(
        catalog_db, [{"v": "100%"}, {"v": "100x"}, {"v": "a*b"}, {"v": "a_b"}, {"v": "[x]"}]
    )
    async with catalog_db.session() as s:
        t = s["people"]

        async def match(pattern: str) -> list[str]:
            return [r["v"] for r in await t.query(where={"v": Like(pattern)})]

        assert await match("100\\%") == ["100%"]
        assert await match("100%") == ["100%", "100x"]
        assert await match("a*b") == ["a*b"]
        assert await match("a\\_b") == ["a_b"]
        assert await match("a_b") == ["a*b", "a_b"]
        assert await match("[x]") == ["[x]"]
        with pytest.raises(ValueError):
            Like("ends with escape\\")


async def test_order_offset_limit_count(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session() as s:
        t = s["people"]

        async def names(**kw: Any) -> list[str]:
            return [r["name"] for r in await t.query(**kw)]

        # code-point order: upper case before lower case, é after z; rows without the
        # field first (last when reversed); ties by id
        assert await names(order_by="name") == ["Dan", "ada", "bob", "cy", "éva"]
        assert await names(order_by=Reversed("name")) == ["éva", "cy", "bob", "ada", "Dan"]
        assert await names(order_by="city") == ["cy", "Dan", "ada", "bob", "éva"]
        assert await names(order_by=Reversed("city")) == ["bob", "éva", "ada", "Dan", "cy"]
        assert await names(order_by=["role", Reversed("name")]) == [
            "ada",
            "Dan",
            "éva",
            "cy",
            "bob",
        ]
        assert await names(order_by=Reversed("id")) == ["éva", "Dan", "cy", "bob", "ada"]
        assert await names(order_by="name", offset=1, limit=2) == ["ada", "bob"]
        assert await names(order_by="name", offset=3) == ["cy", "éva"]
        assert await names(limit=0) == []
        assert await t.query(count=True) == 5
        assert await t.query(offset=3, count=True) == 2
        assert await t.query(offset=1, limit=2, count=True) == 2
        assert await t.query(where={"role": "user"}, offset=2, limit=5, count=True) == 1
        assert await t.count(role="user") == 3
        for bad in (-1, 1.5, "1", True):
            with pytest.raises(ValueError):
                await t.query(limit=bad)
            with pytest.raises(ValueError):
                await t.query(offset=bad)


async def test_indexes_serve_queries_and_unique_index_rejects_duplicates(
    catalog_db: Database,
) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session() as s:
        t = s["people"]
        await t.create_index("name")
        await t.create_index("name")  # idempotent
        await t.create_index("name", unique=True)
        await s.commit()
        assert [r["name"] for r in await t.query(where={"name": "bob"})] == ["bob"]
        plan_sql = (
            "EXPLAIN QUERY PLAN SELECT id FROM people WHERE json_extract(data, '$.name') = $1"
            if catalog_db.dialect == "sqlite"
            else "EXPLAIN SELECT id FROM people WHERE (data->>'name') COLLATE \"C\" = $1"
        )
        if catalog_db.dialect == "postgresql":
            await s.execute("SET LOCAL enable_seqscan = off")
        plan = " ".join(str(v) for r in await s.fetch(plan_sql, "bob") for v in r.values())
        assert "people__" in plan, plan  # the expression index is used
        with pytest.raises(IntegrityError):
            await t.new(name="bob")


async def test_bad_names_and_values_are_rejected_with_clear_errors(catalog_db: Database) -> None:
    await people(catalog_db)
    async with catalog_db.session() as s:
        t = s["people"]
        for bad_table in (
            "People",
            "a b",
            "x;drop",
            "1abc",
            "a__b",
            "tsconnector_files",
            "",
            "x" * 49,
        ):
            with pytest.raises(ValueError, match="invalid table name"):
                s[bad_table]
        with pytest.raises(TypeError):
            s[3]  # type: ignore[index]
        with pytest.raises(ValueError, match="'a-b'"):
            await t.new(**{"a-b": "x"})
        with pytest.raises(ValueError, match="reserved"):
            await t.new(id="1")
        with pytest.raises(TypeError, match="'age'"):
            await t.new(name="a", age=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="NUL"):
            await t.new(name="a\x00b")
        with pytest.raises(ValueError, match="surrogate"):
            await t.new(name="\ud800")
        row = await t.new(name="ok")
        row["n"] = 5  # type: ignore[assignment]
        with pytest.raises(TypeError, match="'n'"):
            await row.save()
        with pytest.raises(ValueError, match="invalid field name"):
            await t.query(where={"bad name": "x"})
        with pytest.raises(ValueError, match="invalid field name"):
            await t.query(order_by="x'y")
        with pytest.raises(TypeError):
            await t.query(where={"name": 5})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            await t.get("1")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            In("abc")
        with pytest.raises(ValueError):
            Re("(a)\\1")
        await s.commit()  # nothing above reached the database, the transaction is fine
        assert await t.count() == 1


async def test_missing_table(catalog_db: Database) -> None:
    async with catalog_db.session() as s:
        with pytest.raises(MissingTable):
            await s["ghost"].get(1)
    async with catalog_db.session() as s:
        with pytest.raises(MissingTable):
            await s["ghost"].drop_table()
    async with catalog_db.session() as s:
        await s["ghost"].create_table()
        await s["ghost"].create_table()  # idempotent
        await s["ghost"].drop_table()
        await s.commit()


async def test_unicode_and_awkward_values_round_trip(catalog_db: Database) -> None:
    values = [
        "",
        " ",
        "'",
        '"',
        "\\",
        "$1",
        "%",
        "_",
        "{field}",
        "日本語",
        "emoji 🎉",
        "a\nb\tc",
        "\u2028",
        "x" * 5000,
    ]
    await people(catalog_db)
    async with catalog_db.session() as s:
        t = s["people"]
        ids = [(await t.new(v=v)).id for v in values]
        await s.commit()
        for row_id, value in zip(ids, values):
            assert (await t.get(row_id))["v"] == value
            found = await t.query(where={"v": value})
            assert [r.id for r in found] == [row_id]
            assert [r.id for r in await t.query(where={"v": In([value])})] == [row_id]


# ---------------------------------------------------------------------------- CAS


async def test_save_if_compare_and_swap(catalog_db: Database) -> None:
    await people(catalog_db, [{"n": "0"}])
    async with catalog_db.session() as s:
        row = await s["people"].find_single()
        stale = await s["people"].get(row.id)  # type: ignore[arg-type]
        row["n"] = "1"
        await s["people"].save_if(row)
        assert row.version == 2
        stale["n"] = "lost"
        with pytest.raises(ConflictError) as info:
            await stale.save_if()
        assert (info.value.expected, info.value.actual) == (1, 2)
        assert stale.version == 1  # unchanged: re-read and retry
        await s["people"].save_if(stale, expected=2)
        assert stale.version == 3
        assert (await s["people"].get(row.id))["n"] == "lost"  # type: ignore[arg-type]
        await stale.delete()
        with pytest.raises(RowNotFound):
            await s["people"].save_if(stale)
        with pytest.raises(ValueError):
            await s["people"].save_if(Row({"n": "x"}))


# ---------------------------------------------------------------------------- SQL API


async def test_low_level_sql_api(catalog_db: Database) -> None:
    async with catalog_db.session() as s:
        assert s.dialect == catalog_db.dialect
        kind = "BIGINT" if s.dialect == "postgresql" else "INTEGER"
        table = s.quote_ident("my table")
        assert table == quote_ident("my table") == '"my table"'
        await s.execute(f"CREATE TABLE {table} (pos {kind} PRIMARY KEY, name TEXT UNIQUE)")
        assert await s.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "a") == 1
        await s.executemany(
            f"INSERT INTO {table} VALUES ($1, $2)", [(i, f"n{i}") for i in range(2, 1002)]
        )
        assert (
            await s.execute(f"UPDATE {table} SET name = name || $1 WHERE pos > $2", "!", 990) == 11
        )
        assert await s.fetch(f"SELECT pos, name FROM {table} WHERE pos <= $1 ORDER BY pos", 2) == [
            {"pos": 1, "name": "a"},
            {"pos": 2, "name": "n2"},
        ]
        assert await s.fetchrow(f"SELECT name FROM {table} WHERE pos = $1", 1001) == {
            "name": "n1001!"
        }
        assert await s.fetchrow(f"SELECT name FROM {table} WHERE pos = $1", -1) is None
        assert await s.fetchval(f"SELECT count(*) FROM {table} WHERE name LIKE $1", "n1%") == 112
        assert await s.fetchval(f"SELECT name FROM {table} WHERE pos = $1", -1) is None
        # the same parameter twice, and '$1' inside a literal is not a parameter
        assert await s.fetchval("SELECT $1 || '$1' || $1", "x") == "x$1x"
        seen = [
            r["pos"] async for r in s.iterate(f"SELECT pos FROM {table} ORDER BY pos", prefetch=7)
        ]
        assert seen == list(range(1, 1002))
        with pytest.raises(IntegrityError):
            await s.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "dup")
        await s.rollback()
        with pytest.raises(MissingTable):
            await s.fetch(f"SELECT * FROM {table}")


async def test_iterate_stops_early_and_session_continues(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session() as s:
        async for row in s["people"].find():
            assert row["name"] == "ada"
            break
        assert await s["people"].count() == 5


# ---------------------------------------------------------------------------- migrations


async def test_migrations_apply_once_and_forward(catalog_db: Database) -> None:
    v1 = Migration(1, sql="CREATE TABLE tsconnector_demo (k TEXT PRIMARY KEY, v TEXT)")
    v2 = Migration(
        2,
        sqlite="ALTER TABLE tsconnector_demo ADD COLUMN n INTEGER; "
        "INSERT INTO tsconnector_demo (k, v, n) VALUES ('a', 'b', 1);",
        postgresql="ALTER TABLE tsconnector_demo ADD COLUMN n BIGINT; "
        "INSERT INTO tsconnector_demo (k, v, n) VALUES ('a', 'b', 1);",
    )
    ran: list[int] = []

    async def data_step(s: Any) -> None:
        ran.append(1)
        await s.execute("INSERT INTO tsconnector_demo (k, v, n) VALUES ($1, $2, $3)", "c", "d", 2)

    v3 = Migration(3, run=data_step, description="data")
    assert await catalog_db.schema_version("demo") == 0
    assert await catalog_db.migrate("demo", [v1]) == 1
    assert await catalog_db.migrate("demo", [v1]) == 1  # no-op (CREATE would fail twice)
    assert await catalog_db.migrate("demo", [v1, v2, v3]) == 3
    assert await catalog_db.migrate("demo", [v1, v2, v3]) == 3
    assert ran == [1]
    assert await catalog_db.schema_version("demo") == 3
    assert await catalog_db.schema_version("catalog") >= 1
    async with catalog_db.session() as s:
        rows = await s.fetch("SELECT k, n FROM tsconnector_demo ORDER BY k")
        assert rows == [{"k": "a", "n": 1}, {"k": "c", "n": 2}]
        recorded = await s.fetch(
            "SELECT version, description FROM tsconnector_schema WHERE component = $1 "
            "ORDER BY version",
            "demo",
        )
        assert recorded == [
            {"version": 1, "description": ""},
            {"version": 2, "description": ""},
            {"version": 3, "description": "data"},
        ]


async def test_failed_migration_rolls_back_entirely(catalog_db: Database) -> None:
    good = Migration(1, sql="CREATE TABLE tsconnector_half (k TEXT)")
    bad = Migration(
        2, sql="CREATE TABLE tsconnector_half2 (k TEXT); INSERT INTO nowhere VALUES (1);"
    )
    with pytest.raises(CatalogError):
        await catalog_db.migrate("half", [good, bad])
    assert await catalog_db.schema_version("half") == 0
    async with catalog_db.session() as s:
        with pytest.raises(MissingTable):
            await s.fetch("SELECT * FROM tsconnector_half")
    assert await catalog_db.migrate("half", [good]) == 1


def test_migration_steps_are_validated() -> None:
    from tsconnector.catalog.migrations import check_steps, split_sqlite_script

    with pytest.raises(ValueError):
        check_steps([Migration(2, sql="x"), Migration(1, sql="y")], "sqlite")
    with pytest.raises(ValueError):
        check_steps([Migration(0, sql="x")], "sqlite")
    with pytest.raises(ValueError):
        check_steps([Migration(1, postgresql="x")], "sqlite")
    assert split_sqlite_script("CREATE TABLE a (x TEXT DEFAULT ';'); -- c;\n SELECT 1;  ") == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "-- c;\n SELECT 1;",
    ]


# ---------------------------------------------------------------------------- blobs


async def test_blob_sources_chunking_and_size(catalog_db: Database) -> None:
    payload = bytes(range(256)) * 1000  # 256,000 bytes

    async def agen() -> Any:
        for i in range(0, len(payload), 999):
            yield payload[i : i + 999]

    sources: list[Any] = [
        payload,
        bytearray(payload),
        memoryview(payload),
        io.BytesIO(payload),
        [payload[:10], b"", payload[10:]],
        agen(),
    ]
    async with catalog_db.session() as s:
        for source in sources:
            f = await s.get_db_file()
            assert await f.save_from(source, chunk_size=10_000) == len(payload)
            assert await f.size() == len(payload)
            pieces = [p async for p in f.iter_data(chunk_size=65_536)]
            assert [len(p) for p in pieces] == [65_536, 65_536, 65_536, 59_392]
            assert b"".join(pieces) == payload
        stored = await s.fetchval(
            "SELECT count(*) FROM tsconnector_file_chunks WHERE file_id = $1", f.id
        )
        assert stored == 26  # chunks of 10,000 bytes
        await f.save_from(b"short")  # replaces the content
        assert await f.read() == b"short"
        empty = await s.get_db_file()
        assert await empty.save_from(b"") == 0
        assert await empty.read() == b""
        with pytest.raises(TypeError):
            await empty.save_from("text")
        with pytest.raises(TypeError):
            await empty.save_from([b"ok", "text"])


async def test_blob_from_real_file(catalog_db: Database, tmp_path: Any) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789" * 50_000)
    async with catalog_db.session() as s:
        f = await s.get_db_file()
        with path.open("rb") as fh:
            assert await f.save_from(fh) == 500_000
        assert await f.read() == path.read_bytes()


async def test_blobs_are_transactional_and_deletable(catalog_db: Database) -> None:
    async with catalog_db.session() as s:
        kept = await s.get_db_file()
        await kept.save_from(b"kept")
        await s.commit()
        lost = await s.get_db_file()
        await lost.save_from(b"lost")
        await kept.save_from(b"changed")
        await s.rollback()
        assert await (await s.get_db_file(kept.id)).read() == b"kept"
        with pytest.raises(RowNotFound):
            await s.get_db_file(lost.id)
        await s.del_db_file(kept.id)
        with pytest.raises(RowNotFound):
            await s.del_db_file(kept.id)
        with pytest.raises(RowNotFound):
            await kept.size()
        assert await s.fetchval("SELECT count(*) FROM tsconnector_file_chunks") == 0


async def test_blobs_die_with_their_owner(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE)
    async with catalog_db.session() as s:
        t = s["people"]
        ada = await t.find_single(name="ada")
        by_row = await s.get_db_file(owner=ada)
        by_table = await s.get_db_file(owner=t)
        free = await s.get_db_file()
        for f in (by_row, by_table, free):
            await f.save_from(b"x" * 100)
        await ada.delete()
        with pytest.raises(RowNotFound):
            await s.get_db_file(by_row.id)
        assert await (await s.get_db_file(by_table.id)).size() == 100
        await t.drop_table()
        with pytest.raises(RowNotFound):
            await s.get_db_file(by_table.id)
        assert await free.read() == b"x" * 100
        assert await s.fetchval("SELECT count(*) FROM tsconnector_file_chunks") == 1
        with pytest.raises(ValueError):
            await s.get_db_file(owner=Row({"a": "b"}))


# ---------------------------------------------------------------------------- sharing


async def test_two_database_objects_share_one_store(catalog_backend: Backend) -> None:
    if not catalog_backend.shareable:
        pytest.skip("an in-memory SQLite database lives in one object")
    first = await catalog_backend.new_db().open()
    second = await catalog_backend.new_db().open()
    await people(first, SAMPLE[:2])
    async with second.session() as s:
        assert await s["people"].count() == 2
        await s["people"].new(name="from second")
        await s.commit()
    async with first.session(readonly=True) as s:
        assert await s["people"].count() == 3


async def test_concurrent_sessions_in_one_process(catalog_db: Database) -> None:
    await people(catalog_db)

    async def writer(i: int) -> None:
        async with catalog_db.session() as s:
            for j in range(5):
                await s["people"].new(name=f"{i}-{j}")
            await s.commit()

    await asyncio.gather(*(writer(i) for i in range(6)))
    async with catalog_db.session() as s:
        assert await s["people"].count() == 30


# ---------------------------------------------------------------------------- notify


async def test_listen_notify(catalog_db: Database) -> None:
    if not catalog_db.supports_notify:
        with pytest.raises(NotSupportedError):
            await catalog_db.listen("events", lambda channel, payload: None)
        async with catalog_db.session() as s:
            await s.notify("events", "ignored")  # a no-op, so writers need no branch
            await s.commit()
        return
    got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    listener = await catalog_db.listen("events", lambda c, p: got.put_nowait((c, p)))
    async with catalog_db.session() as s:
        await s.notify("events", "rolled back")
        await s.rollback()
        await s.notify("events", "first")
        await s.notify("events", "second")
        assert got.empty()  # delivered on commit only
        await s.commit()
    assert await asyncio.wait_for(got.get(), 10) == ("events", "first")
    assert await asyncio.wait_for(got.get(), 10) == ("events", "second")
    assert got.empty()
    await listener.close()
    assert listener.closed


async def test_async_listener_callback_and_schema_scoped_channel(pg_backend: Backend) -> None:
    db = await pg_backend.new_db().open()
    assert db.channel_name("jobs") == f"{pg_backend.schema}__jobs"
    done = asyncio.Event()

    async def on_job(channel: str, payload: str) -> None:
        assert (channel, payload) == ("jobs", "42")
        done.set()

    listener = await db.listen("jobs", on_job)
    async with db.session() as s:
        await s.execute("SELECT pg_notify($1, $2)", db.channel_name("jobs"), "42")
        await s.commit()
    await asyncio.wait_for(done.wait(), 10)
    await listener.close()


# ---------------------------------------------------------------------------- opening


async def test_connect_urls(catalog_backend: Backend) -> None:
    db = connect(catalog_backend.url)
    catalog_backend.opened.append(db)
    assert db.dialect == catalog_backend.dialect
    assert await db is db
    async with db.session() as s:
        assert await s.fetchval("SELECT 1") == 1
    if catalog_backend.dialect == "postgresql":
        assert db.schema == catalog_backend.schema  # type: ignore[attr-defined]


def test_connect_url_parsing(tmp_path: Any) -> None:
    assert connect("sqlite://:memory:").memory  # type: ignore[attr-defined]
    assert connect("sqlite:///:memory:").memory  # type: ignore[attr-defined]
    rel = connect("sqlite:///data/x.db?busy_timeout=2.5")
    assert (rel.path, rel.busy_timeout) == ("data/x.db", 2.5)  # type: ignore[attr-defined]
    assert connect("sqlite:////abs/x.db").path == "/abs/x.db"  # type: ignore[attr-defined]
    pg = connect("postgresql://u:p@db.example:6543/name?schema=s1&max_size=3&sslmode=disable")
    assert pg.schema == "s1"  # type: ignore[attr-defined]
    assert pg.dsn == "postgresql://u:p@db.example:6543/name?sslmode=disable"  # type: ignore[attr-defined]
    assert pg._max_size == 3  # type: ignore[attr-defined]
    for bad in ("mysql://x", "sqlite://relative.db", "sqlite:///x.db?nope=1"):
        with pytest.raises(ValueError):
            connect(bad)
    with pytest.raises(ValueError):
        connect("postgresql://x/y?schema=bad-name")


async def test_open_close_and_context_manager(tmp_path: Any) -> None:
    async with SqliteDB(tmp_path / "a.db") as db:
        async with db.session() as s:
            await s["t"].create_table()
            await s.commit()
    assert db.closed
    with pytest.raises(SessionClosedError):
        await db.get_session()
    with pytest.raises(CatalogError):
        await SqliteDB(tmp_path / "no" / "such" / "dir.db").open()


async def test_memory_database_is_shared_by_its_sessions() -> None:
    async with SqliteDB(":memory:") as db:
        async with db.session() as s:
            await s["t"].create_table()
            await s["t"].new(a="1")
            await s.commit()
        async with db.session() as s:
            assert await s["t"].count() == 1


async def test_memory_database_waits_for_the_busy_session_then_times_out() -> None:
    from tsconnector.catalog import CatalogBusy

    async with SqliteDB(":memory:", busy_timeout=0.2) as db:
        holder = await db.get_session()
        await holder.fetchval("SELECT 1")
        with pytest.raises(CatalogBusy) as info:
            await db.get_session(lazy=False)
        assert isinstance(info.value, TimeoutError)
        await db.put_session(holder)
        again = await db.get_session(lazy=False)
        await db.put_session(again)


async def test_cancelled_sessions_leave_the_database_usable(catalog_db: Database) -> None:
    await people(catalog_db, SAMPLE)
    committed = 0

    async def work() -> None:
        nonlocal committed
        async with catalog_db.session() as s:
            await s["people"].new(name="w")
            await s["people"].count()
            await s.commit()
            committed += 1

    # Cancel at each scheduling point in turn: waiting for the lock, in BEGIN, in a
    # statement, in COMMIT, while putting the session back.
    for steps in range(12):
        task = asyncio.create_task(work())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    async with catalog_db.session() as s:
        await s["people"].new(name="after")
        await s.commit()
    async with catalog_db.session(readonly=True) as s:
        total = await s["people"].count()
    assert len(SAMPLE) + 1 <= total <= len(SAMPLE) + 1 + 12
    assert total >= len(SAMPLE) + 1 + committed
