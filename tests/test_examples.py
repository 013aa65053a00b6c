"""The examples run as a user runs them, against an embedded server on a free port."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tsconnector import TsClient
from tsconnector.server import EmbeddedServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Runs a script with pandas and prompt_toolkit made unimportable (a bare install).
BARE = (
    "import runpy, sys; sys.modules['pandas'] = None; sys.modules['prompt_toolkit'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSCONNECTOR_")}
    env.update(extra)
    return env


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------- quickstart


async def test_quickstart_on_a_bare_install() -> None:
    code, out, err = await _run("-c", BARE, str(EXAMPLES / "quickstart.py"), env=_env())
    assert code == 0, err
    assert "Connected to an embedded server on 127.0.0.1:" in out
    assert out.rstrip().endswith("This run inserted 5000 points into 5 series. Done.")
    assert len(re.findall(r"^sensor-\d +1000 ", out, re.M)) == 5


async def test_quickstart_for_every_precision_reports_only_its_own_run() -> None:
    databases = (("dbms", "ms"), ("dbus", "us"), ("dbns", "ns"))
    async with EmbeddedServer(port=0, databases=databases) as server:
        for name, unit in databases:
            env = _env(TSCONNECTOR_DSN=f"siridb://iris:siri@127.0.0.1:{server.port}/{name}")
            runs = 2 if unit == "ns" else 1
            for _ in range(runs):
                code, out, err = await _run(str(EXAMPLES / "quickstart.py"), env=env)
                assert code == 0, err
                assert f"(time precision: {unit})" in out
                assert "This run inserted 5000 points into 5 series." in out
                hours = re.findall(r"^  (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", out, re.M)
                assert len(hours) == 4 or len(hours) == 5  # 4 h, aligned or not to the hour
            async with TsClient("iris", "siri", name, [("127.0.0.1", server.port)]) as client:
                answer = await client.query("count series /quickstart\\..*/")
                assert answer["series"] == 5 * runs


async def test_quickstart_reports_a_server_that_is_down() -> None:
    port = _closed_port()
    env = _env(TSCONNECTOR_DSN=f"siridb://127.0.0.1:{port}/dbtest")
    code, _, err = await _run(str(EXAMPLES / "quickstart.py"), env=env)
    assert code == 1
    assert err.startswith("quickstart: cannot connect to the servers in TSCONNECTOR_DSN: ")


# -------------------------------------------------------------------- FastAPI


async def test_fastapi_app(embedded_server: Any) -> None:
    httpx = pytest.importorskip("httpx")
    fastapi_app = _load("fastapi_app")
    app = fastapi_app.create_app(f"siridb://127.0.0.1:{embedded_server.port}/dbtest")
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            health = await http.get("/health")
            assert health.json() == {"hosts": [{"host": "127.0.0.1", "state": "ready"}]}
            name = 'room "7" temp'  # quotes reach the server as part of one name
            created = await http.post(f"/series/{name}", json={"points": [[10, 1.5], [20, 2.5]]})
            assert created.status_code == 201
            assert created.json()["stored"] == 2
            last = await http.get(f"/series/{name}/last")
            assert last.json() == {"series": name, "timestamp": 20, "value": 2.5}
            assert (await http.get("/series/nothing/last")).status_code == 404


async def test_fastapi_app_answers_503_at_once_when_no_host_is_ready() -> None:
    httpx = pytest.importorskip("httpx")
    fastapi_app = _load("fastapi_app")
    app = fastapi_app.create_app(f"siridb://127.0.0.1:{_closed_port()}/dbtest")
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            assert (await http.get("/health")).status_code == 503
            response = await asyncio.wait_for(http.get("/series/x/last"), 1.5)  # not QUERY_TIMEOUT
            assert response.status_code == 503


# -------------------------------------------------------------------- aiohttp


async def test_aiohttp_app(embedded_server: Any) -> None:
    test_utils = pytest.importorskip("aiohttp.test_utils")
    aiohttp_app = _load("aiohttp_app")
    app = aiohttp_app.create_app(f"siridb://127.0.0.1:{embedded_server.port}/dbtest")
    async with test_utils.TestClient(test_utils.TestServer(app)) as http:
        created = await http.post("/series/cpu", json={"points": [[5, 0.25], [6, 0.5]]})
        assert created.status == 201
        last = await http.get("/series/cpu/last")
        assert await last.json() == {"series": "cpu", "timestamp": 6, "value": 0.5}
        bad = await http.post("/series/cpu", json={"points": {"a": [1, 2]}})
        assert bad.status == 400
        client = app[aiohttp_app.TSCLIENT]
        assert client.connected
    assert client.is_closed  # the cleanup context closed it


# -------------------------------------------------------------- ingest daemon


async def test_ingest_daemon_stops_on_sigterm_without_losing_a_point(
    embedded_server: Any, tmp_path: Path
) -> None:
    env = _env(TSCONNECTOR_DSN=f"siridb://127.0.0.1:{embedded_server.port}/dbtest")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "ingest_daemon.py"),
        "--sensors", "20", "--rate", "200", "--report-every", "500", "--max-delay", "0.2",
        "--spool-dir", str(tmp_path / "spool"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        sent = 0
        while sent == 0:  # until the server has acknowledged a batch
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "the daemon ended early"
            if match := re.match(r"produced \d+ points, sent (\d+)", line):
                sent = int(match.group(1))
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    final = re.search(r"stopped: produced (\d+) points, sent (\d+), failed 0, left in the spool 0",
                      out.decode())
    assert final, out
    produced = int(final.group(1))
    assert int(final.group(2)) == produced
    async with TsClient("iris", "siri", "dbtest", [("127.0.0.1", embedded_server.port)]) as client:
        answer = await client.query("select count() from /sensor\\..*/")
    assert sum(points[0][1] for points in answer.values()) == produced
