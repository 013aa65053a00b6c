"""BufferedWriter's delivery pipeline: batches in flight, acks in order, columnar input.

Several batches are sent at once, but a batch is acknowledged in the spool only when it
and every batch before it were delivered, so the spool always holds a tail of what was
cut (a crash replays exactly the unacknowledged batches). numpy and pandas input stays
numpy through the spool and onto the wire; checked lists of numbers become numpy.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsconnector.client import TsClient
from tsconnector.ql import quote_name
from tsconnector.spool import Spool, read_segment
from tsconnector.writer import BufferedWriter
from tsconnector.writer.points import normalize, pairs

QUICK: dict[str, Any] = {"insert_timeout": 5.0, "query_timeout": 5.0, "retry_initial": 0.02,
                         "retry_max": 0.2}


class Gate:
    """Wraps ``client.insert``: records each call and holds chosen ones until released."""

    def __init__(self, client: TsClient, hold: set[int]) -> None:
        self.calls: list[dict[str, Any]] = []
        self.hold = hold
        self.released = asyncio.Event()
        self.waiting = 0
        self.changed = asyncio.Event()
        insert = client.insert

        async def gated(data: Any, timeout: float = 300, *, retry: Any = "safe") -> Any:
            number = len(self.calls)
            self.calls.append(data)
            if number in self.hold:
                self.waiting += 1
                self.changed.set()
                await self.released.wait()
            answer = await insert(data, timeout, retry=retry)
            self.changed.set()
            return answer

        client.insert = gated  # type: ignore[method-assign]

    async def until(self, condition: Any, timeout: float = 10) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


def pending_in_spool(directory: Path) -> list[int]:
    """Sequence numbers of spooled batches without an ack record (read past the lock)."""
    batches, acked = set(), set()
    for path in sorted(directory.glob("spool-*.log")):
        records, _ = read_segment(path.read_bytes())
        for _, _, body in records:
            if body.get("t") == "b":
                batches.add(body["seq"])
            elif body.get("t") == "a":
                acked.add(body["seq"])
    return sorted(batches - acked)


async def stored(client: TsClient, names: list[str]) -> int:
    answer = await client.query(f"select count() from {', '.join(map(quote_name, names))}")
    return sum(answer[n][0][1] for n in names if answer.get(n))


async def test_batches_in_flight_and_acks_in_cut_order(tsclient: TsClient, tmp_path: Path) -> None:
    gate = Gate(tsclient, hold={0})  # the first batch is held, the others go through
    spool_dir = tmp_path / "spool"
    ts = np.arange(1_000, 1_100, dtype=np.int64)
    async with BufferedWriter(tsclient, spool_dir=spool_dir, max_batch_points=100,
                              max_in_flight=3, max_delay=60, **QUICK) as writer:
        for k in range(6):
            await writer.add_many({f"pipe.{k}": (ts, ts * 1.5)})
        await writer.sync()  # six batches cut and spooled
        await gate.until(lambda: len(gate.calls) >= 3 and gate.waiting == 1)
        assert writer.stats().in_flight == 3  # more than one batch in flight
        await gate.until(lambda: len(gate.calls) == 6)  # held batch 1 does not stop 2..6
        await gate.until(lambda: writer.stats().sent == 500)
        # delivered but not acknowledged: batch 1 still pending keeps all six spooled
        assert len(pending_in_spool(spool_dir)) == 6
        assert writer.stats().batches_sent == 0
        gate.released.set()
        await writer.flush(timeout=10)
        assert writer.stats().batches_sent == 6
        assert pending_in_spool(spool_dir) == []
    assert await stored(tsclient, [f"pipe.{k}" for k in range(6)]) == 600


async def test_a_crash_with_a_held_batch_replays_the_tail_without_duplicates(
    tsclient: TsClient, tmp_path: Path
) -> None:
    gate = Gate(tsclient, hold={1})  # batch 2 never completes in the first writer
    spool_dir = tmp_path / "spool"
    ts = np.arange(5_000, 5_050, dtype=np.int64)
    writer = await BufferedWriter(tsclient, spool_dir=spool_dir, max_batch_points=50,
                                  max_in_flight=4, max_delay=60, **QUICK).start()
    for k in range(5):
        await writer.add_many({f"tail.{k}": (ts, ts)})
    await writer.sync()
    await gate.until(lambda: len(gate.calls) == 5 and writer.stats().sent == 200)
    assert pending_in_spool(spool_dir) == [2, 3, 4, 5]  # batch 1 acked, the rest a tail
    # "crash": the process stops without closing; its lock goes with it
    assert writer._task is not None
    writer._task.cancel()
    await writer._stop_deliveries()
    writer._spool.spool.close()  # type: ignore[union-attr]
    assert pending_in_spool(spool_dir) == [2, 3, 4, 5]
    gate.hold = set()
    gate.released.set()
    async with BufferedWriter(tsclient, spool_dir=spool_dir, **QUICK) as again:
        await again.flush(timeout=10)
        replay = again.stats()
    # the replayed tail is read back first: the three delivered batches are found
    # stored, only the held one is sent
    assert replay.checked_present == 150
    assert replay.sent == 50
    assert await stored(tsclient, [f"tail.{k}" for k in range(5)]) == 250


async def test_numpy_stays_numpy_through_the_spool_and_onto_the_wire(
    tsclient: TsClient, tmp_path: Path
) -> None:
    gate = Gate(tsclient, hold=set())
    spool_dir = tmp_path / "spool"
    ts = np.arange(10, 1_010, dtype=np.int64)
    values = np.linspace(-1, 1, 1_000)
    values[3] = math.nan
    async with BufferedWriter(tsclient, spool_dir=spool_dir, max_delay=60, **QUICK) as writer:
        await writer.add_many({"col.f": (ts, values), "col.i": (ts, ts * 3),
                               "col.list": [(int(t), float(v)) for t, v in zip(ts, values)]})
        await writer.sync()
        segment = next(spool_dir.glob("spool-*.log")).read_bytes()
        await writer.flush(timeout=10)
    bodies = [body for _, _, body in read_segment(segment)[0] if body.get("t") == "b"]
    assert set(bodies[0]["c"]) == {"col.f", "col.i", "col.list"}  # raw array bytes
    assert bodies[0]["d"] == {}
    assert np.frombuffer(bodies[0]["c"]["col.f"][2], "<f8").tobytes() == values.tobytes()
    sent = gate.calls[0]
    assert all(isinstance(p, tuple) and isinstance(p[0], np.ndarray) for p in sent.values())
    assert await stored(tsclient, ["col.f", "col.i", "col.list"]) == 3_000


async def test_pandas_series_and_frames(tsclient: TsClient) -> None:
    pd = pytest.importorskip("pandas")
    index = pd.date_range("2024-01-01", periods=5, freq="s")
    frame = pd.DataFrame({"pd.a": [1.0, 2.0, math.nan, 4.0, 5.0], "pd.b": [1, 2, 3, 4, 5]},
                         index=index)
    series = pd.Series([0.5, 1.5], index=pd.Index([7, 8]))
    async with BufferedWriter(tsclient, max_delay=60, **QUICK) as writer:
        await writer.add_many(frame)
        await writer.add_many({"pd.s": series})
        await writer.flush(timeout=10)
    precision = await tsclient.db_time_precision()
    first = int(index[0].value // 10 ** (9 - 3 * precision))
    answer = await tsclient.query('select * from "pd.a", "pd.b", "pd.s"')
    assert answer["pd.a"] == [[first, 1.0], [first + 1, 2.0], [first + 3, 4.0],
                              [first + 4, 5.0]]  # the missing cell is skipped
    assert [p[1] for p in answer["pd.b"]] == [1, 2, 3, 4, 5]
    assert answer["pd.s"] == [[7, 0.5], [8, 1.5]]


point_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.text(max_size=2),
    st.none(), st.sampled_from([0.0, -0.0, 1.0, -1.0, 2**63]),
)
point_lists = st.lists(
    st.tuples(st.one_of(st.integers(0, 2**40), st.integers(-5, 5), st.booleans()),
              point_values),
    min_size=1, max_size=40,
) | st.lists(st.tuples(st.integers(1_700_000_000, 1_700_001_000), st.floats()),
             min_size=6, max_size=40)


def _outcome(points: list[Any], *, fast: bool) -> Any:
    from tsconnector.writer import points as mod

    saved = mod._packed_columns
    if not fast:
        mod._packed_columns = lambda _points: None  # type: ignore[assignment]
    try:
        piece, n = normalize("s", list(points), True)
    except (TypeError, ValueError, OverflowError) as exc:
        return type(exc).__name__
    finally:
        mod._packed_columns = saved
    kind = piece[1].dtype.kind if isinstance(piece, tuple) else "list"
    return n, kind, [(t, type(v).__name__, "nan" if v != v else v) for t, v in pairs(piece)]


@given(point_lists)
def test_lists_checked_in_c_match_the_exact_checks(points: list[Any]) -> None:
    assert _outcome(points, fast=True) == _outcome(points, fast=False)


def test_spool_reads_back_columns_bit_exact(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    ts = np.arange(3, dtype=np.int64)
    values = np.array([-0.0, math.nan, math.inf])
    record = spool.append({"x": (ts, values), "y": [(1, "text")]}, 4)
    got = spool.read(record)
    spool.close()
    assert got["y"] == [[1, "text"]]
    assert got["x"][0].tolist() == [0, 1, 2]
    assert got["x"][1].tobytes() == values.tobytes()
