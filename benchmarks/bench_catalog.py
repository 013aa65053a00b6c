"""Benchmark the catalog against raw driver statements doing the same work, both backends.

Cases, each on SQLite (a file, WAL) and PostgreSQL (127.0.0.1:5432, a throwaway schema):

- ``new`` single: one row per session (BEGIN, INSERT ... RETURNING id, COMMIT);
- ``new`` x N in one transaction;
- ``find`` by an indexed field over 100,000 rows (``find_first(k=...)``, random keys);
- blob write and read, MB/s (1 MiB chunks).

The reference runs the same SQL on the same table layout with aiosqlite / asyncpg
directly (no sessions, rows, validation or JSON handling by the catalog), so the ratio
is the catalog's own overhead. Medians of ``--runs`` interleaved runs.

Run: ``python benchmarks/bench_catalog.py [--runs 5] [--rows 100000] [--blob-mib 64]
[--pg postgresql://postgres@127.0.0.1:5432/test] [--skip-pg]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table  # noqa: E402
from tsconnector.catalog import Database, PostgresqlDB, SqliteDB  # noqa: E402

Case = Callable[[int], Awaitable[float]]


# ------------------------------------------------------------------------- raw drivers


class RawSqlite:
    """The reference: one aiosqlite connection with the catalog's pragmas."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: Any = None

    async def open(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "synchronous = FULL"):
            await self.conn.execute(f"PRAGMA {pragma}")

    async def close(self) -> None:
        await self.conn.close()

    async def one(self, table: str, data: str) -> None:
        await self.conn.execute_fetchall("BEGIN IMMEDIATE")
        await self.conn.execute_fetchall(
            f'INSERT INTO "{table}" (data) VALUES (?) RETURNING id', (data,)
        )
        await self.conn.execute_fetchall("COMMIT")

    async def many(self, table: str, datas: list[str]) -> None:
        await self.conn.execute_fetchall("BEGIN IMMEDIATE")
        for data in datas:
            await self.conn.execute_fetchall(
                f'INSERT INTO "{table}" (data) VALUES (?) RETURNING id', (data,)
            )
        await self.conn.execute_fetchall("COMMIT")

    async def bulk(self, table: str, datas: list[str]) -> None:
        await self.conn.execute_fetchall("BEGIN IMMEDIATE")
        await self.conn.executemany(
            f'INSERT INTO "{table}" (data) VALUES (?)', [(d,) for d in datas]
        )
        await self.conn.execute_fetchall("COMMIT")

    async def find(self, table: str, keys: list[str]) -> None:
        await self.conn.execute_fetchall("BEGIN IMMEDIATE")
        sql = (
            f'SELECT id, version, data FROM "{table}" '
            "WHERE json_extract(data, '$.k') = ? ORDER BY id LIMIT 1"
        )
        for key in keys:
            rows = await self.conn.execute_fetchall(sql, (key,))
            json.loads(rows[0][2])
        await self.conn.execute_fetchall("COMMIT")

    async def blob_write(self, chunks: list[bytes]) -> None:
        await self.conn.execute_fetchall("BEGIN IMMEDIATE")
        await self.conn.execute_fetchall("DELETE FROM raw_chunks")
        for seq, chunk in enumerate(chunks):
            await self.conn.execute_fetchall("INSERT INTO raw_chunks VALUES (1, ?, ?)", (seq, chunk))
        await self.conn.execute_fetchall("COMMIT")

    async def blob_read(self, count: int) -> int:
        await self.conn.execute_fetchall("BEGIN")
        total = 0
        for seq in range(count):
            rows = await self.conn.execute_fetchall(
                "SELECT data FROM raw_chunks WHERE file_id = 1 AND seq = ?", (seq,)
            )
            total += len(rows[0][0])
        await self.conn.execute_fetchall("COMMIT")
        return total

    async def blob_setup(self) -> None:
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_chunks (file_id INTEGER, seq INTEGER, data BLOB, "
            "PRIMARY KEY (file_id, seq))"
        )


