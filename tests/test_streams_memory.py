"""``Stream.iter_values`` over 5 M points keeps the client's peak RSS growth under 100 MiB.

The server runs in a process of its own, and the client in another that measures itself:
after loading the points it resets its peak-RSS mark (``/proc/self/clear_refs``), iterates
every point, and reports the peak (``VmHWM``) above the RSS it started from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

POINTS = 5_000_000
LIMIT_MIB = 100

CLIENT = textwrap.dedent(
    """
    import asyncio, gc, json, sys, uuid
    from pathlib import Path
    import numpy as np
    from tsconnector import TsClient
    from tsconnector.catalog import SqliteDB
    from tsconnector.streams import StreamDB

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    async def main(port, total):
        async with TsClient("iris", "siri", "big", [("127.0.0.1", port)]) as client:
            catalog = SqliteDB(":memory:")
            async with StreamDB(client, catalog) as db:
                stream = await db.create(uuid.uuid4(), "mem", tags={"name": "five-million"})
                step = 1_000_000
                for first in range(0, total, step):
                    offsets = np.arange(first, first + step, dtype=np.int64)
                    times = 1_700_000_000 * 10**9 + offsets * 10**6
                    await stream.insert((times, np.arange(first, first + step, dtype=np.float64)))
                del times
                gc.collect()
                Path("/proc/self/clear_refs").write_text("5")
                base = status("VmRSS")
                count, checksum = 0, 0.0
                async for point in stream.iter_values(chunk=100_000):
                    count += 1
                    checksum += point.value
                peak = status("VmHWM")
            await catalog.close()
        print(json.dumps({"count": count, "checksum": checksum, "growth": peak - base}))

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


def _clear_refs_works() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_iter_values_over_five_million_points_has_bounded_memory(tmp_path: Path) -> None:
    if not _clear_refs_works():
        pytest.skip("this system cannot reset the peak-RSS mark (/proc/self/clear_refs)")
    server = subprocess.Popen(
        [sys.executable, "-m", "tsconnector.server", "--port", "0", "--db", "big:ns"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "tsconnector server listening on host:port"
        port = int(line.rsplit(":", 1)[1])
        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        done = subprocess.run(
            [sys.executable, str(script), str(port), str(POINTS)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert result["count"] == POINTS
    assert result["checksum"] == float(POINTS * (POINTS - 1) // 2)
    assert result["growth"] < LIMIT_MIB * 2**20, result
