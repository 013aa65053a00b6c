"""SiriDB select/list semantics beyond the golden recording, checked through ``execute``.

Each test pins one behaviour of SiriDB 2.0's query engine (``listener.c``) that the
recording does not exercise: merged answers per aggregate, the order merged series are
combined in, how the points limit counts, and default list columns.
"""

from __future__ import annotations

from typing import Any

import pytest

from tsconnector.protocol.constants import AnswerType
from tsconnector.server.model import ACCESS_PROFILES, Database, User
from tsconnector.server.query import Session, execute

T0 = 1_699_920_000
LIMIT_ERROR = (
    "Query has reached the maximum number of selected points (10). Please use another "
    "time window, an aggregation function or select less series to reduce the number of "
    "points."
)


@pytest.fixture
def db() -> Database:
    database = Database("dbtest", 0)
    database.users["iris"] = User("iris", "siri", ACCESS_PROFILES["full"])
    return database


def run(db: Database, query: str) -> tuple[int, Any]:
    return execute(Session(db, "iris", now=lambda: T0 + 86_400.0), query, None)


def ok(db: Database, query: str) -> Any:
    tp, answer = run(db, query)
    assert tp == AnswerType.RES_QUERY, answer
    return answer


def failure(db: Database, query: str) -> str:
    tp, answer = run(db, query)
    assert tp == AnswerType.ERR_QUERY, answer
    return str(answer["error_msg"])


def test_merge_gives_one_answer_per_aggregate(db: Database) -> None:
    db.insert({"a": [(T0, 1), (T0 + 10, 5)], "b": [(T0 + 5, 3)]})
    answer = ok(db, 'select min() prefix "min-", max() prefix "max-" from "a", "b" merge as "m"')
    assert answer == {
        "max-m": [[T0 + 5, 3], [T0 + 10, 5]],
        "min-m": [[T0 + 5, 3], [T0 + 10, 1]],
    }
    answer = ok(db, 'select count(), sum() suffix "-sum" from "a", "b" merge as "all"')
    assert answer == {"all": [[T0 + 5, 1], [T0 + 10, 2]], "all-sum": [[T0 + 5, 3], [T0 + 10, 6]]}


def test_merge_without_series_answers_an_empty_list(db: Database) -> None:
    db.insert({"a": [(T0, 1)]})
    assert ok(db, 'select * from "nope" merge as "m"') == {"m": []}
    assert ok(db, 'select * from /zzz.*/ merge as "m" using count()') == {"m": []}
    assert ok(db, 'select * from "nope"') == {}


def _merged_ties(creation_order: list[str]) -> list[int]:
    """Values of ``select * ... merge`` over three series sharing one timestamp."""
    database = Database("dbtest", 0)
    database.users["iris"] = User("iris", "siri", ACCESS_PROFILES["full"])
    values = {"alpha": 2, "mid": 3, "zeta": 1}
    for name in creation_order:
        database.insert({name: [(T0, values[name])]})
    answer = ok(database, 'select * from "alpha", "mid", "zeta" merge as "m"')
    return [v for _, v in answer["m"]]


def test_merge_combines_series_in_creation_order() -> None:
    # SiriDB hands the merge its series in id (creation) order, not name order; that
    # order decides how points sharing a timestamp come out.
    assert _merged_ties(["alpha", "mid", "zeta"]) == [3, 1, 2]
    assert _merged_ties(["zeta", "alpha", "mid"]) == [2, 3, 1]


def test_points_limit_counts_aggregated_points(db: Database) -> None:
    db.insert({name: [(T0 + i, i) for i in range(6)] for name in ("s1", "s2", "s3")})
    db.insert({"big": [(T0 + i, i) for i in range(12)]})
    ok(db, "alter database set select_points_limit 10")
    # one point per series after count(): far below the limit
    assert ok(db, 'select count() from "s1", "s2", "s3"') == {
        name: [[T0 + 5, 6]] for name in ("s1", "s2", "s3")}
    assert len(ok(db, "select count() from /s.*/")) == 3
    # raw points: the limit is checked before each series is read ...
    assert failure(db, 'select * from "s1", "s2", "s3"') == LIMIT_ERROR
    assert list(ok(db, 'select * from "s1", "s2"')) == ["s1", "s2"]
    # ... and, unless every series was named, once more at the end
    assert len(ok(db, 'select * from "big"')["big"]) == 12
    assert failure(db, 'select * from /big/') == LIMIT_ERROR
    assert failure(db, 'select * from "s1", "s2" | /nothing/') == LIMIT_ERROR


def test_points_limit_counts_over_all_aggregates(db: Database) -> None:
    db.insert({"s1": [(T0 + i, i) for i in range(6)], "s2": [(T0 + i, i) for i in range(6)]})
    ok(db, "alter database set select_points_limit 10")
    # SiriDB runs the selections last to first: filter() reads s1 (6) and s2 (6), then
    # first() finds 12 points selected before it reads s1 (as the real server answers)
    assert failure(db, 'select first() prefix "f-", filter(>= 0) from "s1", "s2"') == LIMIT_ERROR
    # the other way around first() runs last: 12 > 10 only at the final check, which a
    # selection of names alone skips
    answer = ok(db, 'select filter(>= 0), first() prefix "f-" from "s1", "s2"')
    assert list(answer) == ["f-s1", "f-s2", "s1", "s2"]
    assert failure(db, 'select filter(>= 0), first() prefix "f-" from /s.*/') == LIMIT_ERROR


def test_selected_points_counts_answer_points(db: Database) -> None:
    db.insert({"s1": [(T0 + i, i) for i in range(6)]})
    ok(db, 'select count() from "s1"')
    assert ok(db, "show selected_points") == {"data": [{"name": "selected_points", "value": 1}]}
    ok(db, 'select * from "s1"')
    assert ok(db, "show selected_points")["data"][0]["value"] == 7


def test_list_users_default_columns(db: Database) -> None:
    assert ok(db, "list users") == {"columns": ["name", "access"], "users": [["iris", "full"]]}
    assert ok(db, "list users name") == {"columns": ["name"], "users": [["iris"]]}
