"""Helpers several test files share: bounded waits for a client's host state or any
condition, and worker processes started for a test and fed lines on their stdin."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tsconnector import TsClient
from tsconnector.events import HostEvent, HostState


async def wait_state(client: TsClient, port: int, state: HostState, timeout: float = 5) -> None:
    """Wait (event-driven, bounded) until the host on ``port`` reaches ``state``."""
    reached = asyncio.Event()

    def check(_event: HostEvent | None = None) -> None:
        if any(s.port == port and s.state is state for s in client.stats()):
            reached.set()

    unsubscribe = client.on_host_event(check)
    try:
        check()
        await asyncio.wait_for(reached.wait(), timeout)
    finally:
        unsubscribe()


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """Poll ``check()`` (sync or async) until it is true; AssertionError after ``timeout``
    seconds. For state no event announces; bounded, not a synchronisation sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


class WorkerProcs:
    """Python worker processes running ``script``: each prints ``ready`` once started,
    reads lines on stdin and prints a JSON result as its last line."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, argv: list[str]) -> asyncio.subprocess.Process:
        """Start one worker and wait for its ``ready``."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            self.script,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line == b"ready\n", line
        return proc

    def send(self, line: bytes, procs: list[asyncio.subprocess.Process] | None = None) -> None:
        """Write ``line`` to the workers still running (all, or those of ``procs``)."""
        for proc in procs if procs is not None else self.procs:
            if proc.returncode is None:
                assert proc.stdin is not None
                proc.stdin.write(line)

    async def results(self, procs: list[asyncio.subprocess.Process] | None = None) -> list[Any]:
        """Each worker's JSON result, after it exited with status 0."""
        out = []
        for proc in procs if procs is not None else self.procs:
            stdout, _ = await asyncio.wait_for(proc.communicate(), 300)
            assert proc.returncode == 0, stdout
            out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
        return out

    def kill(self) -> None:
        """Kill the workers still running."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
