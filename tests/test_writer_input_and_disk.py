"""BufferedWriter and its spool against bad input, damaged segments and a full disk.

Bad input fails only its own call; the background task survives any batch; a flipped
bit in a spool segment loses only the batch it hit (reported), never the records after
it; a full disk holds points in memory and loses nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tsconnector.spool as spool_module
from tsconnector.client import TsClient
from tsconnector.durable import pack_record
from tsconnector.ql import quote_name
from tsconnector.spool import Spool, SpoolCorrupted, read_segment
from tsconnector.timeutil import to_db_time
from tsconnector.writer import BufferedWriter

QUICK: dict[str, Any] = {"insert_timeout": 2.0, "query_timeout": 5.0, "retry_initial": 0.02,
                         "retry_max": 0.1}


async def stored(client: TsClient, names: list[str]) -> dict[str, int]:
    answer = await client.query(f"select count() from {', '.join(quote_name(n) for n in names)}")
    return {n: answer[n][0][1] if answer.get(n) else 0 for n in names}


# ------------------------------------------------------------------ bad input


TIMES: list[Any] = [
    dt.datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 5, 1, 14, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.datetime(2024, 5, 1, 12, 0, 2),  # naive: UTC
    dt.date(2024, 5, 2),
    np.datetime64("2024-05-01T12:00:03.125", "ms"),
    np.datetime64("2024-05-01T12:00:04.000000000", "ns"),
]


@pytest.mark.parametrize("precision", ["ms", "ns"])
@pytest.mark.parametrize("validate", [True, False])
async def test_datetime_timestamps_are_converted_as_insert_converts_them(
    embedded_server_factory: Any, precision: str, validate: bool
) -> None:
    """add and add_many take datetime, date and datetime64 timestamps, converted exactly to
    the database's precision: stored where TsClient.insert stores the same points."""
    server = await embedded_server_factory(databases=[("dbtest", precision)])
    async with TsClient("iris", "siri", "dbtest", [("127.0.0.1", server.port)]) as client:
        await client.insert({"by.insert": [[t, i] for i, t in enumerate(TIMES)]})
        async with BufferedWriter(client, validate=validate, max_delay=0.05, **QUICK) as writer:
            for i, t in enumerate(TIMES):
                await writer.add("by.add", t, i)
            if validate:  # unvalidated lists are taken as they are: int timestamps only
                await writer.add_many({"by.list": [(t, i) for i, t in enumerate(TIMES)]})
            objects = np.array(TIMES, dtype=object)
            await writer.add_many({"by.objects": (objects, np.arange(len(TIMES)))})
            await writer.flush(timeout=10)
        answer = await client.query("select * from /by\\..*/")
    expected = sorted([to_db_time(t, precision), i] for i, t in enumerate(TIMES))
    assert answer["by.insert"] == expected
    assert answer["by.add"] == expected
    assert answer["by.objects"] == expected
    if validate:
        assert answer["by.list"] == expected


async def test_datetime_timestamps_are_refused_as_insert_refuses_them(
    tsclient: TsClient,
) -> None:
    """A time finer than the database's unit, before 1970 or not a time at all fails
    only its own call (dbtest is in seconds)."""
    async with BufferedWriter(tsclient, max_delay=0.05, **QUICK) as writer:
        fine = dt.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=dt.timezone.utc)
        with pytest.raises(ValueError):
            await tsclient.insert({"x": [[fine, 1]]})
        with pytest.raises(ValueError):
            await writer.add("x", fine, 1)
        with pytest.raises(ValueError):
            await writer.add_many({"x": [(fine, 1)]})
        with pytest.raises(ValueError):
            await writer.add("x", np.datetime64("2024-05-01T12:00:00.5"), 1)
        with pytest.raises(OverflowError, match="out of range"):
            await writer.add("x", dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc), 1)
        with pytest.raises(TypeError, match="not an integer"):
            await writer.add("x", "2024-05-01", 1)
        with pytest.raises(TypeError, match="not an integer"):
            await writer.add_many({"x": [("2024-05-01", 1)]})
        await writer.add("x", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc), 1)
        await writer.flush(timeout=10)
    assert (await tsclient.query("select * from 'x'"))["x"] == [[1714521600, 1]]


