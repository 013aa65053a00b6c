"""Availability limits of the embedded server (issue 11, item 11): a connection cap,
handshake and idle timeouts, bytes buffered before authentication, accept() out of file
descriptors without a flood of tracebacks, and the rate-limited log."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from server_wire import RawClient

from tsconnector.protocol import AnswerType, RequestType, encode_header
from tsconnector.server import EmbeddedServer
from tsconnector.server.limits import ServerLimits
from tsconnector.server.ratelog import RateLimitedLog

ROOT = Path(__file__).resolve().parent.parent


async def open_idle(port: int, n: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
    return writers


async def test_idle_sockets_cannot_lock_out_clients() -> None:
    async with EmbeddedServer(max_connections=20, handshake_timeout=0.5) as srv:
        idle = await open_idle(srv.port, 40)  # never say a word
        assert srv.connection_count <= 20
        client = await RawClient.connect(srv.port)  # waits in the backlog, then gets in
        assert await asyncio.wait_for(client.auth(), 30) == AnswerType.RES_AUTH_SUCCESS
        await client.ping()
        assert srv.connection_count <= 20
        await client.close()
        for writer in idle:
            writer.close()


async def test_handshake_timeout_closes_silent_connections() -> None:
    async with EmbeddedServer(handshake_timeout=0.3) as srv:
        silent = await RawClient.connect(srv.port)
        pinging = await RawClient.connect(srv.port)  # pings do not authenticate
        await pinging.ping()
        authed = await RawClient.connect(srv.port)
        assert await authed.auth() == AnswerType.RES_AUTH_SUCCESS
        assert await silent.closed_by_server(timeout=30)
        assert await pinging.closed_by_server(timeout=30)
        await authed.ping()  # authenticated: stays
        for c in (silent, pinging, authed):
            await c.close()


async def test_idle_timeout_closes_only_silent_authenticated_connections() -> None:
    async with EmbeddedServer(idle_timeout=0.5) as srv:
        quiet = await RawClient.connect(srv.port)
        assert await quiet.auth() == AnswerType.RES_AUTH_SUCCESS
        busy = await RawClient.connect(srv.port)
        assert await busy.auth() == AnswerType.RES_AUTH_SUCCESS
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not quiet.eof.is_set():
            assert loop.time() < deadline, "the idle connection was never closed"
            await busy.ping()  # keeps talking: never idle
            await asyncio.wait([asyncio.ensure_future(quiet.eof.wait())], timeout=0.1)
        await busy.ping()
        await quiet.close()
        await busy.close()


async def test_unauthenticated_frames_cannot_buffer_much() -> None:
    async with EmbeddedServer(max_unauth_bytes=64 * 1024) as srv:
        attackers = []
        for _ in range(10):
            c = await RawClient.connect(srv.port)
            c.write(encode_header(40 * 1024 * 1024, 1, RequestType.INSERT))
            attackers.append(c)
        chunk = b"\0" * (64 * 1024)
        peak = 0
        for _ in range(8):  # 512 kB each, far less than the 40 MiB they declare
            for c in attackers:
                if not c.eof.is_set():
                    c.write(chunk)
            await asyncio.sleep(0)
            peak = max(peak, max((p.decoder.buffered for p in srv.state.connections),
                                 default=0))
        for c in attackers:
            assert await c.closed_by_server(timeout=30)
            await c.close()
        assert peak <= 64 * 1024 + 256 * 1024  # the cap plus at most one read
        # Authenticated clients keep SiriDB's 40 MiB frame limit.
        ok = await RawClient.connect(srv.port)
        assert await ok.auth() == AnswerType.RES_AUTH_SUCCESS
        big = {"big": [[1699920000 + i, i] for i in range(100_000)]}
        assert (await ok.insert(big))[0] == AnswerType.RES_INSERT
        await ok.close()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        ServerLimits(max_connections=0)
    with pytest.raises(ValueError):
        ServerLimits(handshake_timeout=0)
    with pytest.raises(ValueError):
        EmbeddedServer(max_unauth_bytes=10)
    server = EmbeddedServer(idle_timeout=None, handshake_timeout=None, max_connections=7)
    assert (server.limits.idle_timeout, server.limits.handshake_timeout) == (None, None)
    assert server.limits.max_connections == 7


# -- out of file descriptors -------------------------------------------------------------
SERVER_WITH_FEW_FDS = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
hog = [os.open(os.devnull, os.O_RDONLY) for _ in range(95)]  # leave about 20 free
from tsconnector.server.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
async def test_out_of_descriptors_on_accept_logs_a_line_not_a_flood(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    err_path = tmp_path / "stderr"
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVER_WITH_FEW_FDS, "--port", "0", "--max-connections",
            "1000", stdout=asyncio.subprocess.PIPE, stderr=err, env=env, cwd=str(ROOT),
        )
    finally:
        os.close(err)
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        port = int(line.rsplit(":", 1)[1])
        idle = await open_idle(port, 60)  # more than the process can take
        probe = await RawClient.connect(port)
        assert await probe.silent(1.0)  # time for the server to hit EMFILE repeatedly
        for writer in idle:
            writer.close()
        # Descriptors free again: the server serves without a restart.
        assert await asyncio.wait_for(probe.auth(), 30) == AnswerType.RES_AUTH_SUCCESS
        await probe.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    with open(err_path) as fh:  # noqa: ASYNC230 (the server is gone; a small file)
        text = fh.read()
    assert "Traceback" not in text
    assert 1 <= text.count("cannot accept connections") <= 5  # rate-limited


# -- the rate-limited log ------------------------------------------------------------------
def test_rate_limited_log_holds_back_floods_and_reports_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    rlog = RateLimitedLog(logging.getLogger("test.ratelog"), period=10, burst=3,
                          clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "test.ratelog"):
        logged = [rlog.warning("flood", "event %d", i) for i in range(1000)]
        assert logged.count(True) == 3
        assert rlog.warning("other", "a different key")  # keys are limited separately
        assert rlog.suppressed("flood") == 997
        now[0] = 10.0
        assert rlog.warning("flood", "event after")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:4] == ["event 0", "event 1", "event 2", "a different key"]
    assert "997 similar messages (flood) were suppressed in 10 s" in messages
    assert messages[-1] == "event after"
