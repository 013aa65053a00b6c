"""Fuzz the embedded server with >= 100,000 random and mutated frames (seeded, reproducible).

Frames carry valid headers (so the stream stays framed) around random or mutated
payloads of every request type; some batches end with a broken header, which must close
only that connection. Afterwards the server must still serve a fresh client, and no
request may have hit an internal error (``conftest.py`` fails the test on any).
"""

from __future__ import annotations

import asyncio
import random

import pytest
import qpack
from server_wire import RawClient

from tsconnector.protocol import HEADER, AnswerType, RequestType, encode_frame
from tsconnector.server import EmbeddedServer

SEED = 20231114
FRAMES_PER_CONNECTION = 2500
CONNECTIONS = 40
TOTAL = FRAMES_PER_CONNECTION * CONNECTIONS
END_PID = 65535

SEEDS: dict[int, list[bytes]] = {
    RequestType.QUERY: [qpack.packb(q) for q in (
        ["show version", None], ["count series", 0], ['select * from "a"', 1],
        ["list series name, length", None], ["select mean(1h) from /s.*/", None],
        ["show", 2], ["", None], ["now", 3],
    )],
    RequestType.INSERT: [qpack.packb(p) for p in (
        {"a": [[1699920000, 1], [1699920001, 2.5]]},
        [{"name": "b", "points": [[1699920000, "x"]]}],
        {"c": [[1699920000 + i, i] for i in range(8)]},
        {}, [], {"d": [[1699920000, None]]},
    )],
    RequestType.AUTH: [qpack.packb(p) for p in (
        ["iris", "siri", "dbtest"], ["iris", "siri", "dbms"], ["iris", "x", "dbtest"],
    )],
    RequestType.SERVICE: [qpack.packb(p) for p in (
        ["sa", "siri", 64],
        ["sa", "siri", 66],
        ["sa", "siri", 0, {"account": "q", "password": "qq"}],
    )],
}
TYPES = [0, 0, 0, 1, 1, 1, 2, 3, 32, 4, 5, 6, 7, 8, 9, 10]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op < 0.6:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        elif op < 0.8 and buf:
            del buf[rng.randrange(len(buf))]
        else:
            buf = buf[: rng.randint(0, len(buf))]
    return bytes(buf)


def random_payload(rng: random.Random, tp: int) -> bytes:
    choice = rng.random()
    if choice < 0.5 and tp in SEEDS:
        return mutate(rng, rng.choice(SEEDS[tp]))
    if choice < 0.6 and tp in SEEDS:
        return rng.choice(SEEDS[tp])
    if choice < 0.8:
        # random bytes biased towards qpack container and close markers
        return bytes(rng.choice((rng.randrange(256), 0xFC, 0xFD, 0xFE, 0xFF, 0xEF, 0xF4))
                     for _ in range(rng.randint(0, 24)))
    return rng.randbytes(rng.randint(0, 64))


def batch(rng: random.Random) -> tuple[bytes, bool]:
    """One connection's worth of frames; True when it ends with a broken header."""
    parts = [encode_frame(1, RequestType.AUTH, qpack.packb(["iris", "siri", "dbtest"]))]
    for _ in range(FRAMES_PER_CONNECTION - 1):
        tp = rng.choice(TYPES) if rng.random() < 0.95 else rng.randrange(256)
        parts.append(encode_frame(rng.randrange(1, END_PID), tp, random_payload(rng, tp)))
    broken = rng.random() < 0.25
    if broken:
        if rng.random() < 0.5:
            parts.append(HEADER.pack(0, 7, 3, 0x00))  # wrong check byte
        else:
            parts.append(HEADER.pack(50 * 1024 * 1024, 7, 1, 0xFE))  # oversized
    else:
        # Queries and inserts are answered in order by a per-connection worker: an insert
        # as the last frame is answered only after every queued request was handled.
        end = qpack.packb({"fuzz-end": [[1699920000, 1]]})
        parts.append(encode_frame(END_PID, RequestType.INSERT, end))
    return b"".join(parts), broken


async def run_connection(port: int, data: bytes, broken: bool) -> None:
    c = await RawClient.connect(port)
    try:
        c.write(data)
        if broken:
            assert await c.closed_by_server(timeout=60), "broken header did not close"
            return
        while True:
            frame = await c.recv(timeout=60)
            if frame.pid == END_PID and frame.tp == AnswerType.RES_INSERT:
                return
    finally:
        await c.close()


@pytest.mark.slow
async def test_fuzz_frames_never_break_the_server() -> None:
    rng = random.Random(SEED)
    batches = [batch(rng) for _ in range(CONNECTIONS)]
    async with EmbeddedServer(databases=(("dbtest", "s"), ("dbms", "ms"))) as server:
        watcher = await RawClient.connect(server.port)
        await watcher.auth()
        for i in range(0, CONNECTIONS, 2):
            await asyncio.gather(*(run_connection(server.port, *b) for b in batches[i : i + 2]))
            await watcher.ping(timeout=10)  # never starved while others are fuzzed
        fresh = await RawClient.connect(server.port)
        assert await fresh.auth() == AnswerType.RES_AUTH_SUCCESS
        tp, data = await fresh.insert({"after-fuzz": [[1699920000, 1]]})
        assert (tp, data) == (AnswerType.RES_INSERT,
                              {"success_msg": "Successfully inserted 1 point(s)."})
        await fresh.ping()
        await fresh.close()
        await watcher.close()
        assert TOTAL >= 100_000
        assert server.internal_errors.count == 0  # the autouse fixture checks it too
