"""One server process per data directory, database names that stay inside it, and no
deletion of files the server did not create (issue 11, item 8)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from server_wire import RawClient

from tsconnector.protocol import AnswerType
from tsconnector.server import EmbeddedServer
from tsconnector.server.datadir import validate_database_name
from tsconnector.server.errors import DataDirLocked, InvalidDatabaseName

ROOT = Path(__file__).resolve().parent.parent
TS = 1699920000


async def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with EmbeddedServer(data_dir=tmp_path) as first:
        c = await RawClient.connect(first.port)
        await c.auth()
        assert (await c.insert({"a": [[TS, 1]]}))[0] == AnswerType.RES_INSERT
        second = EmbeddedServer(data_dir=tmp_path)
        with pytest.raises(DataDirLocked, match=f"{tmp_path} is in use by another server "
                                                f"\\(pid {os.getpid()}\\)"):
            await second.start()
        assert (await c.insert({"a": [[TS + 1, 2]]}))[0] == AnswerType.RES_INSERT
        await c.close()
    async with EmbeddedServer(data_dir=tmp_path) as again:  # free once the first stopped
        assert again.database("dbtest").series["a"].values == [1, 2]


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=str(ROOT),
    )


async def test_second_server_process_exits_with_a_clear_error(tmp_path: Path) -> None:
    first = await run_cli("--data-dir", str(tmp_path))
    assert first.stdout is not None
    try:
        line = (await asyncio.wait_for(first.stdout.readline(), 30)).decode()
        assert "listening on" in line
        second = await run_cli("--data-dir", str(tmp_path))
        _, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 75
        assert err.decode().strip().splitlines() == [
            f"tsconnector server: data directory {tmp_path} is in use by another server "
            f"(pid {first.pid})"
        ]
    finally:
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0


BAD_NAMES = ["..", "../x", "/tmp/x", "a/b", ".", "x", "1db", "db-", "_db", "a" * 21, "d b",
             "db\n", "d\u00e9b", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_database_names_are_validated_as_siridb_does(tmp_path: Path, name: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "unrelated.tmp").write_text("not the server's")
    with pytest.raises(InvalidDatabaseName) as info:
        EmbeddedServer(data_dir=data_dir, databases=[(name, "s")])
    assert str(info.value) == f"invalid database name: '{name}'"
    assert sorted(os.listdir(tmp_path)) == ["data", "unrelated.tmp"]
    assert os.listdir(data_dir) == []


@pytest.mark.parametrize("name", ["ab", "dbtest", "a-b_c9", "Z" * 20])
def test_valid_database_names(name: str) -> None:
    assert validate_database_name(name) == name


async def test_cli_refuses_an_escaping_database_name(tmp_path: Path) -> None:
    (tmp_path / "keep.tmp").write_text("x")
    data_dir = tmp_path / "data"
    proc = await run_cli("--data-dir", str(data_dir), "--db", "..")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "invalid database name: '..'" in err.decode()
    assert (tmp_path / "keep.tmp").read_text() == "x"


async def test_the_server_never_deletes_files_it_did_not_create(tmp_path: Path) -> None:
    directory = tmp_path / "dbtest"
    directory.mkdir()
    foreign = {
        tmp_path / "notes.tmp": b"1",
        directory / "mine.tmp": b"2",
        directory / "wal-1.log": b"3",
        directory / "snapshot-x.msgpack": b"4",
        directory / "wal-0000000000.log.bak": b"5",
    }
    for path, data in foreign.items():
        path.write_bytes(data)
    async with EmbeddedServer(data_dir=tmp_path, snapshot_bytes=1024) as srv:
        c = await RawClient.connect(srv.port)
        await c.auth()
        for k in range(20):  # several snapshots, each retiring older logs
            assert (await c.insert({"a": [[TS + k, k] for _ in range(20)]}))[0] == (
                AnswerType.RES_INSERT)
        assert await srv.state.stores["dbtest"].snapshot()
        await c.close()
    for path, data in foreign.items():
        assert path.read_bytes() == data
