"""A full disk under the write-ahead log, for real (issue 11, item 7).

The server runs in a subprocess; its file size limit (``RLIMIT_FSIZE``) is lowered to
just above the log's size, so the next journal write fails part-way with EFBIG (as a
full disk fails with ENOSPC), then raised again. A failed write means "not applied":
the insert is answered ``ERR_SERVER``, nothing of it is visible, so the client's retries
store no duplicate; the partial record is cut off, so once the limit is raised the
server takes inserts again without a restart, and after SIGKILL or SIGTERM a restart
holds exactly the acknowledged batches.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from server_wire import RawClient

from tsconnector import TsClient
from tsconnector.exceptions import TsConnectorError
from tsconnector.protocol import AnswerType

ROOT = Path(__file__).resolve().parent.parent
TS = 1699920000
BATCH = 200


def _ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, like the CLI


async def start_server(data_dir: Path) -> tuple[asyncio.subprocess.Process, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0",
        "--data-dir", str(data_dir), stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT),
        preexec_fn=_ignore_sigxfsz,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert "listening on" in line, line
    return proc, int(line.rsplit(":", 1)[1])


def batch(k: int) -> dict[str, Any]:
    return {"full": [[TS + k * BATCH + j, k] for j in range(BATCH)]}


def set_file_limit(pid: int, soft: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def log_size(data_dir: Path) -> int:
    return max(p.stat().st_size for p in (data_dir / "dbtest").glob("wal-*.log"))


async def stored_batches(c: RawClient) -> list[int]:
    tp, data = await c.query('select * from "full"')
    assert tp == AnswerType.RES_QUERY, data
    values = [v for _, v in data.get("full", [])]
    stamps = [t for t, _ in data.get("full", [])]
    assert len(stamps) == len(set(stamps)), "duplicated points"
    assert len(values) % BATCH == 0, "a batch was half applied"
    return sorted(set(values))


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["sigkill", "sigterm", "sigterm-while-full"])
async def test_full_disk_means_not_applied_and_loses_nothing_after(
    tmp_path: Path, stop: str
) -> None:
    proc, port = await start_server(tmp_path)
    try:
        c = await RawClient.connect(port)
        assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
        for k in range(5):
            assert (await c.insert(batch(k)))[0] == AnswerType.RES_INSERT
        limit = log_size(tmp_path) + 300  # the next batch (about 2 kB) fails part-way
        set_file_limit(proc.pid, limit)

        for _ in range(5):  # a client retrying the same batch
            tp, data = await c.insert(batch(5))
            assert tp == AnswerType.ERR_SERVER
            assert "nothing of this request was stored" in data["error_msg"]
        assert await stored_batches(c) == [0, 1, 2, 3, 4]  # nothing visible
        assert log_size(tmp_path) <= limit - 300  # the partial record was cut off

        # The driver's own retries (on ServerError) store nothing twice either.
        client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", port)], inactive_time=0.2)
        await client.connect()
        with pytest.raises(TsConnectorError):
            await client.insert(batch(6), timeout=2)
        client.close()
        await client.wait_closed()
        assert await stored_batches(c) == [0, 1, 2, 3, 4]

        if stop != "sigterm-while-full":
            set_file_limit(proc.pid, resource.RLIM_INFINITY)  # space is freed
            for k in (7, 8):
                assert (await c.insert(batch(k)))[0] == AnswerType.RES_INSERT
        acked = [0, 1, 2, 3, 4] if stop == "sigterm-while-full" else [0, 1, 2, 3, 4, 7, 8]
        assert await stored_batches(c) == acked
        await c.close()
    finally:
        proc.send_signal(signal.SIGKILL if stop == "sigkill" else signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == (-signal.SIGKILL if stop == "sigkill" else 0)

    proc, port = await start_server(tmp_path)
    try:
        c = await RawClient.connect(port)
        assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
        assert await stored_batches(c) == acked
        assert (await c.insert(batch(9)))[0] == AnswerType.RES_INSERT
        await c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
