"""Connection: framing, pid map, deadlines, late answers, auth, keepalive, backpressure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tsconnector.connection import Connection, RequestNotSent, open_connection, open_raw
from tsconnector.exceptions import (
    AnswerTooLarge,
    AuthenticationError,
    InsertError,
    PoolError,
    ProtocolError,
    QueryError,
    ServerError,
    ServerRuntimeError,
    TsConnectionError,
    TsTimeoutError,
    UnexpectedAnswerError,
    UserAuthError,
)
from tsconnector.info import async_server_info
from tsconnector.protocol import HEADER, AnswerType, RequestType, encode_frame, pack
from tsconnector.testing.fake import NO_ANSWER, Request, ScriptedServer

AUTH = ("iris", "siri", "dbtest")


async def connect(server: ScriptedServer, **options: Any) -> Connection:
    return await open_connection("127.0.0.1", server.port, *AUTH, timeout=5, **options)


def query_payload(text: str) -> bytes:
    return pack([text, None])


class Gate:
    """A handler that holds answers to chosen queries until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived: dict[str, Request] = {}
        self.arrival = asyncio.Event()

    async def __call__(self, req: Request) -> Any:
        if req.tp == RequestType.QUERY and str(req.data[0]).startswith("hold"):
            self.arrived[req.data[0]] = req
            self.arrival.set()
            await self.release.wait()
            return (AnswerType.RES_QUERY, {"echo": req.data[0]})
        return None

    async def wait_for(self, name: str) -> Request:
        while name not in self.arrived:
            self.arrival.clear()
            await asyncio.wait_for(self.arrival.wait(), 5)
        return self.arrived[name]


# ------------------------------------------------------------------- auth


async def test_auth_and_query_roundtrip() -> None:
    async with ScriptedServer() as server:
        conn = await connect(server)
        assert conn.ready
        assert await conn.request(RequestType.QUERY, query_payload("show version")) == {
            "echo": "show version"
        }
        await conn.ping()
        assert server.requests[0].data == list(AUTH)
        conn.close()
        await conn.wait_closed()
        assert not conn.connected


@pytest.mark.parametrize(
    ("user", "password", "db", "message"),
    [
        ("iris", "wrong", "dbtest", "Invalid credentials."),
        ("nobody", "siri", "dbtest", "Invalid credentials."),
        ("iris", "siri", "nodb", "Unknown database."),
    ],
)
async def test_auth_failures(user: str, password: str, db: str, message: str) -> None:
    async with ScriptedServer() as server:
        with pytest.raises(AuthenticationError) as info:
            await open_connection("127.0.0.1", server.port, user, password, db, timeout=5)
        assert str(info.value) == message
        assert not isinstance(info.value, UserAuthError)


async def test_not_authenticated_and_user_access() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "drop series x":
            return (AnswerType.ERR_USER_ACCESS, {"error_msg": "Access denied."})
        return None

    async with ScriptedServer(handler) as server:
        raw = await open_raw("127.0.0.1", server.port)
        with pytest.raises(AuthenticationError, match="not authenticated"):
            await raw.request(RequestType.QUERY, query_payload("list series"))
        raw.close()
        conn = await connect(server)
        with pytest.raises(UserAuthError, match="Access denied"):
            await conn.request(RequestType.QUERY, query_payload("drop series x"))
        conn.close()


async def test_auth_timeout_when_server_is_silent() -> None:
    async def handler(req: Request) -> Any:
        return NO_ANSWER

    async with ScriptedServer(handler) as server:
        with pytest.raises(TsTimeoutError):
            await open_connection("127.0.0.1", server.port, *AUTH, timeout=0.2)


# ------------------------------------------------------------- answer types


@pytest.mark.parametrize(
    ("tp", "exc_type"),
    [
        (AnswerType.ERR_QUERY, QueryError),
        (AnswerType.ERR_INSERT, InsertError),
        (AnswerType.ERR_SERVER, ServerError),
        (AnswerType.ERR_POOL, PoolError),
        (AnswerType.ERR_MSG, ServerRuntimeError),
    ],
)
async def test_error_answers_map_to_exceptions(tp: int, exc_type: type[Exception]) -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY:
            return (tp, {"error_msg": "boom"})
        return None

    async with ScriptedServer(handler) as server:
        conn = await connect(server)
        with pytest.raises(exc_type, match="boom"):
            await conn.request(RequestType.QUERY, query_payload("x"))
        assert conn.ready  # an error answer does not harm the connection
        conn.close()


