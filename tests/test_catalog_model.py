"""Hypothesis: random new / save / save_if / delete / get / query / commit / rollback
sequences give the same answers on every backend as a dict-based model."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsconnector.catalog import (
    ConflictError,
    Database,
    In,
    Like,
    Re,
    Reversed,
    Row,
    RowNotFound,
)

FIELDS = ["f1", "f2", "f3"]
VALUES = ["", "a", "b", "ab", "B", "é", "a%", "_", "a_b", "ba"]
# Patterns that mean the same in Python's re and PostgreSQL's regular expressions.
REGEXES = ["^a", "b$", "a|b", "^$", "é", "[ab]+", "^a.*b$", "^[^a]"]
LIKES = ["a%", "%b", "_", "a\\_b", "%", "", "%a%"]

values = st.sampled_from(VALUES)
fields = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
conditions = st.one_of(
    values,
    st.builds(In, st.lists(values, max_size=3)),
    st.builds(Like, st.sampled_from(LIKES)),
    st.builds(Re, st.sampled_from(REGEXES)),
)
order_terms = st.one_of(
    st.sampled_from([*FIELDS, "id"]), st.sampled_from([*FIELDS, "id"]).map(Reversed)
)
queries = st.tuples(
    st.just("query"),
    st.dictionaries(st.sampled_from(FIELDS), conditions, max_size=2),
    st.one_of(st.none(), order_terms, st.lists(order_terms, min_size=1, max_size=2)),
    st.integers(0, 3),
    st.one_of(st.none(), st.integers(0, 4)),
    st.booleans(),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("new"), fields),
        st.tuples(st.just("new_many"), st.lists(fields, max_size=4)),
        st.tuples(st.just("save"), st.integers(0, 50), fields),
        st.tuples(st.just("save_if"), st.integers(0, 50), fields, st.integers(-1, 1)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("get"), st.integers(0, 50)),
        queries,
        st.just(("commit",)),
        st.just(("rollback",)),
    ),
    max_size=30,
)

_tables = itertools.count()


def _like(pattern: str) -> re.Pattern[str]:
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _holds(value: str | None, cond: Any) -> bool:
    if value is None:
        return False
    if isinstance(cond, str):
        return value == cond
    if isinstance(cond, In):
        return value in cond.values
    if isinstance(cond, Like):
        return _like(cond.pattern).fullmatch(value) is not None
    return re.search(cond.pattern, value) is not None


def _model_query(rows: dict[int, tuple[dict[str, str], int]], op: tuple[Any, ...]) -> Any:
    _, where, order_by, offset, limit, count = op
    ids = sorted(
        i for i, (f, _v) in rows.items() if all(_holds(f.get(k), c) for k, c in where.items())
    )
    terms = (
        []
        if order_by is None
        else [order_by]
        if isinstance(order_by, (str, Reversed))
        else order_by
    )
    if not any((t.field if isinstance(t, Reversed) else t) == "id" for t in terms):
        terms = [*terms, "id"]
    for term in reversed(terms):
        name = term.field if isinstance(term, Reversed) else term

        def key(i: int, name: str = name) -> Any:
            if name == "id":
                return (True, i)
            value = rows[i][0].get(name)
            return (value is not None, value or "")

        ids.sort(key=key, reverse=isinstance(term, Reversed))
    ids = ids[offset:]
    if limit is not None:
        ids = ids[:limit]
    return len(ids) if count else ids


async def _check(db: Database, ops: list[tuple[Any, ...]]) -> None:
    name = f"model_{next(_tables)}"
    async with db.session() as s:
        await s[name].create_table()
        await s.commit()
    committed: dict[int, tuple[dict[str, str], int]] = {}
    working: dict[int, tuple[dict[str, str], int]] = {}
    seen: list[int] = []
    # Ids only grow within a transaction and past every committed one (SQLite may reuse
    # the ids of rolled-back rows; PostgreSQL never does).
    floor = committed_floor = 0
    async with db.session() as s:
        t = s[name]
        for op in ops:
            kind = op[0]
            if kind == "new":
                row = await t.new(**op[1])
                assert row.id is not None
                assert row.id > floor
                assert row.version == 1
                floor = row.id
                working[row.id] = (dict(op[1]), 1)
                seen.append(row.id)
            elif kind == "new_many":
                rows = await t.new_many(op[1])
                assert [dict(r) for r in rows] == op[1]
                for row in rows:
                    assert row.id is not None
                    assert row.id > floor
                    assert row.version == 1
                    floor = row.id
                    working[row.id] = (dict(row), 1)
                    seen.append(row.id)
            elif kind in ("save", "save_if", "delete", "get"):
                if not seen:
                    continue
                row_id = seen[op[1] % len(seen)]
                present = row_id in working
                if kind == "get":
                    if present:
                        got = await t.get(row_id)
                        assert (dict(got), got.version) == working[row_id]
                    else:
                        with pytest.raises(RowNotFound):
                            await t.get(row_id)
                elif kind == "delete":
                    if present:
                        await t.delete(row_id)
                        del working[row_id]
                    else:
                        with pytest.raises(RowNotFound):
                            await t.delete(row_id)
                elif kind == "save":
                    row = Row(op[2], id=row_id, version=0, table=t)
                    if present:
                        await row.save()
                        working[row_id] = (dict(op[2]), working[row_id][1] + 1)
                        assert row.version == working[row_id][1]
                    else:
                        with pytest.raises(RowNotFound):
                            await row.save()
                else:  # save_if with an expected version off by op[3]
                    version = working[row_id][1] if present else 1
                    row = Row(op[2], id=row_id, version=version + op[3], table=t)
                    if not present:
                        with pytest.raises(RowNotFound):
                            await t.save_if(row)
                    elif op[3]:
                        with pytest.raises(ConflictError):
                            await t.save_if(row)
                    else:
                        await t.save_if(row)
                        working[row_id] = (dict(op[2]), version + 1)
                        assert row.version == version + 1
            elif kind == "query":
                _, where, order_by, offset, limit, count = op
                got = await t.query(where, order_by, offset, limit, count)
                expected = _model_query(working, op)
                if count:
                    assert got == expected
                else:
                    assert [r.id for r in got] == expected
                    assert [(dict(r), r.version) for r in got] == [working[i] for i in expected]
            elif kind == "commit":
                await s.commit()
                committed = dict(working)
                committed_floor = floor
            else:
                await s.rollback()
                working = dict(committed)
                floor = committed_floor
        await s.rollback()
    async with db.session(readonly=True) as s:
        stored = {r.id: (dict(r), r.version) for r in await s[name].query()}
    assert stored == committed


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_catalog_agrees_with_a_dict_model(catalog_db: Database, ops: list[Any]) -> None:
    await _check(catalog_db, ops)
