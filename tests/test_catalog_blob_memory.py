"""A 1 GiB blob is written and read back with bounded memory, on SQLite and PostgreSQL.

Each run is a separate process (``catalog_worker.py blob``), so the peak RSS it reports
is the blob path's own and not blurred by this test process's allocations.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from catalog_backends import Backend

WORKER = str(Path(__file__).with_name("catalog_worker.py"))
GIB_IN_MIB = 1024
MAX_GROWTH_MIB = 64


@pytest.mark.slow
async def test_one_gib_blob_round_trip_in_bounded_memory(catalog_backend: Backend) -> None:
    if not catalog_backend.shareable:
        pytest.skip("an in-memory SQLite database holds the blob in RAM by definition")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        WORKER,
        "blob",
        catalog_backend.url,
        str(GIB_IN_MIB),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(b"go\n"), 600)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, stdout
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    assert result["written"] == result["read"] == GIB_IN_MIB << 20
    assert result["crc_in"] == result["crc_out"]
    assert result["growth_mib"] < MAX_GROWTH_MIB, result