class RawPostgres:
    """The reference: an asyncpg pool on the same schema."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=2, server_settings={"search_path": self.schema}
        )

    async def close(self) -> None:
        await self.pool.close()

    async def one(self, table: str, data: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.fetchval(
                f'INSERT INTO "{table}" (data) VALUES ($1::jsonb) RETURNING id', data
            )

    async def many(self, table: str, datas: list[str]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for data in datas:
                await conn.fetchval(
                    f'INSERT INTO "{table}" (data) VALUES ($1::jsonb) RETURNING id', data
                )

    async def bulk(self, table: str, datas: list[str]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                f'INSERT INTO "{table}" (data) VALUES ($1::jsonb)', [(d,) for d in datas]
            )

    async def find(self, table: str, keys: list[str]) -> None:
        # The catalog's SQL. With "data @> $1" alone the planner walks the primary key
        # for ORDER BY id LIMIT 1 and filters (about 100 finds/s on 100,000 rows).
        sql = (
            f'SELECT id, version, data FROM "{table}" WHERE data @> $1::jsonb '
            "AND (data->>'k') COLLATE \"C\" = $2 ORDER BY id LIMIT 1"
        )
        async with self.pool.acquire() as conn, conn.transaction():
            for key in keys:
                rows = await conn.fetch(sql, json.dumps({"k": key}), key)
                json.loads(rows[0][2])

    async def blob_setup(self) -> None:
        await self.pool.execute(
            "CREATE TABLE IF NOT EXISTS raw_chunks (file_id BIGINT, seq INTEGER, data BYTEA, "
            "PRIMARY KEY (file_id, seq)); "
            "ALTER TABLE raw_chunks ALTER COLUMN data SET STORAGE EXTERNAL"
        )

    async def blob_write(self, chunks: list[bytes]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM raw_chunks")
            for seq, chunk in enumerate(chunks):
                await conn.execute("INSERT INTO raw_chunks VALUES (1, $1, $2)", seq, chunk)

    async def blob_read(self, count: int) -> int:
        total = 0
        async with self.pool.acquire() as conn, conn.transaction():
            for seq in range(count):
                data = await conn.fetchval(
                    "SELECT data FROM raw_chunks WHERE file_id = 1 AND seq = $1", seq
                )
                total += len(data)
        return total


# ------------------------------------------------------------------------------ cases


def row_data(i: int) -> dict[str, str]:
    return {"k": f"key{i:08d}", "group": f"g{i % 100}", "payload": "x" * 40}


async def populate(db: Database, table: str, rows: int) -> None:
    """``rows`` rows in ``table`` with an index on ``k`` (bulk, through executemany)."""
    async with db.session() as s:
        t = s[table]
        await t.create_table()
        insert = db.sql.insert(table)
        batch = 10_000
        for start in range(0, rows, batch):
            await s.executemany(
                insert,
                [(json.dumps(row_data(i)),) for i in range(start, min(rows, start + batch))],
            )
        await t.create_index("k")
        await s.commit()
    if db.dialect == "postgresql":
        async with db.session() as s:
            await s.execute(f'ANALYZE "{table}"')
            await s.commit()


async def run_backend(
    name: str, db: Database, raw: Any, args: argparse.Namespace
) -> list[list[Any]]:
    await db.open()
    await raw.open()
    single_n, tx_n, finds = args.single, args.tx, args.finds
    chunk = os.urandom(1 << 20)
    chunks = [bytes([i % 256]) + chunk[1:] for i in range(args.blob_mib)]
    blob_bytes = args.blob_mib << 20
    async with db.session() as s:
        for table in (
            "bench_single",
            "bench_tx",
            "bench_bulk",
            "bench_raw_single",
            "bench_raw_tx",
            "bench_raw_bulk",
        ):
            await s[table].create_table()
        await s.commit()
    await raw.blob_setup()
    print(f"{name}: populating {args.rows:,} rows ...", flush=True)
    await populate(db, "bench_find", args.rows)
    keys = [f"key{random.randrange(args.rows):08d}" for _ in range(finds)]
    file_id = 0

    async def ours_single(_: int) -> float:
        start = time.perf_counter()
        for i in range(single_n):
            async with db.session() as s:
                await s["bench_single"].new(row_data(i))
                await s.commit()
        return time.perf_counter() - start

    async def raw_single(_: int) -> float:
        start = time.perf_counter()
        for i in range(single_n):
            await raw.one("bench_raw_single", json.dumps(row_data(i)))
        return time.perf_counter() - start

    async def ours_tx(_: int) -> float:
        start = time.perf_counter()
        async with db.session() as s:
            t = s["bench_tx"]
            for i in range(tx_n):
                await t.new(row_data(i))
            await s.commit()
        return time.perf_counter() - start

    async def raw_tx(_: int) -> float:
        start = time.perf_counter()
        await raw.many("bench_raw_tx", [json.dumps(row_data(i)) for i in range(tx_n)])
        return time.perf_counter() - start

    async def ours_bulk(_: int) -> float:
        start = time.perf_counter()
        async with db.session() as s:
            await s["bench_bulk"].new_many([row_data(i) for i in range(tx_n)])
            await s.commit()
        return time.perf_counter() - start

    async def raw_bulk(_: int) -> float:
        start = time.perf_counter()
        await raw.bulk("bench_raw_bulk", [json.dumps(row_data(i)) for i in range(tx_n)])
        return time.perf_counter() - start

    async def ours_find(_: int) -> float:
        start = time.perf_counter()
        async with db.session(readonly=True) as s:
            t = s["bench_find"]
            for key in keys:
                row = await t.find_first(k=key)
                assert row is not None
        return time.perf_counter() - start

    async def raw_find(_: int) -> float:
        start = time.perf_counter()
        await raw.find("bench_find", keys)
        return time.perf_counter() - start

    async def ours_blob_write(_: int) -> float:
        nonlocal file_id
        start = time.perf_counter()
        async with db.session() as s:
            if file_id:
                await s.del_db_file(file_id)
            f = await s.get_db_file()
            await f.save_from(chunks)
            await s.commit()
        file_id = f.id
        return time.perf_counter() - start

    async def raw_blob_write(_: int) -> float:
        start = time.perf_counter()
        await raw.blob_write(chunks)
        return time.perf_counter() - start

    async def ours_blob_read(_: int) -> float:
        start = time.perf_counter()
        total = 0
        async with db.session(readonly=True) as s:
            async for piece in (await s.get_db_file(file_id)).iter_data(1 << 20):
                total += len(piece)
        assert total == blob_bytes
        return time.perf_counter() - start

    async def raw_blob_read(_: int) -> float:
        start = time.perf_counter()
        assert await raw.blob_read(len(chunks)) == blob_bytes
        return time.perf_counter() - start

    cases: list[tuple[str, int, Case, Case, str]] = [
        (
            f"new, one row per transaction (x{single_n})",
            single_n,
            ours_single,
            raw_single,
            "rows/s",
        ),
        (f"new, {tx_n:,} rows in one transaction", tx_n, ours_tx, raw_tx, "rows/s"),
        (f"new_many, {tx_n:,} rows (raw: executemany)", tx_n, ours_bulk, raw_bulk, "rows/s"),
        (
            f"find_first by indexed field, {args.rows:,} rows (x{finds})",
            finds,
            ours_find,
            raw_find,
            "finds/s",
        ),
        (f"blob write {args.blob_mib} MiB", blob_bytes, ours_blob_write, raw_blob_write, "MB/s"),
        (f"blob read {args.blob_mib} MiB", blob_bytes, ours_blob_read, raw_blob_read, "MB/s"),
    ]
    table: list[list[Any]] = []
    for label, amount, ours, ref, unit in cases:
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        await ours(-1)  # warm up both (caches, prepared statements)
        await ref(-1)
        # Short fsync-bound cases are noisy on a shared disk: more, smaller runs.
        runs = args.runs * 3 if ours is ours_single else args.runs
        for run in range(runs):
            order = [("ours", ours), ("ref", ref)]
            if run % 2:
                order.reverse()
            for key, fn in order:
                times[key].append(await fn(run))
        scale = 1e6 if unit == "MB/s" else 1.0
        ours_rate = amount / statistics.median(times["ours"]) / scale
        ref_rate = amount / statistics.median(times["ref"]) / scale
        table.append([f"{name}: {label}", unit, ours_rate, ref_rate, f"{ours_rate / ref_rate:.2f}"])
        print(f"  {label}: {ours_rate:,.0f} vs {ref_rate:,.0f} {unit}", flush=True)
    await raw.close()
    await db.close()
    return table


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=100, help="rows per run of 'new single'")
    parser.add_argument("--tx", type=int, default=5_000, help="rows for 'new in one transaction'")
    parser.add_argument("--finds", type=int, default=2_000)
    parser.add_argument("--blob-mib", type=int, default=64)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    args.runs = max(5, args.runs)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        rows += await run_backend("sqlite", SqliteDB(path), RawSqlite(path), args)
    if not args.skip_pg:
        schema = f"tsc_bench_{secrets.token_hex(3)}"
        db = PostgresqlDB(args.pg, schema=schema, max_size=2)
        try:
            rows += await run_backend("postgresql", db, RawPostgres(args.pg, schema), args)
        except OSError as exc:
            print(f"postgresql: skipped ({exc})")
        finally:
            await drop_schema(args.pg, schema)
    print_table(
        f"Catalog vs raw driver statements (median of {args.runs} runs; ratio > 1: catalog faster)",
        ["case", "unit", "tsconnector", "raw driver", "ratio"],
        rows,
    )


async def drop_schema(dsn: str, schema: str) -> None:
    try:
        import asyncpg

        conn = await asyncpg.connect(dsn)
    except Exception:
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
