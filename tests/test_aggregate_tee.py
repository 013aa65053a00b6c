"""The tee way in: SiriDB's tee bytes, and points inserted by siridb-connector (not through
the store) arriving in the aggregated stream once each, across dropped packages, a tee
connection blip and a receiver that was down."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tee_peer import TeeProxy, tee_package

from tsconnector.aggregate import (
    MessageStore,
    SeriesNamePartitioner,
    TeeProtocolError,
)
from tsconnector.aggregate.teeframes import TeeDecoder, decode_payload
from tsconnector.catalog import Database
from tsconnector.client import TsClient

siridb = pytest.importorskip("siridb.connector")

#: Two packages captured from SiriDB 2.0.55's tee (inserts {"second": [[1, 1], [2, 2.5]],
#: "str": [[5, "hello"]]} and {"arr": [[7, -3]]}).
REAL_TEE_BYTES = bytes.fromhex(
    "2800000000000000fd877365636f6e6400fcef0101ef02ec0000000000000440fe"
    "8473747200fcef05856865 6c6c6ffe0b00000000000000fd8461727200fcef0742fe".replace(" ", "")
)


def test_the_decoder_reads_real_tee_bytes_in_any_pieces() -> None:
    expected = [
        [("second", ((1, 2), (1, 2.5))), ("str", ((5,), ("hello",)))],
        [("arr", ((7,), (-3,)))],
    ]
    for cut in range(len(REAL_TEE_BYTES) + 1):
        decoder = TeeDecoder()
        payloads = decoder.feed(REAL_TEE_BYTES[:cut]) + decoder.feed(REAL_TEE_BYTES[cut:])
        assert decoder.buffered == 0
        got = [[(b.series, (b.timestamps, b.values)) for b in decode_payload(p)] for p in payloads]
        assert got == expected
    ours = tee_package(
        __import__("qpack").packb({"second": [[1, 1], [2, 2.5]], "str": [[5, "hello"]]})
    )
    assert ours == REAL_TEE_BYTES[:48]  # the test peer speaks the same bytes


def test_the_decoder_rejects_what_is_not_an_insert() -> None:
    with pytest.raises(TeeProtocolError, match="exceeds"):
        TeeDecoder(max_frame_size=10).feed(b"\xff\x00\x00\x00\x00\x00\x00\x00")
    for bad in (b"\xff", b"\x01", b"\xfd\x81a\xfc\x01\xfe", b"\xfd\x82a\x00\xfc\xef\x01\xf3\xfe"):
        with pytest.raises(TeeProtocolError):
            decode_payload(bad)
    assert decode_payload(b"\xfd") == []


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=64)
    | st.builds(lambda a, b: a + b, st.just(REAL_TEE_BYTES[8:48]), st.binary(max_size=8))
)
def test_the_decoder_never_crashes_on_garbage(data: bytes) -> None:
    try:
        batches = decode_payload(data)
    except TeeProtocolError:
        return
    for batch in batches:
        assert len(batch.timestamps) == len(batch.values)


async def test_a_receiver_survives_a_garbage_peer(catalog_db: Database) -> None:
    store = await MessageStore("garbage", catalog_db).open()
    receiver = store.tee_receiver(reconcile_interval=None)
    await receiver.start(reconcile=False)
    try:
        bad_reader, bad = await asyncio.open_connection("127.0.0.1", receiver.port)
        bad.write(b"\x05\x00\x00\x00\x00\x00\x00\x00\xfd\x81a\xfc\x01")  # bad payload
        bad.write(b"\xff\xff\xff\x7f\x00\x00\x00\x00")  # a 2 GiB package: closed
        await bad.drain()
        assert await asyncio.wait_for(bad_reader.read(), 10) == b""  # it closed the connection
        _, good = await asyncio.open_connection("127.0.0.1", receiver.port)
        good.write(REAL_TEE_BYTES)
        await good.drain()
        good.close()

        async def stored() -> bool:
            await receiver.drain()
            return await store.head() == 3

        deadline = asyncio.get_running_loop().time() + 30
        while not await stored():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert receiver.stats.bad_packages == 2
        assert await store.stream_counts() == {"second": 2, "str": 1, "arr": 1}
    finally:
        await receiver.close()


#: Where the tee bytes come from: the embedded server's own tee (``alter database set
#: tee``), and a proxy in front of it that speaks SiriDB 2.0.55's tee bytes itself.
TEE_SOURCES = ["embedded", "peer"]


class Setup:
    """The embedded server (or a tee-speaking proxy in front of it), a store, a stream."""

    def __init__(self, server: Any, db: Database, source: str = "peer") -> None:
        self.server = server
        self.db = db
        self.source = source
        self.proxy: TeeProxy | None = None
        self.target: tuple[str, int] | None = None

    async def start(self) -> Setup:
        port = self.server.port
        if self.source == "peer":
            self.proxy = await TeeProxy(self.server.port).start()
            port = self.proxy.port
        self.hosts = [("127.0.0.1", port)]
        self.client = TsClient("iris", "siri", "dbtest", self.hosts)
        await self.client.connect()
        self.store = await MessageStore("tee", self.db, self.client).open()
        self.stream = self.store.aggregated_stream("all", SeriesNamePartitioner(4), ["%"])
        self.other = siridb.SiriDBClient("iris", "siri", "dbtest", self.hosts)
        assert await self.other.connect() == [None]
        return self

    async def set_tee(self, port: int) -> None:
        """``alter database set tee '127.0.0.1:<port>'`` (drops the tee's connection)."""
        self.target = ("127.0.0.1", port)
        if self.proxy is not None:
            self.proxy.set_tee(*self.target)
        else:
            await self.client.query(f"alter database set tee '127.0.0.1:{port}'")

    async def blip(self) -> None:
        """The tee's connection breaks; the server reconnects on the next insert."""
        assert self.target is not None
        await self.set_tee(self.target[1])

    async def receiver(self) -> Any:
        receiver = self.store.tee_receiver(reconcile_interval=None, barrier_timeout=2.0)
        await receiver.start(reconcile=False)
        await self.set_tee(receiver.port)
        return receiver

    async def close(self) -> None:
        if self.proxy is None:
            await self.client.query("alter database set tee false")
        self.other.close()
        self.client.close()
        await self.client.wait_closed()
        if self.proxy is not None:
            await self.proxy.close()


async def stored_points(stream: Any, partitions: int) -> Counter[tuple[str, int, Any]]:
    await stream.projector.update_full()
    got: Counter[tuple[str, int, Any]] = Counter()
    for p in range(partitions):
        async for m in stream.read(p):
            for ts, value in m.points:
                got[(m.stored_message.stream, ts, value)] += 1
    return got


async def server_points(client: TsClient) -> Counter[tuple[str, int, Any]]:
    answer = await client.query("select * from *")
    return Counter(
        (name, ts, v)
        for name, points in answer.items()
        if name.startswith("sensor")
        for ts, v in points
    )


@pytest.mark.parametrize("source", TEE_SOURCES)
async def test_points_inserted_by_others_arrive_in_the_stream_once(
    embedded_server: Any, catalog_db: Database, source: str
) -> None:
    env = await Setup(embedded_server, catalog_db, source).start()
    try:
        receiver = await env.receiver()
        for i in range(30):  # the first is dropped by the tee (it makes it connect)
            await env.other.insert(
                {f"sensor.{i % 7}": [[1000 + i, i * 0.5]], "sensor.s": [[i, f"v{i}"]]}
            )
        if env.proxy is not None:
            assert env.proxy.dropped >= 1
        report = await receiver.reconcile()
        assert report.barrier_ok
        assert receiver.stats.caught_up_points == 2  # the dropped first insert, once
        await receiver.drain()
        assert await stored_points(env.stream, 4) == await server_points(env.client)
        sources = Counter([m.source async for m in env.store.read_all()])
        assert sources["catchup"] >= 1
        assert sources["tee"] >= 29
        # a blip: the tee connection closes; SiriDB drops the next insert and reconnects
        await env.blip()
        for i in range(30, 40):
            await env.other.insert({f"sensor.{i % 7}": [[1000 + i, i * 0.5]]})
        await receiver.reconcile()
        await receiver.drain()
        assert await stored_points(env.stream, 4) == await server_points(env.client)
        # the receiver is down for a while: everything inserted meanwhile is caught up
        await receiver.close()
        for i in range(40, 60):
            await env.other.insert(
                {f"sensor.{i % 7}": [[1000 + i, i * 0.5]], "sensor.new": [[i, i]]}
            )
        receiver = env.store.tee_receiver(reconcile_interval=None, barrier_timeout=2.0)
        await receiver.start(reconcile=False)
        await env.set_tee(receiver.port)
        await receiver.reconcile()
        assert receiver.stats.caught_up_points == 40  # 20 inserts x 2 series while down
        await receiver.drain()
        assert await stored_points(env.stream, 4) == await server_points(env.client)
        again = await receiver.reconcile()  # nothing left to catch up, nothing doubled
        assert again.missing_points == 0
        await receiver.drain()
        assert await stored_points(env.stream, 4) == await server_points(env.client)
        assert receiver.stats.bad_packages == 0
        await receiver.close()
    finally:
        await env.close()


async def test_without_a_working_tee_nothing_is_guessed(
    embedded_server: Any, catalog_db: Database
) -> None:
    env = await Setup(embedded_server, catalog_db).start()
    try:
        receiver = env.store.tee_receiver(reconcile_interval=None, barrier_timeout=0.2)
        await receiver.start(reconcile=False)  # the proxy's tee is never pointed at it
        await env.other.insert({"sensor.x": [[1, 1]]})
        report = await receiver.reconcile()
        assert not report.barrier_ok
        assert report.missing_points == 0
        assert await env.store.head() == 0
        await receiver.close()
    finally:
        await env.close()


@pytest.mark.parametrize("source", TEE_SOURCES)
async def test_a_receiver_catches_up_by_itself_when_it_starts(
    embedded_server: Any, catalog_db: Database, source: str
) -> None:
    env = await Setup(embedded_server, catalog_db, source).start()
    try:
        await env.other.insert({"sensor.a": [[1, 1.0], [2, 2.0]]})  # before any receiver
        receiver = env.store.tee_receiver(reconcile_interval=None, barrier_timeout=0.5)
        await receiver.start()  # schedules a reconcile
        await env.set_tee(receiver.port)

        async def caught_up() -> bool:
            await receiver.drain()
            return await stored_points(env.stream, 4) == await server_points(env.client)

        deadline = asyncio.get_running_loop().time() + 60
        while not await caught_up():
            assert asyncio.get_running_loop().time() < deadline, receiver.stats
            await asyncio.sleep(0.05)
        assert receiver.stats.reconciles >= 1
        assert receiver.stats.caught_up_points == 2
        await receiver.close()
    finally:
        await env.close()


async def test_a_series_filter_applies_to_the_tee_and_to_catching_up(
    embedded_server: Any, catalog_db: Database
) -> None:
    env = await Setup(embedded_server, catalog_db, "embedded").start()
    try:
        receiver = env.store.tee_receiver(
            series=r"^sensor\.", reconcile_interval=None, barrier_timeout=2.0
        )
        await receiver.start(reconcile=False)
        await env.set_tee(receiver.port)
        for i in range(10):  # the first of them is not teed (it makes the tee connect)
            await env.other.insert({"sensor.f": [[i, i]], "other.f": [[i, i]]})
        await receiver.reconcile()
        await receiver.drain()
        assert await env.store.stream_counts() == {"sensor.f": 10}
        await receiver.close()
    finally:
        await env.close()
