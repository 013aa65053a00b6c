"""Helpers of the aggregate tests: worker processes, bounded waits, shared backends."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

WORKER = str(Path(__file__).with_name("aggregate_worker.py"))
SHARED = pytest.mark.parametrize(
    "catalog_backend",
    ["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)


class Workers:
    """Worker processes: each prints ``ready``; every line written goes to all of them."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, argv: list[str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            WORKER,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line == b"ready\n", line
        return proc

    def tell(self, procs: list[asyncio.subprocess.Process] | None = None) -> None:
        for proc in procs if procs is not None else self.procs:
            if proc.returncode is None:
                assert proc.stdin is not None
                proc.stdin.write(b"next\n")

    async def results(self, procs: list[asyncio.subprocess.Process] | None = None) -> list[Any]:
        out = []
        for proc in procs if procs is not None else self.procs:
            stdout, _ = await asyncio.wait_for(proc.communicate(), 300)
            assert proc.returncode == 0, stdout
            out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
        return out

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


async def wait_until(check: Any, timeout: float = 120.0, what: str = "condition") -> None:
    """Poll an async ``check()`` until it is true (bounded; not a synchronisation sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
