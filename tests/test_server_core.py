"""Embedded server core: protocol, insert validation, service/file requests, backpressure."""

from __future__ import annotations

import asyncio
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
import qpack
from server_wire import RawClient

from tsconnector.protocol import AnswerType, RequestType, encode_frame, encode_header
from tsconnector.server import EmbeddedServer
from tsconnector.server import qptokens as qt
from tsconnector.server.insert import InsertRejected, _decode_run, parse_insert
from tsconnector.server.query.precision import effective_precision as _effective_precision
from tsconnector.server.wire import pack_answer

CASES = json.loads((Path(__file__).parent / "data" / "cases.json").read_text())["cases"]
INSERT_CASES = [
    c for c in CASES
    if c["kind"] == "insert" and (c.get("error") or {}).get("origin") != "client"
]
SILENCE = 0.3


def _payload(case: dict[str, Any]) -> Any:
    return eval(case["request_repr"], {"inf": math.inf, "nan": math.nan})


@pytest.fixture
async def server():
    async with EmbeddedServer(databases=(("dbtest", "s"), ("dbms", "ms"))) as srv:
        yield srv


@pytest.fixture
async def client(server: EmbeddedServer):
    c = await RawClient.connect(server.port)
    assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
    yield c
    await c.close()


# -- authentication and dispatch ----------------------------------------------------------
async def test_ping_works_before_auth_and_requests_need_auth(server: EmbeddedServer) -> None:
    c = await RawClient.connect(server.port)
    await c.ping()
    for tp, payload in [
        (RequestType.QUERY, ["show version", None]),
        (RequestType.INSERT, {"x": [[1, 1]]}),
        (RequestType.FILE_SERVERS, None),
        (RequestType.FILE_DATABASE, None),
        (RequestType.REGISTER_SERVER, None),
    ]:
        assert (await c.request(tp, payload))[0] == AnswerType.ERR_NOT_AUTHENTICATED
    await c.close()


@pytest.mark.parametrize(
    ("creds", "answer"),
    [
        (["iris", "siri", "dbtest"], AnswerType.RES_AUTH_SUCCESS),
        (["iris", "siri", "dbms"], AnswerType.RES_AUTH_SUCCESS),
        (["iris", "nope", "dbtest"], AnswerType.ERR_AUTH_CREDENTIALS),
        (["nobody", "siri", "dbtest"], AnswerType.ERR_AUTH_CREDENTIALS),
        (["iris", "siri", "nodb"], AnswerType.ERR_AUTH_UNKNOWN_DB),
        (["nobody", "x", "nodb"], AnswerType.ERR_AUTH_UNKNOWN_DB),
        (["iris", "siri", "dbtest", "extra"], AnswerType.RES_AUTH_SUCCESS),
    ],
)
async def test_auth_answers(server: EmbeddedServer, creds: list[str], answer: int) -> None:
    c = await RawClient.connect(server.port)
    assert (await c.request(RequestType.AUTH, creds))[0] == answer
    await c.close()


@pytest.mark.parametrize(
    "payload",
    [b"", qpack.packb("iris"), qpack.packb(["iris", "siri"]), qpack.packb(["iris", 5, "dbtest"]),
     b"\xfe", b"\xff\xff", b"\xef\x84iris"],
)
async def test_malformed_auth_gets_no_answer(server: EmbeddedServer, payload: bytes) -> None:
    c = await RawClient.connect(server.port)
    c.send(RequestType.AUTH, payload, raw=True)
    assert await c.silent(SILENCE)
    await c.ping()
    await c.close()


async def test_failed_reauth_keeps_the_session(server: EmbeddedServer) -> None:
    c = await RawClient.connect(server.port)
    assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
    assert await c.auth(password="wrong") == AnswerType.ERR_AUTH_CREDENTIALS
    tp, _ = await c.insert({"still-iris": [[1699920000, 1]]})
    assert tp == AnswerType.RES_INSERT
    assert await c.auth(db="dbms") == AnswerType.RES_AUTH_SUCCESS
    tp, _ = await c.insert({"in-ms": [[1699920000000, 1]]})
    assert tp == AnswerType.RES_INSERT
    assert "in-ms" in server.database("dbms").series
    assert "in-ms" not in server.database("dbtest").series
    await c.close()


@pytest.mark.parametrize("tp", [RequestType.INFO, RequestType.LOADDB, 11, 31, 99, 200, 255])
async def test_unhandled_types_get_no_answer(client: RawClient, tp: int) -> None:
    client.send(tp, b"\x01\x02", raw=True)
    assert await client.silent(SILENCE)
    await client.ping()


