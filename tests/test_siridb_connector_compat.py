"""siridb-connector 2.1.6 and TsClient against the embedded server give the golden answers.

The golden cases (recorded from SiriDB 2.0.55) are replayed in ``seq`` order up to the
first schema change, restricted to inserts and the queries of issue 2: ``select * from``
named series (with ``between``/``after``/``before``), ``list series``, ``count series``,
``show version`` and ``show time_precision``.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tsconnector.client import TsClient, check_insert_shape

siridb = pytest.importorskip("siridb.connector")

CASES_FILE = Path(__file__).parent / "data" / "cases.json"
NAME = r'"(?:[^"]|"")*"'
SUPPORTED = re.compile(
    rf"^(select \* from {NAME}(, {NAME})*( (between \d+ and \d+|after \d+|before \d+))?"
    r"|list series|count series|show version|show time_precision)$"
)
FIRST_SCHEMA_CHANGE = 258  # seq of the first create/alter/drop case


def load_cases() -> list[dict[str, Any]]:
    cases = json.loads(CASES_FILE.read_text())["cases"]
    chosen = []
    for case in sorted(cases, key=lambda c: c["seq"]):
        if case["seq"] >= FIRST_SCHEMA_CHANGE or case.get("user"):
            continue
        if case.get("volatile") and case["kind"] != "insert":  # inserts answer a count
            continue
        if case["kind"] == "insert" or (
            case["kind"] == "query" and SUPPORTED.match(case["request"])
        ):
            chosen.append(case)
    return chosen


CASES = load_cases()


def insert_payload(case: dict[str, Any]) -> Any:
    """The insert payload exactly as recorded (integer keys, tuples, inf and nan kept)."""
    text = case.get("request_repr")
    if text is None:
        return case["request"]
    try:
        return ast.literal_eval(text)
    except ValueError:
        return eval(text, {"__builtins__": {}, "inf": math.inf, "nan": math.nan, "math": math})


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and ints equal floats only by value and type."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


Run = Callable[[dict[str, Any]], Awaitable[Any]]


async def replay(
    clients: dict[str, Any], refuses: Callable[[Any], bool] = lambda payload: False
) -> list[str]:
    """Run every case on the client of its database; return the mismatches.

    ``refuses(payload)`` names inserts that this client rejects before sending.
    """
    problems: list[str] = []
    for case in CASES:
        client = clients[case["db"]]
        client_side = case.get("error", {}).get("origin") == "client" or (
            case["kind"] == "insert" and refuses(insert_payload(case))
        )
        try:
            if case["kind"] == "insert":
                got: Any = await client.insert(insert_payload(case))
            else:
                got = await client.query(case["request"], case["time_precision"])
        except Exception as exc:  # compared with the recorded error below
            if client_side:
                continue  # each client rejects these before sending, in its own way
            expected = case.get("error")
            actual = {"type": type(exc).__name__, "message": str(exc)}
            if (
                expected is None
                or expected["type"] != actual["type"]
                or (expected["message"] != actual["message"])
            ):
                problems.append(f"{case['seq']} {case['id']}: {actual} != {expected}")
            continue
        if client_side or "error" in case:
            problems.append(f"{case['seq']} {case['id']}: answered {got!r}, expected an error")
        elif not same(got, case["response"]):
            problems.append(f"{case['seq']} {case['id']}: {got!r} != {case['response']!r}")
    return problems


def test_case_selection_covers_issue_2() -> None:
    kinds = {c["request"].split(" ")[0] for c in CASES if c["kind"] == "query"}
    assert kinds == {"select", "list", "count", "show"}
    assert sum(c["kind"] == "insert" for c in CASES) >= 60


async def test_siridb_connector_gets_golden_answers(
    embedded_server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await embedded_server_factory(databases=[("dbtest", "s"), ("dbms", "ms")])
    hostlist = [("127.0.0.1", server.port)]
    clients = {db: siridb.SiriDBClient("iris", "siri", db, hostlist) for db in ("dbtest", "dbms")}
    try:
        for client in clients.values():
            assert await client.connect() == [None]
        assert await replay(clients) == []
    finally:
        for client in clients.values():
            client.close()


async def test_tsclient_gets_golden_answers(
    embedded_server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await embedded_server_factory(databases=[("dbtest", "s"), ("dbms", "ms")])
    hostlist = [("127.0.0.1", server.port)]
    clients = {db: TsClient("iris", "siri", db, hostlist) for db in ("dbtest", "dbms")}

    def refuses(payload: Any) -> bool:  # points that are not pairs: a clearer error first
        try:
            check_insert_shape(payload)
        except TypeError:
            return True
        return False

    try:
        for client in clients.values():
            assert await client.connect() == [None]
        assert await replay(clients, refuses) == []
        with pytest.raises(OverflowError):
            await clients["dbtest"].insert({"x": [[1699920000, 18446744073709551616]]})
        with pytest.raises(ValueError, match="time_precision"):
            await clients["dbtest"].query('select * from "sensor.a"', 4)
    finally:
        for client in clients.values():
            client.close()
            await client.wait_closed()
