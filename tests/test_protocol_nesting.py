"""Decoding any bytes from a server never crashes the process (qpack's C decoder recurses
without a limit: 100,000 nested openers were a SIGSEGV).

The hostile cases run in a child process, so a crash fails the test instead of pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import qpack

from tsconnector.exceptions import ProtocolError
from tsconnector.protocol import unpack
from tsconnector.protocol.nesting import MAX_NESTING, NestingError, check_nesting

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def run_child(source: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a fresh interpreter (the repository and tests/ on its path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(TESTS),
                                                      env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )


def assert_survived(proc: subprocess.CompletedProcess[str], last_input: Path | None = None) -> None:
    detail = ""
    if last_input is not None and last_input.exists():
        data = last_input.read_bytes()
        detail = f"; last input ({len(data)} bytes) starts {data[:64].hex(' ')}"
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode}{detail}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


# ------------------------------------------------------------------ in process (safe)


@pytest.mark.parametrize("opener", [b"\xee", b"\xf4\x01", b"\xfc", b"\xfd\x81k"])
def test_nesting_limit_is_exact(opener: bytes) -> None:
    inner = b"\x01"
    at_limit = opener * MAX_NESTING + inner
    assert unpack(at_limit) == qpack.unpackb(at_limit, decode="utf-8")
    with pytest.raises(NestingError, match=f"nested deeper than {MAX_NESTING} levels"):
        unpack(opener * (MAX_NESTING + 1) + inner)


def test_deep_nesting_after_a_valid_start_is_a_protocol_error() -> None:
    proc = run_child("""
        import pytest
        from tsconnector.exceptions import ProtocolError
        from tsconnector.protocol import unpack
        from tsconnector.protocol.answers import decode_series_arrays

        payload = b"\\xfd\\x82ok\\xfc\\xef\\xea\\x00\\x00\\x00\\x01\\x05" + b"\\xfc" * 100_000
        with pytest.raises(ProtocolError, match="nested deeper"):
            unpack(payload)
        with pytest.raises(ValueError, match="nested deeper"):
            decode_series_arrays(payload)
        print("ok")
    """)
    assert_survived(proc)
    assert proc.stdout.strip() == "ok"


def test_real_answers_pass_the_guard_unchanged() -> None:
    answers = [
        {"s": [[1_700_000_000 + i, i * 0.5] for i in range(3000)], "t": [[1, "x" * 300]]},
        {"columns": ["name", "length"], "series": [[f"s{i}", i] for i in range(1000)]},
        {"data": [{"name": "version", "value": "2.0.55"}, {"name": "x", "value": None}]},
        {"success_msg": "Successfully inserted 5 point(s)."},
        [[[[[[1, {"a": [2.0, -1.0, 0.0, True, None]}]]]]]],
    ]
    for answer in answers:
        payload = qpack.packb(answer)
        check_nesting(payload)
        assert unpack(payload) == answer
    # the server's own encoding: an open map, open arrays, never closed at the end
    payload = b"\xfd\x81s\xfc" + b"".join(qpack.packb([i, i * 1.5]) for i in range(5000))
    assert unpack(payload) == {"s": [[i, i * 1.5] for i in range(5000)]}


def test_misplaced_close_markers_are_refused() -> None:
    for payload in (b"\xfe", b"\xff\x01", b"\xee\xfe", b"\xfc\xff", b"\xfd\xfe", b"\xf4\x01\xff"):
        with pytest.raises(ProtocolError):
            unpack(payload)


def test_oversized_string_lengths_are_left_to_the_decoder() -> None:
    for payload in (b"\xe7" + b"\xff" * 8 + b"abc", b"\xe6\xff\xff\xff\x7f", b"\xfc\xe7\x00"):
        with pytest.raises(ProtocolError):
            unpack(payload)


# ------------------------------------------------------------------- in a subprocess

PROPERTY_CHILD = """
import sys
from pathlib import Path

import qpack
from hypothesis import HealthCheck, given, settings

