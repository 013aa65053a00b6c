"""Issue 11, items 9, 10 and 12: answers SiriDB 2.0.55 gives where the embedded server
hung, froze or stalled (values outside int64, catastrophic regexes, huge selects)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import qpack  # type: ignore[import-untyped]
from server_wire import RawClient

from tsconnector.protocol import AnswerType, RequestType
from tsconnector.server import EmbeddedServer
from tsconnector.server.model import Database
from tsconnector.server.query import Session, execute
from tsconnector.server.query.answer import PointColumns
from tsconnector.server.regex import SiriRegex
from tsconnector.server.wire import iter_pack_answer, pack_answer

OUT_OF_RANGE = "Time expression out-of-range."
POINTS_LIMIT = (
    "Query has reached the maximum number of selected points (1000000). Please use "
    "another time window, an aggregation function or select less series to reduce the "
    "number of points."
)


def _ok(session: Session, query: str, precision: int | None = None) -> Any:
    tp, answer = execute(session, query, precision)
    assert tp == AnswerType.RES_QUERY, answer
    return answer


def _err(session: Session, query: str) -> str:
    tp, answer = execute(session, query, None)
    assert tp == AnswerType.ERR_QUERY, answer
    return str(answer["error_msg"])


# -- item 9: results outside int64 ------------------------------------------------------


async def test_item9_values_outside_int64_get_siridb_errors_over_the_wire() -> None:
    async with EmbeddedServer(databases=(("dbms", "ms"),)) as srv:
        c = await RawClient.connect(srv.port)
        assert await c.auth(db="dbms") == AnswerType.RES_AUTH_SUCCESS
        for query in (
            "9223372036854775808",
            "now * 99999999999",
            'select * from "a" after 9223372036854775808',
            'select * from "a" after now * 99999999999',
            "list series where start > now * 99999999999",
        ):
            assert await c.query(query) == (AnswerType.ERR_QUERY, {"error_msg": OUT_OF_RANGE})
        # A point past 2262 read in nanoseconds wraps as SiriDB's uint64 conversion does.
        points = [[9300000000000, 1], [18446744073709, 2], [18446744073710, 3]]
        assert (await c.insert({"b": points}))[0] == AnswerType.RES_INSERT
        assert await c.query('select * from "b"', 3) == (
            AnswerType.RES_QUERY, {"b": [[-9146744073709551616, 1], [-550912, 2], [0, 3]]})
        await c.ping()
        await c.close()


async def test_item9_huge_expiration_wraps_and_show_answers_across_restarts(
    tmp_path: Path,
) -> None:
    async with EmbeddedServer(data_dir=tmp_path, databases=(("dbms", "ms"),)) as srv:
        c = await RawClient.connect(srv.port)
        await c.auth(db="dbms")
        # 15250284452472 weeks in ms is past int64: SiriDB's expression wraps it.
        assert await c.query("alter database set expiration_num 15250284452472w") == (
            AnswerType.RES_QUERY,
            {"success_msg": "Successfully changed expiration from 0 to 289792000."})
        tp, answer = await c.query("alter database set expiration_log 15250284452w")
        assert tp == AnswerType.ERR_QUERY
        assert answer["error_msg"].endswith("but got 9223372036569600000")
        # An older version journaled values past int64: they must not break ``show``.
        srv.state.databases["dbms"].set_setting("expiration_log", 2**64 - 1)
        await c.ping()
        await c.close()
    for _ in range(2):
        async with EmbeddedServer(data_dir=tmp_path, databases=(("dbms", "ms"),)) as srv:
            c = await RawClient.connect(srv.port)
            await c.auth(db="dbms")
            assert await c.query("show expiration_num, expiration_log") == (
                AnswerType.RES_QUERY,
                {"data": [{"name": "expiration_num", "value": 289792000},
                          {"name": "expiration_log", "value": None}]})
            await c.close()


# -- item 10: catastrophic regexes end like PCRE2's match limit --------------------------


def _bounded(fn: Any, timeout: float = 60.0) -> Any:
    """Run ``fn`` in a thread; a hang (unbounded backtracking) fails instead of blocking."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "regex matching did not end"
    return result[0]


