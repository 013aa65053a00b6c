"""Replay every recorded query and insert of a real SiriDB 2.0.55 against the evaluator.

Cases run in ``seq`` order on fresh databases (``dbtest`` in seconds, ``dbms`` in
milliseconds), straight through :func:`tsconnector.server.query.execute` (no network).
Non-volatile answers must match exactly; volatile ones (wall clock, uptime, ids) by shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import qpack

from tsconnector.protocol.constants import AnswerType
from tsconnector.server.insert import InsertRejected, parse_insert
from tsconnector.server.model import ACCESS_BITS, Database
from tsconnector.server.query import Session, execute

CASES_FILE = Path(__file__).parent / "data" / "cases.json"
PRECISIONS = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_NAMES = {"inf": math.inf, "nan": math.nan}
ERROR_TYPES = {
    "QueryError": AnswerType.ERR_QUERY,
    "UserAuthError": AnswerType.ERR_USER_ACCESS,
    "InsertError": AnswerType.ERR_INSERT,
}


def _load() -> list[dict[str, Any]]:
    cases = json.loads(CASES_FILE.read_text())["cases"]
    return sorted(cases, key=lambda c: c["seq"])


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

    def __init__(self) -> None:
        self.dbs = {"dbtest": Database("dbtest", 0), "dbms": Database("dbms", 1)}

    def insert(self, case: dict[str, Any]) -> tuple[int, Any]:
        db = self.dbs[case["db"]]
        user = db.users.get(case.get("user", "iris"))
        if user is None or not user.access & ACCESS_BITS["insert"]:
            name = case.get("user", "iris")
            return AnswerType.ERR_USER_ACCESS, {
                "error_msg": f"Access denied. User '{name}' has no 'insert' privileges."}
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
        session = Session(db, case.get("user", "iris"), now=lambda: at, started_at=at - 10)
        return execute(session, case["request"], case["time_precision"])


def _expected(case: dict[str, Any]) -> tuple[int, Any] | None:
    if "error" in case:
        err = case["error"]
        if err.get("origin") != "server":
            return None
        return ERROR_TYPES[err["type"]], {"error_msg": err["message"]}
    kind = AnswerType.RES_INSERT if case["kind"] == "insert" else AnswerType.RES_QUERY
    return kind, case["response"]


def replay_all() -> tuple[list[str], int, int]:
    """Run every case; returns (mismatch descriptions, exact matches, compared)."""
    replay = Replay()
    mismatches: list[str] = []
    exact = compared = 0
    for case in _load():
        if case["kind"] not in ("query", "insert") or case.get("db") not in replay.dbs:
            continue
        expected = _expected(case)
        if case["kind"] == "insert":
            if expected is None:
                continue
            got = replay.insert(case)
        else:
            if not isinstance(case["request"], str) or case["time_precision"] not in (
                    None, 0, 1, 2, 3):
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


def test_golden_cases_match() -> None:
    mismatches, matched, compared = replay_all()
    print(f"golden cases matched: {matched}/{compared}")
    assert not mismatches, "\n".join(mismatches)


if __name__ == "__main__":  # pragma: no cover - manual inspection helper
    found, matched, compared = replay_all()
    print("\n".join(found))
    print(f"golden cases matched: {matched}/{compared}")
    pytest.main([__file__, "-q"])
