"""TsClient: the public face of the driver (connect, insert, query, close).

It spreads requests over a :class:`~tsconnector.pool.HostPool` and applies the retry
rules of the design (decision 1) under a single deadline per call (decision 2).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .connection import RequestNotSent
from .events import EventHub, HostEvent, HostStats
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    InsertOutcomeUnknown,
    InsertPartlyApplied,
    PoolError,
    ServerAnswerError,
    ServerError,
    TsConnectionError,
    TsTimeoutError,
)
from .pool import Host, HostPool, parse_hostlist
from .protocol import HEADER_SIZE, MAX_FRAME_SIZE, PRECISION_NAMES, RequestType, pack
from .protocol.packer import PrecisionRequired, pack_insert_for_wire

if TYPE_CHECKING:
    from .discovery import AddressMap, TopologyWatcher
    from .routing import RoutingStats
    from .topology import Topology
    from .writer import BufferedWriter

__all__ = ["TsClient", "check_insert_shape"]

log = logging.getLogger("tsconnector.client")

InsertRetry = Literal["safe", "always"]
_QUERY = int(RequestType.QUERY)

_INSERTED = re.compile(r"Successfully inserted (\d+) point")
#: InsertError texts of SiriDB 2.0.55 (``src/siri/db/insert.c``) sent after its own
#: forwarding to another pool failed: the points of the receiving pool may be stored.
_FORWARD_FAILED = ("Error occurred while sending points to at least", "Critical error occurred")


class _Part:
    """One part of an insert split per pool: whether it may have reached a server."""

    __slots__ = ("maybe_applied",)

    def __init__(self) -> None:
        self.maybe_applied = False


def check_insert_shape(data: Any) -> None:
    """Refuse points that are not ``[timestamp, value]`` pairs, saying so, before sending.

    SiriDB answers such an insert with "Expecting a series to have at least one point.",
    which does not tell what is wrong. Cheap: per series, the first and last points.
    Every other shape problem goes to the server, which answers with its own error.
    """
    if isinstance(data, Mapping):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, (list, tuple)):
        items = [(i.get("name"), i.get("points")) for i in data if isinstance(i, Mapping)]
    else:
        return
    for name, points in items:
        if not isinstance(points, list) or not points:
            continue
        for point in (points[0], points[-1]):
            if not _is_pair(point):
                raise TypeError(
                    f"series {name!r}: points must be [timestamp, value] pairs, got {point!r}"
                )


def _is_pair(point: Any) -> bool:
    if isinstance(point, (list, tuple)):
        return len(point) == 2
    return getattr(point, "shape", None) == (2,)  # a numpy row


class TsClient:
    """An asyncio client for one database on a list of SiriDB-protocol hosts.

    Build it anywhere (no running loop needed), then ``await connect()`` or use
    ``async with``. ``timeout`` bounds each connection attempt; ``inactive_time`` is
    how long a host is skipped after a ServerError; reconnect waits grow from
    ``initial_retry_wait`` (1 s) up to ``max_wait_retry``.

    ``discover=True`` makes it cluster-aware (README, "Clusters"): it reads the
    cluster's servers and pools on connect and every ``discover_interval`` seconds,
    adds servers missing from ``hostlist`` (at ``discover_address(address, port)``, by
    default the back-end port shifted as the hostlist's servers show), avoids servers
    whose status is not ``running`` and sends each series' points to a server of the
    pool that owns it (SiriDB's lookup; ``signed_char=False`` for ARM servers).
    """

    def __init__(
        self,
        username: str,
        password: str,
        dbname: str,
        hostlist: Iterable[Sequence[Any]],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        keepalive: bool = True,
        timeout: float = 10,
        inactive_time: float = 30,
        max_wait_retry: float = 90,
        keepalive_interval: float = 45.0,
        ping_timeout: float = 10.0,
        initial_retry_wait: float = 1.0,
        pool_retry_wait: float = 2.0,
        close_timeout: float = 5.0,
        max_frame_size: int = MAX_FRAME_SIZE,
        discover: bool = False,
        discover_interval: float = 60.0,
        discover_address: AddressMap | None = None,
        signed_char: bool = True,
    ) -> None:
        self._hosts = parse_hostlist(hostlist)
        self._username = username
        self._password = password
        self._dbname = dbname
        self._loop = loop
        self._keepalive_interval = keepalive_interval if keepalive else None
        self._ping_timeout = ping_timeout
        self._timeout = timeout
        self._inactive_time = inactive_time
        self._max_wait_retry = max_wait_retry
        self._initial_retry_wait = initial_retry_wait
        self._pool_retry_wait = pool_retry_wait
        self._close_timeout = close_timeout
        self._max_frame_size = max_frame_size
        self._events = EventHub()
        self._pool: HostPool | None = None
        self._closed = False
        self._active = 0
        self._idle: asyncio.Future[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._db_precision: int | None = None
        self._discover = discover
        self._discover_interval = discover_interval
        self._discover_address = discover_address
        self._signed_char = signed_char
        self._watcher: TopologyWatcher | None = None

    # ------------------------------------------------------------- properties

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True when at least one host has an authenticated connection."""
        return self._pool is not None and self._pool.any_connected

    def stats(self) -> list[HostStats]:
        """Per-host state, requests, failures, reconnects and last latency (hostlist order)."""
        if self._pool is None:
            return [h.stats() for h in self._hosts]
        return self._pool.stats()

    def on_host_event(self, callback: Callable[[HostEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on every host state change; returns an unsubscribe function."""
        return self._events.subscribe(callback)

    def host_events(self) -> AsyncIterator[HostEvent]:
        """Async iterator over host state changes; ends when the client is closed."""
        return self._events.stream()

    # --------------------------------------------------------------- connect

    def _get_pool(self) -> HostPool:
        if self._pool is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._pool = HostPool(
                self._username,
                self._password,
                self._dbname,
                self._hosts,
                loop=loop,
                connect_timeout=self._timeout,
                inactive_time=self._inactive_time,
                max_wait_retry=self._max_wait_retry,
                initial_retry_wait=self._initial_retry_wait,
                keepalive_interval=self._keepalive_interval,
                ping_timeout=self._ping_timeout,
                connection_options={"max_frame_size": self._max_frame_size},
                events=self._events,
            )
            if self._discover:
                from .discovery import TopologyWatcher

                self._watcher = TopologyWatcher(
                    self._pool,
                    interval=self._discover_interval,
                    query_timeout=self._timeout,
                    address_map=self._discover_address,
                    signed_char=self._signed_char,
                )
        return self._pool

    async def connect(self, timeout: float | None = None) -> list[BaseException | None]:
        """Connect to every host in parallel; return per host ``None`` or the exception.

        Hosts that failed keep reconnecting in the background (as siridb-connector does).
        """
        if self._closed:
            raise ClientClosedError("the client is closed")
        pool = self._get_pool()
        results = await pool.connect(timeout)
        watcher = self._watcher
        if watcher is not None:
            if pool.any_connected:
                try:
                    await watcher.refresh()
                    await watcher.connect_added()
                except Exception as exc:  # routing waits for the next refresh
                    log.warning("reading the cluster topology failed: %s", exc)
            watcher.start()
        return results

    @property
    def topology(self) -> Topology | None:
        """The cluster's layout as last read (``discover=True``), else None."""
        return self._watcher.topology if self._watcher is not None else None

    @property
    def routing_stats(self) -> RoutingStats | None:
        """How inserts were routed (``discover=True``), else None."""
        return self._watcher.stats if self._watcher is not None else None

    async def refresh_topology(self) -> Topology:
        """Read the cluster's layout now and apply it (``discover=True`` only)."""
        if self._watcher is None:
            raise RuntimeError("topology discovery is off: TsClient(..., discover=True)")
        self._begin()
        try:
            return await self._watcher.refresh()
        finally:
            self._end()

    async def __aenter__(self) -> TsClient:
        results = await self.connect()
        errors = [r for r in results if r is not None]
        if (
            errors
            and len(errors) == len(results)
            and all(isinstance(e, AuthenticationError) for e in errors)
        ):
            self.close()
            await self.wait_closed()
            raise errors[0]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    # ---------------------------------------------------------------- insert

    async def insert(
        self, data: Any, timeout: float = 300, *, retry: InsertRetry = "safe"
    ) -> dict[str, Any]:
        """Insert ``{series: [[ts, value], ...]}`` or ``[{"name": s, "points": [...]}]``.

        Retried on another host only where it provably was not applied (not written,
        ServerError, PoolError); if the connection is lost after writing, raises
        :class:`InsertOutcomeUnknown` carrying ``data`` -- unless ``retry="always"``
        (at-least-once: may store points twice). Integers beyond int64 raise
        ``OverflowError`` and unencodable values ``TypeError`` before anything is sent.
        """
        if retry not in ("safe", "always"):
            raise ValueError(f"retry must be 'safe' or 'always', not {retry!r}")
        check_insert_shape(data)
        watcher = self._watcher
        if watcher is not None:
            plan = watcher.plan(data)
            if plan is not None:
                return await self._insert_routed(plan, timeout, retry, watcher)
            watcher.stats.unrouted_inserts += 1
        payload, framed = await self._pack_insert(data, timeout)
        pool, loop = self._begin()
        try:
            return await self._insert_attempts(
                pool, loop, payload, framed, data, loop.time() + timeout, retry
            )
        finally:
            self._end()

    async def _pack_insert(self, data: Any, timeout: float) -> tuple[bytes | memoryview, bool]:
        """The wire payload of an insert and whether it is framed; size checked."""
        try:
            payload, framed = pack_insert_for_wire(
                data, headroom=HEADER_SIZE, precision=self._db_precision
            )
        except PrecisionRequired:  # datetime timestamps: learn the database's unit once
            precision = await self.db_time_precision(min(timeout, 10))
            payload, framed = pack_insert_for_wire(data, headroom=HEADER_SIZE, precision=precision)
        self._check_size(len(payload) - HEADER_SIZE if framed else len(payload))
        return payload, framed

    async def _insert_attempts(
        self,
        pool: HostPool,
        loop: asyncio.AbstractEventLoop,
        payload: bytes | memoryview,
        framed: bool,
        data: Any,
        deadline: float,
        retry: InsertRetry,
        owner: int | None = None,
        part: _Part | None = None,
    ) -> dict[str, Any]:
        """Send one insert payload under the retry rules (DESIGN decision 1); with
        ``owner``, to a server of that pool when one is ready."""
        tried: set[Host] = set()
        failure: BaseException | None = None
        while True:
            host = await self._choose(pool, deadline, tried, failure, owner)
            if owner is not None:
                self._count_route(host, owner)
            try:
                answer: dict[str, Any] = await self._request(
                    host, RequestType.INSERT, payload, deadline, framed=framed
                )
                return answer
            except ServerError as exc:
                failure = self._host_refused(pool, host, tried, exc)
            except RequestNotSent as exc:
                pool.mark_failed(host, exc)
                failure = exc
            except PoolError as exc:
                self._pool_incomplete(pool, host, exc)
                await self._pause_after_pool_error(pool, deadline, exc)
            except TsTimeoutError as exc:
                pool.record_failure(host, exc)
                if part is not None:
                    part.maybe_applied = True
                raise
            except TsConnectionError as exc:
                if part is not None:
                    part.maybe_applied = True
                if isinstance(exc, ClientClosedError):
                    raise
                pool.mark_failed(host, exc)
                if retry != "always":
                    raise InsertOutcomeUnknown(
                        f"connection to {host.address} lost after the insert was sent; "
                        "it may or may not have been stored",
                        data,
                    ) from exc
                failure = exc
            except ServerAnswerError as exc:
                if part is not None and exc.message.startswith(_FORWARD_FAILED):
                    part.maybe_applied = True  # SiriDB stored some, failed to forward some
                raise  # otherwise the server refused it: not stored
            except BaseException:
                if part is not None:
                    part.maybe_applied = True  # e.g. an undecodable answer
                raise
            self._check_deadline(loop, deadline, "insert", failure)

    def _count_route(self, host: Host, owner: int) -> None:
        watcher = self._watcher
        if watcher is not None:
            if host.cluster_pool == owner:
                watcher.stats.routed_parts += 1
            else:
                watcher.stats.fallback_parts += 1

    def _poke_topology(self) -> None:
        if self._watcher is not None:
            self._watcher.poke()

    def _host_refused(
        self, pool: HostPool, host: Host, tried: set[Host], exc: ServerError
    ) -> ServerError:
        """``host`` answers but cannot take this call now (ServerError): skip it for the
        rest of the call and mark it failed; returns ``exc`` as the call's last failure.
        Shared by the insert and query retry loops (sync: no await on the query path)."""
        pool.mark_failed(host, exc)
        tried.add(host)
        self._poke_topology()
        return exc

    def _pool_incomplete(self, pool: HostPool, host: Host, exc: PoolError) -> None:
        """``host``'s SiriDB pool is incomplete (PoolError): count it against the host and
        have the topology re-read; the caller then pauses before its next attempt."""
        pool.record_failure(host, exc)
        self._poke_topology()

    async def _insert_routed(
        self, plan: dict[int, Any], timeout: float, retry: InsertRetry, watcher: TopologyWatcher
    ) -> dict[str, Any]:
        """Send each pool's part to a server of that pool, at the same time; every part
        is packed before anything is sent, so bad data fails the whole call."""
        parts = list(plan.items())
        packed = [await self._pack_insert(part, timeout) for _, part in parts]
        pool, loop = self._begin()
        try:
            deadline = loop.time() + timeout
            if len(parts) == 1:
                (owner, data), (payload, framed) = parts[0], packed[0]
                return await self._insert_attempts(
                    pool, loop, payload, framed, data, deadline, retry, owner
                )
            watcher.stats.split_inserts += 1
            states = [_Part() for _ in parts]
            outcomes = await asyncio.gather(
                *(
                    self._insert_attempts(
                        pool, loop, payload, framed, data, deadline, retry, owner, state
                    )
                    for (owner, data), (payload, framed), state in zip(parts, packed, states)
                ),
                return_exceptions=True,
            )
        finally:
            self._end()
        return _combine_parts(parts, outcomes, states)

    # ----------------------------------------------------------------- query

    async def query(
        self,
        query: str | bytes,
        time_precision: int | None = None,
        timeout: float = 60,
        *,
        params: Sequence[Any] | None = None,
        as_arrays: bool = False,
    ) -> Any:
        """Run ``query`` and return the decoded answer (a dict).

        ``time_precision`` is None (the database's) or 0..3 (s, ms, us, ns). ``params``
        fill ``$1``, ``$2``... placeholders through :func:`tsconnector.ql.query`.
        ``as_arrays=True`` decodes a series answer straight into ``{name: (timestamps,
        values)}`` numpy arrays. Retried on another host after a lost connection or
        ServerError, and after PoolError until the deadline.
        """
        if isinstance(query, bytes):
            query = query.decode("utf-8")
        if not isinstance(query, str):
            raise TypeError(f"query must be str or bytes, not {type(query).__name__}")
        if time_precision is not None:
            if isinstance(time_precision, bool) or not isinstance(time_precision, int):
                kind = type(time_precision).__name__
                raise TypeError(f"time_precision must be None or an int 0..3, not {kind}")
            if not 0 <= time_precision <= 3:
                raise ValueError(f"time_precision must be None, 0, 1, 2 or 3, not {time_precision}")
        if params is not None:
            from .ql import query as build_query

            precision = await self.db_time_precision(timeout)
            query = build_query(query, *params, precision=precision)
        decode = None
        if as_arrays:
            from .protocol.answers import decode_series_arrays

            decode = decode_series_arrays
        payload = pack([query, time_precision])
        if self._closed:  # _begin(), inlined on this hot path
            raise ClientClosedError("the client is closed")
        pool = self._pool
        if pool is None:
            raise PoolError("not connected: call and await connect() first")
        loop = self._loop
        assert loop is not None
        self._active += 1
        start = loop.time()
        deadline = start + timeout
        tried: set[Host] = set()
        failure: BaseException | None = None
        try:
            while True:
                # The common case, a ready host with room to write, costs no coroutine
                # besides this one: the frame is written and its future awaited here.
                host = pool.first_choice(tried)
                if host is None:
                    host = await self._choose(pool, deadline, tried, failure)
                conn = host.conn
                try:
                    if conn is None or conn.writing_paused:
                        return await self._request(
                            host, RequestType.QUERY, payload, deadline, decode=decode
                        )
                    fut, pid = conn.send(_QUERY, payload, deadline, decode=decode)
                    host.requests += 1
                    try:
                        answer = await fut
                    except asyncio.CancelledError:
                        conn.abandon(pid, fut)
                        raise
                    host.last_latency = loop.time() - start
                    return answer
                except ServerError as exc:
                    failure = self._host_refused(pool, host, tried, exc)
                except TsConnectionError as exc:
                    if isinstance(exc, ClientClosedError):
                        raise
                    pool.mark_failed(host, exc)
                    failure = exc
                except PoolError as exc:
                    self._pool_incomplete(pool, host, exc)
                    await self._pause_after_pool_error(pool, deadline, exc)
                except TsTimeoutError as exc:
                    pool.record_failure(host, exc)
                    raise
                start = loop.time()
                self._check_deadline(loop, deadline, "query", failure)
        finally:
            self._end()

    async def db_time_precision(self, timeout: float = 10) -> int:
        """The database's time precision (0 s, 1 ms, 2 us, 3 ns), read once and cached.

        Used to turn ``datetime``/``timedelta`` query parameters into database units.
        """
        if self._db_precision is None:
            answer = await self.query("show time_precision", timeout=timeout)
            name = answer["data"][0]["value"]
            self._db_precision = PRECISION_NAMES.index(name)
        return self._db_precision

    def writer(self, **options: Any) -> BufferedWriter:
        """A :class:`~tsconnector.writer.BufferedWriter` on this client (see its options).

        ``async with client.writer(spool_dir="spool") as w: await w.add(name, ts, v)``
        """
        from .writer import BufferedWriter

        return BufferedWriter(self, **options)

    async def ping(self, timeout: float = 10) -> None:
        """Ping one ready host (round trip through the pool)."""
        pool, loop = self._begin()
        deadline = loop.time() + timeout
        try:
            host = await self._choose(pool, deadline, set(), None)
            await self._request(host, RequestType.PING, b"", deadline)
        finally:
            self._end()

    # --------------------------------------------------------------- helpers

    def _begin(self) -> tuple[HostPool, asyncio.AbstractEventLoop]:
        if self._closed:
            raise ClientClosedError("the client is closed")
        pool = self._pool
        if pool is None:
            raise PoolError("not connected: call and await connect() first")
        self._active += 1
        assert self._loop is not None
        return pool, self._loop

    def _end(self) -> None:
        self._active -= 1
        if self._active == 0 and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _check_size(self, size: int) -> None:
        if size > self._max_frame_size:
            raise ValueError(
                f"insert of {size} bytes exceeds the frame limit of "
                f"{self._max_frame_size} bytes; split it"
            )

    @staticmethod
    def _check_deadline(
        loop: asyncio.AbstractEventLoop, deadline: float, what: str,
        failure: BaseException | None = None,
    ) -> None:
        if loop.time() >= deadline:
            detail = f" (last error: {failure})" if failure is not None else ""
            raise TsTimeoutError(f"{what} timed out{detail}") from failure

    async def _choose(
        self,
        pool: HostPool,
        deadline: float,
        tried: set[Host],
        failure: BaseException | None,
        owner: int | None = None,
    ) -> Host:
        """A host for the next attempt of a call.

        Ready hosts first, then connected ones skipped as inactive; never one in
        ``tried`` (it answered ServerError to this call). While a host is connecting, or
        lost with its reconnect attempt still to come, it waits (until ``deadline``);
        when nothing can serve the call it ends at once with the call's ServerError
        (the server's text) or a PoolError naming every host's last error.
        """
        loop = self._loop
        assert loop is not None
        while True:
            try:
                return pool.choose(True, exclude=tried, pool=owner)
            except PoolError:
                if pool.closing:
                    raise ClientClosedError("the client is closed") from None
                if not pool.may_recover_soon(tried):
                    raise self._unavailable(pool, failure, "no host is available") from None
                if loop.time() >= deadline or not await pool.wait_change(deadline):
                    if pool.closing:
                        raise ClientClosedError("the client is closed") from None
                    raise self._unavailable(
                        pool, failure, "no host became available before the deadline"
                    ) from None

    @staticmethod
    def _unavailable(pool: HostPool, failure: BaseException | None, what: str) -> BaseException:
        """The error that ends a call no host can serve: its own ServerError if it got one."""
        if isinstance(failure, ServerError):
            return failure
        error = PoolError(f"{what}: {pool.describe()}")
        error.__cause__ = failure
        return error

    async def _pause_after_pool_error(
        self, pool: HostPool, deadline: float, exc: PoolError
    ) -> None:
        """The server's pool is incomplete: wait a little, bounded by the deadline."""
        loop = self._loop
        assert loop is not None
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise exc
        await asyncio.sleep(min(self._pool_retry_wait, remaining))
        if loop.time() >= deadline:
            raise exc

    async def _request(
        self,
        host: Host,
        tp: int,
        payload: bytes | memoryview,
        deadline: float,
        *,
        framed: bool = False,
        decode: Callable[[bytes], Any] | None = None,
    ) -> Any:
        conn = host.conn
        if conn is None:
            raise RequestNotSent(f"{host.address}: not connected")
        loop = self._loop
        assert loop is not None
        host.requests += 1
        start = loop.time()
        result = await conn.request(tp, payload, deadline=deadline, framed=framed, decode=decode)
        host.last_latency = loop.time() - start
        return result

    # --------------------------------------------------------------- closing

    def close(self) -> None:
        """Stop reconnecting and close; requests in flight may finish (bounded).

        Synchronous like siridb-connector's; ``await wait_closed()`` to wait for the end.
        """
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.close()
        pool = self._pool
        if pool is None:
            self._events.close()
            return
        pool.stop_reconnecting()
        loop = self._loop
        if self._active == 0 or loop is None or not loop.is_running():
            pool.close()
            self._events.close()
            return
        self._idle = loop.create_future()
        self._closer = loop.create_task(self._drain_and_close(pool), name="tsconnector: close")

    async def _drain_and_close(self, pool: HostPool) -> None:
        idle = self._idle
        assert idle is not None
        try:
            await asyncio.wait_for(asyncio.shield(idle), self._close_timeout)
        except asyncio.TimeoutError:
            log.warning("closing with %d request(s) still in flight", self._active)
        finally:
            pool.close()
            self._events.close()

    async def wait_closed(self) -> None:
        """Wait until every request, connection and background task has ended.

        Call :meth:`close` first (RuntimeError otherwise: nothing would end).
        """
        if not self._closed:
            raise RuntimeError("wait_closed() called before close()")
        if self._closer is not None:
            await asyncio.shield(self._closer)
        if self._pool is not None:
            await self._pool.wait_closed()

    def __repr__(self) -> str:
        hosts = ", ".join(h.address for h in self._hosts)
        state = "closed" if self._closed else ("connected" if self.connected else "not connected")
        return f"<TsClient {self._dbname!r} on [{hosts}] {state}>"

    @classmethod
    def from_dsn(cls, dsn: str | None = None, **options: Any) -> TsClient:
        """A client for ``siridb://user:password@host:port,host:port/dbname`` (see
        :mod:`tsconnector.dsn`); with ``dsn=None`` the one in ``TSCONNECTOR_DSN``.

        ``options`` are the keyword arguments of :class:`TsClient` (``timeout=...``).
        """
        from .dsn import resolve_dsn

        parsed = resolve_dsn(dsn)
        return cls(parsed.username, parsed.password, parsed.dbname, parsed.hostlist, **options)


def _combine_parts(
    parts: list[tuple[int, Any]], outcomes: list[Any], states: list[_Part]
) -> dict[str, Any]:
    """The answer of a split insert, or the error that says exactly what was stored."""
    from .routing import merge_parts, series_names

    applied: list[Any] = []
    not_applied: list[Any] = []
    unknown: list[Any] = []
    errors: list[BaseException] = []
    answers: list[Any] = []
    notes: list[str] = []
    for (owner, data), outcome, state in zip(parts, outcomes, states):
        if not isinstance(outcome, BaseException):
            applied.append(data)
            answers.append(outcome)
            continue
        errors.append(outcome)
        if state.maybe_applied or not isinstance(outcome, Exception):
            unknown.append(data)
            verdict = "outcome unknown"
        else:
            not_applied.append(data)
            verdict = "not stored"
        count = len(series_names(data))
        notes.append(
            f"pool {owner} ({count} series) {verdict}: {type(outcome).__name__}: {outcome}"
        )
    if not errors:
        return _merged_answer(answers)
    if not applied and not unknown:
        raise errors[0]  # nothing stored: the same error as an unsplit insert
    rest = not_applied + unknown
    raise InsertPartlyApplied(
        f"insert split over {len(parts)} pools: {len(applied)} part(s) stored, "
        f"{len(not_applied)} not stored, {len(unknown)} with unknown outcome; "
        + "; ".join(notes),
        applied=merge_parts(applied),
        not_applied=merge_parts(not_applied),
        unknown=merge_parts(unknown),
        errors=errors,
        payload=merge_parts(rest),
    ) from errors[0]


def _merged_answer(answers: list[Any]) -> dict[str, Any]:
    """One success answer for the parts, counting their points as SiriDB words it."""
    total = 0
    for answer in answers:
        match = _INSERTED.match(answer.get("success_msg", "")) if isinstance(answer, dict) else None
        if match is None:
            return dict(answers[0]) if isinstance(answers[0], dict) else {"success_msg": ""}
        total += int(match.group(1))
    return {"success_msg": f"Successfully inserted {total} point(s)."}