@pytest.mark.parametrize("spooled", [False, True])
async def test_bad_name_or_value_fails_only_its_own_call(
    tsclient: TsClient, tmp_path: Path, spooled: bool
) -> None:
    spool_dir = tmp_path / "spool" if spooled else None
    async with BufferedWriter(tsclient, spool_dir=spool_dir, max_delay=0.05, **QUICK) as writer:
        await writer.add("good", 1, 1.0)
        with pytest.raises(ValueError, match="cannot be encoded as UTF-8"):
            await writer.add("bad\udcff", 2, 2.0)
        with pytest.raises(ValueError, match="cannot be encoded as UTF-8"):
            await writer.add_many({"good": [(3, 3.0)], "bad\udcff": [(4, 4.0)]})
        with pytest.raises(ValueError, match="string value"):
            await writer.add("text", 5, "x\ud800")
        with pytest.raises(ValueError, match=r"\(timestamp, value\) pair, got 1"):
            await writer.add_many({"good": [1, 2, 3]})
        with pytest.raises(TypeError, match="non-empty str"):
            await writer.add("", 6, 6.0)
        await writer.add("good", 7, 7.0)  # the writer still takes points
        await writer.flush(timeout=10)
        stats = writer.stats()
    assert stats.failed == 0
    assert stats.added == 2
    assert stats.sent == 2
    assert await stored(tsclient, ["good"]) == {"good": 2}


async def test_unencodable_series_is_given_up_alone_and_the_task_survives(
    tsclient: TsClient, tmp_path: Path
) -> None:
    """Without validation a bad value reaches the spool: only its series is given up."""
    given_up: list[tuple[BaseException, dict[str, Any]]] = []
    async with BufferedWriter(
        tsclient, spool_dir=tmp_path / "spool", validate=False, max_delay=60,
        on_error=lambda exc, points: given_up.append((exc, points)), **QUICK,
    ) as writer:
        await writer.add_many({"ok.1": [(1, 1.0), (2, 2.0)], "bad": [(1, "x\udcff")],
                               "ok.2": [(1, 5)]})
        await writer.flush(timeout=10)  # the same batch: the good series are delivered
        await writer.add("ok.1", 3, 3.0)  # and later adds still work
        await writer.flush(timeout=10)
        stats = writer.stats()
        assert writer.position == 5  # the given-up point is still counted as handed over
    assert await stored(tsclient, ["ok.1", "ok.2"]) == {"ok.1": 3, "ok.2": 1}
    assert stats.failed == 1
    assert [list(points) for _, points in given_up] == [["bad"]]
    assert isinstance(given_up[0][0], UnicodeEncodeError)


# ------------------------------------------------------------ damaged spools


def fill_spool(directory: Path, batches: int, per_batch: int) -> list[Any]:
    spool = Spool(directory)
    spool.open()
    records = [
        spool.append({f"s{k % 3}": [(k * per_batch + j, float(j)) for j in range(per_batch)]},
                     per_batch)
        for k in range(batches)
    ]
    spool.close()
    return records