async def test_unknown_answer_type_fails_only_its_request() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "odd":
            return (99, {"x": 1})
        return None

    async with ScriptedServer(handler) as server:
        conn = await connect(server)
        with pytest.raises(UnexpectedAnswerError) as info:
            await conn.request(RequestType.QUERY, query_payload("odd"))
        assert isinstance(info.value, TypeError)
        assert await conn.request(RequestType.QUERY, query_payload("ok")) == {"echo": "ok"}
        conn.close()


async def test_undecodable_payload_fails_only_its_request() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "garbage":
            req.write_raw(encode_frame(req.pid, AnswerType.RES_QUERY, b"\xe6\xff\xff"))
            return NO_ANSWER
        return None

    async with ScriptedServer(handler) as server:
        conn = await connect(server)
        with pytest.raises(ProtocolError):
            await conn.request(RequestType.QUERY, query_payload("garbage"))
        assert await conn.request(RequestType.QUERY, query_payload("fine")) == {"echo": "fine"}
        conn.close()


# ------------------------------------------------------------------ framing


async def test_split_and_merged_frames() -> None:
    async def handler(req: Request) -> Any:
        if req.tp != RequestType.QUERY:
            return None
        if req.data[0] == "split":
            frame = encode_frame(req.pid, AnswerType.RES_QUERY, pack({"v": list(range(50))}))
            for i in range(len(frame)):
                req.write_raw(frame[i : i + 1])
                await req.writer.drain()
                await asyncio.sleep(0)
            return NO_ANSWER
        if req.data[0] == "merged":
            # answer this pid and the two following pids (sent together) in one write
            req.write_raw(
                b"".join(
                    encode_frame(req.pid + k, AnswerType.RES_QUERY, pack({"n": k}))
                    for k in range(3)
                )
            )
            return NO_ANSWER
        return NO_ANSWER

    async with ScriptedServer(handler) as server:
        conn = await connect(server)
        assert await conn.request(RequestType.QUERY, query_payload("split")) == {
            "v": list(range(50))
        }
        results = await asyncio.gather(
            conn.request(RequestType.QUERY, query_payload("merged"), timeout=5),
            conn.request(RequestType.QUERY, query_payload("other"), timeout=5),
            conn.request(RequestType.QUERY, query_payload("other"), timeout=5),
        )
        assert results == [{"n": 0}, {"n": 1}, {"n": 2}]
        conn.close()


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\x00\x00\x00\x01\x00\x00\x00",  # wrong check byte
    ],
)
async def test_framing_error_fails_all_in_flight_and_closes(bad: bytes) -> None:
    gate = Gate()

    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "poison":
            req.write_raw(bad)
            return NO_ANSWER
        return await gate(req)

    async with ScriptedServer(handler) as server:
        lost: list[BaseException | None] = []
        conn = await connect(server, on_lost=lambda c, exc: lost.append(exc))
        held = [
            asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload(f"hold{i}")))
            for i in range(3)
        ]
        await gate.wait_for("hold2")
        with pytest.raises(TsConnectionError):
            await conn.request(RequestType.QUERY, query_payload("poison"))
        for fut in held:
            with pytest.raises(TsConnectionError):
                await fut
        await conn.wait_closed()
        assert not conn.connected
        assert len(lost) == 1
        assert isinstance(lost[0], ProtocolError)
        gate.release.set()


async def test_oversized_answer_fails_only_its_request_and_is_discarded() -> None:
    gate = Gate()
    size = 3 << 20

    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "huge":
            tp = AnswerType.RES_QUERY
            req.write_raw(HEADER.pack(size, req.pid, tp, tp ^ 0xFF))
            for _ in range(12):  # the client receives it over many reads
                req.write_raw(b"\xfc" * (size // 12))
            return NO_ANSWER
        return await gate(req)

    async with ScriptedServer(handler) as server:
        conn = await connect(server, max_frame_size=1 << 20)
        held = asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload("hold0")))
        await gate.wait_for("hold0")
        with pytest.raises(AnswerTooLarge, match="max_frame_size=3145728") as info:
            await conn.request(RequestType.QUERY, query_payload("huge"))
        assert (info.value.size, info.value.limit) == (size, 1 << 20)
        assert "over the client's frame limit of 1,048,576 bytes" in str(info.value)
        gate.release.set()
        assert await held == {"echo": "hold0"}
        assert await conn.request(RequestType.QUERY, query_payload("after")) == {"echo": "after"}
        assert conn.connected
        assert conn._decoder.buffered == 0  # nothing of the big answer was kept
        conn.close()
        await conn.wait_closed()


