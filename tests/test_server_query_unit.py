"""Unit tests of query behaviour the golden recordings do not cover."""

from __future__ import annotations

import pytest

from tsconnector.protocol.constants import AnswerType
from tsconnector.server.model import Database
from tsconnector.server.query import Session, execute
from tsconnector.server.query.select import convert_ts

NOW = 1_700_000_000.0


@pytest.fixture
def session() -> Session:
    db = Database("unit", 0)
    db.insert({"a": [(10, 1), (20, 2), (30, 3)], "b": [(10, 1.5)], "c": [(5, "x")]})
    return Session(db, "iris", now=lambda: NOW)


def ok(session: Session, query: str, precision: int | None = None) -> dict:
    tp, answer = execute(session, query, precision)
    assert tp == AnswerType.RES_QUERY, answer
    return answer


def err(session: Session, query: str) -> str:
    tp, answer = execute(session, query, None)
    assert tp == AnswerType.ERR_QUERY, answer
    return answer["error_msg"]


def test_keywords_are_case_sensitive(session: Session) -> None:
    # SiriDB's keywords are lower case only
    assert err(session, 'SELECT * FROM "a" BEFORE 20').startswith(
        "Query error at position 0. Expecting timeit, select, list, count, alter, ")
    assert ok(session, 'select * from "a" before 20') == {"a": [[10, 1]]}


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("(1 + 2) * 3 - 7 / 2", 6),
        ("7 / 2", 3),
        ("9 % 5 * -2 + 20", 12),
        ("now - 1d", int(NOW) - 86400),
        ("1w + 1h + 1m + 1s", 604800 + 3661),
        ("'2023-11-14 01:00+0100'", 1699920000),
        ("'2023-11'", 1698796800),
    ],
)
def test_calc_arithmetic(session: Session, query: str, value: int) -> None:
    assert ok(session, query) == {"calc": value}


def test_calc_errors(session: Session) -> None:
    assert err(session, "1 / 0") == "Division by zero error."
    assert err(session, "1 % 0") == "Modulo by zero error."
    assert err(session, "'2023-02-31 24:00'") == "Invalid date string."
    assert err(session, "-7 / 2") == "Time expression out-of-range."
    assert ok(session, "'2023-02-30'") == {"calc": 1677715200}  # days roll over


def test_head_tail_and_ranges(session: Session) -> None:
    assert ok(session, 'select * from "a" head 2') == {"a": [[10, 1], [20, 2]]}
    assert ok(session, 'select * from "a" tail 1') == {"a": [[30, 3]]}
    assert err(session, 'select * from "a" after 15 tail 1') == (
        "Query error at position 27. Expecting + - * % /, merge or end_of_statement")
    assert err(session, 'select * from "a" after now + 100000d') == (
        "Time expression out-of-range.")


def test_time_precision_conversion() -> None:
    assert convert_ts(1699920000250, 1, 3) == 1699920000249999872
    assert convert_ts(1099511627776, 1, 0) == 1099511680
    assert convert_ts(5, 0, 0) == 5
    assert convert_ts(5, 0, None) == 5


def test_prefix_suffix_and_chains(session: Session) -> None:
    answer = ok(session, 'select min() prefix "lo-", max() suffix "-hi" from "a"')
    assert answer == {"a-hi": [[30, 3]], "lo-a": [[30, 1]]}
    assert ok(session, 'select difference() => sum() from "a"') == {"a": [[30, 2]]}


def test_merge_using(session: Session) -> None:
    answer = ok(session, 'select * from "a", "b" merge as "m" using count()')
    assert answer == {"m": [[30, 4]]}
    assert err(session, 'select * from "a", "c" merge as "m"') == (
        "Cannot merge string and number series.")


def test_where_filters(session: Session) -> None:
    assert ok(session, "list series where type == string") == {
        "columns": ["name"], "series": [["c"]]}
    assert ok(session, 'list series name where name !~ "a" and length < 2') == {
        "columns": ["name"], "series": [["b"], ["c"]]}
    assert ok(session, "count series where start <= 5 or end >= 30") == {"series": 2}


def test_groups_tags_and_regex_flags(session: Session) -> None:
    ok(session, "create group `g` for /A|B/i")
    assert ok(session, "list groups name, series") == {
        "columns": ["name", "series"], "groups": [["g", 2]]}
    ok(session, "alter series /[ab]/ tag `t`")
    assert sorted(ok(session, "select count() from `t` & `g`")) == ["a", "b"]
    assert err(session, "create group `x` for /(/").startswith(
        "Cannot compile regular expression '^($': ")


def test_user_access_checks(session: Session) -> None:
    ok(session, 'create user "reader" set password "secret"')
    ok(session, 'grant read, insert to user "reader"')
    assert ok(session, "list users name, access") == {
        "columns": ["name", "access"], "users": [["iris", "full"], ["reader", "read and insert"]]}
    reader = Session(session.db, "reader", now=lambda: NOW)
    assert ok(reader, 'select count() from "a"') == {"a": [[30, 3]]}
    tp, answer = execute(reader, 'drop series "a"', None)
    assert tp == AnswerType.ERR_USER_ACCESS
    assert answer == {"error_msg": "Access denied. User 'reader' has no 'drop' privileges."}
    ok(session, 'revoke select from user "reader"')
    assert execute(reader, 'select * from "a"', None)[0] == AnswerType.ERR_USER_ACCESS


def test_mutations_are_committed_as_records() -> None:
    records: list[tuple] = []

    def journal(record: tuple) -> object:  # a journal applies what it logged
        records.append(record)
        return db.apply(record)

    db = Database("journal", 0, journal=journal)
    db.insert({"a": [(1, 1)]})
    session = Session(db, "iris")
    ok(session, "alter database set select_points_limit 500")
    ok(session, 'drop series "a" set ignore_threshold true')
    assert [r[0] for r in records] == ["insert", "setting", "drop_series"]
    replayed = Database("journal", 0)
    for record in records:
        replayed.apply(record)
    assert replayed.select_points_limit == 500
    assert not replayed.series


def test_query_too_long_and_non_string(session: Session) -> None:
    assert err(session, "select * from " + '"' + "x" * 65535 + '"') == "Query too long."
    assert execute(session, 12345, None)[0] == AnswerType.ERR_QUERY  # type: ignore[arg-type]


def test_help_topics(session: Session) -> None:
    assert ok(session, "help")["help"].startswith("help\n====")
    assert ok(session, "? select")["help"].startswith("select\n")
    assert err(session, "help nothing").startswith("Query error at position 5. Expecting ")


def test_timeit_adds_timing(session: Session) -> None:
    answer = ok(session, 'timeit select count() from "a"')
    assert answer["a"] == [[30, 3]]
    assert answer["__timeit__"][0]["server"] == session.server_name
    assert answer["__timeit__"][0]["time"] >= 0
