"""A separate OS process working on a catalog, started by the catalog tests.

``python tests/catalog_worker.py MODE URL [ARGS...]`` prints ``ready`` once it has
opened the database (``migrate``: before opening, so that opening races too), waits for
a line on stdin (so all workers start together, without sleeps), works, and prints one
JSON line with its result. Modes:

- ``cas URL TABLE ROW_ID N``: N compare-and-swap increments of field ``n``;
- ``migrate URL``: migrate component ``race`` (steps that fail if applied twice);
- ``blob URL MIB``: write and read back a MIB-mebibyte blob, reporting checksums and
  the peak RSS growth over the baseline (Linux ``VmHWM``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tsconnector.catalog import ConflictError, Database, Migration, connect

RACE_STEPS = [
    Migration(1, sql="CREATE TABLE tsconnector_race (k INTEGER NOT NULL)"),
    Migration(2, sql="INSERT INTO tsconnector_race (k) VALUES (1)"),
]


async def cas_increments(db: Database, table: str, row_id: int, n: int) -> dict[str, Any]:
    """``n`` increments, each read in one session and saved with ``save_if`` in another."""
    won: list[int] = []  # the version each successful save replaced
    conflicts = 0
    while len(won) < n:
        async with db.session(readonly=True) as s:
            row = await s[table].get(row_id)
        expected = row.version
        row["n"] = str(int(row["n"]) + 1)
        async with db.session() as s:
            try:
                await s[table].save_if(row)
            except ConflictError:
                conflicts += 1
                continue
            await s.commit()
        won.append(expected)
    return {"won": won, "conflicts": conflicts}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Make the peak RSS the current RSS (Linux >= 4.0); the baseline in KiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS")
    except OSError:
        return _status_kib("VmHWM")


async def blob_round_trip(db: Database, mib: int) -> dict[str, Any]:
    block = os.urandom(1 << 20)
    crc_in = 0

    async def content() -> AsyncIterator[bytes]:
        nonlocal crc_in
        for i in range(mib):
            chunk = i.to_bytes(8, "big") + block[8:]
            crc_in = zlib.crc32(chunk, crc_in)
            yield chunk

    async with db.session() as s:  # warm up every code path first
        f = await s.get_db_file()
        await f.save_from(block * 2)
        assert await f.read() == block * 2
        await s.rollback()
    baseline = _reset_peak_rss()
    async with db.session() as s:
        f = await s.get_db_file()
        written = await f.save_from(content())
        await s.commit()
    crc_out = size = 0
    async with db.session(readonly=True) as s:
        async for piece in (await s.get_db_file(f.id)).iter_data():
            crc_out = zlib.crc32(piece, crc_out)
            size += len(piece)
    growth_kib = _status_kib("VmHWM") - baseline
    async with db.session() as s:
        await s.del_db_file(f.id)
        await s.commit()
    return {
        "written": written,
        "read": size,
        "crc_in": crc_in,
        "crc_out": crc_out,
        "growth_mib": growth_kib / 1024,
    }


async def main(argv: list[str]) -> dict[str, Any]:
    mode, url, *args = argv
    db = connect(url)
    if mode != "migrate":  # open first, so the work itself starts together
        await db.open()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    async with db:
        if mode == "cas":
            return await cas_increments(db, args[0], int(args[1]), int(args[2]))
        if mode == "migrate":
            return {"version": await db.migrate("race", RACE_STEPS)}
        if mode == "blob":
            return await blob_round_trip(db, int(args[0]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