from qpack_model import first_event, hostile_payloads
from tsconnector.exceptions import ProtocolError
from tsconnector.protocol import unpack
from tsconnector.protocol.nesting import MAX_NESTING, NestingError

last = Path(sys.argv[1])


@settings(max_examples=int(sys.argv[2]), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(hostile_payloads)
def check(data):
    last.write_bytes(data)  # if the decoder crashes, the parent shows this input
    event = first_event(data, MAX_NESTING)
    try:
        got = unpack(data)
    except ProtocolError as exc:
        got = exc
    if not data:
        assert got is None  # an empty payload is no data
    elif event == "deep":
        assert isinstance(got, NestingError), (event, got)
    elif event == "malformed":
        assert isinstance(got, ProtocolError), (event, got)
    else:
        try:
            expected = qpack.unpackb(data, decode="utf-8")
        except Exception:
            assert isinstance(got, ProtocolError), (event, got)
        else:
            assert repr(got) == repr(expected), (event, got)


check()
print("ok")
"""


def test_hostile_payloads_never_crash_the_decoder(tmp_path: Path) -> None:
    last = tmp_path / "last-input"
    proc = run_child(PROPERTY_CHILD, str(last), "400")
    assert_survived(proc, last)
    assert proc.stdout.strip().endswith("ok")


CLIENT_CHILD = """
import asyncio

from tsconnector.client import TsClient
from tsconnector.connection import open_connection
from tsconnector.exceptions import ProtocolError, ServerError
from tsconnector.protocol import AnswerType, RequestType, encode_frame
from tsconnector.testing.fake import NO_ANSWER, ScriptedServer

DEEP = b"\\xfd\\x81a" + b"\\xfc" * 100_000


async def handler(req):
    text = req.data[0] if req.tp == RequestType.QUERY else None
    if text == "deep":
        req.write_raw(encode_frame(req.pid, AnswerType.RES_QUERY, DEEP))
        return NO_ANSWER
    if text == "deep error":
        req.write_raw(encode_frame(req.pid, AnswerType.ERR_SERVER, DEEP))
        return NO_ANSWER
    if req.tp == RequestType.INSERT:
        req.write_raw(encode_frame(req.pid, AnswerType.RES_INSERT, DEEP))
        return NO_ANSWER
    return None


async def deep_auth(req):
    if req.tp == RequestType.AUTH:
        req.write_raw(encode_frame(req.pid, AnswerType.RES_AUTH_SUCCESS, b"\\xee" * 100_000))
        return NO_ANSWER
    return None


async def outcome(call):
    try:
        return repr(await call)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def main():
    async with ScriptedServer(handler) as server:
        async with TsClient("iris", "siri", "dbtest", [("127.0.0.1", server.port)],
                            timeout=5) as client:
            print("query:", await outcome(client.query("deep", timeout=5)))
            print("arrays:", await outcome(client.query("deep", timeout=5, as_arrays=True)))
            print("error:", await outcome(client.query("deep error", timeout=5)))
            print("insert:", await outcome(client.insert({"s": [[1, 2]]}, timeout=5)))
            print("after:", await outcome(client.query("fine", timeout=5)))
            print("reconnects:", client.stats()[0].reconnects)
    async with ScriptedServer(deep_auth) as server:
        print("auth:", await outcome(open_connection("127.0.0.1", server.port, "iris", "siri",
                                                     "dbtest", timeout=5)))


asyncio.run(main())
"""


def test_hostile_server_nesting_cannot_crash_the_client() -> None:
    proc = run_child(CLIENT_CHILD, timeout=120)
    assert_survived(proc)
    lines = dict(line.split(": ", 1) for line in proc.stdout.strip().splitlines())
    for key in ("query", "arrays", "insert", "auth"):
        assert lines[key].startswith("ProtocolError") or lines[key].startswith("NestingError"), (
            key, lines[key])
        assert "nested deeper" in lines[key], (key, lines[key])
    # an error answer keeps its type (so the call can move to another host)
    assert lines["error"].startswith("ServerError"), lines["error"]
    assert lines["after"] == "{'echo': 'fine'}"
    assert lines["reconnects"] == "0"