# --------------------------------------------------------- deadlines and pids


async def test_late_answer_after_timeout_is_dropped() -> None:
    gate = Gate()
    async with ScriptedServer(gate) as server:
        conn = await connect(server)
        with pytest.raises(TsTimeoutError) as info:
            await conn.request(RequestType.QUERY, query_payload("hold-late"), timeout=0.05)
        assert isinstance(info.value, TimeoutError)
        assert conn.reserved_pids == 1
        assert conn.in_flight == 0
        gate.release.set()
        # the next request gets its own answer, never the late one
        assert await conn.request(RequestType.QUERY, query_payload("next")) == {"echo": "next"}
        await conn.ping()
        assert conn.reserved_pids == 0
        conn.close()


async def test_late_answer_after_cancellation_is_dropped() -> None:
    gate = Gate()
    async with ScriptedServer(gate) as server:
        conn = await connect(server)
        task = asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload("hold-c")))
        await gate.wait_for("hold-c")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.reserved_pids == 1
        assert conn.in_flight == 0
        gate.release.set()
        assert await conn.request(RequestType.QUERY, query_payload("after")) == {"echo": "after"}
        await conn.ping()
        assert conn.reserved_pids == 0
        assert conn.ready
        conn.close()


async def test_pid_wrap_skips_pids_in_flight() -> None:
    gate = Gate()
    async with ScriptedServer(gate) as server:
        conn = await connect(server)
        conn._next_pid = 65535
        a = asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload("hold-a")))
        b = asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload("hold-b")))
        req_a, req_b = await gate.wait_for("hold-a"), await gate.wait_for("hold-b")
        assert (req_a.pid, req_b.pid) == (65535, 0)
        conn._next_pid = 65535  # force a wrap onto the pids still in flight
        c = asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload("hold-c")))
        req_c = await gate.wait_for("hold-c")
        assert req_c.pid == 1
        gate.release.set()
        assert await asyncio.gather(a, b, c) == [
            {"echo": "hold-a"},
            {"echo": "hold-b"},
            {"echo": "hold-c"},
        ]
        conn.close()


async def test_no_task_per_request() -> None:
    gate = Gate()
    async with ScriptedServer(gate) as server:
        conn = await connect(server)
        await asyncio.sleep(0)
        before = len(asyncio.all_tasks())
        loop = asyncio.get_running_loop()
        futures = [
            conn.send(RequestType.QUERY, query_payload(f"q{i}"), loop.time() + 10)[0]
            for i in range(1000)
        ]
        client_side_tasks = len(asyncio.all_tasks()) - before
        assert client_side_tasks == 0
        results = await asyncio.gather(*futures)
        assert results[999] == {"echo": "q999"}
        assert conn.reserved_pids == 0
        conn.close()


async def test_close_with_requests_in_flight() -> None:
    gate = Gate()
    async with ScriptedServer(gate) as server:
        conn = await connect(server)
        held = [
            asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload(f"hold{i}")))
            for i in range(5)
        ]
        await gate.wait_for("hold4")
        conn.close()
        for fut in held:
            with pytest.raises(TsConnectionError):
                await fut
        await conn.wait_closed()
        with pytest.raises(RequestNotSent):
            await conn.request(RequestType.QUERY, query_payload("x"))
        gate.release.set()


async def test_server_closing_fails_requests_in_flight() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY:
            req.close()
            return NO_ANSWER
        return None

    async with ScriptedServer(handler) as server:
        conn = await connect(server)
        with pytest.raises(TsConnectionError) as info:
            await conn.request(RequestType.QUERY, query_payload("x"))
        assert isinstance(info.value, ConnectionError)
        assert not isinstance(info.value, RequestNotSent)


# -------------------------------------------------------- keepalive, writes


async def test_keepalive_pings_only_when_idle() -> None:
    async with ScriptedServer() as server:
        conn = await connect(server, keepalive_interval=0.05, ping_timeout=1)
        deadline = asyncio.get_running_loop().time() + 5
        while server.counts.get(RequestType.PING, 0) < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert conn.ready
        conn.close()
    async with ScriptedServer() as server:
        conn = await connect(server, keepalive_interval=30, ping_timeout=1)
        for _ in range(20):
            await conn.request(RequestType.QUERY, query_payload("busy"))
        assert server.counts.get(RequestType.PING, 0) == 0
        conn.close()


