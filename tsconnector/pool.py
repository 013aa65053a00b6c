"""HostPool: one connection per host, weighted choice, backup tier, inactive marking, reconnect.

Hosts that are down reconnect in the background, each in its own task with exponential
backoff and jitter; :meth:`HostPool.close` cancels all of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
from collections.abc import Collection, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from .connection import Connection, open_connection
from .events import EventHub, HostEvent, HostState, HostStats
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    PoolError,
    TsConnectionError,
    TsTimeoutError,
)

__all__ = ["Host", "HostPool", "describe_connect_error", "parse_hostlist"]

log = logging.getLogger("tsconnector.pool")

_T = TypeVar("_T")

_OPTIONS = frozenset({"weight", "backup"})


class Host:
    """One server of the hostlist: its options, its connection, its state and counters."""

    def __init__(self, host: str, port: int, weight: int = 1, backup: bool = False) -> None:
        self.host = host
        self.port = port
        self.weight = weight
        self.backup = backup
        self.conn: Connection | None = None
        self.state = HostState.DOWN
        self.inactive_handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.requests = 0
        self.failures = 0
        self.reconnects = 0
        self.last_latency: float | None = None
        self.last_error: str | None = None
        #: The latest connection attempt failed (and none succeeded since).
        self.connect_failed = False
        self.ever_connected = False
        # Cluster facts (``discover=True``): the server's SiriDB name and pool, its
        # status, and whether it may be chosen while a fit host exists.
        self.server_name: str | None = None
        self.cluster_pool: int | None = None
        self.status: str | None = None
        self.fit = True
        #: Added by topology discovery (not in the user's hostlist).
        self.discovered = False
        #: The connection on which ``server_name`` was learned (identity is per connection).
        self.identified_conn: Connection | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """True when the host has an authenticated, open connection."""
        return self.conn is not None and self.conn.ready

    def stats(self) -> HostStats:
        """A snapshot of this host's counters."""
        return HostStats(
            host=self.host,
            port=self.port,
            weight=self.weight,
            backup=self.backup,
            state=self.state,
            requests=self.requests,
            failures=self.failures,
            reconnects=self.reconnects,
            last_latency=self.last_latency,
            last_error=self.last_error,
            in_flight=self.conn.in_flight if self.conn is not None else 0,
            server_name=self.server_name,
            pool=self.cluster_pool,
            status=self.status,
            discovered=self.discovered,
        )

    def __repr__(self) -> str:
        return f"<Host {self.address} {self.state.value} weight={self.weight} backup={self.backup}>"


