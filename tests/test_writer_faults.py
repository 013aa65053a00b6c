"""BufferedWriter under faults: server kills, cut connections, writer crashes.

The server runs as a subprocess with ``--data-dir`` on a fixed port so it can be
SIGKILLed and restarted in place; a FaultProxy sits between the client and the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tsconnector.client import TsClient
from tsconnector.ql import quote_name
from tsconnector.testing.proxy import FaultProxy
from tsconnector.writer import BufferedWriter

ROOT = Path(__file__).resolve().parent.parent
FAST: dict[str, Any] = {
    "timeout": 1.0,
    "initial_retry_wait": 0.02,
    "max_wait_retry": 0.2,
    "inactive_time": 0.1,
    "pool_retry_wait": 0.05,
}
QUICK: dict[str, Any] = {
    "insert_timeout": 2.0,
    "query_timeout": 5.0,
    "retry_initial": 0.02,
    "retry_max": 0.2,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class ServerProcess:
    """``python -m tsconnector.server`` on a fixed port and data dir; kill and restart it."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tsconnector.server", "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.data_dir),
            stdout=asyncio.subprocess.PIPE, env=child_env(), cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert b"listening" in line, line
        self.starts += 1

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def proxy(server_process: ServerProcess) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", server_process.port) as prx:
        yield prx


@pytest.fixture
async def client(proxy: FaultProxy) -> AsyncIterator[TsClient]:
    cli = TsClient("iris", "siri", "dbtest", [proxy.address], **FAST)
    await cli.connect()
    try:
        yield cli
    finally:
        cli.close()
        await cli.wait_closed()


Expected = dict[str, tuple[np.ndarray, np.ndarray]]


async def assert_exact(client: TsClient, expected: Expected) -> None:
    """Every series holds exactly the expected points: no loss, no duplicate."""
    names = list(expected)
    answer = await client.query(
        f"select count() from {', '.join(quote_name(n) for n in names)}", timeout=60
    )
    got_counts = {n: answer[n][0][1] if answer.get(n) else 0 for n in names}
    assert got_counts == {n: len(expected[n][0]) for n in names}
    for name in names:
        stored = (await client.query(f"select * from {quote_name(name)}", timeout=60))[name]
        ts, values = expected[name]
        assert [p[0] for p in stored] == ts.tolist(), name
        assert [p[1] for p in stored] == values.tolist(), name


# ------------------------------------------------------------ server faults


class RequestWatch:
    """Wraps the client's insert and query: is a request in flight, and signal each end."""

    def __init__(self, client: TsClient) -> None:
        self.active = 0
        self.changed = asyncio.Event()
        insert, query = client.insert, client.query

        async def watched_insert(data: Any, timeout: float = 300, *, retry: Any = "safe") -> Any:
            return await self._watch(insert(data, timeout, retry=retry))

        async def watched_query(q: Any, *args: Any, **kwargs: Any) -> Any:
            return await self._watch(query(q, *args, **kwargs))

        client.insert = watched_insert  # type: ignore[method-assign]
        client.query = watched_query  # type: ignore[method-assign]

    async def _watch(self, call: Any) -> Any:
        self.active += 1
        self.changed.set()
        try:
            return await call
        finally:
            self.active -= 1
            self.changed.set()

    async def until(self, condition: Any, timeout: float = 30) -> None:
        """Wait (bounded) until ``condition()`` holds, re-checking at each request start/end."""
        while not condition():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout)


