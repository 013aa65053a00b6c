"""``TeeReceiver``: appends what SiriDB's tee forwards, and catches up what it missed.

Point the database's tee at the receiver (``alter database set tee '<host>:<port>'``)
and every insert a server accepts is forwarded to it (:mod:`.teeframes`); the receiver
stores each series' points of a package as one message (source ``tee``), packages of
one connection in the order they arrived.

SiriDB's tee is fire-and-forget: nothing is acknowledged, and a package is dropped when
there is no connection at that moment (the receiver is down, or restarting; SiriDB
drops by design the very insert that makes it connect, so after every (re)connection at
least one insert is missing). The receiver therefore reconciles with the server
(:meth:`TeeReceiver.reconcile`; at start, after every new server connection, and every
``reconcile_interval`` seconds):

1. read from the server what to compare (point counts per series, then per time window
   of the series that differ, down to the points of small windows);
2. send a **barrier**: a point with a fresh token into a marker series of each pool
   (``tsconnector.tee-barrier.<store>[.<n>]``), and wait until the tee has delivered
   every token. A server forwards packages in the order it accepts them on one
   connection, so everything the server held at step 1 and teed at all has now been
   stored by the receiver;
3. compare with what the store holds, and append the difference (exactly the missing
   points of each window, as a multiset) as ``catchup`` messages.

What tee mode guarantees: every point a server accepted while the receiver ran ends up
in the store, once: teed packages as they come, missed ones at the next reconcile.
Not guaranteed: the original batching and order of caught-up points (they are appended
per series in time order); points deleted on the server (drop, expiry) stay in the
store; a missed point can stay hidden while the store holds an identical extra point in
the same series and window (a teed insert that the server then failed to apply); with
no barrier delivered (tee not configured or unreachable) nothing is caught up, and the
report says so. Use one receiver per database, and one way in per store (the tee also
forwards what a journal writer inserts). In a cluster with replicas, a pool's points are
teed by whichever of its servers received them, each on its own connection, so the
barrier must pass through every server: give ``barrier_clients`` (one single-host
``TsClient`` per server). Without replicas the receiver's own client is enough.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..exceptions import TsConnectorError
from .codec import decode_points
from .errors import TeeProtocolError
from .interfaces import PointBatch
from .serverview import count_points, multiset, names_regex, read_points
from .teeframes import TeeDecoder, decode_payload
from .wakeup import wake_local

if TYPE_CHECKING:
    from ..client import TsClient
    from .store import MessageStore

log = logging.getLogger("tsconnector.aggregate.tee")

BARRIER_PREFIX = "tsconnector.tee-barrier."
#: Windows with at most this many points are compared point by point.
LEAF_POINTS = 5000
_MAX_TS = (1 << 63) - 1


@dataclass
class ReconcileReport:
    """What one :meth:`TeeReceiver.reconcile` found and did."""

    barrier_ok: bool = False  #: the tee delivered the barrier (catch-up was possible)
    series_checked: int = 0
    series_behind: list[str] = field(default_factory=list)
    missing_points: int = 0  #: appended as ``catchup`` messages
    #: The store holds more than the server counted (points inserted while reconciling,
    #: or removed from the server since).
    extra_points: dict[str, int] = field(default_factory=dict)
    rounds: int = 0


@dataclass
class TeeStats:
    """Counters of a receiver."""

    connections: int = 0
    packages: int = 0
    points: int = 0
    messages: int = 0
    bad_packages: int = 0
    reconciles: int = 0
    caught_up_points: int = 0
    last_error: str | None = None


class _TeeConnection(asyncio.Protocol):
    """One server's tee connection: bytes in, payloads to the receiver's queue."""

    def __init__(self, receiver: TeeReceiver) -> None:
        self.receiver = receiver
        self.decoder = TeeDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.receiver._connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.decoder.feed(data)
        except TeeProtocolError as exc:
            self.receiver._bad(exc)
            if self.transport is not None:
                self.transport.close()
            payloads = exc.payloads
        for payload in payloads:
            self.receiver._queue.put_nowait(payload)
        self.receiver._received += len(payloads)
        if self.receiver._queue.qsize() > self.receiver.max_queue and self.transport:
            self.transport.pause_reading()
            self.receiver._paused.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver._lost(self)


class TeeReceiver:
    """Listens for SiriDB's tee and appends to ``store`` (see the module docstring).

    ``series`` (a Python regex, matched with ``re.search``) limits what is kept and
    reconciled; ``client`` (default: the store's) is used to reconcile. ``port=0``
    picks a free port (``receiver.port``).
    """

    def __init__(
        self,
        store: MessageStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client: TsClient | None = None,
        series: str | None = None,
        reconcile_interval: float | None = 60.0,
        reconcile_on_connect: bool = True,
        barrier_timeout: float = 5.0,
        barrier_clients: list[TsClient] | None = None,
        max_queue: int = 10_000,
    ) -> None:
        self.store = store
        self.host = host
        self._port = port
        self.client = client or store.client
        self.series = series
        self._filter: Callable[[str], Any] | None = (
            re.compile(series).search if series is not None else None
        )
        self.reconcile_interval = reconcile_interval
        self.reconcile_on_connect = reconcile_on_connect
        self.barrier_timeout = barrier_timeout
        self.barrier_clients = barrier_clients
        self.max_queue = max_queue
        self.stats = TeeStats()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._paused: set[_TeeConnection] = set()
        self._conns: set[_TeeConnection] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._consumer: asyncio.Task[None] | None = None
        self._seen_tokens: dict[int, asyncio.Event] = {}
        self._reconcile_lock = asyncio.Lock()
        self._received = 0  # payloads queued
        self._handled = 0  # payloads stored or given up on
        self._progress = asyncio.Condition()
        self._barrier_names: list[str] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The port the receiver listens on."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """``host:port``, as ``alter database set tee`` wants it."""
        return f"{self.host}:{self.port}"

    async def start(self, *, reconcile: bool = True) -> TeeReceiver:
        """Listen; then (by default) reconcile once to catch up what came while down."""
        await self.store.open()
        loop = asyncio.get_running_loop()
        self._consumer = loop.create_task(self._consume())
        self._server = await loop.create_server(lambda: _TeeConnection(self), self.host, self._port)
        if self.reconcile_interval:
            self._spawn(self._periodic())
        if reconcile and self.client is not None:
            self._spawn(self._reconcile_logged("start"))
        return self

    async def __aenter__(self) -> TeeReceiver:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening, store what was received, and stop background work."""
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._consumer is not None:
            try:
                await self.drain()
            except asyncio.TimeoutError:  # the catalog is stuck: the next reconcile repairs
                log.error("tee: closing with %d packages not stored", self._queue.qsize())
            self._consumer.cancel()
            try:
                await self._consumer
            except asyncio.CancelledError:
                pass
            self._consumer = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every package received so far has been stored (or given up on)."""
        target = self._received

        async def done() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: self._handled >= target)

        await asyncio.wait_for(done(), timeout)

    # ------------------------------------------------------------------ receiving

    def _connected(self, conn: _TeeConnection) -> None:
        self._conns.add(conn)
        self.stats.connections += 1
        log.info(
            "tee connection from %s", conn.transport and conn.transport.get_extra_info("peername")
        )
        if self.reconcile_on_connect and self.client is not None:
            # The insert that made this server connect was dropped (SiriDB's design).
            self._spawn(self._reconcile_logged("new connection"))

    def _lost(self, conn: _TeeConnection) -> None:
        self._conns.discard(conn)
        self._paused.discard(conn)

    def _bad(self, exc: Exception) -> None:
        self.stats.bad_packages += 1
        self.stats.last_error = str(exc)
        log.error("tee: %s (the next reconcile catches up)", exc)

    def _resume_reading(self) -> None:
        if self._paused and self._queue.qsize() <= self.max_queue // 2:
            for conn in list(self._paused):
                if conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.resume_reading()
            self._paused.clear()

    async def _consume(self) -> None:
        """Store packages in arrival order: all queued ones in one transaction."""
        while True:
            payloads = [await self._queue.get()]
            while not self._queue.empty() and len(payloads) < 1000:
                payloads.append(self._queue.get_nowait())
            self._resume_reading()
            try:
                await self._store_payloads(payloads)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # stored nothing of these: reconcile catches up
                self._bad(exc)
            async with self._progress:
                self._handled += len(payloads)
                self._progress.notify_all()

    async def _store_payloads(self, payloads: list[bytes]) -> None:
        items: list[tuple[str, PointBatch]] = []
        tokens: list[int] = []
        for payload in payloads:
            self.stats.packages += 1
            try:
                batches = decode_payload(payload)
            except TeeProtocolError as exc:
                self._bad(exc)
                continue
            for batch in batches:
                if batch.series.startswith(BARRIER_PREFIX):
                    tokens.extend(v for v in batch.values if isinstance(v, int))
                elif self._filter is None or self._filter(batch.series):
                    items.append((str(uuid.uuid4()), batch))
        if items:
            async with self.store.catalog.session() as s:
                await self.store.append_in(s, items, "tee")
                await s.commit()
            wake_local(self.store.catalog, self.store.channel)
            self.stats.messages += len(items)
            self.stats.points += sum(len(b) for _, b in items)
        for token in tokens:  # only after what came before them is stored
            event = self._seen_tokens.get(token)
            if event is not None:
                event.set()

    # ------------------------------------------------------------------ reconciling

    async def _periodic(self) -> None:
        assert self.reconcile_interval
        while True:
            await asyncio.sleep(self.reconcile_interval)
            await self._reconcile_logged("interval")

    async def _reconcile_logged(self, why: str) -> None:
        try:
            report = await self.reconcile()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.last_error = f"reconcile ({why}): {exc}"
            log.error("tee reconcile (%s) failed: %r", why, exc)
            return
        if report.missing_points or not report.barrier_ok:
            log.warning("tee reconcile (%s): %s", why, report)

    async def _barrier_series(self) -> list[str]:
        """One marker series per pool of the database."""
        if self._barrier_names is not None:
            return self._barrier_names
        assert self.client is not None
        base = f"{BARRIER_PREFIX}{self.store.name}"
        pools = int((await self.client.query("count pools")).get("pools", 1))
        if pools <= 1:
            self._barrier_names = [base]
            return self._barrier_names
        found: dict[int, str] = {}
        k = 0
        while len(found) < pools and k < 64 * pools:
            names = [f"{base}.{i}" for i in range(k, k + pools)]
            k += pools
            await self.client.insert({n: [[0, 0]] for n in names})
            answer = await self.client.query(
                "list series name, pool $1", params=[names_regex(names)]
            )
            for name, pool in answer.get("series", []):
                found.setdefault(int(pool), str(name))
        self._barrier_names = list(found.values())
        return self._barrier_names

    async def barrier(self, timeout: float | None = None) -> bool:
        """Send a barrier through every pool and wait until the tee delivered it all.

        It goes through each of ``barrier_clients`` (default: the receiver's client).
        Retries with fresh tokens (a server drops the insert that makes it connect);
        returns False when the tee did not deliver within ``timeout`` (default
        ``barrier_timeout``) per attempt, three attempts in all.
        """
        assert self.client is not None
        names = await self._barrier_series()
        precision = await self.client.db_time_precision()
        clients = self.barrier_clients or [self.client]
        wait = self.barrier_timeout if timeout is None else timeout
        for _attempt in range(3):
            sends = [(c, {name: random.getrandbits(62) for name in names}) for c in clients]
            events = {t: asyncio.Event() for _, tokens in sends for t in tokens.values()}
            self._seen_tokens.update(events)
            now = time.time_ns() // 10 ** (9 - 3 * precision)
            try:
                for c, tokens in sends:
                    await c.insert({n: [[now, t]] for n, t in tokens.items()})
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events.values())), wait)
                return True
            except asyncio.TimeoutError:
                continue
            finally:
                for token in events:
                    self._seen_tokens.pop(token, None)
        return False

    async def reconcile(self) -> ReconcileReport:
        """Compare with the server and append what the tee missed (module docstring)."""
        if self.client is None:
            raise RuntimeError("reconcile needs a client (the store's or client=)")
        async with self._reconcile_lock:
            self.stats.reconciles += 1
            report = ReconcileReport()
            server = await self._server_counts()
            report.barrier_ok = await self.barrier()
            if not report.barrier_ok:
                log.error("tee reconcile: the tee did not deliver the barrier; nothing caught up")
                return report
            local = await self.store.stream_counts()
            report.series_checked = len(server)
            for name, count in server.items():
                have = local.get(name, 0)
                if count > have:
                    report.series_behind.append(name)
                elif have > count:
                    report.extra_points[name] = have - count
            if report.series_behind:
                await self._catch_up(report)
            self.stats.caught_up_points += report.missing_points
            return report

    async def _server_counts(self) -> dict[str, int]:
        """Points per series on the server (barrier series and filtered-out ones left out).

        All series are counted and ``series`` is applied here, by Python's ``re.search``
        as on received packages, so both paths keep exactly the same series.
        """
        assert self.client is not None
        answer = await self.client.query("select count() from *")
        return {
            name: int(sum(p[1] for p in points))
            for name, points in answer.items()
            if points
            and not name.startswith(BARRIER_PREFIX)
            and (self._filter is None or self._filter(name))
        }

    async def _bounds(self, name: str) -> tuple[int, int]:
        """``[first, last + 1)`` of a series on the server."""
        assert self.client is not None
        regex = names_regex([name])
        first = await self.client.query("select first() from $1", params=[regex])
        last = await self.client.query("select last() from $1", params=[regex])
        lo = int(first[name][0][0]) if first.get(name) else 0
        hi = int(last[name][0][0]) + 1 if last.get(name) else 1
        return lo, hi

    async def _local_points(self, name: str, lo: int, hi: int) -> Counter[tuple[int, Any]]:
        """The store's points of ``name`` in ``[lo, hi)`` as a multiset."""
        result: Counter[tuple[int, Any]] = Counter()
        async with self.store.catalog.session(readonly=True) as s:
            rows = await s.fetch(
                "SELECT payload FROM tsconnector_agg_messages WHERE store_id = $1 "
                "AND stream = $2 AND first_ts < $3 AND last_ts >= $4",
                self.store.store_id,
                name,
                hi,
                lo,
            )
        for row in rows:
            for ts, value in decode_points(name, row["payload"]):
                if lo <= ts < hi:
                    result[(ts, value)] += 1
        return result

    async def _catch_up(self, report: ReconcileReport) -> None:
        """Narrow each lagging series down to windows, then append their missing points."""
        assert self.client is not None
        client = self.client
        windows: list[tuple[str, int, int]] = []
        for name in report.series_behind:
            lo, hi = await self._bounds(name)
            windows.append((name, lo, hi))
        missing: dict[str, Counter[tuple[int, Any]]] = {}
        while windows:
            report.rounds += 1
            # 1. the server's side of every window: a count, or the points of small ones
            counts = [(await count_points(client, [n], lo, hi))[n] for n, lo, hi in windows]
            server_points: dict[int, Counter[tuple[int, Any]]] = {}
            for i, ((name, lo, hi), count) in enumerate(zip(windows, counts)):
                if count <= LEAF_POINTS or hi - lo <= 1:
                    server_points[i] = multiset(await read_points(client, name, lo, hi))
            # 2. everything the server held then has been teed and stored by now
            if not await self.barrier():
                report.barrier_ok = False
                return
            # 3. compare with the store
            nxt: list[tuple[str, int, int]] = []
            for i, ((name, lo, hi), count) in enumerate(zip(windows, counts)):
                have = await self._local_points(name, lo, hi)
                if i in server_points:
                    gap = server_points[i] - have
                    if gap:
                        missing.setdefault(name, Counter()).update(gap)
                elif count > sum(have.values()):
                    mid = lo + (hi - lo) // 2
                    nxt.extend([(name, lo, mid), (name, mid, hi)])
            windows = nxt
        items = []
        for name, points in missing.items():
            flat = sorted(points.elements(), key=lambda p: p[0])
            batch = PointBatch(name, tuple(p[0] for p in flat), tuple(p[1] for p in flat))
            items.append((str(uuid.uuid4()), batch))
            report.missing_points += len(batch)
        if items:
            async with self.store.catalog.session() as s:
                await self.store.append_in(s, items, "catchup")
                await s.commit()
            wake_local(self.store.catalog, self.store.channel)


__all__ = ["BARRIER_PREFIX", "ReconcileReport", "TeeReceiver", "TeeStats", "TsConnectorError"]
