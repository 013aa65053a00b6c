"""Topology parsing, status flags, splitting inserts per pool and putting parts together."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsconnector.exceptions import ProtocolError
from tsconnector.protocol.lookup import pool_of
from tsconnector.routing import merge_parts, series_names, split_by_pool
from tsconnector.topology import ClusterServer, parse_status, parse_topology

COLUMNS = ["name", "address", "port", "pool", "online", "status"]


def servers_answer(*rows: list[Any]) -> dict[str, Any]:
    return {"columns": COLUMNS, "servers": [list(r) for r in rows]}


def load_answer(*rows: list[Any]) -> dict[str, Any]:
    return {"columns": [*COLUMNS, "active_handles"], "servers": [list(r) for r in rows]}


# The shapes SiriDB 2.0.55 answers with: pool 1 has a replica that is offline, so the
# coordinator lists it (online false, "offline") and the remote-column query leaves it out.
SERVERS = servers_answer(
    ["10.0.0.1:9010", "10.0.0.1", 9010, 0, True, "running"],
    ["10.0.0.2:9010", "10.0.0.2", 9010, 1, True, "running"],
    ["10.0.0.3:9010", "10.0.0.3", 9010, 1, False, "offline"],
)
LOAD = load_answer(
    ["10.0.0.2:9010", "10.0.0.2", 9010, 1, True, "running | re-indexing", 13],
    ["10.0.0.1:9010", "10.0.0.1", 9010, 0, True, "running", 14],
)
POOLS = {"columns": ["pool", "servers", "series"], "pools": [[1, 2, 40], [0, 1, 60]]}


def test_parse_combines_both_views() -> None:
    topology = parse_topology(SERVERS, LOAD, POOLS, time=5.0)
    assert topology.num_pools == 2
    assert topology.pool_series == {0: 60, 1: 40}
    first, second, third = topology.servers
    assert (first.name, first.address, first.port, first.pool) == ("10.0.0.1:9010", "10.0.0.1",
                                                                   9010, 0)
    assert first.active_handles == 14
    assert first.fit
    assert second.status == {"running", "re-indexing"}
    assert not second.fit
    assert second.status_text == "running | re-indexing"
    assert not third.online
    assert third.active_handles is None
    assert not third.fit
    assert third.status_text == "offline"
    assert topology.reindexing
    assert not topology.routable
    assert [s.name for s in topology.pool_servers(1)] == ["10.0.0.2:9010", "10.0.0.3:9010"]
    assert topology.server("nope") is None
    assert topology.pool_of("a") == pool_of("a", 2)


@pytest.mark.parametrize("extra", [None, {"echo": "?"}, {"columns": ["a"], "servers": [[1, 2]]}])
def test_parse_without_the_optional_answers(extra: Any) -> None:
    topology = parse_topology(SERVERS, extra, extra)
    assert topology.routable
    assert topology.pool_series == {}
    assert all(s.active_handles is None for s in topology.servers)


@pytest.mark.parametrize(
    ("status", "fit"),
    [
        ("running", True),
        ("running | synchronizing", False),
        ("running | re-indexing", False),
        ("running | backup-mode", False),
        ("running | queue-full", False),
        ("running | unavailable", False),
        ("offline", False),
        ("", False),
    ],
)
def test_status_flags(status: str, fit: bool) -> None:
    server = ClusterServer("a:1", "a", 1, 0, True, parse_status(status))
    assert server.fit is fit


@pytest.mark.parametrize(
    "answer",
    [
        None,
        {"columns": COLUMNS},
        {"columns": COLUMNS, "servers": [["a:1", "a", 1, 0, True]]},
        servers_answer(["a:1", "a", "1", 0, True, "running"]),
        servers_answer(["a:1", "a", 1, -1, True, "running"]),
        servers_answer(),
    ],
)
def test_unexpected_answers_raise_protocol_error(answer: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_topology(answer)


NAMES = st.text(min_size=1, max_size=12)
POINTS = st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)).map(list), max_size=3)


@given(st.dictionaries(NAMES, POINTS, max_size=30), st.integers(1, 6))
def test_split_mapping_by_owner(data: dict[str, Any], pools: int) -> None:
    def owner(name: Any) -> int:
        return pool_of(name, pools)

    parts = split_by_pool(data, owner)
    if not data or any(_surrogate(n) for n in data):
        assert parts is None
        return
    assert parts is not None
    for pool, part in parts.items():
        assert all(owner(name) == pool for name in part)
    assert merge_parts(list(parts.values())) == data
    if len(parts) == 1:
        assert next(iter(parts.values())) is data  # one pool: no copy


def _surrogate(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def test_split_list_form_keeps_items() -> None:
    data: list[dict[str, Any]] = [{"name": f"s{i}", "points": [[1, i]]} for i in range(20)]
    parts = split_by_pool(data, lambda n: pool_of(n, 3))
    assert parts is not None
    assert len(parts) == 3
    assert sorted(merge_parts(list(parts.values())), key=lambda i: i["name"]) == sorted(
        data, key=lambda i: i["name"])
    for pool, part in parts.items():
        assert {pool_of(n, 3) for n in series_names(part)} == {pool}


def test_split_dataframe_by_column() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({f"s{i}": [1.0, 2.0] for i in range(9)}, index=[10, 20])
    parts = split_by_pool(frame, lambda n: pool_of(n, 3))
    assert parts is not None
    assert len(parts) == 3
    merged = merge_parts(list(parts.values()))
    assert sorted(merged.columns) == sorted(frame.columns)
    assert (merged[frame.columns] == frame).all().all()


@pytest.mark.parametrize(
    "data",
    [
        {1: [[1, 1]]},
        {"a": [[1, 1]], None: [[1, 1]]},
        [{"name": 5, "points": [[1, 1]]}],
        {"\ud800": [[1, 1]]},
        "not an insert",
        [],
        {},
        [[1, 2]],
    ],
)
def test_unsplittable_data_goes_whole(data: Any) -> None:
    assert split_by_pool(data, lambda n: pool_of(n, 3)) is None


def test_merge_nothing_and_unknown() -> None:
    assert merge_parts([]) is None
    with pytest.raises(TypeError):
        merge_parts([1, 2])
