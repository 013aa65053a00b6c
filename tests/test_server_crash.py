"""Kill -9 the server (a subprocess with --data-dir) during a stream of inserts, restart it:
every acknowledged point is there, nothing is duplicated, nothing half-applied."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from server_wire import RawClient

from tsconnector.protocol import AnswerType
from tsconnector.server.model import Database
from tsconnector.server.storage import Store

ROOT = Path(__file__).resolve().parent.parent
TS = 1699920000
BATCH = 50
WRITERS = 4
IN_FLIGHT = 4


async def start_server(data_dir: Path) -> tuple[asyncio.subprocess.Process, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0",
        "--data-dir", str(data_dir), "--db", "dbtest:s",
        stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT),
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert "listening on" in line, line
    return proc, int(line.rsplit(":", 1)[1])


async def writer(
    port: int, series: str, acked: list[int], stop: asyncio.Event, progress: asyncio.Event
) -> None:
    """Insert batches (BATCH points, batch k holds ts TS + k*BATCH ...) with pipelining."""
    c = await RawClient.connect(port)
    try:
        assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
        inflight: dict[int, int] = {}
        k = 0
        while not stop.is_set():
            while len(inflight) < IN_FLIGHT:
                batch = {series: [[TS + k * BATCH + j, k * BATCH + j] for j in range(BATCH)]}
                inflight[c.send(1, batch)] = k
                k += 1
            frame = await c.recv(timeout=30)
            assert frame.tp == AnswerType.RES_INSERT
            acked.append(inflight.pop(frame.pid))
            progress.set()
    except (ConnectionError, asyncio.TimeoutError, OSError):
        pass
    finally:
        await c.close()


def check_series(db: Database, series: str, acked: list[int]) -> int:
    s = db.series.get(series)
    stamps = s.ts if s is not None else []
    assert len(stamps) == len(set(stamps)), "duplicated points"
    assert len(stamps) % BATCH == 0, "a batch was half applied"
    batches = {(t - TS) // BATCH for t in stamps}
    assert set(acked) <= batches, "an acknowledged batch was lost"
    if s is not None:
        assert s.values == [t - TS for t in stamps]
    return len(stamps)


@pytest.mark.slow
async def test_sigkill_during_inserts_loses_no_acknowledged_point(tmp_path: Path) -> None:
    proc, port = await start_server(tmp_path)
    acked: dict[str, list[int]] = {f"crash.{i}": [] for i in range(WRITERS)}
    stop, progress = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(writer(port, name, acks, stop, progress))
             for name, acks in acked.items()]

    async def enough_acks() -> None:
        while sum(map(len, acked.values())) < 300:
            progress.clear()
            await progress.wait()

    await asyncio.wait_for(enough_acks(), 30)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    stop.set()
    await asyncio.gather(*tasks)
    total_acked = sum(map(len, acked.values()))
    assert total_acked >= 300

    # What the log holds, read directly (the process is dead).
    db = Database("dbtest")
    Store(tmp_path / "dbtest", db).open()
    counts = {name: check_series(db, name, acks) for name, acks in acked.items()}

    # The restarted server serves the same data and keeps working.
    proc, port = await start_server(tmp_path)
    try:
        c = await RawClient.connect(port)
        assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
        for name, n in counts.items():
            tp, data = await c.query(f'select count() from "{name}"')
            assert tp == AnswerType.RES_QUERY, data
            assert data[name][0][1] == n
        tp, _ = await c.insert({"after-restart": [[TS, 1]]})
        assert tp == AnswerType.RES_INSERT
        await c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