@pytest.mark.parametrize(
    "payload",
    [b"", qpack.packb("show version"), qpack.packb([5, None]), b"\xfe", b"\xfc\xfe", b"\xef",
     b"\xe4\xff", b"\xef\xe6\xff\xff\xff\x7f"],
)
async def test_malformed_query_payload_gets_no_answer(client: RawClient, payload: bytes) -> None:
    client.send(RequestType.QUERY, payload, raw=True)
    assert await client.silent(SILENCE)
    await client.ping()


async def test_query_too_long(client: RawClient) -> None:
    tp, data = await client.query("select * from " + "x" * 70000)
    assert tp == AnswerType.ERR_QUERY
    assert data == {"error_msg": "Query too long."}


async def test_pids_zero_and_max_are_echoed(client: RawClient) -> None:
    for pid in (0, 65535):
        client.send(RequestType.PING, pid=pid)
        frame = await client.recv()
        assert (frame.pid, frame.tp) == (pid, AnswerType.RES_ACK)


async def test_split_and_pipelined_frames(client: RawClient) -> None:
    data = b"".join(encode_frame(100 + i, RequestType.PING) for i in range(50))
    for i in range(0, len(data), 7):
        client.write(data[i : i + 7])
        await asyncio.sleep(0)
    pids = [(await client.recv()).pid for _ in range(50)]
    assert pids == list(range(100, 150))


async def test_queries_reach_the_query_engine_in_order(server: EmbeddedServer) -> None:
    seen: list[tuple[str, int | None, str]] = []

    def fake_execute(session: Any, query: str, precision: int | None) -> tuple[int, Any]:
        seen.append((query, precision, session.user))
        return AnswerType.RES_QUERY, {"calc": len(seen)}

    server.state.execute = fake_execute
    c = await RawClient.connect(server.port)
    await c.auth()
    pids = [c.send(RequestType.QUERY, [f"q{i}", i % 3]) for i in range(20)]
    frames = [await c.recv() for _ in pids]
    assert [f.pid for f in frames] == pids
    assert [q for q, _, _ in seen] == [f"q{i}" for i in range(20)]
    assert {u for _, _, u in seen} == {"iris"}
    # A query answer is sent after a ping that was pipelined behind it (as SiriDB does).
    qpid = c.send(RequestType.QUERY, ["slow", None])
    ppid = c.send(RequestType.PING)
    assert [(await c.recv()).pid for _ in range(2)] == [ppid, qpid]
    await c.close()


@pytest.mark.allow_internal_errors
async def test_query_engine_failure_is_answered(server: EmbeddedServer) -> None:
    def broken(session: Any, query: str, precision: int | None) -> tuple[int, Any]:
        raise RuntimeError("bug")

    server.state.execute = broken
    c = await RawClient.connect(server.port)
    await c.auth()
    tp, data = await c.query("anything")
    assert tp == AnswerType.ERR_MSG
    assert "error" in data["error_msg"]
    assert server.internal_errors.count == 1  # recorded, so that a test can fail on it
    await c.ping()
    await c.close()


@pytest.mark.parametrize(
    ("value", "db_precision", "expected"),
    [(0, 0, 0), (1, 0, 1), (3, 0, 3), (5, 0, 1), (4, 0, 0), (-1, 0, None), (-4, 0, 0),
     (-5, 0, None), (1, 1, 1), (7, 1, 3), (2**32 + 2, 0, 2), (2**40, 0, 0)],
)
def test_time_precision_rules(value: int, db_precision: int, expected: int | None) -> None:
    assert _effective_precision(value, db_precision) == expected


async def test_time_precision_argument_reaches_the_engine(server: EmbeddedServer) -> None:
    seen: list[int | None] = []

    def fake_execute(session: Any, query: str, precision: int | None) -> tuple[int, Any]:
        seen.append(precision)
        return AnswerType.RES_QUERY, {}

    server.state.execute = fake_execute
    c = await RawClient.connect(server.port)
    await c.auth()
    for payload in (["q"], ["q", None], ["q", 0], ["q", 3], ["q", 5], ["q", -1], ["q", "ms"],
                    ["q", 1.0], ["q", True]):
        assert (await c.request(RequestType.QUERY, payload))[0] == AnswerType.RES_QUERY
    assert seen == [None, None, 0, 3, 1, None, None, None, None]
    await c.close()


