"""The journal's exactly-once promise: a writer killed between its steps, an insert whose
answer is lost, and a range written by someone else during recovery."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest
from aggregate_helpers import SHARED, Workers
from catalog_backends import Backend

from tsconnector.aggregate import JournalAmbiguous, MessageStore
from tsconnector.catalog import Database
from tsconnector.client import TsClient
from tsconnector.exceptions import TsConnectionError
from tsconnector.ql import Name


async def points_of(client: TsClient, name: str) -> Counter[tuple[int, Any]]:
    answer = await client.query("select * from $1", params=[Name(name)])
    return Counter((ts, v) for ts, v in answer.get(name, []))


@pytest.mark.slow
@SHARED
@pytest.mark.parametrize("step", ["logged", "inserted"])
async def test_a_writer_killed_between_steps_recovers_each_point_once(
    catalog_backend: Backend, embedded_server: Any, tsclient: TsClient, step: str
) -> None:
    db = await catalog_backend.new_db().open()
    await tsclient.insert({"crash": [[1, 100.0]]})  # a point in the batch's range already
    workers = Workers()
    try:
        child = await workers.start(
            [
                "journal",
                catalog_backend.url,
                "jstore",
                str(embedded_server.port),
                step,
                "crash",
                "50",
            ]
        )
        workers.tell()
        await child.wait()
    finally:
        workers.kill()
    assert child.returncode == -signal.SIGKILL
    store = MessageStore("jstore", db, tsclient, lease_seconds=2.5, insert_timeout=1.0)
    [entry] = await store.journal()
    assert (entry["stream"], entry["state"]) == ("crash", "logged")
    on_server = sum((await points_of(tsclient, "crash")).values())
    assert on_server == (1 if step == "logged" else 51)
    assert (await store.recover()).skipped_series == ["crash"]  # the dead writer's lease
    report = await store.recover(wait=30)
    assert (report.inserted, report.committed) == ((1, 0) if step == "logged" else (0, 1))
    expected = Counter({(i, float(i)): 1 for i in range(1, 51)})
    expected[(1, 100.0)] += 1
    assert await points_of(tsclient, "crash") == expected
    assert await store.journal() == []
    [message] = [m async for m in store.read("crash")]
    assert message.message_id == entry["message_id"]
    assert len(message.points) == 50
    assert (await store.recover()).inserted == 0
    assert await points_of(tsclient, "crash") == expected


async def test_an_insert_whose_answer_is_lost_is_settled_once(
    catalog_backend: Backend, embedded_server: Any, fault_proxy: Any
) -> None:
    proxy = await fault_proxy(embedded_server.port)
    client = TsClient(
        "iris", "siri", "dbtest", [("127.0.0.1", proxy.port)], initial_retry_wait=0.05
    )
    await client.connect()
    try:
        db = await catalog_backend.new_db().open()
        store = MessageStore("lost", db, client, lease_seconds=2.5, insert_timeout=1.0)
        store._journal_hook = lambda step: proxy.cut_mid_frame() if step == "logged" else None
        with pytest.raises(TsConnectionError):
            await store.write("lost", [[1, 1.0], [2, 2.0]])
        store._journal_hook = None
        assert len(await store.journal()) == 1
        # The insert may still be in flight: recovery waits out the lease, never guesses.
        assert (await store.recover()).skipped_series == ["lost"]
        report = await store.recover(wait=30)
        assert (report.committed, report.inserted) == (1, 0)
        assert await points_of(client, "lost") == Counter({(1, 1.0): 1, (2, 2.0): 1})
        assert [m.version async for m in store.read("lost")] == [1]
        assert await store.write("lost", [[3, 3.0]]) == ("lost", 2, 2)
    finally:
        client.close()
        await client.wait_closed()


async def test_a_range_written_by_others_is_reported_not_guessed(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = MessageStore("amb", catalog_db, tsclient, lease_seconds=2.5, insert_timeout=1.0)

    class Crash(BaseException):
        pass

    def crash(step: str) -> None:
        if step == "logged":
            raise Crash  # the process "dies" after logging, before inserting

    store._journal_hook = crash
    with pytest.raises(Crash):
        await store.write("amb", [[10, 1.0], [11, 1.0], [12, 1.0]])
    store._journal_hook = None
    await tsclient.insert({"amb": [[10, 5.0]]})  # another program writes into the range
    report = await store.recover()
    assert len(report.ambiguous) == 1
    [entry] = await store.journal()
    assert entry["state"] == "ambiguous"
    assert "server has 1 points" in entry["error"]
    with pytest.raises(JournalAmbiguous) as info:
        await store.write("amb", [[20, 1.0]])
    assert info.value.entries[0]["id"] == entry["id"]
    assert await store.resolve(entry["id"], inserted=False) == ("amb", 1, 1)
    assert await store.journal() == []
    assert await store.write("amb", [[20, 1.0]]) == ("amb", 2, 2)
    assert sum((await points_of(tsclient, "amb")).values()) == 5


async def test_a_crash_before_inserting_is_inserted_by_the_next_writer(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = MessageStore("next", catalog_db, tsclient, lease_seconds=2.5, insert_timeout=1.0)

    class Crash(BaseException):
        pass

    def crash(step: str) -> None:
        if step == "inserted":
            raise Crash

    store._journal_hook = crash
    with pytest.raises(Crash):
        await store.write("n", [[1, 1.0]])
    store._journal_hook = None
    # The same series' next write settles the pending entry first (leases are ours).
    assert await store.write("n", [[2, 2.0]]) == ("n", 2, 2)
    assert await points_of(tsclient, "n") == Counter({(1, 1.0): 1, (2, 2.0): 1})
    assert [m.version async for m in store.read("n")] == [1, 2]
