"""The embedded server where SiriDB 2.0.55's behaviour is a rule rather than a recorded
answer: time precision conversion, bounded regex matching, shard expiration on its
schedule and on disk, and the tee's wire format (bytes captured from the real server)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from regex_oracle import bounded_search
from server_wire import RawClient

from tsconnector.protocol import AnswerType
from tsconnector.server import EmbeddedServer
from tsconnector.server.expiration import ExpirationTask, drop_expired
from tsconnector.server.model import Database
from tsconnector.server.query.precision import query_factor, scale_timestamp
from tsconnector.server.query.select import convert_ts
from tsconnector.server.regex import _Nfa

# -- answers in another time precision ----------------------------------------------------


def _reference_convert(ts: list[int], db_precision: int, precision: int) -> list[int]:
    """SiriDB's rule with numpy's C types: ``(float) pow(1000, diff)`` as the factor,
    ``(double) ts * factor`` truncated to uint64 (0 from 2**64 on), sent as int64."""
    factor = np.float64(np.float32(1000.0 ** (precision - db_precision)))
    product = np.asarray(ts, dtype=np.uint64).astype(np.float64) * factor
    out = np.where(product >= 2.0**64, 0.0, product).astype(np.uint64)
    return [int(x) for x in out.view(np.int64)]


@settings(max_examples=300, deadline=None)
@given(
    ts=st.lists(st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 2**45)), max_size=40),
    db_precision=st.integers(0, 3),
    precision=st.integers(0, 3),
)
def test_precision_conversion_follows_siridb_rule(
    ts: list[int], db_precision: int, precision: int
) -> None:
    got = [convert_ts(t, db_precision, precision) for t in ts]
    assert got == _reference_convert(ts, db_precision, precision)


@pytest.mark.parametrize(
    ("ts", "db_precision", "precision", "answer"),
    [  # answered by SiriDB 2.0.55
        (9300000000000, 1, 3, -9146744073709551616),
        (18446744073709, 1, 3, -550912),
        (18446744073710, 1, 3, 0),
        (9223372036854, 1, 3, 9223372036853999616),
        (1699920000250, 1, 3, 1699920000249999872),
        (1099511627776, 1, 0, 1099511680),
    ],
)
def test_precision_conversion_answers_of_the_real_server(
    ts: int, db_precision: int, precision: int, answer: int
) -> None:
    assert convert_ts(ts, db_precision, precision) == answer
    assert scale_timestamp(ts, query_factor(precision, db_precision)) == answer


# -- the regex automaton ------------------------------------------------------------------

_ATOMS = st.sampled_from(["a", "b", ".", "[ab]", "[^a]", "a?", "\\w"])


def _patterns() -> st.SearchStrategy[str]:
    return st.recursive(
        _ATOMS,
        lambda inner: st.one_of(
            st.tuples(inner, inner).map("".join),
            st.tuples(inner, inner).map(lambda p: f"({p[0]}|{p[1]})"),
            st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}", "*?", "+?", "{2}"]))
            .map(lambda p: f"({p[0]}){p[1]}"),
        ),
        max_leaves=8,
    )


@settings(max_examples=400, deadline=None)
@given(body=_patterns(), subjects=st.lists(st.text("abc", max_size=10), min_size=1, max_size=6),
       ignore_case=st.booleans())
def test_regex_automaton_agrees_with_backtracking(
    body: str, subjects: list[str], ignore_case: bool
) -> None:
    source = "^" + body + "$"
    flags = re.IGNORECASE if ignore_case else 0
    nfa = _Nfa.build(source, flags)
    assume(nfa is not None)
    assert nfa is not None
    cache: dict[Any, Any] = {}
    for subject in subjects:
        expected = bounded_search(source, subject, flags)
        assert nfa.search(subject, cache) == expected, subject


# -- expiration ---------------------------------------------------------------------------

DAY = 86400
NOW = 1_800_000_000


#: Points of the number series that expiration keeps (the buffer holds 32 points: the
#: older ones are in shards when expiration runs).
RECENT = [NOW - DAY + i for i in range(40)]


def _old_and_new(db: Database) -> None:
    old = [NOW - 60 * DAY + i for i in range(40)] + [NOW - 30 * DAY + i for i in range(40)]
    db.insert({"num": [(t, 1) for t in old + RECENT],
               "log": [(NOW - 60 * DAY, "old"), (NOW - DAY, "new")]})


async def test_expired_shards_are_dropped_in_memory_and_in_the_data_dir(
    tmp_path: Path,
) -> None:
    async with EmbeddedServer(data_dir=tmp_path, databases=(("db", "s", {"buffer_size": 512}),)
                              ) as srv:
        db = srv.state.databases["db"]
        _old_and_new(db)
        db.set_setting("expiration_num", 20 * DAY)
        db.set_setting("expiration_log", 40 * DAY)
        store = srv.state.stores["db"]
        await store.sync()
        shards_before = len(db.shards)
        assert drop_expired(db, NOW) > 0  # what the optimize task does
        await store.sync()
        assert db.series["num"].ts == RECENT
        assert db.series["log"].values == ["new"]
        assert len(db.shards) < shards_before
        kept = sorted(db.shards)
    async with EmbeddedServer(data_dir=tmp_path, databases=(("db", "s"),)) as srv:
        db = srv.state.databases["db"]
        assert db.series["num"].ts == RECENT
        assert db.series["log"].values == ["new"]
        assert sorted(db.shards) == kept
        assert (db.expiration_num, db.expiration_log) == (20 * DAY, 40 * DAY)
        c = await RawClient.connect(srv.port)
        await c.auth(db="db")
        # Points for an expired shard are not stored at all, as in SiriDB (a log series
        # has no buffer: its points go to a shard at once).
        assert (await c.insert({"log": [[1, "x"], [NOW, "y"]]}))[0] == AnswerType.RES_INSERT
        assert await c.query('select * from "log"') == (
            AnswerType.RES_QUERY, {"log": [[NOW - DAY, "new"], [NOW, "y"]]})
        await c.close()


async def test_expiration_task_drops_on_its_schedule_and_pauses_in_backup_mode() -> None:
    db = Database("db", 0)
    db.insert({"log": [(1, "x")]})  # log points go to their shard at once
    db.set_setting("expiration_log", DAY)
    synced = asyncio.Event()
    paused = True

    async def sync(_: Database) -> None:
        synced.set()

    task = ExpirationTask({"db": db}, sync, optimize_interval=0.01, heartbeat_interval=0.01,
                          paused=lambda: paused)
    await task._optimize()  # one optimize turn in backup mode: nothing dropped
    assert db.series["log"].ts == [1]
    assert not synced.is_set()
    paused = False
    task.start()
    try:
        await asyncio.wait_for(synced.wait(), 30)
        assert "log" not in db.series  # its only shard is gone, and so is the series
        assert not db.shards
    finally:
        await task.stop()


# -- tee ----------------------------------------------------------------------------------

#: What SiriDB 2.0.55's tee wrote for two inserts (captured from the real server).
REAL_TEE_BYTES = bytes.fromhex(
    "2800000000000000fd877365636f6e6400fcef0101ef02ec0000000000000440fe"
    "8473747200fcef058568656c6c6ffe"
    "0b00000000000000fd8461727200fcef0742fe"
)


async def test_tee_forwards_inserts_byte_for_byte_as_siridb() -> None:
    received = bytearray()
    connected = asyncio.Event()
    enough = asyncio.Event()

    async def receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        while data := await reader.read(65536):
            received.extend(data)
            if len(received) >= len(REAL_TEE_BYTES):
                enough.set()
        writer.close()

    tee = await asyncio.start_server(receiver, "127.0.0.1", 0)
    port = tee.sockets[0].getsockname()[1]
    try:
        async with EmbeddedServer() as srv:
            c = await RawClient.connect(srv.port)
            await c.auth()
            assert await c.query(f"alter database set tee '127.0.0.1:{port}'") == (
                AnswerType.RES_QUERY, {"success_msg": "Successfully configured tee to 127.0.0.1."})
            # The first insert only starts the connection and is not teed, as in SiriDB.
            await c.insert({"lost": [[1, 1]]})
            assert await asyncio.wait_for(srv.state.tees["dbtest"].wait_connected(), 30)
            await asyncio.wait_for(connected.wait(), 30)
            await c.insert({"second": [[1, 1], [2, 2.5]], "str": [[5, "hello"]]})
            await c.insert({"arr": [[7, -3]]})
            await asyncio.wait_for(enough.wait(), 30)
            assert bytes(received) == REAL_TEE_BYTES
            assert await c.query("show tee") == (
                AnswerType.RES_QUERY, {"data": [{"name": "tee", "value": f"127.0.0.1:{port}"}]})
            await c.close()
    finally:
        tee.close()


async def test_show_tee_reports_a_failed_connection_until_set_again() -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    async with EmbeddedServer() as srv:
        c = await RawClient.connect(srv.port)
        await c.auth()
        address = {"data": [{"name": "tee", "value": f"127.0.0.1:{port}"}]}
        await c.query(f"alter database set tee '127.0.0.1:{port}'")
        assert (await c.query("show tee"))[1] == address
        await c.insert({"a": [[1, 1]]})
        assert not await asyncio.wait_for(srv.state.tees["dbtest"].wait_connected(), 30)
        assert (await c.query("show tee"))[1] == {
            "data": [{"name": "tee", "value": "failed to make connection"}]}
        await c.query(f"alter database set tee '127.0.0.1:{port}'")
        assert (await c.query("show tee"))[1] == address
        await c.query("alter database set tee false")
        assert (await c.query("show tee"))[1] == {"data": [{"name": "tee", "value": "disabled"}]}
        await c.close()


async def test_series_names_end_at_a_nul_byte_as_in_siridb() -> None:
    async with EmbeddedServer() as srv:
        c = await RawClient.connect(srv.port)
        await c.auth()
        assert await c.insert({"dup\x00a": [[1, 1]], "dup\x00b": [[2, 2]]}) == (
            AnswerType.RES_INSERT, {"success_msg": "Successfully inserted 2 point(s)."})
        assert await c.query("list series name, length") == (
            AnswerType.RES_QUERY, {"columns": ["name", "length"], "series": [["dup", 2]]})
        # SiriDB never answers a name that starts with NUL; refused as a bad name here.
        assert (await c.insert({"\x00zz": [[1, 1]]}))[0] == AnswerType.ERR_INSERT
        await c.close()
