"""Concurrency: compare-and-swap from tasks and OS processes, and racing migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from catalog_backends import Backend
from catalog_worker import RACE_STEPS, cas_increments
from shared_helpers import WorkerProcs

from tsconnector.catalog import Database

WORKER = str(Path(__file__).with_name("catalog_worker.py"))
TASKS, PROCESSES, INCREMENTS = 8, 4, 10


class Workers(WorkerProcs):
    """Catalog worker processes started together: each prints ``ready``, then waits for
    ``go``."""

    def __init__(self) -> None:
        super().__init__(WORKER)

    def go(self) -> None:
        """Let every worker start its work."""
        self.send(b"go\n")


async def test_compare_and_swap_from_tasks_and_processes(catalog_backend: Backend) -> None:
    db = await catalog_backend.new_db().open()
    async with db.session() as s:
        await s["counter"].create_table()
        row = await s["counter"].new(n="0")
        await s.commit()
    assert row.id is not None
    workers = Workers()
    processes = PROCESSES if catalog_backend.shareable else 0
    try:
        for _ in range(processes):
            await workers.start(
                ["cas", catalog_backend.url, "counter", str(row.id), str(INCREMENTS)]
            )
        workers.go()
        local = await asyncio.gather(
            *(cas_increments(db, "counter", row.id, INCREMENTS) for _ in range(TASKS))
        )
        remote = await workers.results()
    finally:
        workers.kill()
    results = [*local, *remote]
    total = (TASKS + processes) * INCREMENTS
    async with db.session() as s:
        final = await s["counter"].get(row.id)
    assert int(final["n"]) == total
    assert final.version == total + 1
    # Every version was replaced by exactly one winner: each lost race raised ConflictError.
    won = sorted(v for r in results for v in r["won"])
    assert won == list(range(1, total + 1))
    assert sum(r["conflicts"] for r in results) > 0


async def test_racing_migrations_apply_each_step_once(catalog_backend: Backend) -> None:
    """Processes and tasks migrate a brand-new store at once (the catalog's own schema too)."""
    workers = Workers()
    processes = 2 if catalog_backend.shareable else 0
    dbs: list[Database] = [catalog_backend.new_db() for _ in range(3)]
    if not catalog_backend.shareable:
        dbs = dbs[:1]

    async def migrate(db: Database) -> int:
        return await db.migrate("race", RACE_STEPS)

    try:
        for _ in range(processes):
            await workers.start(["migrate", catalog_backend.url])
        workers.go()
        versions = await asyncio.gather(*(migrate(db) for db in dbs for _ in range(2)))
        remote = await workers.results()
    finally:
        workers.kill()
    assert versions == [2] * len(versions)
    assert [r["version"] for r in remote] == [2] * processes
    async with dbs[0].session() as s:
        assert await s.fetchval("SELECT count(*) FROM tsconnector_race") == 1
        recorded = await s.fetch(
            "SELECT component, version FROM tsconnector_schema ORDER BY component, version"
        )
    assert [tuple(r.values()) for r in recorded] == [("catalog", 1), ("race", 1), ("race", 2)]


@pytest.mark.parametrize("readers", [3])
async def test_readers_see_committed_snapshots_while_a_writer_works(
    catalog_backend: Backend, readers: int
) -> None:
    db = await catalog_backend.new_db().open()
    async with db.session() as s:
        await s["pairs"].create_table()
        await s.commit()

    async def writer() -> None:
        for i in range(20):
            async with db.session() as s:  # two rows per transaction, never one alone
                await s["pairs"].new(k=str(i), side="a")
                await s["pairs"].new(k=str(i), side="b")
                await s.commit()

    async def reader() -> None:
        for _ in range(20):
            async with db.session(readonly=True) as s:
                total = await s["pairs"].count()
                assert total % 2 == 0
                assert await s["pairs"].count(side="a") == total // 2

    await asyncio.gather(writer(), *(reader() for _ in range(readers)))
