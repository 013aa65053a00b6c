"""Damaged durable state is never dropped silently (issue 11, items 5 and 6), snapshots
are verified before anything they cover is removed, and a failed journal write means
"not applied" (item 7, in process: faults injected at the fsync call).

A damaged snapshot or log stops the start with one message naming the file and the
byte offset, changing nothing; ``repair=True`` keeps every intact record (also those
after the damage), moves the damaged file aside and reports what was lost.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from server_wire import RawClient

from tsconnector.durable import Damage, frame_body, scan_records, unpack_record
from tsconnector.protocol import AnswerType
from tsconnector.server import EmbeddedServer
from tsconnector.server import snapshot as snapshot_mod
from tsconnector.server import storage as storage_mod
from tsconnector.server.errors import DamagedDataError
from tsconnector.server.model import Database

ROOT = Path(__file__).resolve().parent.parent
TS = 1699920000


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


async def insert_all(port: int, batches: list[dict[str, Any]]) -> None:
    c = await RawClient.connect(port)
    assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
    for batch in batches:
        tp, data = await c.insert(batch)
        assert tp == AnswerType.RES_INSERT, data
    await c.close()


async def query(port: int, q: str) -> tuple[int, Any]:
    c = await RawClient.connect(port)
    assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
    try:
        return await c.query(q)
    finally:
        await c.close()


def records_of(path: Path) -> list[tuple[int, int, Any]]:
    """``(offset, size, record)`` of every record of a log or snapshot file."""
    out = []
    for item in scan_records(path.read_bytes()):
        assert not isinstance(item, Damage)
        out.append((item[0], item[1], unpack_record(item[2])))
    return out


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


async def refused(data_dir: Path) -> DamagedDataError:
    before = files_of(data_dir)
    server = EmbeddedServer(data_dir=data_dir)
    with pytest.raises(DamagedDataError) as info:
        await server.start()
    assert files_of(data_dir) == before  # refusing changed nothing
    return info.value


# -- item 5: the snapshot ----------------------------------------------------------------
async def make_snapshot(data_dir: Path) -> Path:
    """11 series of 1,000 points and a user, closed cleanly: all in one snapshot."""
    async with EmbeddedServer(data_dir=data_dir) as srv:
        await insert_all(srv.port, [{f"s{i:02d}": [[TS + j, j] for j in range(1000)]}
                                    for i in range(11)])
        tp, _ = await query(srv.port, "create user \"bob\" set password 'secret1'")
        assert tp == AnswerType.RES_QUERY
    (snap,) = (data_dir / "dbtest").glob("snapshot-*.msgpack")
    assert not [p for p in (data_dir / "dbtest").glob("wal-*.log") if p.stat().st_size]
    return snap


async def test_flipped_bit_in_snapshot_refuses_start_and_repair_keeps_the_rest(
    tmp_path: Path,
) -> None:
    snap = await make_snapshot(tmp_path)
    victim = next(off for off, _, rec in records_of(snap)
                  if isinstance(rec, list) and rec[:2] == ["series", "s05"])
    flip(snap, victim + 40)
    error = await refused(tmp_path)
    assert f"{snap} at byte {victim}" in str(error)
    assert "--repair" in str(error)
    assert error.damage[0]["file"] == str(snap)

    async with EmbeddedServer(data_dir=tmp_path, repair=True) as srv:
        db = srv.database("dbtest")
        assert sorted(db.series) == [f"s{i:02d}" for i in range(11) if i != 5]
        assert all(s.length == 1000 for s in db.series.values())
        assert "bob" in db.users
        (entry,) = srv.repair_report
        assert (entry["file"], entry["offset"]) == (str(snap), victim)
        assert files_of(Path(entry["moved_to"]).parent)  # kept aside, not deleted
        assert list((tmp_path / "dbtest" / "damaged").glob("*/report.json"))
    async with EmbeddedServer(data_dir=tmp_path) as srv:  # a verified snapshot covers it
        assert len(srv.database("dbtest").series) == 10
        assert "bob" in srv.database("dbtest").users


async def test_truncated_snapshot_refuses_start_and_repair_keeps_the_intact_part(
    tmp_path: Path,
) -> None:
    snap = await make_snapshot(tmp_path)
    data = snap.read_bytes()
    snap.write_bytes(data[: len(data) * 6 // 10])
    error = await refused(tmp_path)
    assert str(snap) in str(error)
    async with EmbeddedServer(data_dir=tmp_path, repair=True) as srv:
        db = srv.database("dbtest")
        assert 5 <= len(db.series) < 11
        assert all(s.length == 1000 for s in db.series.values())
        assert "bob" in db.users


# -- item 6: the log ---------------------------------------------------------------------
async def test_flipped_bit_mid_log_refuses_start_and_repair_keeps_what_follows(
    tmp_path: Path,
) -> None:
    async with EmbeddedServer(data_dir=tmp_path, snapshot_interval=0) as srv:
        await insert_all(srv.port, [{"w": [[TS + 1000 * k + j, k] for j in range(1000)]}
                                    for k in range(10)])
        await srv.state.stores["dbtest"].close(final_snapshot=False)  # crash-like: log only
    (log,) = [p for p in (tmp_path / "dbtest").glob("wal-*.log") if p.stat().st_size]
    records = records_of(log)
    assert len(records) == 10
    victim, size, _ = records[4]
    flip(log, victim + size // 2)
    error = await refused(tmp_path)
    assert f"{log} at byte {victim}" in str(error)

    async with EmbeddedServer(data_dir=tmp_path, repair=True) as srv:
        series = srv.database("dbtest").series["w"]
        assert series.length == 9000  # the records after the damaged one are kept
        assert sorted(set(series.values)) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
        (entry,) = srv.repair_report
        assert (entry["file"], entry["offset"], entry["bytes"]) == (str(log), victim, size)
        assert entry["records"] == 1
        assert Path(entry["moved_to"]).name in os.listdir(Path(entry["moved_to"]).parent)
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        assert srv.database("dbtest").series["w"].length == 9000


async def test_damaged_meta_file_refuses_start(tmp_path: Path) -> None:
    async with EmbeddedServer(data_dir=tmp_path, databases=[("dbtest", "ms")]):
        pass
    (tmp_path / "dbtest" / "meta.json").write_text('{"name": "dbtest", "precis')
    error = await refused(tmp_path)
    assert "meta.json at byte" in str(error)
    async with EmbeddedServer(data_dir=tmp_path, repair=True,
                              databases=[("dbtest", "ms")]) as srv:
        assert srv.database("dbtest").precision == 1
    meta = json.loads((tmp_path / "dbtest" / "meta.json").read_text())
    assert meta["precision"] == 1


async def test_files_of_the_first_format_are_still_read(tmp_path: Path) -> None:
    directory = tmp_path / "dbtest"
    directory.mkdir()
    old = Database("dbtest")
    old.apply(("insert", {"a": [[TS, 1]]}))
    old.apply(("user_create", "bob", "pw"))
    (directory / "meta.json").write_text(json.dumps({"name": "dbtest", "precision": 0}))
    (directory / "snapshot-0000000001.msgpack").write_bytes(
        frame_body(msgpack.packb(old.snapshot())))
    (directory / "wal-0000000001.log").write_bytes(
        frame_body(msgpack.packb(("insert", {"a": [[TS + 1, 2]]}))))
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        db = srv.database("dbtest")
        assert db.series["a"].values == [1, 2]
        assert "bob" in db.users
    async with EmbeddedServer(data_dir=tmp_path) as srv:  # rewritten in the new format
        assert srv.database("dbtest").series["a"].values == [1, 2]


# -- snapshots are verified before anything they cover goes ------------------------------
def _damaged_readback(data: bytes) -> Iterator[Any]:
    yield Damage(0, len(data), "crc", 1, True)


def _full_disk(fd: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fault", ["readback differs", "disk full"])
async def test_failed_snapshot_keeps_previous_snapshot_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    directory = tmp_path / "dbtest"
    async with EmbeddedServer(data_dir=tmp_path, snapshot_interval=0) as srv:
        store = srv.state.stores["dbtest"]
        await insert_all(srv.port, [{"a": [[TS, 1]]}])
        assert await store.snapshot()
        await insert_all(srv.port, [{"b": [[TS, 2]]}])
        before = files_of(directory)
        with monkeypatch.context() as m:
            if fault == "disk full":
                m.setattr(snapshot_mod.os, "fsync", _full_disk)
            else:
                m.setattr(snapshot_mod, "scan_records", _damaged_readback)
            assert not await store.snapshot()
        after = files_of(directory)
        for name, data in before.items():  # the old snapshot and log are all still there
            assert after[name] == data
        assert not list(directory.glob("*.tmp"))
        await insert_all(srv.port, [{"c": [[TS, 3]]}])
        await store.close(final_snapshot=False)  # crash-like
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        assert sorted(srv.database("dbtest").series) == ["a", "b", "c"]


# -- item 7 in process: log first, apply after durable -----------------------------------
async def test_nothing_is_visible_before_it_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    entered = threading.Event()
    real_fsync = storage_mod.os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        gate.wait(30)
        real_fsync(fd)

    async with EmbeddedServer(data_dir=tmp_path) as srv:
        writer = await RawClient.connect(srv.port)
        await writer.auth()
        monkeypatch.setattr(storage_mod.os, "fsync", slow_fsync)
        pid = writer.send(1, {"x": [[TS, 1]]})  # 1: INSERT
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, entered.wait, 30)
        tp, data = await query(srv.port, "count series")
        assert (tp, data) == (AnswerType.RES_QUERY, {"series": 0})  # logged, not durable
        gate.set()
        frame = await writer.recv(timeout=30)
        assert (frame.pid, frame.tp) == (pid, AnswerType.RES_INSERT)
        assert await query(srv.port, "count series") == (AnswerType.RES_QUERY, {"series": 1})
        await writer.close()


async def test_failed_fsync_means_not_applied_and_the_server_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EmbeddedServer(data_dir=tmp_path, snapshot_interval=0) as srv:
        c = await RawClient.connect(srv.port)
        await c.auth()
        assert (await c.insert({"a": [[TS, 1]]}))[0] == AnswerType.RES_INSERT
        store = srv.state.stores["dbtest"]
        (log,) = [p for p in (tmp_path / "dbtest").glob("wal-*.log") if p.stat().st_size]
        size = log.stat().st_size
        with monkeypatch.context() as m:
            m.setattr(storage_mod.os, "fsync", _full_disk)
            for _ in range(3):  # what a client's retries do
                tp, data = await c.insert({"a": [[TS + 1, 2]]})
                assert tp == AnswerType.ERR_SERVER
                assert "nothing of this request was stored" in data["error_msg"]
            tp, data = await c.query('create user "eve" set password \'secret1\'')
            assert tp == AnswerType.ERR_SERVER
        assert log.stat().st_size == size  # the written bytes were cut off again
        assert srv.database("dbtest").series["a"].values == [1]
        assert "eve" not in srv.database("dbtest").users
        assert store.failed_writes == 4
        assert (await c.insert({"a": [[TS + 2, 3]]}))[0] == AnswerType.RES_INSERT
        assert srv.database("dbtest").series["a"].values == [1, 3]
        await c.close()
        await store.close(final_snapshot=False)
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        assert srv.database("dbtest").series["a"].values == [1, 3]
        assert "eve" not in srv.database("dbtest").users


# -- the command line ----------------------------------------------------------------------
async def test_command_line_refuses_damage_and_repairs_with_a_report(tmp_path: Path) -> None:
    root = ROOT
    env = dict(os.environ, PYTHONPATH=str(root))
    async with EmbeddedServer(data_dir=tmp_path, snapshot_interval=0) as srv:
        await insert_all(srv.port, [{"w": [[TS + k, k]]} for k in range(3)])
        await srv.state.stores["dbtest"].close(final_snapshot=False)
    (log,) = [p for p in (tmp_path / "dbtest").glob("wal-*.log") if p.stat().st_size]
    victim, size, _ = records_of(log)[1]
    flip(log, victim + size - 1)

    async def run(*extra: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tsconnector.server", "--port", "0", "--data-dir",
            str(tmp_path), *extra, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=str(root),
        )

    refused_proc = await run()
    _, err = await asyncio.wait_for(refused_proc.communicate(), 30)
    assert refused_proc.returncode == 65
    (line,) = err.decode().strip().splitlines()
    assert line.startswith(f"tsconnector server: damaged data in {log} at byte {victim}:")

    proc = await run("--repair")
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        assert "listening on" in (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert f"repair: {log}: {size} bytes at byte {victim} (crc) -> " in err.decode()