async def test_keepalive_detects_half_open_connection() -> None:
    async def handler(req: Request) -> Any:
        return NO_ANSWER if req.tp == RequestType.PING else None

    async with ScriptedServer(handler) as server:
        lost = asyncio.get_running_loop().create_future()
        conn = await connect(
            server,
            keepalive_interval=0.05,
            ping_timeout=0.1,
            on_lost=lambda c, exc: lost.set_result(exc),
        )
        exc = await asyncio.wait_for(lost, 5)
        assert isinstance(exc, TsConnectionError)
        assert "keepalive" in str(exc)
        assert not conn.connected


async def test_backpressure_holds_writers_until_resumed() -> None:
    async with ScriptedServer() as server:
        conn = await connect(server)
        conn.pause_writing()
        assert conn.writing_paused
        task = asyncio.ensure_future(conn.request(RequestType.QUERY, query_payload("held")))
        await asyncio.sleep(0.05)
        assert not task.done()
        assert conn.in_flight == 0
        conn.resume_writing()
        assert await task == {"echo": "held"}
        conn.pause_writing()
        with pytest.raises(TsTimeoutError):
            await conn.request(RequestType.QUERY, query_payload("x"), timeout=0.05)
        conn.resume_writing()
        conn.close()


async def test_large_payload_roundtrip() -> None:
    async with ScriptedServer() as server:
        conn = await connect(server)
        points = [[1_700_000_000 + i, float(i)] for i in range(200_000)]
        answer = await conn.request(RequestType.INSERT, pack({"big": points}), timeout=30)
        assert answer == {"success_msg": "Successfully inserted 200000 point(s)."}
        assert server.series["big"][-1] == points[-1]
        conn.close()


# --------------------------------------------------------------------- info


async def test_async_server_info_times_out_cleanly() -> None:
    async with ScriptedServer() as server:
        with pytest.raises(TsTimeoutError, match="INFO"):
            await async_server_info("127.0.0.1", server.port, timeout=0.1)
        assert server.counts.get(RequestType.INFO) == 1


async def test_async_server_info_returns_answer() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.INFO:
            return (AnswerType.RES_INFO, {"version": "2.0.55"})
        return None

    async with ScriptedServer(handler) as server:
        assert await async_server_info("127.0.0.1", server.port) == {"version": "2.0.55"}


class _SlowReaderServer(asyncio.Protocol):
    """Authenticates, then stops reading until ``release`` is set; answers pids in order."""

    release: asyncio.Event
    received: list[tuple[int, int, int]]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from tsconnector.protocol import FrameDecoder

        self.transport = transport  # type: ignore[assignment]
        self.decoder = FrameDecoder()

    def data_received(self, data: bytes) -> None:
        from tsconnector.protocol import AnswerType, RequestType, encode_frame, pack

        for pid, tp, payload in self.decoder.feed(data):
            self.received.append((pid, tp, len(payload)))
            if tp == RequestType.AUTH:
                self.transport.write(encode_frame(pid, AnswerType.RES_AUTH_SUCCESS))
                self.transport.pause_reading()  # type: ignore[attr-defined]
                asyncio.get_running_loop().create_task(self._resume_later())
            else:
                self.transport.write(encode_frame(pid, AnswerType.RES_QUERY, pack({"n": pid})))

    async def _resume_later(self) -> None:
        await self.release.wait()
        self.transport.resume_reading()  # type: ignore[attr-defined]


async def test_frames_sent_while_a_large_frame_streams_queue_behind_it() -> None:
    from tsconnector.connection import open_connection
    from tsconnector.protocol import RequestType

    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    received: list[tuple[int, int, int]] = []

    def factory() -> _SlowReaderServer:
        proto = _SlowReaderServer()
        proto.release, proto.received = release, received
        return proto

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await open_connection("127.0.0.1", port, "u", "p", "db", timeout=5, loop=loop)
    try:
        big = b"\xfc" + b"\x01" * (16 << 20)  # far more than the socket buffers hold
        deadline = loop.time() + 30
        big_fut, big_pid = conn.send(RequestType.QUERY, big, deadline)
        assert conn.writing_paused  # the stream stopped at the full socket
        small_fut, small_pid = conn.send(RequestType.QUERY, b"\xfb", deadline)
        release.set()
        assert await big_fut == {"n": big_pid}
        assert await small_fut == {"n": small_pid}
        assert received[1:] == [(big_pid, 0, len(big)), (small_pid, 0, 1)]
    finally:
        conn.abort(None)
        server.close()
        await server.wait_closed()
