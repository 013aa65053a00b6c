"""Replay every recorded query and insert of a real SiriDB 2.0.55 against the evaluator.

Both recordings (``cases.json`` and ``compat_cases.json``) run in ``seq`` order on fresh
databases (those of the file's ``meta``), straight through
:func:`tsconnector.server.query.execute` (no network). Non-volatile answers must match
exactly; volatile ones (wall clock, uptime, ids) by shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import qpack

from tsconnector.protocol.constants import AnswerType
from tsconnector.server.control import ServerControl
from tsconnector.server.insert import InsertRejected, parse_insert
from tsconnector.server.model import ACCESS_BITS, Database
from tsconnector.server.query import Session, execute
from tsconnector.server.query.precision import effective_precision

DATA = Path(__file__).parent / "data"
CASES_FILE = DATA / "cases.json"
COMPAT_FILE = DATA / "compat_cases.json"
PRECISIONS = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_NAMES = {"inf": math.inf, "nan": math.nan}
ERROR_TYPES = {
    "QueryError": AnswerType.ERR_QUERY,
    "UserAuthError": AnswerType.ERR_USER_ACCESS,
    "InsertError": AnswerType.ERR_INSERT,
    "ServerError": AnswerType.ERR_SERVER,
}


def _load(path: Path = CASES_FILE) -> list[dict[str, Any]]:
    cases = json.loads(path.read_text())["cases"]
    return sorted(cases, key=lambda c: c["seq"])


def _meta(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(path.read_text())["meta"]
    return meta


def _same(a: Any, b: Any) -> bool:
    """Exact equality where NaN equals NaN and int/float are told apart."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _same_shape(a: Any, b: Any) -> bool:
    """Loose comparison for volatile answers: same keys, columns and value types."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return False
        if "columns" in a and a["columns"] != b["columns"]:
            return False
        if "data" in a:
            return [d["name"] for d in a["data"]] == [d["name"] for d in b["data"]]
        return all(type(a[k]) is type(b[k]) for k in a)
    return type(a) is type(b)


class Replay:
    """Fresh databases and the state needed to replay the cases in order."""

    def __init__(self, path: Path = CASES_FILE) -> None:
        meta = _meta(path)
        self.dbs = {
            name: Database(name, PRECISIONS[precision])
            for name, precision in meta["databases"].items()
        }
        self.server_name = meta.get("server_name", "127.0.0.1:9010")
        self.control = ServerControl()

    def insert(self, case: dict[str, Any]) -> tuple[int, Any]:
        db = self.dbs[case["db"]]
        user = db.users.get(case.get("user", "iris"))
        if user is None or not user.access & ACCESS_BITS["insert"]:
            name = case.get("user", "iris")
            return AnswerType.ERR_USER_ACCESS, {
                "error_msg": f"Access denied. User '{name}' has no 'insert' privileges."}
        refusal = self.control.insert_refusal(self.server_name)
        if refusal is not None:
            return AnswerType.ERR_SERVER, {"error_msg": refusal}
        frames = case.get("wire", {}).get("request_frames")
        if frames:
            payload = bytes.fromhex(frames[0]["payload_hex"])
        else:
            # recorded without its frames: pack the request as the client would
            payload = qpack.packb(eval(case["request_repr"], {"__builtins__": {}}, _NAMES))
        try:
            batch = parse_insert(payload, db.precision)
        except InsertRejected as exc:
            return AnswerType.ERR_INSERT, {"error_msg": str(exc)}
        n = db.insert(batch.series)
        return AnswerType.RES_INSERT, {"success_msg": f"Successfully inserted {n} point(s)."}

    def query(self, case: dict[str, Any]) -> tuple[int, Any]:
        db = self.dbs[case["db"]]
        at = float(case.get("recorded_at") or 0)
        user = db.users.get(case.get("user", "iris"))
        session = Session(
            db, case.get("user", "iris"), now=lambda: at, started_at=at - 10,
            server_name=self.server_name, account=user, control=self.control)
        precision = case["time_precision"]
        if isinstance(precision, int) and not isinstance(precision, bool):
            precision = effective_precision(precision, db.precision)  # as the server does
        return execute(session, case["request"], precision)


def _expected(case: dict[str, Any]) -> tuple[int, Any] | None:
    if "error" in case:
        err = case["error"]
        if err.get("origin") != "server":
            return None
        return ERROR_TYPES[err["type"]], {"error_msg": err["message"]}
    kind = AnswerType.RES_INSERT if case["kind"] == "insert" else AnswerType.RES_QUERY
    return kind, case["response"]


def replay_all(path: Path = CASES_FILE) -> tuple[list[str], int, int]:
    """Run every case; returns (mismatch descriptions, exact matches, compared)."""
    replay = Replay(path)
    mismatches: list[str] = []
    exact = compared = 0
    for case in _load(path):
        if case["kind"] not in ("query", "insert") or case.get("db") not in replay.dbs:
            continue
        expected = _expected(case)
        if case["kind"] == "insert":
            if expected is None:
                continue
            got = replay.insert(case)
        else:
            precision = case["time_precision"]
            if not isinstance(case["request"], str) or not (
                    precision is None or type(precision) is int):
                continue
            got = replay.query(case)
        if expected is None:
            continue
        compared += 1
        if case.get("volatile"):
            ok = got[0] == expected[0] and _same_shape(got[1], expected[1])
        else:
            ok = got[0] == expected[0] and _same(got[1], expected[1])
        if ok:
            exact += 1
        else:
            mismatches.append(
                f"{case['seq']} {case['id']}: {case['request']!r:.120}\n"
                f"   got      {got[0]!s} {json.dumps(got[1])[:400]}\n"
                f"   expected {expected[0]!s} {json.dumps(expected[1])[:400]}")
    return mismatches, exact, compared


@pytest.mark.parametrize("path", [CASES_FILE, COMPAT_FILE], ids=["cases", "compat_cases"])
def test_golden_cases_match(path: Path) -> None:
    mismatches, matched, compared = replay_all(path)
    print(f"golden cases matched: {matched}/{compared}")
    assert not mismatches, "\n".join(mismatches)
    if path == COMPAT_FILE:  # every case of this recording reached the server
        assert compared == len(_load(path))


if __name__ == "__main__":  # pragma: no cover - manual inspection helper
    found, matched, compared = replay_all()
    print("\n".join(found))
    print(f"golden cases matched: {matched}/{compared}")
    pytest.main([__file__, "-q"])
