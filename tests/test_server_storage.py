"""Durability of the embedded server: write-ahead log, group commit, snapshots, recovery.

Damaged files (flipped bits, truncation, garbage) are in ``test_server_durability.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from server_wire import RawClient

from tsconnector.protocol import AnswerType
from tsconnector.server import EmbeddedServer
from tsconnector.server import storage as storage_mod
from tsconnector.server.errors import DamagedDataError
from tsconnector.server.model import Database
from tsconnector.server.storage import FRAME, Store, encode_frame, iter_frames

TS = 1699920000
TWO_DBS = (("dbtest", "s"), ("dbms", "ms"))


def points(db: Database, name: str) -> list[tuple[int, object]]:
    s = db.series[name]
    return list(zip(s.ts, s.values))


async def insert_via_wire(port: int, batches: list[dict]) -> None:
    c = await RawClient.connect(port)
    await c.auth()
    for batch in batches:
        tp, _ = await c.insert(batch)
        assert tp == AnswerType.RES_INSERT
    await c.close()


def log_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


async def test_restart_recovers_everything(tmp_path: Path) -> None:
    async with EmbeddedServer(data_dir=tmp_path, databases=TWO_DBS) as srv:
        await insert_via_wire(srv.port, [
            {"a": [[TS + i, i] for i in range(100)]},
            {"b": [[TS, "text"], [TS + 1, 1.5]], "a": [[TS - 1, -1]]},
        ])
        db = srv.database("dbtest")
        db.set_setting("list_limit", 5000)
        db.commit(("user_create", "bob", "pw"))
        db.drop_series(["b"])
        assert "b" in db.series  # journaled: applied once durable
        await srv.state.stores["dbtest"].sync()
        assert "b" not in db.series
        expected = db.snapshot()
        srv.database("dbms").insert({"ms": [[TS * 1000, 1]]})
    async with EmbeddedServer(data_dir=tmp_path, databases=TWO_DBS) as srv:
        db = srv.database("dbtest")
        assert db.snapshot() == expected
        assert points(db, "a")[:2] == [(TS - 1, -1), (TS, 0)]
        assert db.list_limit == 5000
        assert "bob" in db.users
        assert points(srv.database("dbms"), "ms") == [(TS * 1000, 1)]
        assert srv.database("dbms").precision == 1


async def test_recovery_without_snapshot_and_kept_precision(tmp_path: Path) -> None:
    srv = EmbeddedServer(data_dir=tmp_path, databases=(("dbtest", "ms"),))
    await srv.start()
    await insert_via_wire(srv.port, [{"x": [[TS * 1000, 1]]}, {"x": [[TS * 1000 + 1, 2]]}])
    # Crash-like stop: no final snapshot, the log is all there is.
    for store in srv.state.stores.values():
        await store.close(final_snapshot=False)
    srv.close()
    await srv.wait_closed()
    assert not list((tmp_path / "dbtest").glob("snapshot-*"))
    # Asking for another precision keeps the stored one.
    async with EmbeddedServer(data_dir=tmp_path, databases=(("dbtest", "s"),)) as srv2:
        db = srv2.database("dbtest")
        assert db.precision == 1
        assert points(db, "x") == [(TS * 1000, 1), (TS * 1000 + 1, 2)]
        assert srv2.state.stores["dbtest"].recovered_records == 2


def _write_log(directory: Path, records: list[tuple]) -> Path:
    import msgpack

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "wal-0000000000.log"
    path.write_bytes(b"".join(encode_frame(msgpack.packb(r)) for r in records))
    return path


def _recover(directory: Path, *, repair: bool = False) -> Database:
    db = Database("dbtest")
    store = Store(directory, db, repair=repair)
    store.open()
    return db


@pytest.mark.parametrize("cut", [1, 3, FRAME.size, FRAME.size + 2])
def test_torn_tail_is_dropped(tmp_path: Path, cut: int) -> None:
    records = [("insert", {"s": [[TS + i, i]]}) for i in range(5)]
    path = _write_log(tmp_path / "dbtest", records)
    data = path.read_bytes()
    last = [stop for stop, _ in iter_frames(data)][-2]
    path.write_bytes(data[: last + cut])  # the fifth record is torn
    db = _recover(tmp_path / "dbtest")
    assert points(db, "s") == [(TS + i, i) for i in range(4)]
    assert path.stat().st_size == last  # the torn bytes were cut off ...
    (kept,) = (tmp_path / "dbtest" / "damaged").glob("*/wal-0000000000.log.torn-at-*")
    assert kept.read_bytes() == data[last : last + cut]  # ... and kept aside


def test_corrupt_old_format_record_refuses_then_repair_keeps_what_follows(
    tmp_path: Path,
) -> None:
    records = [("insert", {"s": [[TS + i, i]]}) for i in range(5)]
    path = _write_log(tmp_path / "dbtest", records)
    data = bytearray(path.read_bytes())
    stops = [stop for stop, _ in iter_frames(bytes(data))]
    data[stops[2] + FRAME.size + 3] ^= 0xFF  # flip a byte of the fourth record's body
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedDataError, match=f"{path.name} at byte {stops[2]}"):
        _recover(tmp_path / "dbtest")
    assert path.read_bytes() == bytes(data)  # refusing changed nothing
    db = _recover(tmp_path / "dbtest", repair=True)
    assert points(db, "s") == [(TS + i, i) for i in (0, 1, 2, 4)]


def test_unappliable_records_are_skipped_and_garbage_needs_repair(tmp_path: Path) -> None:
    import msgpack

    directory = tmp_path / "dbtest"
    path = _write_log(directory, [("insert", {"s": [[TS, 1]]}), ("no_such_kind", 1),
                                  ("user_drop", "ghost")])
    db = _recover(directory)  # intact records that do not apply: skipped, as when logged
    assert points(db, "s") == [(TS, 1)]
    with open(path, "ab") as fh:
        fh.write(encode_frame(b"\xc1not msgpack"))
        fh.write(encode_frame(msgpack.packb(("insert", {"s": [[TS + 1, 2]]}))))
        fh.write(os.urandom(100))
    (directory / "snapshot-0000000000.msgpack").write_bytes(b"garbage")
    with pytest.raises(DamagedDataError):
        _recover(directory)
    db = _recover(directory, repair=True)
    assert points(db, "s") == [(TS, 1), (TS + 1, 2)]


async def test_snapshot_then_log_and_compaction(tmp_path: Path) -> None:
    async with EmbeddedServer(data_dir=tmp_path, snapshot_bytes=4096) as srv:
        batches = [{"s": [[TS + 10 * i + j, j] for j in range(10)]} for i in range(60)]
        await insert_via_wire(srv.port, batches)
        store = srv.state.stores["dbtest"]
        assert await store.snapshot()  # waits for the one running in the background
        directory = tmp_path / "dbtest"
        assert list(directory.glob("snapshot-*.msgpack"))
        assert len(log_files(directory)) <= 2  # older logs were compacted away
        await insert_via_wire(srv.port, [{"tail": [[TS, 1]]}])  # lands after the snapshot
        # Kill-like stop: keep whatever is on disk now, no final snapshot.
        await store.close(final_snapshot=False)
        expected = srv.database("dbtest").snapshot()
    snaps = list((tmp_path / "dbtest").glob("snapshot-*.msgpack"))
    assert len(snaps) == 1
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        db = srv.database("dbtest")
        assert db.snapshot() == expected
        assert db.series["s"].length == 600
        assert points(db, "tail") == [(TS, 1)]


async def test_group_commit_shares_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    monkeypatch.setattr(storage_mod.os, "fsync", counting_fsync)
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        clients = [await RawClient.connect(srv.port) for _ in range(20)]
        for c in clients:
            await c.auth()
        calls = 0
        results = await asyncio.gather(*(
            c.insert({f"g{i}.{j}": [[TS, j]]}) for i, c in enumerate(clients) for j in range(5)
        ))
        assert all(tp == AnswerType.RES_INSERT for tp, _ in results)
        assert calls < 100  # 100 acknowledged inserts, fewer fsyncs
        assert len(srv.database("dbtest").series) == 100
        for c in clients:
            await c.close()


async def test_memory_only_server_has_no_journal() -> None:
    async with EmbeddedServer() as srv:
        await insert_via_wire(srv.port, [{"x": [[TS, 1]]}])
        assert srv.state.stores == {}
        assert srv.database("dbtest").journal is None
        assert srv.database("dbtest").series["x"].length == 1