@pytest.mark.parametrize("length", [27, 64, 400])
def test_item10_catastrophic_selection_regex_ends(length: int) -> None:
    db = Database("re", 0)
    db.insert({ch * length: [(1, 1)] for ch in "abc"})
    session = Session(db, "iris")
    # 2**length backtracking steps for Python's ``re``; PCRE2 gives up (no match).
    assert _bounded(lambda: _ok(session, "select * from /(.+)+X/")) == {}
    assert _bounded(lambda: _ok(session, "count series /(a|aa)+$X/")) == {"series": 0}
    assert _bounded(lambda: _ok(session, "count series /(a|a)+b/")) == {"series": 0}
    assert _bounded(lambda: _ok(session, "count series /(.+)+a/")) == {"series": 1}


def test_item10_planted_group_regex_costs_nothing_on_list_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = Database("re", 0)
    db.insert({ch * 27: [(1, 1)] for ch in "abc"})
    session = Session(db, "iris")
    _ok(session, "create user 'wr' set password 'wrpass'")
    _ok(session, "grant write to user 'wr'")
    writer = Session(db, "wr")
    # SiriDB's 'write' access includes creating groups.
    assert _bounded(lambda: _ok(writer, "create group `cat` for /(.+)+X/")) == {
        "success_msg": "Successfully created group 'cat'."}
    calls = 0
    original = SiriRegex.matches

    def counting(self: SiriRegex, subject: str) -> bool:
        nonlocal calls
        calls += 1
        return original(self, subject)

    monkeypatch.setattr(SiriRegex, "matches", counting)
    for _ in range(3):
        assert _ok(session, "list groups name, series") == {
            "columns": ["name", "series"], "groups": [["cat", 0]]}
    assert calls == 0  # members are kept, as SiriDB keeps them
    db.insert({"d" * 300: [(1, 1)]})  # a new series is tested once, in bounded time
    assert calls == 1
    assert _ok(session, "list groups name, series") == {
        "columns": ["name", "series"], "groups": [["cat", 0]]}


# -- item 12: select_points_limit and huge selects ----------------------------------------


def test_item12_select_points_limit_default_and_text() -> None:
    db = Database("big", 0)
    assert db.select_points_limit == 1_000_000
    half = 500_001
    db.insert({"s1": [(i, i) for i in range(1, half + 1)],
               "s2": [(i, i) for i in range(1, half + 1)],
               "s3": [(1, 1)]})
    session = Session(db, "iris")
    assert _err(session, "select * from /s.*/") == POINTS_LIMIT
    # Aggregated points count, not the points read.
    assert _ok(session, "select count() from /s.*/") == {
        "s1": [[half, half]], "s2": [[half, half]], "s3": [[1, 1]]}
    # Like SiriDB, names alone are checked only before reading a further series.
    assert _err(session, 'select * from "s1", "s2", "s3"') == POINTS_LIMIT
    answer = _ok(session, 'select * from "s1", "s2"')
    assert len(answer["s1"]) == len(answer["s2"]) == half


def test_item12_large_answer_packs_in_chunks_as_one_answer() -> None:
    db = Database("big", 1)
    n = 200_003
    db.insert({"big": [(1_700_000_000_000 + i, i * 0.5) for i in range(n)],
               "small": [(1_700_000_000_000, "x")]})
    session = Session(db, "iris")
    for precision in (None, 3):
        answer = _ok(session, "select * from /.*/", precision)
        assert type(answer["big"]) is PointColumns
        pieces = list(iter_pack_answer(answer))
        assert len(pieces) > 4  # packed in turns
        expected = {name: list(points) for name, points in answer.items()}
        assert b"".join(pieces) == pack_answer(expected)
        first = 1_700_000_000_000 * (10**6 if precision == 3 else 1)
        assert answer["big"][0] == [first, 0.0]
        assert answer["big"][-1][1] == (n - 1) * 0.5


async def test_item12_other_clients_are_served_while_a_huge_answer_is_packed() -> None:
    n = 600_000
    async with EmbeddedServer() as srv:
        srv.state.databases["dbtest"].insert({"big": [(10**9 + i, i) for i in range(n)]})
        big, other = await RawClient.connect(srv.port), await RawClient.connect(srv.port)
        await big.auth()
        await other.auth()
        pid = big.send(RequestType.QUERY, ['select * from "big"', None])
        await other.ping(timeout=120)
        # The ping was answered while the select's answer was still being packed.
        assert big.frames.empty()
        frame = await big.recv(timeout=120)
        assert (frame.pid, frame.tp) == (pid, AnswerType.RES_QUERY)
        answer = qpack.unpackb(frame.payload, decode="utf-8")
        assert len(answer["big"]) == n
        assert answer["big"][-1] == [10**9 + n - 1, n - 1]
        await big.close()
        await other.close()