# -- inserts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", INSERT_CASES, ids=[c["id"] for c in INSERT_CASES])
async def test_golden_insert_cases_over_the_wire(
    server: EmbeddedServer, case: dict[str, Any]
) -> None:
    c = await RawClient.connect(server.port)
    user = case.get("user", "iris")
    if user != "iris":
        db = server.database(case["db"])
        db.apply_user_create(user, case["password"])
        db.apply_user_access(user, 1 | 2 | 4 | 8)
    password = case.get("password", "siri")
    assert await c.auth(user, password, case["db"]) == AnswerType.RES_AUTH_SUCCESS
    db = server.database(case["db"])
    before = sum(s.length for s in db.series.values())
    tp, data = await c.insert(_payload(case))
    after = sum(s.length for s in db.series.values())
    if case.get("response"):
        assert tp == AnswerType.RES_INSERT
        assert data == case["response"]
        n = int(data["success_msg"].split()[2])
        assert after - before == n
    else:
        expected_tp = {"InsertError": AnswerType.ERR_INSERT,
                       "UserAuthError": AnswerType.ERR_USER_ACCESS}[case["error"]["type"]]
        assert (tp, data) == (expected_tp, {"error_msg": case["error"]["message"]})
        assert after == before  # a failed insert writes nothing
    await c.close()


async def test_insert_values_are_stored_exactly(client: RawClient, server: EmbeddedServer) -> None:
    payload = {
        "mixed": [[1699920002, "two"], [1699920000, 0], [1699920001, -5]],
        "floats": [[1699920000 + i, i * 0.25 + 0.1] for i in range(100)],
        "big": [[1699920000, 2**63 - 1], [1699920001, -(2**63)]],
    }
    tp, data = await client.insert(payload)
    assert tp == AnswerType.RES_INSERT
    assert data == {"success_msg": "Successfully inserted 105 point(s)."}
    db = server.database("dbtest")
    assert db.series["mixed"].tp == "string"
    assert db.series["mixed"].ts == [1699920000, 1699920001, 1699920002]
    assert db.series["floats"].values == [i * 0.25 + 0.1 for i in range(100)]
    assert db.series["big"].values == [2**63 - 1, -(2**63)]


def test_parse_insert_token_quirks() -> None:
    # SiriDB reads tokens, not a tree: a series name may follow points without nesting.
    flat = b"\xf4\x81x\xf1\xef\xea\x80\xb8\x52\x65\x01\x81y\xee\xef\xea\x80\xb8\x52\x65\x02"
    batch = parse_insert(flat)
    assert batch.points() == {"x": [[1699920000, 1]], "y": [[1699920000, 2]]}
    # Keys of the list form are compared as prefixes of "name" and "points".
    batch = parse_insert(qpack.packb([{"n": "s", "p": [[5, 1]]}]))
    assert batch.points() == {"s": [[5, 1]]}
    with pytest.raises(InsertRejected, match=r"Expecting a map with name and points\."):
        parse_insert(qpack.packb([{"name": "s", "pts": [[5, 1]]}]))
    with pytest.raises(InsertRejected, match="series name"):
        parse_insert(qpack.packb({"x": [[1, 1], [1, 1, 1]]}))
    with pytest.raises(InsertRejected, match="series name"):
        parse_insert(b"\xf4\x82\xff\xfe\xee\xef\x01\x01")  # invalid UTF-8 name
    with pytest.raises(InsertRejected, match="out-of-range"):
        parse_insert(qpack.packb({"x": [[i, 1] for i in range(10)] + [[-1, 1]]}))
    with pytest.raises(InsertRejected, match="out-of-range"):
        parse_insert(qpack.packb({"x": [[2**32, 1]]}), precision=0)
    assert parse_insert(qpack.packb({"x": [[2**32, 1]]}), precision=3).count == 1
    for empty in (b"\xfd", b"\xfc", b"\xf4", b"\xfd\xff", b"\xfc\xfe"):
        assert parse_insert(empty).count == 0  # open or truncated containers: no series
    for junk in (b"\xf4\x81x", b"\xf4\x81x\xfc", b"\xfd\x81x\xfc\xef", b"\xfe", b"\xff"):
        with pytest.raises(InsertRejected):
            parse_insert(junk)


def test_uniform_point_runs_decode_like_qpack() -> None:
    for points in (
        [[1699920000 + i, i * 0.5 + 0.25] for i in range(50)],
        [[2**40 + i, 2**40 * i + 70000] for i in range(50)],
        [[1699920000 + i, (i % 7) * 1000 + 100] for i in range(50)],
    ):
        packed = qpack.packb(points)[1:-1]  # the run without the open array markers
        assert [list(p) for p in _decode_run(packed)] == points


