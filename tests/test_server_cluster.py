"""The embedded server as one server of a multi-pool cluster (a static topology)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tsconnector import TsClient
from tsconnector.protocol.lookup import pool_of
from tsconnector.server import ClusterTopology, EmbeddedServer, TopologyError
from tsconnector.server.__main__ import main as server_main

LAYOUT: dict[str, Any] = {"servers": [
    {"name": "127.0.0.1:9010", "pool": 0},
    {"name": "127.0.0.1:9011", "pool": 1},
    {"name": "127.0.0.1:9012", "pool": 1, "online": False},
    {"name": "127.0.0.1:9013", "pool": 2, "status": "running | synchronizing"},
]}


async def query(server: EmbeddedServer, *queries: str) -> list[Any]:
    async with TsClient("iris", "siri", "dbtest", [server.address]) as client:
        return [await client.query(q) for q in queries]


async def test_one_pool_by_default() -> None:
    async with EmbeddedServer() as server:
        servers, pools, count = await query(server, "list servers", "list pools", "count pools")
        assert server.topology is None
        assert server.arrivals is None
    assert servers == {"columns": ["name", "pool", "version", "online", "status"],
                       "servers": [["127.0.0.1:9010", 0, "2.0.55", True, "running"]]}
    assert pools == {"columns": ["pool", "servers", "series"], "pools": [[0, 1, 0]]}
    assert count == {"pools": 1}


async def test_lists_the_cluster_with_siridb_columns_and_texts() -> None:
    async with EmbeddedServer(server_port=9011, topology=LAYOUT) as server:
        answers = await query(
            server,
            "list servers",
            "list servers name, address, port, pool, online, status, active_handles",
            "list servers name where pool == 1",
            "list pools",
            "count pools",
            "count servers",
            "show pool, status, server",
        )
    servers, remote, where, pools, count, count_servers, show = answers
    assert servers == {"columns": ["name", "pool", "version", "online", "status"], "servers": [
        ["127.0.0.1:9010", 0, "2.0.55", True, "running"],
        ["127.0.0.1:9011", 1, "2.0.55", True, "running"],
        ["127.0.0.1:9012", 1, "2.0.55", False, "offline"],
        ["127.0.0.1:9013", 2, "2.0.55", True, "running | synchronizing"],
    ]}
    # active_handles is answered by every server itself: the offline one is left out
    assert [row[0] for row in remote["servers"]] == ["127.0.0.1:9010", "127.0.0.1:9011",
                                                     "127.0.0.1:9013"]
    assert remote["servers"][1][1:6] == ["127.0.0.1", 9011, 1, True, "running"]
    assert all(isinstance(row[6], int) for row in remote["servers"])
    assert where["servers"] == [["127.0.0.1:9011"], ["127.0.0.1:9012"]]
    assert pools == {"columns": ["pool", "servers", "series"],
                     "pools": [[0, 1, 0], [1, 2, 0], [2, 1, 0]]}
    assert count == {"pools": 3}
    assert count_servers == {"servers": 4}
    assert show["data"] == [{"name": "pool", "value": 1}, {"name": "status", "value": "running"},
                            {"name": "server", "value": "127.0.0.1:9011"}]


async def test_a_pool_without_online_server_is_not_listed_but_counted() -> None:
    layout = {"servers": [{"name": "127.0.0.1:9010", "pool": 0},
                          {"name": "127.0.0.1:9011", "pool": 1, "online": False}]}
    async with EmbeddedServer(topology=layout) as server:
        pools, count = await query(server, "list pools", "count pools")
    assert pools["pools"] == [[0, 1, 0]]
    assert count == {"pools": 2}


async def test_status_changes_show_at_once(tmp_path: Path) -> None:
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(LAYOUT))
    async with EmbeddedServer(topology=path) as server, TsClient(
        "iris", "siri", "dbtest", [server.address]
    ) as client:
        topology = server.topology
        assert isinstance(topology, ClusterTopology)
        topology.set_status("127.0.0.1:9010", "running | re-indexing")
        topology.set_online("127.0.0.1:9012", True)
        answer = await client.query("list servers name, status")
        show = await client.query("show status")
    assert answer["servers"][0] == ["127.0.0.1:9010", "running | re-indexing"]
    assert answer["servers"][2] == ["127.0.0.1:9012", "running"]
    assert show["data"] == [{"name": "status", "value": "running | re-indexing"}]


async def test_counts_arrivals_and_what_siridb_would_forward() -> None:
    names = [f"series-{i}" for i in range(30)]
    owned = [n for n in names if pool_of(n, 3) == 1]
    async with EmbeddedServer(server_port=9011, topology=LAYOUT) as server, TsClient(
        "iris", "siri", "dbtest", [server.address]
    ) as client:
        await client.insert({n: [[1, 1], [2, 2]] for n in names})
        await client.insert({owned[0]: [[3, 3]]})
        arrivals = server.arrivals
        assert arrivals is not None
        assert (arrivals.requests, arrivals.points) == (2, 61)
        assert arrivals.foreign_points == 2 * (len(names) - len(owned))
        assert arrivals.foreign_requests == 1
        assert arrivals.series[owned[0]] == 3
        stored = server.database("dbtest").series
        assert set(stored) == set(names)  # a test double: it stores everything it gets
        arrivals.reset()
        assert (arrivals.requests, arrivals.points, len(arrivals.series)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, 'list "servers"'),
        ({"servers": []}, "at least one server"),
        ({"servers": [{"name": "127.0.0.1:9010"}]}, "pool must be an integer"),
        ({"servers": [{"name": "127.0.0.1", "pool": 0}]}, "address:port"),
        ({"servers": [{"name": "127.0.0.1:9010", "pool": 1}]}, "pool 0 has no server"),
        ({"servers": [{"name": "127.0.0.1:9010", "pool": 0}] * 2}, "listed twice"),
        ({"servers": [{"name": f"127.0.0.1:{9010 + i}", "pool": 0} for i in range(3)]},
         "at most 2"),
        ({"servers": [{"name": "127.0.0.1:9010", "pool": 0, "status": "sleepy"}]},
         "unknown status 'sleepy'"),
        ({"servers": [{"name": "127.0.0.1:9010", "pool": 0, "zone": "a"}]}, "unknown key"),
        ({"servers": [{"name": "127.0.0.1:9011", "pool": 0}]}, "does not name this server"),
    ],
)
async def test_bad_topologies_stop_the_start(layout: dict[str, Any], message: str) -> None:
    server = EmbeddedServer(topology=layout)
    with pytest.raises(TopologyError, match=message):
        await server.start()
    assert server.topology is None


def test_command_line_topology_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert server_main(["--port", "0", "--topology", str(bad)]) == 2
    assert "not a JSON topology" in capsys.readouterr().err
    assert server_main(["--port", "0", "--topology", str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