def test_a_flipped_bit_mid_segment_keeps_later_records_and_position(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = fill_spool(tmp_path, 100, 1_000)
    victim = records[53]
    raw = bytearray(victim.segment.read_bytes())
    raw[victim.offset + victim.size // 2] ^= 0x10  # one bit
    victim.segment.write_bytes(bytes(raw))

    spool = Spool(tmp_path)
    with caplog.at_level(logging.ERROR, "tsconnector.spool"):
        recovered = spool.open()
    spool.close()
    assert [r.seq for r in recovered] == [r.seq for r in records if r is not victim]
    assert spool.position == 100_000  # never rewinds
    (damage,) = spool.damage
    assert (damage.torn, damage.lost_batches, damage.lost_points) == (False, 1, 1_000)
    assert (damage.offset, damage.size) == (victim.offset, victim.size)
    assert damage.copy is not None
    assert damage.copy.read_bytes() == bytes(raw[victim.offset : victim.offset + victim.size])
    assert spool.lost_points == 1_000
    assert "torn" not in caplog.text
    assert "damaged" in caplog.text
    assert "1 undelivered batch(es), 1000 point(s)" in caplog.text


async def test_writer_reports_spool_damage_and_delivers_the_rest(
    tsclient: TsClient, tmp_path: Path
) -> None:
    records = fill_spool(tmp_path / "spool", 20, 100)
    victim = records[7]
    raw = bytearray(victim.segment.read_bytes())
    raw[victim.offset + 20] ^= 0x01
    victim.segment.write_bytes(bytes(raw))
    errors: list[BaseException] = []
    async with BufferedWriter(
        tsclient, spool_dir=tmp_path / "spool", on_error=lambda exc, _: errors.append(exc),
        **QUICK,
    ) as writer:
        assert writer.position == 2_000
        await writer.flush(timeout=30)
        stats = writer.stats()
    assert stats.lost == 100
    assert stats.replayed == 1_900
    assert len(errors) == 1
    assert isinstance(errors[0], SpoolCorrupted)
    assert "100 point(s) in 1 batch(es) lost" in str(errors[0])
    counts = await stored(tsclient, ["s0", "s1", "s2"])
    assert sum(counts.values()) == 1_900


records_st = st.lists(  # shaped as the spool writes them: "t" first
    st.builds(
        lambda seq, points: {"t": "b", "seq": seq, "d": points},
        st.integers(0, 1000),
        st.dictionaries(st.text(max_size=6), st.integers(-(2**63), 2**63 - 1), max_size=3),
    ),
    min_size=2, max_size=10,
)


@given(records_st, st.data())
def test_damage_in_any_record_but_the_last_loses_only_that_record(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    frames = [pack_record(r) for r in records]
    blob = bytearray(b"".join(frames))
    victim = data.draw(st.integers(0, len(frames) - 2))
    start = sum(len(f) for f in frames[:victim])
    blob[start + data.draw(st.integers(0, len(frames[victim]) - 1))] ^= 1 << data.draw(
        st.integers(0, 7))
    got, damaged = read_segment(bytes(blob))
    assert [body for _, _, body in got] == records[:victim] + records[victim + 1 :]
    assert damaged == [(start, len(frames[victim]), False)]


# ----------------------------------------------------------------- disk full


class FullDisk:
    """``os.write`` of the spool fails with ENOSPC while ``full`` (partial writes too)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.refused = 0
        real_write = os.write

        def write(fd: int, data: Any) -> int:
            if self.full:
                self.refused += 1
                if len(data) > 16 and self.refused % 2:
                    real_write(fd, bytes(data[:7]))  # a short write, then the error
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(spool_module.os, "write", write)


async def test_disk_full_under_the_spool_loses_nothing_and_duplicates_nothing(
    tsclient: TsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(monkeypatch)
    total, chunk, bound = 20_000, 500, 4_000
    async with BufferedWriter(
        tsclient, spool_dir=tmp_path / "spool", max_batch_points=1_000,
        max_buffer_points=bound, max_delay=0.01, **QUICK,
    ) as writer:

        async def free_the_disk() -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            # wait (bounded) until the buffer is full, adds are held back and the failed
            # spool write was reported (the refused write and its report are not atomic)
            while not (disk.refused >= 3 and writer.stats().buffered > bound - chunk
                       and writer.stats().last_error is not None):
                assert loop.time() < deadline, writer.stats()
                await asyncio.sleep(0.01)
            with pytest.raises(OSError, match="No space left"):
                await writer.sync()  # durability cannot be promised now: it says so
            disk.full = False

        freer = None
        for start in range(0, total, chunk):
            if start == 5_000:
                disk.full = True
                freer = asyncio.ensure_future(free_the_disk())
            add = writer.add_many({f"full.{start % 3}": [(start + j, start + j)
                                                          for j in range(chunk)]})
            await asyncio.wait_for(add, 30)
        assert freer is not None
        await asyncio.wait_for(freer, 30)
        await writer.flush(timeout=30)
        stats = writer.stats()
    assert disk.refused > 0
    assert (stats.failed, stats.lost) == (0, 0)
    assert stats.added == stats.sent == total
    counts = await stored(tsclient, [f"full.{k}" for k in range(3)])
    assert sum(counts.values()) == total  # no point lost, none stored twice
    # acks refused by the full disk leave batches that a restarted writer checks
    # (read back) instead of sending twice; the failed writes left no garbage behind
    left = Spool(tmp_path / "spool")
    unacked = sum(r.points for r in left.open())
    assert [d for d in left.damage if not d.torn] == []
    left.close()
    async with BufferedWriter(tsclient, spool_dir=tmp_path / "spool", **QUICK) as again:
        await again.flush(timeout=30)
        replay = again.stats()
    assert (replay.sent, replay.lost, replay.checked_present) == (0, 0, unacked)
    assert sum((await stored(tsclient, [f"full.{k}" for k in range(3)])).values()) == total
    reopened = Spool(tmp_path / "spool")
    assert reopened.open() == []
    reopened.close()