@pytest.mark.slow
async def test_million_point_insert_is_stored_exactly(
    client: RawClient, server: EmbeddedServer
) -> None:
    # Speed is measured in benchmarks/bench_server.py; here the large path must be exact.
    points = [[1699920000 + i, i * 0.5 + 0.25] for i in range(1_000_000)]
    payload = qpack.packb({"big": points})
    client.send(RequestType.INSERT, payload, raw=True)
    frame = await client.recv(timeout=60)
    assert frame.tp == AnswerType.RES_INSERT
    series = server.database("dbtest").series["big"]
    assert series.length == 1_000_000
    assert series.ts[::99_999] == [p[0] for p in points[::99_999]]
    assert series.values[::99_999] == [p[1] for p in points[::99_999]]


# -- access, files, services -------------------------------------------------------------------
async def test_access_checks_for_insert_and_files(server: EmbeddedServer) -> None:
    db = server.database("dbtest")
    db.apply_user_create("ro", "ropass")
    db.apply_user_access("ro", 1 | 2 | 4 | 8)
    c = await RawClient.connect(server.port)
    assert await c.auth("ro", "ropass") == AnswerType.RES_AUTH_SUCCESS
    assert await c.insert({"x": [[1699920000, 1]]}) == (
        AnswerType.ERR_USER_ACCESS,
        {"error_msg": "Access denied. User 'ro' has no 'insert' privileges."},
    )
    for tp in (RequestType.FILE_SERVERS, RequestType.FILE_USERS, RequestType.FILE_GROUPS,
               RequestType.FILE_DATABASE, RequestType.REGISTER_SERVER):
        assert await c.request(tp) == (
            AnswerType.ERR_USER_ACCESS,
            {"error_msg": "Access denied. User 'ro' has no 'full' privileges."},
        )
    await c.close()


async def test_file_requests_with_full_access(client: RawClient) -> None:
    for tp in (RequestType.FILE_SERVERS, RequestType.FILE_USERS, RequestType.FILE_GROUPS,
               RequestType.FILE_DATABASE):
        pid = client.send(tp)
        frame = await client.recv()
        assert (frame.pid, frame.tp) == (pid, AnswerType.RES_FILE)
        assert frame.payload[:2] in (b"\xfc\x01", b"\xfc\x07")
    tp, _ = await client.request(RequestType.REGISTER_SERVER)
    assert tp == AnswerType.ERR


async def test_service_requests(server: EmbeddedServer) -> None:
    c = await RawClient.connect(server.port)  # no auth needed: service accounts are separate
    assert await c.request(RequestType.SERVICE, ["sa", "siri", 64]) == (
        AnswerType.ACK_SERVICE_DATA, ["2.0.55"])
    assert await c.request(RequestType.SERVICE, ["sa", "siri", 66]) == (
        AnswerType.ACK_SERVICE_DATA, ["dbtest", "dbms"])
    assert await c.request(RequestType.SERVICE, ["sa", "nope", 64]) == (
        AnswerType.ERR_SERVICE, {"error_msg": "incorrect password for service account 'sa'"})
    assert await c.request(RequestType.SERVICE, ["zz", "nope", 64]) == (
        AnswerType.ERR_SERVICE, {"error_msg": "cannot find service account 'zz'"})
    assert (await c.request(RequestType.SERVICE, ["sa", "siri"]))[0] == (
        AnswerType.ERR_SERVICE_INVALID_REQUEST)
    assert (await c.request(RequestType.SERVICE, ["sa", "siri", 99]))[0] == (
        AnswerType.ERR_SERVICE_INVALID_REQUEST)
    new = {"account": "bob", "password": "pw"}
    assert (await c.request(RequestType.SERVICE, ["sa", "siri", 0, new]))[0] == (
        AnswerType.ACK_SERVICE)
    assert await c.request(RequestType.SERVICE, ["sa", "siri", 0, new]) == (
        AnswerType.ERR_SERVICE, {"error_msg": "service account 'bob' already exists"})
    assert await c.request(RequestType.SERVICE, ["bob", "pw", 65]) == (
        AnswerType.ACK_SERVICE_DATA, ["sa", "bob"])
    assert (await c.request(RequestType.SERVICE, ["sa", "siri", 2, {"account": "bob"}]))[0] == (
        AnswerType.ACK_SERVICE)
    assert await c.request(RequestType.SERVICE, ["sa", "siri", 65]) == (
        AnswerType.ACK_SERVICE_DATA, ["sa"])
    await c.close()