@pytest.mark.slow
async def test_million_points_survive_kills_and_cuts(
    server_process: ServerProcess, proxy: FaultProxy, client: TsClient, tmp_path: Path
) -> None:
    n_series, per_series, chunk = 20, 50_000, 1_000
    total = n_series * per_series
    expected: Expected = {}
    for s in range(n_series):
        ts = np.arange(1_000_000, 1_000_000 + per_series, dtype=np.int64) * 3
        values = ts * 0.25 if s % 2 else (ts % 9973) - 5_000
        expected[f"ingest.{s}"] = (ts, values)
    watch = RequestWatch(client)
    started = time.monotonic()
    log: list[str] = []

    async def produce(writer: BufferedWriter) -> None:
        for start in range(0, per_series, chunk):
            for s, (name, (ts, values)) in enumerate(expected.items()):
                part = (ts[start : start + chunk], values[start : start + chunk])
                if s % 5 == 0:  # some callers give lists of pairs
                    await writer.add_many({name: list(zip(part[0].tolist(), part[1].tolist()))})
                else:
                    await writer.add_many({name: part})

    async def inject(writer: BufferedWriter) -> None:
        def delivered() -> int:
            stats = writer.stats()
            return stats.sent + stats.checked_present

        for fraction, fault in [(0.1, "kill"), (0.25, "drop"), (0.4, "kill"),
                                (0.55, "mid-frame"), (0.7, "kill")]:
            await watch.until(lambda f=fraction: delivered() >= f * total)
            log.append(f"{time.monotonic() - started:.1f}s {fault} at {delivered()}")
            if fault == "kill":
                proxy.stall()  # hold what is in flight, then kill the server under it
                await watch.until(lambda: watch.active > 0)
                retries = writer.stats().retries
                await server_process.kill()
                proxy.resume()
                await watch.until(lambda r=retries: writer.stats().retries > r)
                await server_process.start()
            elif fault == "drop":
                await watch.until(lambda: watch.active > 0)
                assert proxy.drop_all() >= 1
            else:
                proxy.cut_mid_frame()

    async with BufferedWriter(
        client, spool_dir=tmp_path / "spool", max_batch_points=10_000,
        max_buffer_points=100_000, max_delay=0.2, **QUICK,
    ) as writer:
        faults = asyncio.ensure_future(inject(writer))
        await produce(writer)
        await asyncio.wait_for(faults, 60)
        await writer.flush(timeout=60)
        stats = writer.stats()
    elapsed = time.monotonic() - started
    print(f"\n1M points through 3 server kills + 2 cuts: {elapsed:.1f} s; {'; '.join(log)}")
    print(stats)
    assert server_process.starts == 4
    assert stats.added == stats.sent + stats.checked_present == total
    assert stats.failed == 0
    assert stats.spooled == 0
    assert stats.ambiguous >= 4
    assert stats.peak_buffered <= 100_000
    await assert_exact(client, expected)


async def test_memory_only_writer_survives_kill_and_cut(
    server_process: ServerProcess, proxy: FaultProxy, client: TsClient
) -> None:
    n_series, per_series = 5, 20_000
    expected = {
        f"mem.{s}": (np.arange(per_series, dtype=np.int64), np.arange(per_series) * 1.5 + s)
        for s in range(n_series)
    }
    async with BufferedWriter(
        client, max_batch_points=5_000, max_buffer_points=30_000, max_delay=0.1, **QUICK
    ) as writer:
        for start in range(0, per_series, 500):
            await writer.add_many(
                {name: (ts[start : start + 500], v[start : start + 500])
                 for name, (ts, v) in expected.items()}
            )
            if start == 4_000:
                proxy.cut_mid_frame()
            if start == 10_000:
                await server_process.kill()
                await server_process.start()
        await writer.flush(timeout=60)
        stats = writer.stats()
    assert stats.failed == 0
    assert stats.ambiguous >= 1
    assert stats.peak_buffered <= 30_000
    await assert_exact(client, expected)


async def test_memory_bounded_while_server_down(
    server_process: ServerProcess, proxy: FaultProxy, client: TsClient, tmp_path: Path
) -> None:
    proxy.kill()
    total, chunk, bound = 200_000, 1_000, 20_000
    tracemalloc.start()
    try:
        async with BufferedWriter(
            client, spool_dir=tmp_path / "spool", max_batch_points=5_000,
            max_buffer_points=bound, max_delay=60, **QUICK,
        ) as writer:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for start in range(0, total, chunk):
                name = f"down.{start // chunk % 4}"
                await writer.add_many({name: [(start + j, float(j)) for j in range(chunk)]})
                stats = writer.stats()
                assert stats.buffered + stats.spooled == stats.added
            await writer.sync()
            peak = tracemalloc.get_traced_memory()[1] - base
            stats = writer.stats()
            assert stats.peak_buffered <= bound
            assert stats.spooled == total
            assert stats.sent == 0
            # the points alone take > 20 MB as Python objects; the writer held a bounded part
            print(f"\ntraced peak while down: {peak / 1e6:.1f} MB for {total} points")
            assert peak < 12_000_000, peak
            proxy.revive()
            await writer.flush(timeout=60)
            stats = writer.stats()
            assert stats.sent == total
            assert stats.replayed >= total - bound  # all but what fit in memory came from disk
    finally:
        tracemalloc.stop()
    answer = await client.query('select count() from /down\\..*/')
    assert sum(v[0][1] for v in answer.values()) == total