def parse_hostlist(hostlist: Iterable[Sequence[Any]]) -> list[Host]:
    """Validate ``[(host, port), (host, port, {"weight": 1..9, "backup": bool}), ...]``."""
    if isinstance(hostlist, (str, bytes)):
        raise TypeError(
            f"hostlist must be a list of (host, port) tuples, not a string ({hostlist!r}); "
            "for example [('127.0.0.1', 9000)] or [('h1', 9000), ('h2', 9000)]"
        )
    if (
        isinstance(hostlist, tuple)
        and len(hostlist) in (2, 3)
        and isinstance(hostlist[0], str)
        and isinstance(hostlist[1], int)
    ):
        raise TypeError(
            f"hostlist must be a list of (host, port) tuples; got one tuple {hostlist!r}: "
            f"wrap it in a list, [{hostlist!r}]"
        )
    if not isinstance(hostlist, Iterable):
        raise TypeError(
            f"hostlist must be a list of (host, port) tuples, not {type(hostlist).__name__}"
        )
    hosts: list[Host] = []
    for entry in hostlist:
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise ValueError(
                f"hostlist entry {entry!r} must be (host, port) or (host, port, options)"
            )
        host, port = entry[0], entry[1]
        name = f"{host}:{port}"
        if not isinstance(host, str) or not host:
            raise ValueError(f"host {name}: the host name must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"host {name}: the port must be an integer 1..65535")
        options = entry[2] if len(entry) == 3 else {}
        if not isinstance(options, dict):
            raise ValueError(f"host {name}: options must be a dict, not {type(options).__name__}")
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ValueError(
                f"host {name}: unknown option(s) {', '.join(sorted(map(str, unknown)))}"
            )
        weight = options.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 9:
            raise ValueError(f"host {name}: weight must be an integer 1..9, got {weight!r}")
        backup = options.get("backup", False)
        if not isinstance(backup, bool):
            raise ValueError(f"host {name}: backup must be True or False, got {backup!r}")
        hosts.append(Host(host, port, weight, backup))
    if not hosts:
        raise ValueError("hostlist is empty")
    return hosts


def describe_connect_error(exc: BaseException, address: str) -> str:
    """A one-line reason why connecting to ``address`` failed, naming the address."""
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused to {address}"
    if isinstance(exc, TsTimeoutError):
        return f"connecting to {address} timed out"
    if isinstance(exc, AuthenticationError):
        return f"{address} refused the login: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {address}: {exc.strerror or exc}"
    if isinstance(exc, OSError) and not isinstance(exc, TsConnectionError):
        return f"cannot connect to {address}: {exc.strerror or exc}"
    return f"cannot connect to {address}: {type(exc).__name__}: {exc}"


class HostPool:
    """The client's connections, one per host, kept alive in the background."""

    def __init__(
        self,
        username: str,
        password: str,
        dbname: str,
        hostlist: Iterable[Sequence[Any]] | list[Host],
        *,
        loop: asyncio.AbstractEventLoop,
        connect_timeout: float = 10.0,
        inactive_time: float = 30.0,
        max_wait_retry: float = 90.0,
        initial_retry_wait: float = 1.0,
        keepalive_interval: float | None = 45.0,
        ping_timeout: float = 10.0,
        connection_options: dict[str, Any] | None = None,
        events: EventHub | None = None,
    ) -> None:
        if isinstance(hostlist, (str, bytes)):
            parse_hostlist(hostlist)  # raises: a string is not a host list
        items: list[Any] = list(hostlist)
        if items and all(isinstance(h, Host) for h in items):
            self.hosts: list[Host] = items
        else:
            self.hosts = parse_hostlist(items)
        self._auth = (username, password, dbname)
        self._loop = loop
        self._connect_timeout = connect_timeout
        self._inactive_time = inactive_time
        self._max_wait_retry = max_wait_retry
        self._initial_retry_wait = initial_retry_wait
        self._conn_options: dict[str, Any] = dict(connection_options or {})
        self._conn_options["keepalive_interval"] = keepalive_interval
        self._conn_options["ping_timeout"] = ping_timeout
        self.events = events or EventHub()
        self._change_waiters: list[asyncio.Future[bool]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self._weighted = any(h.weight != 1 for h in self.hosts)
        #: Set once a cluster topology is known: choose by status and pool too.
        self.tiered = False

    # ---------------------------------------------------------------- connect

    async def connect(self, timeout: float | None = None) -> list[BaseException | None]:
        """Connect every host that is not connected, in parallel.

        Returns one entry per host in hostlist order: ``None`` or the exception. Hosts
        that failed keep reconnecting in the background.
        """
        if self.closing:
            raise ClientClosedError("the client is closed")
        timeout = self._connect_timeout if timeout is None else timeout
        pending: list[tuple[int, Host]] = []
        for i, host in enumerate(self.hosts):
            if host.conn is not None:
                continue
            if host.task is not None:
                host.task.cancel()
                host.task = None
            pending.append((i, host))
        results: list[BaseException | None] = [None] * len(self.hosts)
        if not pending:
            return results
        tasks = [
            self.spawn(self._connect_host(host, timeout), f"connect {host.address}")
            for _, host in pending
        ]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for (i, host), outcome in zip(pending, outcomes):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError) and self.closing:
                    outcome = ClientClosedError("the client was closed while connecting")
                results[i] = outcome
                self._start_reconnect(host)
        return results

    async def _connect_host(self, host: Host, timeout: float) -> None:
        self._set_state(host, HostState.CONNECTING)
        try:
            conn = await open_connection(
                host.host,
                host.port,
                *self._auth,
                timeout=timeout,
                loop=self._loop,
                on_lost=functools.partial(self._on_lost, host),
                label=host.address,
                **self._conn_options,
            )
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                host.last_error = describe_connect_error(exc, host.address)
                host.connect_failed = True
            if host.state is HostState.CONNECTING:
                self._set_state(host, HostState.DOWN, exc if isinstance(exc, Exception) else None)
            raise
        if self.closing:
            conn.abort(ClientClosedError("the client is closed"))
            raise ClientClosedError("the client was closed while connecting")
        if host.ever_connected:
            host.reconnects += 1
        host.ever_connected = True
        host.connect_failed = False
        host.conn = conn
        self._set_state(host, HostState.READY)

    def _start_reconnect(self, host: Host) -> None:
        if self.closing or host.task is not None or host.conn is not None:
            return
        host.task = self.spawn(self._reconnect_loop(host), f"reconnect {host.address}")

    def add_host(self, host: Host) -> None:
        """Add a host found by topology discovery and connect it in the background."""
        if self.closing:
            return
        self.hosts.append(host)
        self._weighted = any(h.weight != 1 for h in self.hosts)
        host.task = self.spawn(self._connect_new(host), f"connect {host.address}")

    async def _connect_new(self, host: Host) -> None:
        try:
            await self._connect_host(host, self._connect_timeout)
        except Exception as exc:
            log.info("connecting to discovered server %s failed: %s", host.address, exc)
            if host.task is asyncio.current_task():
                host.task = None
            self._start_reconnect(host)
        else:
            if host.task is asyncio.current_task():
                host.task = None

    def remove_host(self, host: Host) -> None:
        """Drop a discovered host the cluster no longer lists: stop reconnecting it and
        close its connection (requests still in flight on it fail, so callers drop only
        idle hosts)."""
        if host not in self.hosts:
            return
        self.hosts.remove(host)
        self._weighted = any(h.weight != 1 for h in self.hosts)
        if host.task is not None:
            host.task.cancel()
            host.task = None
        self._cancel_inactive(host)
        conn = host.conn
        host.conn = None
        if conn is not None:
            conn.close()
        self._set_state(host, HostState.CLOSED)

    async def _reconnect_loop(self, host: Host) -> None:
        """Retry ``host`` after 1 s, 2 s, 4 s... (capped, with jitter) until it is back."""
        wait = self._initial_retry_wait
        try:
            while not self.closing:
                # "equal jitter": between half and all of the wait, never above the cap
                delay = min(wait, self._max_wait_retry) * random.uniform(0.5, 1.0)
                await asyncio.sleep(delay)
                try:
                    await self._connect_host(host, self._connect_timeout)
                except Exception as exc:
                    log.info(
                        "reconnecting to %s failed: %s; next try in about %.1f s",
                        host.address,
                        exc,
                        min(wait * 2, self._max_wait_retry),
                    )
                    wait = min(wait * 2, self._max_wait_retry)
                else:
                    return
        finally:
            if host.task is asyncio.current_task():
                host.task = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the pool runs on (its hosts' connections and tasks)."""
        return self._loop

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        """Run ``coro`` as a background task the pool owns: named ``tsconnector: name``
        and cancelled by :meth:`close`, so helpers such as topology discovery end with it."""
        task = self._loop.create_task(coro, name=f"tsconnector: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_lost(self, host: Host, conn: Connection, exc: BaseException | None) -> None:
        if host.conn is not conn:
            return
        host.conn = None
        self._cancel_inactive(host)
        if self.closing:
            self._set_state(host, HostState.CLOSED)
            return
        error = exc if isinstance(exc, Exception) else None
        if error is None:
            error = TsConnectionError(f"connection to {host.address} closed by the server")
        host.last_error = f"connection to {host.address} lost: {error}"
        host.connect_failed = False  # a reconnect attempt is due
        self._set_state(host, HostState.DOWN, error)
        self._start_reconnect(host)

    # ---------------------------------------------------------------- choice

    def first_choice(self, exclude: Collection[Host] = ()) -> Host | None:
        """:meth:`choose` for a call's attempt when that is quick to decide (one host,
        ready, not excluded); None otherwise, for :meth:`choose` to decide."""
        hosts = self.hosts
        if len(hosts) != 1:
            try:
                return self.choose(False, exclude)
            except PoolError:
                return None
        host = hosts[0]
        conn = host.conn
        if (
            host.state is HostState.READY
            and conn is not None
            and conn.ready
            and (not exclude or host not in exclude)
        ):
            return host
        return None

    def choose(
        self,
        try_unavailable: bool = False,
        exclude: Collection[Host] = (),
        pool: int | None = None,
    ) -> Host:
        """A ready host with the fewest requests in flight per unit of weight, ties
        broken at random by weight; backups only when no other is ready.

        With ``try_unavailable`` a connected host skipped as inactive is accepted when
        nothing else is ready. Hosts in ``exclude`` (those that already failed the
        call) are never chosen. Once the cluster's topology is known (``tiered``),
        hosts whose status is unfit (re-indexing, synchronizing...) are chosen only
        when no fit host is ready, and a host of ``pool`` is preferred. Raises
        PoolError when no host qualifies.
        """
        ready = [
            h for h in self.hosts
            if h.state is HostState.READY and h.connected and h not in exclude
        ]
        if ready:
            if self.tiered:
                return self._pick_tiered(ready, pool)
            primary = [h for h in ready if not h.backup]
            return self._pick(primary or ready)
        if try_unavailable:
            connected = [h for h in self.hosts if h.connected and h not in exclude]
            if connected:
                if self.tiered:
                    return self._pick_tiered(connected, pool)
                primary = [h for h in connected if not h.backup]
                return self._pick(primary or connected)
        if self.closing:
            raise ClientClosedError("the client is closed")
        raise PoolError("No available connections found")

    def may_recover_soon(self, exclude: Collection[Host] = ()) -> bool:
        """True while a host outside ``exclude`` is connecting, or was lost and has its
        first reconnect attempt still to come: worth waiting for (within a deadline)."""
        if self.closing:
            return False
        for host in self.hosts:
            if host in exclude:
                continue
            if host.state is HostState.CONNECTING:
                return True
            if host.state is HostState.DOWN and not host.connect_failed:
                return True
        return False

    def describe(self) -> str:
        """Every host's state and last error, for an error message."""
        parts = []
        for host in self.hosts:
            if host.last_error:
                parts.append(host.last_error)
            else:
                parts.append(f"{host.address} is {host.state.value}")
        return "; ".join(parts)

    def _pick(self, hosts: list[Host]) -> Host:
        """Least outstanding requests per unit of weight; ties at random by weight (so
        an idle pool spreads calls by weight, a busy one keeps the load in proportion)."""
        if len(hosts) == 1:
            return hosts[0]
        least = -1.0
        best: list[Host] = []
        for host in hosts:
            conn = host.conn
            load = conn.in_flight / host.weight if conn is not None else 0.0
            if load < least or least < 0:
                least = load
                best = [host]
            elif load == least:
                best.append(host)
        if len(best) == 1:
            return best[0]
        if self._weighted:
            return random.choices(best, weights=[h.weight for h in best])[0]
        return random.choice(best)

    def _pick_tiered(self, hosts: list[Host], pool: int | None) -> Host:
        """Fit before unfit, non-backup before backup, then a host of ``pool`` if any."""
        group = [h for h in hosts if h.fit] or hosts
        group = [h for h in group if not h.backup] or group
        if pool is not None:
            own = [h for h in group if h.cluster_pool == pool]
            if own:
                return self._pick(own)
        return self._pick(group)

    @property
    def any_ready(self) -> bool:
        """True when at least one host is ready."""
        return any(h.state is HostState.READY and h.connected for h in self.hosts)

    @property
    def any_connected(self) -> bool:
        """True when at least one host has an authenticated connection."""
        return any(h.connected for h in self.hosts)

    async def wait_ready(self, deadline: float) -> bool:
        """Wait until some host is ready (True) or ``deadline`` passes / the pool closes."""
        while not self.any_ready:
            if self.closing or not await self.wait_change(deadline):
                return False
        return True

    async def wait_change(self, deadline: float) -> bool:
        """Wait for the next host state change: True, or False at ``deadline`` / close."""
        if self.closing:
            return False
        loop = self._loop
        waiter: asyncio.Future[bool] = loop.create_future()
        self._change_waiters.append(waiter)
        handle = loop.call_at(deadline, _resolve, waiter, False)
        try:
            return await waiter
        finally:
            handle.cancel()
            if waiter in self._change_waiters:
                self._change_waiters.remove(waiter)

    def _wake_waiters(self, value: bool) -> None:
        waiters, self._change_waiters = self._change_waiters, []
        for waiter in waiters:
            _resolve(waiter, value)

    # ------------------------------------------------------------ accounting

    def mark_failed(self, host: Host, exc: BaseException | None = None) -> None:
        """Skip ``host`` for ``inactive_time`` seconds (after ServerError or a failure)."""
        host.failures += 1
        if exc is not None:
            host.last_error = f"{type(exc).__name__}: {exc}"
        if host.state is not HostState.READY or self._inactive_time <= 0:
            return
        self._set_state(host, HostState.INACTIVE, exc if isinstance(exc, Exception) else None)
        host.inactive_handle = self._loop.call_later(self._inactive_time, self._reactivate, host)

    def record_failure(self, host: Host, exc: BaseException) -> None:
        """Count a failed request that does not make the host inactive."""
        host.failures += 1
        host.last_error = f"{type(exc).__name__}: {exc}"

    def _reactivate(self, host: Host) -> None:
        host.inactive_handle = None
        if host.state is HostState.INACTIVE and host.connected:
            self._set_state(host, HostState.READY)

    def _cancel_inactive(self, host: Host) -> None:
        if host.inactive_handle is not None:
            host.inactive_handle.cancel()
            host.inactive_handle = None

    def _set_state(self, host: Host, new: HostState, error: Exception | None = None) -> None:
        old = host.state
        if old is new:
            return
        host.state = new
        self.events.emit(HostEvent(host.host, host.port, old, new, self._loop.time(), error))
        self._wake_waiters(True)

    def stats(self) -> list[HostStats]:
        """Per-host counters, in hostlist order."""
        return [h.stats() for h in self.hosts]

    # ---------------------------------------------------------------- closing

    def stop_reconnecting(self) -> None:
        """Stop every background task; existing connections stay open."""
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        for host in self.hosts:
            self._cancel_inactive(host)
            if host.conn is None:
                self._set_state(host, HostState.CLOSED)
        self._wake_waiters(False)

    def close(self, reason: BaseException | None = None) -> None:
        """Stop all background work and abort every connection (requests in flight fail)."""
        self.stop_reconnecting()
        reason = reason or ClientClosedError("the client is closed")
        for host in self.hosts:
            conn = host.conn
            if conn is not None:
                try:
                    conn.abort(reason)
                except RuntimeError:  # the event loop is already closed
                    host.conn = None
            self._set_state(host, HostState.CLOSED)

    async def wait_closed(self) -> None:
        """Wait until every background task ended and every connection is gone."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for host in self.hosts:
            if host.conn is not None:
                await host.conn.wait_closed()


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)
