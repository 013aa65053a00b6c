"""Replay the 74 raw exchanges of a real SiriDB 2.0.55 (frames.json) against the embedded server.

The exchanges were recorded in order on a few connections of one server; they are
replayed in the same order, on the same grouping of connections, against a server whose
``dbtest`` holds the series the recording relied on. Answers must match byte for byte,
except where the recording marks them volatile (uuids and password hashes).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import qpack

from tsconnector.protocol import HEADER, AnswerType, RequestType, encode_frame
from tsconnector.server import EmbeddedServer

DATA = Path(__file__).parent / "data" / "frames.json"
EXCHANGES: list[dict[str, Any]] = json.loads(DATA.read_text())["exchanges"]
BY_NAME = {e["name"]: e for e in EXCHANGES}

#: Which exchanges shared a connection in the recording (by index), in replay order.
#: A leading ``("auth", pid)`` step authenticates as iris first (not recorded).
GROUPS: list[tuple[str, list[int]]] = [
    ("main", list(range(47))),
    ("wrong-password", [47, 48]),
    ("unknown-user", [49]),
    ("unknown-db", [50]),
    ("malformed-auth", [51, 52, 53, 54, 55]),
    ("unauthenticated", [56, 57, 58, 59, 60]),
    ("oversized", [61]),
    ("admin", [62, 63]),
    ("readonly", [64, 65, 66, 67, 68]),
    ("admin", [69, 70]),
    ("connector", [71, 72, 73]),
]

FIXED_TS = 1699920000
SILENCE = 0.3


def populate(server: EmbeddedServer) -> None:
    """The dbtest state the recording saw: 26 series, among them those it queried."""
    db = server.database("dbtest")
    step = 600
    db.insert({
        "str-series": [[FIXED_TS + 60 * i, s]
                       for i, s in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"])],
        "sensor.a": [[FIXED_TS + step * i, i] for i in range(6)],
        "sensor.b": [[FIXED_TS + step * i, 2 * i] for i in range(6)],
        "sensor.c": [[FIXED_TS + step * i, 1.5 * i] for i in range(6)],
        "one": [[FIXED_TS, 42]],
        "many": [[FIXED_TS + i, i % 100] for i in range(1000)],
    })
    db.insert({f"filler.{i:02d}": [[FIXED_TS, i]] for i in range(20)})
    assert len(db.series) == 26


def request_bytes(ex: dict[str, Any]) -> bytes:
    text = ex["request_hex"]
    data = bytes.fromhex(text.split("...", 1)[0])
    if ex["name"] == "query_too_long":
        # The recording kept only the start of the 70 023-byte payload: pad it.
        length = HEADER.unpack_from(data)[0]
        data = data + b"x" * (length - (len(data) - HEADER.size))
    return data


def masked(ex_name: str, payload: bytes) -> bytes:
    """Blank the volatile database uuid in RES_FILE payloads."""
    if ex_name == "file_servers":
        return payload[:4] + bytes(16) + payload[20:]
    if ex_name == "file_database":
        return payload[:3] + bytes(16) + payload[19:]
    return payload


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read_frames(self, count: int) -> list[tuple[int, int, bytes]]:
        frames = []
        for _ in range(count):
            header = await asyncio.wait_for(self.reader.readexactly(HEADER.size), 10)
            length, pid, tp, _check = HEADER.unpack(header)
            payload = await asyncio.wait_for(self.reader.readexactly(length), 10)
            frames.append((pid, tp, header + payload))
        return frames

    async def silent(self) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(1), SILENCE)
        except asyncio.TimeoutError:
            return True
        return data == b"" and False

    async def at_eof(self) -> bool:
        data = await asyncio.wait_for(self.reader.read(1), 5)
        return data == b""

    async def ping(self) -> None:
        self.writer.write(encode_frame(60000, RequestType.PING))
        [(pid, tp, _)] = await self.read_frames(1)
        assert (pid, tp) == (60000, AnswerType.RES_ACK)


async def replay(ex: dict[str, Any], conn: Conn) -> None:
    name = ex["name"]
    conn.writer.write(request_bytes(ex))
    await conn.writer.drain()
    if ex.get("connection_closed_by_server"):
        assert await conn.at_eof(), name
        return
    if ex.get("no_response"):
        assert await conn.silent(), f"{name}: the server answered"
        if name != "split_frame_across_writes_part1":
            await conn.ping()
        return
    expected = ex["response_frames"]
    got = await conn.read_frames(len(expected))
    for want, (pid, tp, raw) in zip(expected, got):
        assert (pid, tp) == (want["pid"], want["type"]), name
        want_raw = bytes.fromhex(want["header_hex"] + want["payload_hex"])
        if name == "file_users":  # salted password hash: compare the shape
            data = qpack.unpackb(raw[HEADER.size:], decode="utf-8")
            assert data[0] == 1
            assert [(u[0], u[2]) for u in data[1:]] == [("iris", 1023)]
            assert isinstance(data[1][1], str)
        else:
            assert masked(name, raw[HEADER.size:]) == masked(name, want_raw[HEADER.size:]), name
            assert raw[: HEADER.size] == want_raw[: HEADER.size], name


@pytest.mark.slow
async def test_replay_all_exchanges_in_order() -> None:
    async with EmbeddedServer(databases=(("dbtest", "s"), ("dbms", "ms"))) as server:
        populate(server)
        conns: dict[str, Conn] = {}
        replayed = 0
        for group, indexes in GROUPS:
            conn = conns.get(group)
            if conn is None:
                conn = conns[group] = Conn(*await asyncio.open_connection("127.0.0.1", server.port))
                if group == "admin":
                    conn.writer.write(encode_frame(1, RequestType.AUTH,
                                                   qpack.packb(["iris", "siri", "dbtest"])))
                    [(_, tp, _)] = await conn.read_frames(1)
                    assert tp == AnswerType.RES_AUTH_SUCCESS
            for index in indexes:
                await replay(EXCHANGES[index], conn)
                replayed += 1
        assert replayed == len(EXCHANGES) == 74
        for conn in conns.values():
            conn.writer.close()
        # The replay itself left the data the recording describes.
        db = server.database("dbtest")
        assert "raw-conn" in db.series
        assert not any(n.startswith("raw-") and n != "raw-conn" for n in db.series)
        assert "ro" not in db.users