# -- wire layout --------------------------------------------------------------------------------
def test_answers_are_packed_like_siridb() -> None:
    assert pack_answer({"data": [{"name": "version", "value": "2.0.55"}]}).hex() == (
        "fd8464617461fcf5846e616d658776657273696f6e8576616c756586322e302e3535fe")
    assert pack_answer({"one": [[1699920000, 42]]}).hex() == "fd836f6e65fcefea80b852652afe"
    assert pack_answer({"columns": ["name", "length"], "series": [["sensor.a", 6]]}).hex() == (
        "fd87636f6c756d6e73fc846e616d65866c656e677468fe86736572696573fcfc8873656e736f722e6106fefe")
    assert pack_answer({"series": 26}).hex() == "fd867365726965731a"
    assert pack_answer({}) == b"\xfd"
    many = pack_answer({"s": [[i, float(i)] for i in range(10)]})
    assert many[:4] == b"\xfd\x81s\xfc"
    assert many[-1:] == b"\xfe"
    assert qpack.unpackb(many) == {b"s": [[i, float(i)] for i in range(10)]}


def test_token_reader_never_raises() -> None:
    junk = (b"\xe7" + b"\xff" * 8, b"\xe4", b"\xeb\x01", b"\xec", b"\x7c",
            b"\xe6\x05\x00\x00\x00ab")
    for data in junk:
        reader = qt.Reader(data)
        kinds = [reader.next()[0] for _ in range(3)]
        assert kinds[-1] == qt.END
        assert qt.ERR in kinds or qt.HOOK in kinds


# -- robustness and backpressure ----------------------------------------------------------------
async def test_framing_errors_close_only_that_connection(server: EmbeddedServer) -> None:
    other = await RawClient.connect(server.port)
    await other.auth()
    bad = await RawClient.connect(server.port)
    bad.write(struct.pack("<IHBB", 0, 1, 3, 0))  # wrong check byte
    assert await bad.closed_by_server()
    big = await RawClient.connect(server.port)
    big.write(encode_header(40 * 1024 * 1024 + 1, 1, RequestType.INSERT))
    assert await big.closed_by_server()
    at_limit = await RawClient.connect(server.port)
    at_limit.write(encode_header(40 * 1024 * 1024, 1, RequestType.INSERT))
    assert await at_limit.silent(SILENCE)  # the server waits for the payload
    await other.ping()
    for c in (other, bad, big, at_limit):
        await c.close()


async def test_kill_connections(server: EmbeddedServer) -> None:
    clients = [await RawClient.connect(server.port) for _ in range(3)]
    for c in clients:
        await c.ping()
    assert server.kill_connections() == 3
    for c in clients:
        assert await c.closed_by_server()
        await c.close()
    fresh = await RawClient.connect(server.port)
    await fresh.ping()
    await fresh.close()


@pytest.mark.slow
async def test_slow_reader_does_not_stall_others(server: EmbeddedServer) -> None:
    """A client that never reads gets its reads paused; other clients are still served
    (on every Python: the server does not rely on ``writelines`` pausing it)."""
    writer, slow = await _stall_one_client(server)
    buffered = slow.transport.get_write_buffer_size()
    other = await RawClient.connect(server.port)
    await other.auth()
    for _ in range(5):
        await other.ping(timeout=2)
    assert buffered < 8 * 1024 * 1024  # bounded: one answer beyond the high-water mark
    writer.close()
    await other.close()


async def _stall_one_client(server: EmbeddedServer) -> tuple[asyncio.StreamWriter, Any]:
    """A client that asks for far more than socket buffers hold and never reads."""
    server.database("dbtest").insert({"wide": [[1699920000 + i, i * 1.5] for i in range(20000)]})

    def select_all(session: Any, query: str, precision: int | None) -> tuple[int, Any]:
        s = session.db.series["wide"]
        return AnswerType.RES_QUERY, {"wide": [list(p) for p in zip(s.ts, s.values)]}

    server.state.execute = select_all
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(encode_frame(1, RequestType.AUTH, qpack.packb(["iris", "siri", "dbtest"])))
    writer.write(encode_frame(2, RequestType.QUERY, qpack.packb(["select", None])) * 400)
    await writer.drain()
    (slow,) = list(server.state.connections)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not (slow._write_paused and slow._read_paused):
        assert loop.time() < deadline, "the slow connection was never paused"
        await asyncio.sleep(0.05)
    return writer, slow


async def test_close_is_bounded_while_a_client_does_not_read() -> None:
    """Closing must not wait for a client that never reads (Python >= 3.12's
    ``Server.wait_closed`` waits for every connection): it aborts after close_timeout."""
    server = EmbeddedServer(close_timeout=0.2)
    await server.start()
    writer, _ = await _stall_one_client(server)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 30)
    assert server.connection_count == 0
    writer.close()
