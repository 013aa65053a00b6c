"""BufferedWriter and its spool: batching, backpressure, errors, read-back checks."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tsconnector.client import TsClient
from tsconnector.exceptions import TsTimeoutError
from tsconnector.ql import quote_name
from tsconnector.spool import Spool, SpoolLocked, encode_record, iter_records
from tsconnector.testing.proxy import FaultProxy
from tsconnector.writer import BufferedWriter, BufferFull, WriterClosedError

FAST: dict[str, Any] = {
    "timeout": 1.0,
    "initial_retry_wait": 0.05,
    "max_wait_retry": 0.2,
    "inactive_time": 0.2,
    "pool_retry_wait": 0.05,
}
QUICK: dict[str, Any] = {"insert_timeout": 1.0, "query_timeout": 2.0, "retry_initial": 0.02,
                         "retry_max": 0.2}


class Recorder:
    """Wraps ``client.insert`` to count calls and signal each one."""

    def __init__(self, client: TsClient) -> None:
        self.calls: list[dict[str, Any]] = []
        self.event = asyncio.Event()
        self._insert = client.insert

        async def insert(data: Any, timeout: float = 300, *, retry: Any = "safe") -> Any:
            self.calls.append(data)
            self.event.set()
            return await self._insert(data, timeout, retry=retry)

        client.insert = insert  # type: ignore[method-assign]


def size(points: Any) -> int:
    """Points in one series of an insert: a list of pairs or a numpy (ts, values) pair."""
    return len(points[0]) if isinstance(points, tuple) else len(points)


async def counts(client: TsClient, names: list[str]) -> dict[str, int]:
    answer = await client.query(f"select count() from {', '.join(quote_name(n) for n in names)}")
    return {name: (answer[name][0][1] if answer.get(name) else 0) for name in names}


async def points(client: TsClient, name: str) -> list[list[Any]]:
    return (await client.query(f"select * from {quote_name(name)}")).get(name, [])


@pytest.fixture
async def proxied(
    embedded_server: Any, fault_proxy: Callable[..., Awaitable[FaultProxy]]
) -> AsyncIterator[tuple[TsClient, FaultProxy]]:
    proxy = await fault_proxy(embedded_server.port)
    client = TsClient("iris", "siri", "dbtest", [proxy.address], **FAST)
    await client.connect()
    try:
        yield client, proxy
    finally:
        client.close()
        await client.wait_closed()


# ------------------------------------------------------------------ batching


async def test_add_many_merges_series_one_insert_per_batch(tsclient: TsClient) -> None:
    rec = Recorder(tsclient)
    async with BufferedWriter(tsclient, max_batch_points=5_000, max_delay=60) as writer:
        for chunk in range(4):  # 4 chunks x 25 series x 100 points = 10,000 points
            await writer.add_many(
                {f"m{i}": [(chunk * 100 + j, i * 1.0 + j) for j in range(100)] for i in range(25)}
            )
        await writer.flush()
        stats = writer.stats()
    assert len(rec.calls) == 2
    # checked lists of numbers travel as numpy (timestamps, values): one run per series
    assert all(sum(size(p) for p in call.values()) == 5_000 for call in rec.calls)
    # same-series points of several add_many calls travel as one list
    assert all(len(call) == len(set(call)) for call in rec.calls)
    assert stats.sent == stats.added == 10_000
    assert stats.batches_sent == 2
    assert stats.buffered == 0
    got = await counts(tsclient, [f"m{i}" for i in range(25)])
    assert set(got.values()) == {400}


async def test_numpy_and_single_points(tsclient: TsClient) -> None:
    ts = np.arange(1_000, 2_000, dtype=np.int64)
    async with BufferedWriter(tsclient, max_batch_points=300) as writer:
        await writer.add_many({"np.f": (ts, ts * 0.5), "np.i": (ts, ts * 2)})
        await writer.add_many({"np.rows": np.column_stack([ts, ts + 7])})
        for i in range(10):
            await writer.add("single", i, f"v{i}")
        await writer.add("np.f", 5, math.nan)
    f_points = await points(tsclient, "np.f")
    assert len(f_points) == 1_001
    assert math.isnan(f_points[0][1])
    assert f_points[1] == [1_000, 500.0]
    assert (await points(tsclient, "np.i"))[-1] == [1_999, 3_998]
    assert (await points(tsclient, "np.rows"))[0] == [1_000, 1_007]
    assert await points(tsclient, "single") == [[i, f"v{i}"] for i in range(10)]


async def test_batch_sent_by_age(tsclient: TsClient) -> None:
    rec = Recorder(tsclient)
    async with BufferedWriter(tsclient, max_batch_points=1_000, max_delay=0.05) as writer:
        await writer.add("aged", 1, 1.0)
        await writer.add("aged", 2, 2.0)
        await asyncio.wait_for(rec.event.wait(), 5)
        assert rec.calls == [{"aged": [(1, 1.0), (2, 2.0)]}]


async def test_validation_rejects_at_add(tsclient: TsClient) -> None:
    async with BufferedWriter(tsclient) as writer:
        with pytest.raises(TypeError):
            await writer.add("s", 1, True)
        with pytest.raises(TypeError):
            await writer.add("s", 1.5, 1)
        with pytest.raises(TypeError):
            await writer.add("", 1, 1)
        with pytest.raises(OverflowError):
            await writer.add("s", -1, 1)
        with pytest.raises(OverflowError):
            await writer.add_many({"s": [(1, 1 << 64)]})
        with pytest.raises(ValueError):
            await writer.add_many({"s": [(1, 2, 3)]})
        with pytest.raises(TypeError):
            await writer.add_many({"s": (np.array([1.5]), np.array([1.0]))})
        assert writer.stats().added == 0
    with pytest.raises(WriterClosedError):
        await writer.add("s", 1, 1)


async def test_rejected_series_does_not_sink_the_batch(tsclient: TsClient) -> None:
    failures: list[tuple[BaseException, dict[str, Any]]] = []
    async with BufferedWriter(
        tsclient, validate=False, on_error=lambda e, d: failures.append((e, d))
    ) as writer:
        await writer.add_many(
            {"good.a": [(1, 1), (2, 2)], "bad": [(1, True)], "good.b": [(3, 1.5)]}
        )
        await writer.flush()
        stats = writer.stats()
    assert stats.failed == 1
    assert stats.sent == 3
    assert failures[0][1] == {"bad": [(1, True)]}
    got = await counts(tsclient, ["good.a", "good.b", "bad"])
    assert got == {"good.a": 2, "good.b": 1, "bad": 0}


# -------------------------------------------------------------- backpressure


async def test_backpressure_block_and_buffer_full(
    proxied: tuple[TsClient, FaultProxy],
) -> None:
    client, proxy = proxied
    proxy.kill()
    async with BufferedWriter(
        client, max_batch_points=50, max_buffer_points=100, max_delay=0.01, **QUICK
    ) as writer:
        await writer.add_many({"bp": [(i, i) for i in range(100)]})
        with pytest.raises(BufferFull):
            await writer.add("bp", 100, 100, block=False)
        with pytest.raises(BufferFull):
            await writer.add_many({"bp": [(100, 100)]}, block=False)
        waiting = asyncio.ensure_future(writer.add_many({"bp": [(i, i) for i in range(100, 150)]}))
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done  # blocked: the server is unreachable and there is no spool
        assert writer.stats().peak_buffered <= 100
        proxy.revive()
        await asyncio.wait_for(waiting, 10)
        await writer.flush(timeout=10)
        assert writer.stats().peak_buffered <= 100
        assert writer.stats().retries >= 1
    assert (await counts(client, ["bp"]))["bp"] == 150


async def test_flush_timeout_keeps_points(proxied: tuple[TsClient, FaultProxy]) -> None:
    client, proxy = proxied
    proxy.kill()
    async with BufferedWriter(client, **QUICK) as writer:
        await writer.add("ft", 1, 1)
        with pytest.raises(TsTimeoutError):
            await writer.flush(timeout=0.2)
        assert writer.stats().buffered == 1
        assert writer.stats().last_error is not None
        proxy.revive()
        await writer.flush(timeout=10)
    assert (await counts(client, ["ft"]))["ft"] == 1


async def test_close_timeout_without_spool_reports_failed(
    proxied: tuple[TsClient, FaultProxy],
) -> None:
    client, proxy = proxied
    proxy.kill()
    failures: list[dict[str, Any]] = []
    writer = await BufferedWriter(client, on_error=lambda e, d: failures.append(d), **QUICK).start()
    await writer.add_many({"lost": [(1, 1), (2, 2)]})
    await writer.close(timeout=0.2)
    assert writer.closed
    assert writer.stats().failed == 2
    assert failures == [{"lost": [(1, 1), (2, 2)]}]


# -------------------------------------------------------- unknown outcomes


@pytest.mark.parametrize("mode", ["check", "resend"])
async def test_unknown_outcome_check_or_resend(
    proxied: tuple[TsClient, FaultProxy], mode: str
) -> None:
    client, proxy = proxied
    data = {'we"ird': [(1, 1.0), (2, 2.0), (2, 2.0)], "plain": [(5, "x"), (6, "y")]}
    async with BufferedWriter(client, ambiguous=mode, **QUICK) as writer:
        proxy.cut_mid_frame()  # the insert is applied, its answer is lost
        await writer.add_many(data)
        await writer.flush(timeout=10)
        stats = writer.stats()
    got = await counts(client, list(data))
    if mode == "check":
        assert got == {'we"ird': 3, "plain": 2}  # duplicates in the batch are kept, once
        assert stats.ambiguous == 1
        assert stats.checked_present == 5
        assert stats.sent == 0
    else:
        assert got == {'we"ird': 6, "plain": 4}  # at-least-once stores it twice


async def test_check_resends_only_what_is_missing(tsclient: TsClient) -> None:
    await tsclient.insert({"partial": [(1, 1), (3, 3)], "other": [(10, 1)]})
    writer = BufferedWriter(tsclient)
    await writer.start()
    try:
        missing, present = await writer._missing(
            {"partial": [(1, 1), (2, 2), (3, 3), (3, 3)], "other": [(10, 1)], "new": [(1, 1)]}
        )
    finally:
        await writer.close()
    assert present == 3
    assert missing == {"partial": [(2, 2), (3, 3)], "new": [(1, 1)]}


async def test_check_splits_on_points_limit(tsclient: TsClient) -> None:
    await tsclient.query("alter database set select_points_limit 40")
    stored = {f"lim{i}": [(t, t) for t in range(30)] for i in range(3)}
    await tsclient.insert(stored)
    async with BufferedWriter(tsclient) as writer:
        missing, present = await writer._missing({**stored, "lim0": [(t, t) for t in range(31)]})
    assert present == 90
    assert missing == {"lim0": [(30, 30)]}


async def test_read_back_of_a_busy_series_stays_under_the_frame_limit(
    embedded_server: Any,
) -> None:
    """Reading back a window with more stored points than one answer may carry used to
    drop the connection and retry forever; it is counted first and read in pieces."""
    limit = 128 * 1024
    client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", embedded_server.port)],
                      max_frame_size=limit, **FAST)
    await client.connect()
    try:
        for start in range(0, 40_000, 4_000):
            await client.insert({"busy": [(t, t) for t in range(start, start + 4_000)]})
        async with BufferedWriter(client, read_back_points=5_000, **QUICK) as writer:
            missing, present = await writer._missing(
                {"busy": [(t, t) for t in range(0, 40_000, 97)] + [(40_500, 1)],
                 "quiet": [(5, 5)]}
            )
        assert present == len(range(0, 40_000, 97))
        assert missing == {"busy": [(40_500, 1)], "quiet": [(5, 5)]}
        stats = client.stats()[0]
        assert stats.reconnects == 0
    finally:
        client.close()
        await client.wait_closed()


# -------------------------------------------------------------------- spool


async def test_spool_replays_after_restart(
    proxied: tuple[TsClient, FaultProxy], tmp_path: Path
) -> None:
    client, proxy = proxied
    proxy.kill()
    spool = tmp_path / "spool"
    writer = await BufferedWriter(
        client, spool_dir=spool, max_batch_points=100, max_buffer_points=200, **QUICK
    ).start()
    for k in range(10):
        await writer.add_many({f"sp{k % 3}": [(k * 100 + j, j) for j in range(100)]})
    await writer.close(timeout=0.3)
    stats = writer.stats()
    assert stats.spooled == 1_000
    assert stats.peak_buffered <= 200
    assert stats.position == 1_000
    proxy.revive()
    async with BufferedWriter(client, spool_dir=spool, **QUICK) as again:
        assert again.position == 1_000
        await again.flush(timeout=10)
        stats = again.stats()
    assert stats.spooled == 0
    assert stats.replayed == 1_000
    assert await counts(client, ["sp0", "sp1", "sp2"]) == {"sp0": 400, "sp1": 300, "sp2": 300}
    assert not [p for p in spool.glob("spool-*.log") if p.stat().st_size > 64]


async def test_spool_locked_by_one_writer(tsclient: TsClient, tmp_path: Path) -> None:
    async with BufferedWriter(tsclient, spool_dir=tmp_path):
        with pytest.raises(SpoolLocked):
            await BufferedWriter(tsclient, spool_dir=tmp_path).start()


def test_spool_torn_tail_and_corruption_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.open() == []
    first = spool.append({"a": [(1, 1.0)]}, 1)
    second = spool.append({"a": [(2, 2.0)], "b": [(3, "x")]}, 2)
    spool.ack(first)
    segment = second.segment
    spool.close()
    with segment.open("ab") as fh:  # a crash in the middle of the next record
        fh.write(encode_record({"t": "b", "seq": 9, "n": 1, "end": 4, "d": {"c": [[1, 1]]}})[:-3])
    again = Spool(tmp_path)
    records = again.open()
    assert [(r.seq, r.points, r.end, r.recovered) for r in records] == [(second.seq, 2, 3, True)]
    assert again.position == 3
    assert again.read(records[0]) == {"a": [[2, 2.0]], "b": [[3, "x"]]}
    again.ack(records[0])
    again.close()
    assert not segment.exists()  # fully acked old segments are removed

    # a flipped byte inside a record: that record and the rest of its segment are ignored
    third = Spool(tmp_path)
    assert third.open() == []
    rec = third.append({"z": [(1, 1)]}, 1)
    third.close()
    raw = bytearray(rec.segment.read_bytes())
    raw[rec.offset + rec.size - 2] ^= 0xFF
    rec.segment.write_bytes(bytes(raw))
    fourth = Spool(tmp_path)
    assert fourth.open() == []
    assert fourth.position == 3
    fourth.close()


def test_record_framing() -> None:
    body = {"t": "b", "seq": 1}
    frame = encode_record(body)
    length, _crc = struct.unpack("<II", frame[:8])
    assert length == len(frame) - 8
    assert [r[2] for r in iter_records(frame + frame)] == [body, body]
    assert list(iter_records(frame[:-1])) == []
    assert list(iter_records(frame[:5])) == []


async def test_client_writer_shortcut_builds_a_buffered_writer() -> None:
    from tsconnector import BufferedWriter, TsClient
    from tsconnector.server import EmbeddedServer

    async with EmbeddedServer(port=0) as server:
        async with TsClient("iris", "siri", "dbtest", [(server.host, server.port)]) as client:
            writer = client.writer(max_batch_points=3, max_delay=0.05)
            assert isinstance(writer, BufferedWriter)
            async with writer:
                for i in range(7):
                    await writer.add("w", 1_700_000_000 + i, i)
            assert writer.stats().sent == 7
            answer = await client.query('select count() from "w"')
    assert answer == {"w": [[1_700_000_006, 7]]}