# ------------------------------------------------------------- writer crash

CHILD = r"""
import asyncio, json, sys
from tsconnector.client import TsClient
from tsconnector.writer import BufferedWriter

port, spool, chunks, series, chunk = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])

def stream():
    for k in range(chunks):
        name = f"crash.{k % series}"
        base = (k // series) * chunk
        yield name, [(base + j, base + j * 2) for j in range(chunk)]

async def main():
    client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", int(port))], timeout=1.0,
                      initial_retry_wait=0.02, max_wait_retry=0.2)
    await client.connect()
    writer = BufferedWriter(client, spool_dir=spool, max_batch_points=2_000,
                            max_buffer_points=8_000, max_delay=0.02, insert_timeout=2.0,
                            retry_initial=0.02, retry_max=0.2)
    await writer.start()
    skip = writer.position
    print("START", skip, writer.stats().spooled, flush=True)
    for k, (name, points) in enumerate(stream()):
        if skip >= len(points):
            skip -= len(points)
            continue
        await writer.add_many({name: points[skip:]})
        skip = 0
        stats = writer.stats()
        print("ADDED", k, stats.sent, stats.spooled, flush=True)
        if k >= chunks // 2:  # the parent says go on (or kills us); deliveries go on meanwhile
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await writer.close()
    print("DONE", json.dumps(writer.stats().__dict__), flush=True)
    client.close()
    await client.wait_closed()

asyncio.run(main())
"""


async def run_child(args: list[str], gated: bool = False) -> asyncio.subprocess.Process:
    """The writer process; ``gated``: from the middle of the stream on it waits for a line
    on stdin after each chunk (so the parent kills it exactly where it decides)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, *args, stdout=asyncio.subprocess.PIPE, env=child_env(),
        stdin=asyncio.subprocess.PIPE if gated else asyncio.subprocess.DEVNULL, cwd=ROOT,
    )


async def test_writer_process_killed_and_resumed(
    server_process: ServerProcess, proxy: FaultProxy, client: TsClient, tmp_path: Path
) -> None:
    chunks, n_series, chunk = 120, 4, 500
    args = [str(proxy.port), str(tmp_path / "spool"), str(chunks), str(n_series), str(chunk)]
    proxy.set_delay(0.005)  # keep inserts in flight so the kill lands mid-delivery
    first = await run_child(args, gated=True)
    assert first.stdout is not None
    assert first.stdin is not None
    start_line = await asyncio.wait_for(first.stdout.readline(), 30)
    assert start_line.split() == [b"START", b"0", b"0"]
    while True:
        line = await asyncio.wait_for(first.stdout.readline(), 30)
        assert line.startswith(b"ADDED"), line
        _, k, sent, spooled = line.split()[:4]
        if int(k) >= chunks // 2 and int(sent) > 0 and int(spooled) > 0:
            break  # kill with points acknowledged, spooled and (likely) in flight
        if int(k) >= chunks // 2:
            first.stdin.write(b"\n")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    proxy.set_delay(0)

    second = await run_child(args)
    out, _ = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 0
    lines = out.decode().splitlines()
    start = lines[0].split()
    resumed_at, left_spooled = int(start[1]), int(start[2])
    assert 0 < resumed_at <= (chunks // 2 + 1) * chunk
    assert lines[-1].startswith("DONE")
    stats = json.loads(lines[-1][5:])
    print(f"\nresumed at point {resumed_at}, {left_spooled} spooled; second writer: {stats}")
    assert stats["failed"] == 0
    assert stats["spooled"] == 0
    assert stats["replayed"] + stats["checked_present"] >= left_spooled

    expected: Expected = {}
    for s in range(n_series):
        ts = np.arange(chunks // n_series * chunk, dtype=np.int64)
        expected[f"crash.{s}"] = (ts, (ts // chunk) * chunk + (ts % chunk) * 2)
    await assert_exact(client, expected)
