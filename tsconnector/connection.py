"""One framed, authenticated connection to a SiriDB-protocol server.

:class:`Connection` is an :class:`asyncio.Protocol`: it frames requests, matches answers
by pid, enforces each request's deadline with one deadline sweep per connection (a heap
of deadlines and a single ``loop.call_at`` handle: no task or timer per request),
gathers the small frames of one loop iteration into one write, applies write
backpressure and sends keepalive pings while idle to detect half-open sockets.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import qpack

from .exceptions import (
    AnswerTooLarge,
    ClientClosedError,
    ProtocolError,
    TsConnectionError,
    TsTimeoutError,
)
from .protocol import (
    HEADER,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    SUCCESS_TYPES,
    Frame,
    FrameDecoder,
    FrameError,
    RequestType,
    exception_for,
    pack,
    unpack,
)
from .protocol.answers import GC_PAUSE_THRESHOLD, decode_answer
from .protocol.nesting import MAX_NESTING

__all__ = ["Connection", "RequestNotSent", "open_connection", "open_raw"]

log = logging.getLogger("tsconnector.connection")

_PID_COUNT = 1 << 16
_PID_MASK = _PID_COUNT - 1
#: Payloads at least this large are handed to the transport without concatenation;
#: smaller frames are gathered and written once per event-loop iteration.
_ZERO_COPY_THRESHOLD = 1 << 16
#: Frames at least this large are streamed in chunks as the socket drains, so the
#: transport never holds a second copy of a big insert.
_STREAM_THRESHOLD = 1 << 20
_STREAM_CHUNK = 1 << 18
#: Rebuild the deadline heap when it holds this many more entries than live requests.
_HEAP_SLACK = 1024
_heappush = heapq.heappush
_unpackb = qpack.unpackb
_pack_header = HEADER.pack
#: asyncio runs a timer this early (its clock resolution); the sweep does the same.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution
#: How long a timed-out or cancelled pid stays reserved, waiting for its late answer.
DEFAULT_TOMBSTONE_TTL = 300.0
#: How long ``close()`` lets buffered output drain before it aborts the connection.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: While the connection paused itself (the transport did not), how often it checks
#: whether the transport's buffer drained.
_DRAIN_POLL = 0.01
#: Linux only: acknowledge received data at once. SiriDB never sets TCP_NODELAY, so
#: with Nagle's algorithm it holds an answer while the previous one is unacknowledged,
#: and a delayed ACK (40 ms) would stall pipelined answers.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class RequestNotSent(TsConnectionError):
    """The request never reached the socket (connection lost or not ready before writing).

    The server cannot have seen it, so it is always safe to send it again elsewhere.
    """


class _Request:
    """Bookkeeping for one pid: its future (``None`` once abandoned), its deadline and,
    once abandoned, the timer that frees the pid."""

    __slots__ = ("deadline", "decode", "fut", "handle", "tp")

    def __init__(
        self,
        fut: asyncio.Future[Any] | None,
        deadline: float,
        tp: int,
        decode: Callable[[bytes], Any] | None = None,
    ):
        self.fut = fut
        self.deadline = deadline
        self.handle: asyncio.TimerHandle | None = None
        self.tp = tp
        self.decode = decode


class Connection(asyncio.Protocol):
    """A protocol instance for one TCP connection; create it with :func:`open_connection`.

    ``on_lost(connection, exc)`` is called once when the connection ends, for any reason.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        keepalive_interval: float | None = 45.0,
        ping_timeout: float = 10.0,
        max_frame_size: int = MAX_FRAME_SIZE,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        on_lost: Callable[[Connection, BaseException | None], None] | None = None,
        label: str = "",
    ) -> None:
        self._loop = loop
        self._decoder = FrameDecoder(max_frame_size, skip_oversized=True)
        self._requests: dict[int, _Request] = {}
        self._next_pid = 0
        self._transport: asyncio.Transport | None = None
        self._connected = False
        self._authenticated = False
        self._closing = False
        self._close_reason: BaseException | None = None
        self._lost_waiter: asyncio.Future[None] = loop.create_future()
        self._write_waiters: list[asyncio.Future[None]] = []
        self._writing_paused = False
        # Backpressure the connection applies itself when the transport does not pause
        # it (asyncio's writelines on 3.12.0-3.12.8 / 3.13.0-3.13.1, gh-127655).
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._drain_poll: asyncio.TimerHandle | None = None
        self._close_timeout = close_timeout
        self._close_handle: asyncio.TimerHandle | None = None
        # Small frames of this loop iteration (and their pids), written by _flush.
        self._out: list[bytes] = []
        self._out_pids: list[int] = []
        self._flush_handle: asyncio.Handle | None = None
        # Output waiting behind a streamed frame: [view, pids not yet started] entries.
        self._pending: collections.deque[list[Any]] = collections.deque()
        self._unstarted: set[int] = set()
        # (deadline, pid) of requests in flight; stale entries are skipped lazily.
        self._deadlines: list[tuple[float, int]] = []
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sweep_at = float("inf")
        self._keepalive_interval = keepalive_interval
        self._ping_timeout = ping_timeout
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._ping_pending = False
        self._last_received = loop.time()
        self._tombstone_ttl = tombstone_ttl
        self._on_lost = on_lost
        self.label = label
        #: Number of requests currently waiting for an answer (abandoned pids excluded).
        self.in_flight = 0
        self._quickack: Any = None  # the socket, while TCP_QUICKACK works on it

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True while the socket is open and not closing."""
        return self._connected and not self._closing

    @property
    def ready(self) -> bool:
        """True when connected and authenticated: requests can be sent."""
        return self._authenticated and self.connected

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is above its high-water mark."""
        return self._writing_paused

    @property
    def reserved_pids(self) -> int:
        """Pids in use: requests in flight plus abandoned ones awaiting a late answer."""
        return len(self._requests)

    # ------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Store the transport and disable Nagle's algorithm (small request frames)."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connected = True
        try:
            self._low_water, self._high_water = transport.get_write_buffer_limits()
        except (AttributeError, NotImplementedError):
            pass
        self._last_received = self._loop.time()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if _TCP_QUICKACK is not None:
                self._quickack = sock

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every request in flight, wake writers and report the loss once."""
        self._connected = False
        self._authenticated = False
        for handle in (self._keepalive_handle, self._drain_poll, self._close_handle):
            if handle is not None:
                handle.cancel()
        self._keepalive_handle = self._drain_poll = self._close_handle = None
        self._cancel_sweep()
        self._deadlines = []
        unsent = set(self._out_pids) | self._unstarted
        self._drop_output()
        reason = self._close_reason or exc
        requests, self._requests = self._requests, {}
        self.in_flight = 0
        for pid, req in requests.items():
            if req.handle is not None:
                req.handle.cancel()
            fut = req.fut
            if fut is not None and not fut.done():
                if pid in unsent:
                    fut.set_exception(RequestNotSent(self._not_connected_message(reason)))
                else:
                    fut.set_exception(self._lost_error(pid, reason))
        self._fail_write_waiters(reason)
        if not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        if self._on_lost is not None:
            callback, self._on_lost = self._on_lost, None
            try:
                callback(self, reason)
            except Exception:  # a user callback must not break the event loop
                log.exception("on_lost callback of %s failed", self.label)

    def data_received(self, data: bytes) -> None:
        """Decode frames and resolve the matching futures; framing errors close."""
        self._last_received = self._loop.time()
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            self._resolve(exc.frames)  # answers before the bad header are still valid
            self._fail(ProtocolError(f"{self.label}: {exc}"))
            return
        if self._decoder.oversized:
            self._refuse_oversized()
        self._resolve(frames)
        if self.in_flight and self._quickack is not None:
            # more answers are due: ACK at once so the server's Nagle does not hold them
            try:
                self._quickack.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                self._quickack = None

    def _refuse_oversized(self) -> None:
        """Fail the requests whose answers exceed the frame limit (being discarded)."""
        oversized, self._decoder.oversized = self._decoder.oversized, []
        limit = self._decoder.max_frame_size
        for pid, _tp, length in oversized:
            req = self._requests.pop(pid, None)
            if req is None or req.fut is None:
                if req is not None and req.handle is not None:
                    req.handle.cancel()
                log.debug("%s: discarded an oversized answer for pid %d", self.label, pid)
                continue
            self.in_flight -= 1
            if not req.fut.done():
                req.fut.set_exception(AnswerTooLarge(
                    f"{self.label}: the answer to this {_type_name(req.tp)} is {length:,} bytes, "
                    f"over the client's frame limit of {limit:,} bytes; select less (a "
                    "shorter time range, a limit, an aggregate) or raise the limit with "
                    f"TsClient(..., max_frame_size={_suggest_limit(length)})",
                    size=length, limit=limit,
                ))

    def _resolve(self, frames: list[Frame]) -> None:
        """Complete the futures of answered requests; drop late or unknown answers."""
        requests = self._requests
        success_types = SUCCESS_TYPES
        for pid, tp, payload in frames:
            req = requests.pop(pid, None)
            if req is None:
                log.debug("%s: dropped answer for unknown pid %d", self.label, pid)
                continue
            fut = req.fut
            if fut is None:
                if req.handle is not None:
                    req.handle.cancel()
                log.debug("%s: dropped late answer for abandoned pid %d", self.label, pid)
                continue
            self.in_flight -= 1
            if fut.done():
                continue
            success = tp in success_types
            try:
                if not payload:
                    answer = None
                elif success and req.decode is not None:
                    answer = req.decode(payload)
                elif len(payload) <= MAX_NESTING and payload[0] < 0xFE:
                    # too short to nest deeper than the limit: qpack's decoder is safe
                    try:
                        answer = _unpackb(payload, decode="utf-8")
                    except Exception as exc:
                        raise ProtocolError(f"cannot decode payload: {exc}") from None
                elif len(payload) < GC_PAUSE_THRESHOLD:
                    answer = unpack(payload)  # decode_answer without the call
                else:
                    answer = decode_answer(payload)
            except Exception as exc:  # this payload only; the stream stays in sync
                if not success:  # keep the error's type: the caller's retry rules need it
                    detail = {"error_msg": f"(undecodable error message: {exc})"}
                    fut.set_exception(exception_for(tp, detail))
                elif isinstance(exc, ProtocolError):
                    fut.set_exception(exc)
                else:  # a custom decoder failed
                    fut.set_exception(ProtocolError(f"{self.label}: cannot decode answer: {exc}"))
                continue
            if success:
                fut.set_result(answer)
            else:
                fut.set_exception(exception_for(tp, answer))

    def eof_received(self) -> bool:
        """The server closed its side: close ours too (requests in flight fail)."""
        return False

    def pause_writing(self) -> None:
        """The transport buffer is full: writers wait in :meth:`request`."""
        self._writing_paused = True

    def resume_writing(self) -> None:
        """The transport buffer drained: continue a streamed frame, wake waiting writers."""
        self._writing_paused = False
        if self._drain_poll is not None:
            self._drain_poll.cancel()
            self._drain_poll = None
        if self._pending:
            self._pump()
        waiters, self._write_waiters = self._write_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---------------------------------------------------------------- requests

    async def request(
        self,
        tp: int,
        payload: bytes | memoryview = b"",
        *,
        deadline: float | None = None,
        timeout: float = 60.0,
        framed: bool = False,
        decode: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """Send one request and return the decoded answer.

        ``deadline`` (``loop.time()`` based) wins over ``timeout``. Raises the mapped
        server exception, :class:`~tsconnector.exceptions.TsTimeoutError`,
        :class:`RequestNotSent` if nothing was written, or
        :class:`~tsconnector.exceptions.TsConnectionError` if the connection was lost
        after writing. Cancelling the caller keeps the connection usable. With
        ``framed`` the first 8 bytes of the writable ``payload`` are reserved for the
        header, so the frame goes out as one buffer without a copy. ``decode`` replaces
        the qpack decoding of a successful answer's payload (e.g. straight to arrays).
        """
        if deadline is None:
            deadline = self._loop.time() + timeout
        if self._writing_paused:
            await self._wait_writable(deadline)
        fut, pid = self.send(tp, payload, deadline, framed=framed, decode=decode)
        try:
            return await fut
        except asyncio.CancelledError:
            self._abandon(pid, fut)
            raise

    def send(
        self,
        tp: int,
        payload: bytes | memoryview,
        deadline: float,
        *,
        framed: bool = False,
        decode: Callable[[bytes], Any] | None = None,
    ) -> tuple[asyncio.Future[Any], int]:
        """Write one frame now and return its future and pid (no waiting, no task).

        The future fails with TsTimeoutError at ``deadline``; a caller that stops
        waiting must call :meth:`abandon` so the pid stays reserved for the late answer.
        """
        transport = self._transport
        if transport is None or not self._connected or self._closing or transport.is_closing():
            raise RequestNotSent(self._not_connected_message())
        size = len(payload) - HEADER_SIZE if framed else len(payload)
        if size > self._decoder.max_frame_size:
            raise ValueError(
                f"payload of {size} bytes exceeds the frame limit of "
                f"{self._decoder.max_frame_size} bytes"
            )
        requests = self._requests
        pid = self._next_pid
        if pid in requests:
            pid = self._allocate_pid()
        else:
            self._next_pid = (pid + 1) & _PID_MASK
        fut: asyncio.Future[Any] = self._loop.create_future()
        requests[pid] = _Request(fut, deadline, tp, decode)
        self.in_flight += 1
        heap = self._deadlines
        _heappush(heap, (deadline, pid))
        if len(heap) > 2 * len(requests) + _HEAP_SLACK:
            self._compact_deadlines()
        if deadline < self._sweep_at:
            self._arm_sweep(deadline)
        if size < _ZERO_COPY_THRESHOLD and not framed and not self._pending:
            if self.in_flight == 1 and not self._out:
                # Nothing else in flight: no batch to join, write at once (lowest latency).
                transport.write(_pack_header(size, pid, tp, tp ^ 0xFF) + payload)
            else:
                self._out.append(_pack_header(size, pid, tp, tp ^ 0xFF) + payload)
                self._out_pids.append(pid)
                if self._flush_handle is None:
                    self._flush_handle = self._loop.call_soon(self._flush)
            return fut, pid
        if size >= _STREAM_THRESHOLD:
            self._flush()
            if framed:
                HEADER.pack_into(payload, 0, size, pid, tp, tp ^ 0xFF)
                self._queue(memoryview(payload), (pid,))
            else:
                self._queue(memoryview(HEADER.pack(size, pid, tp, tp ^ 0xFF)), (pid,))
                self._queue(memoryview(payload), ())
            self._pump()
        elif self._pending:  # behind a streamed frame: keep the order
            frame = HEADER.pack(size, pid, tp, tp ^ 0xFF) + bytes(payload)
            self._queue(memoryview(frame), (pid,))
        elif framed:
            self._flush()
            HEADER.pack_into(payload, 0, size, pid, tp, tp ^ 0xFF)
            transport.write(payload)
            self._check_backpressure(transport)
        elif size >= _ZERO_COPY_THRESHOLD:
            self._flush()
            # Two writes, not writelines: writelines joins them (a full copy) on 3.11.
            transport.write(HEADER.pack(size, pid, tp, tp ^ 0xFF))
            transport.write(payload)
            self._check_backpressure(transport)
        elif self.in_flight == 1 and not self._out:
            # Nothing else in flight: no batch to join, write at once (lowest latency).
            transport.write(HEADER.pack(size, pid, tp, tp ^ 0xFF) + payload)
        else:
            self._out.append(HEADER.pack(size, pid, tp, tp ^ 0xFF) + payload)
            self._out_pids.append(pid)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)
        return fut, pid

    def _flush(self) -> None:
        """Write the small frames gathered in this loop iteration, in order, at once.

        If the transport is already closing they stay unsent, and ``connection_lost``
        fails their requests with :class:`RequestNotSent` (safe to retry elsewhere).
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out = self._out
        if not out:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pids, self._out, self._out_pids = self._out_pids, [], []
        data = out[0] if len(out) == 1 else b"".join(out)
        if self._pending:
            self._queue(memoryview(data), pids)
        else:
            transport.write(data)
            self._check_backpressure(transport)

    def _check_backpressure(self, transport: asyncio.Transport) -> None:
        """Pause writers when the transport's buffer is over its high-water mark.

        The transport normally does this itself (``pause_writing``); some asyncio
        versions do not on every path, so the connection checks after each write and,
        having paused itself, polls until the buffer drained.
        """
        if not self._writing_paused and transport.get_write_buffer_size() > self._high_water:
            self._writing_paused = True
            self._drain_poll = self._loop.call_later(_DRAIN_POLL, self._poll_drained)

    def _poll_drained(self) -> None:
        self._drain_poll = None
        transport = self._transport
        if not self._writing_paused or transport is None or not self._connected:
            return
        if transport.get_write_buffer_size() <= self._low_water:
            self.resume_writing()
        else:
            self._drain_poll = self._loop.call_later(_DRAIN_POLL, self._poll_drained)

    def _queue(self, view: memoryview, pids: tuple[int, ...] | list[int]) -> None:
        """Put output behind the frame being streamed (``pids`` start with its first byte)."""
        self._pending.append([view, pids])
        self._unstarted.update(pids)

    def _pump(self) -> None:
        """Write queued output chunk by chunk until the transport asks for a pause.

        Only one chunk at a time can end up copied into the transport's buffer, so a
        large insert costs its payload once, not twice.
        """
        transport = self._transport
        pending = self._pending
        while pending and not self._writing_paused:
            if transport is None or transport.is_closing():
                return
            entry = pending[0]
            view, pids = entry
            if pids:
                self._unstarted.difference_update(pids)
                entry[1] = ()
            if len(view) <= _STREAM_CHUNK:
                pending.popleft()
                transport.write(view)
            else:
                entry[0] = view[_STREAM_CHUNK:]
                transport.write(view[:_STREAM_CHUNK])
            self._check_backpressure(transport)

    def _drop_output(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out = []
        self._out_pids = []
        self._pending.clear()
        self._unstarted.clear()

    # ------------------------------------------------------------- deadlines

    def _add_deadline(self, deadline: float, pid: int) -> None:
        heap = self._deadlines
        heapq.heappush(heap, (deadline, pid))
        if len(heap) > 2 * len(self._requests) + _HEAP_SLACK:
            self._compact_deadlines()
        if deadline < self._sweep_at:
            self._arm_sweep(deadline)

    def _arm_sweep(self, when: float) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._sweep_at = when
        self._sweep_handle = self._loop.call_at(when, self._sweep)

    def _cancel_sweep(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._sweep_at = float("inf")

    def _compact_deadlines(self) -> None:
        """Drop heap entries of answered or abandoned requests (amortised O(1) per request)."""
        requests = self._requests
        live = []
        for entry in self._deadlines:
            req = requests.get(entry[1])
            if req is not None and req.fut is not None and req.deadline == entry[0]:
                live.append(entry)
        heapq.heapify(live)
        self._deadlines = live

    def _sweep(self) -> None:
        """Time out every request whose deadline has passed, then re-arm for the next."""
        self._sweep_handle = None
        self._sweep_at = float("inf")
        heap = self._deadlines
        requests = self._requests
        now = self._loop.time() + _CLOCK_RESOLUTION
        while heap:
            deadline, pid = heap[0]
            req = requests.get(pid)
            if req is None or req.fut is None or req.deadline != deadline:
                heapq.heappop(heap)  # answered, abandoned, or the pid was reused
                continue
            if deadline > now:
                self._arm_sweep(deadline)
                return
            heapq.heappop(heap)
            self._on_deadline(pid)

    def abandon(self, pid: int, fut: asyncio.Future[Any]) -> None:
        """Stop waiting for ``pid``; its late answer will be dropped (public alias)."""
        self._abandon(pid, fut)

    def _abandon(self, pid: int, fut: asyncio.Future[Any]) -> None:
        req = self._requests.get(pid)
        if req is None or req.fut is not fut:
            return
        self._tombstone(pid, req)

    def _tombstone(self, pid: int, req: _Request) -> None:
        """Keep ``pid`` reserved (so it is not reused) until its answer or a long TTL."""
        req.fut = None
        self.in_flight -= 1
        req.handle = self._loop.call_later(self._tombstone_ttl, self._expire_tombstone, pid)

    def _expire_tombstone(self, pid: int) -> None:
        req = self._requests.get(pid)
        if req is not None and req.fut is None:
            del self._requests[pid]

    def _on_deadline(self, pid: int) -> None:
        req = self._requests.get(pid)
        if req is None or req.fut is None:
            return
        fut = req.fut
        self._tombstone(pid, req)
        if not fut.done():
            name = _type_name(req.tp)
            fut.set_exception(
                TsTimeoutError(f"{self.label}: request timed out on pid {pid} ({name})")
            )

    def _allocate_pid(self) -> int:
        requests = self._requests
        pid = self._next_pid
        if pid in requests:
            if len(requests) >= _PID_COUNT:
                raise RequestNotSent(f"{self.label}: all 65536 package ids are in use")
            while pid in requests:
                pid = (pid + 1) & _PID_MASK
        self._next_pid = (pid + 1) & _PID_MASK
        return pid

    async def _wait_writable(self, deadline: float) -> None:
        """Wait (bounded by ``deadline``) until the transport accepts writes again."""
        loop = self._loop
        while self._writing_paused and self.connected:
            waiter: asyncio.Future[None] = loop.create_future()
            self._write_waiters.append(waiter)
            handle = loop.call_at(deadline, _expire_waiter, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
        if not self.connected:
            raise RequestNotSent(self._not_connected_message())

    def _fail_write_waiters(self, reason: BaseException | None) -> None:
        waiters, self._write_waiters = self._write_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(RequestNotSent(self._not_connected_message(reason)))

    # ------------------------------------------------------------ auth, ping

    async def authenticate(self, username: str, password: str, dbname: str, timeout: float) -> None:
        """Send AUTH ``[username, password, dbname]``; raise AuthenticationError on refusal."""
        await self.request(RequestType.AUTH, pack([username, password, dbname]), timeout=timeout)
        self._authenticated = True
        self._schedule_keepalive()

    async def ping(self, timeout: float = 10.0) -> None:
        """Round-trip a PING package (answered with ACK)."""
        await self.request(RequestType.PING, timeout=timeout)

    def _schedule_keepalive(self) -> None:
        interval = self._keepalive_interval
        if interval is None or interval <= 0 or not self.connected:
            return
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        self._keepalive_handle = self._loop.call_at(
            self._last_received + interval, self._keepalive_check
        )

    def _keepalive_check(self) -> None:
        """Ping when nothing was received for a whole interval; otherwise re-arm."""
        self._keepalive_handle = None
        interval = self._keepalive_interval
        if interval is None or not self.connected:
            return
        now = self._loop.time()
        if self._ping_pending:
            return
        if now - self._last_received < interval:
            self._schedule_keepalive()
            return
        try:
            fut, _pid = self.send(RequestType.PING, b"", now + self._ping_timeout)
        except RequestNotSent:
            return
        self._ping_pending = True
        fut.add_done_callback(self._on_ping_done)

    def _on_ping_done(self, fut: asyncio.Future[Any]) -> None:
        self._ping_pending = False
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._schedule_keepalive()
        elif isinstance(exc, TsTimeoutError):
            log.warning("%s: keepalive ping unanswered; closing half-open connection", self.label)
            self._fail(TsConnectionError(f"{self.label}: keepalive ping got no answer"))
        elif self.connected:
            # An error answer still proves the server is alive.
            self._schedule_keepalive()

    # ------------------------------------------------------------ closing

    def close(self, reason: BaseException | None = None) -> None:
        """Close gracefully (buffered writes are flushed); requests in flight fail.

        A peer that does not read cannot hold it open: after ``close_timeout`` seconds
        the connection is aborted (unsent output is dropped).
        """
        self._flush()
        if self._close_reason is None:
            self._close_reason = reason
        self._closing = True
        if self._transport is not None:
            self._transport.close()
            if self._connected and self._close_handle is None:
                self._close_handle = self._loop.call_later(self._close_timeout, self._abort_stuck)

    def _abort_stuck(self) -> None:
        self._close_handle = None
        if self._connected and self._transport is not None:
            log.warning("%s: output not drained %.1f s after close; aborting", self.label,
                        self._close_timeout)
            self._transport.abort()

    def abort(self, reason: BaseException | None = None) -> None:
        """Close at once, dropping buffered writes; requests in flight fail."""
        if self._close_reason is None:
            self._close_reason = reason
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the transport reported the connection lost."""
        if self._transport is None:
            return
        await asyncio.shield(self._lost_waiter)

    def _fail(self, reason: BaseException) -> None:
        self.abort(reason)

    def _lost_error(self, pid: int, reason: BaseException | None) -> TsConnectionError:
        if isinstance(reason, ClientClosedError):
            return ClientClosedError(f"{self.label}: client closed before pid {pid} was answered")
        detail = f": {reason}" if reason else ""
        err = TsConnectionError(
            f"{self.label}: connection lost before an answer on pid {pid}{detail}"
        )
        err.__cause__ = reason
        return err

    def _not_connected_message(self, reason: BaseException | None = None) -> str:
        reason = reason or self._close_reason
        detail = f" ({reason})" if reason else ""
        return f"{self.label or 'connection'}: not connected{detail}"


def _suggest_limit(length: int) -> int:
    """A frame limit that fits ``length``, rounded up to whole MiB."""
    mib = 1 << 20
    return -(-length // mib) * mib


def _expire_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TsTimeoutError("timed out waiting for the write buffer to drain"))


def _type_name(tp: int) -> str:
    try:
        return RequestType(tp).name
    except ValueError:
        return str(tp)


async def open_connection(
    host: str,
    port: int,
    username: str,
    password: str,
    dbname: str,
    *,
    timeout: float = 10.0,
    loop: asyncio.AbstractEventLoop | None = None,
    **options: Any,
) -> Connection:
    """Connect and authenticate within ``timeout`` seconds; return the ready connection.

    ``options`` go to :class:`Connection` (``keepalive_interval``, ``ping_timeout``,
    ``max_frame_size``, ``close_timeout``, ``on_lost``, ``label``). On failure the
    socket is closed and the error raised: ``OSError``/``TsConnectionError``,
    ``TsTimeoutError`` or an ``AuthenticationError``.
    """
    loop = loop or asyncio.get_running_loop()
    deadline = loop.time() + timeout
    options.setdefault("label", f"{host}:{port}")
    conn = await _create(host, port, loop, deadline, options)
    try:
        await conn.authenticate(username, password, dbname, max(deadline - loop.time(), 0.0))
    except BaseException:
        conn.abort()
        raise
    return conn


async def _create(
    host: str, port: int, loop: asyncio.AbstractEventLoop, deadline: float, options: dict[str, Any]
) -> Connection:
    """Open the TCP connection before ``deadline`` (TsTimeoutError otherwise)."""
    remaining = max(deadline - loop.time(), 0.0)
    try:
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(lambda: Connection(loop=loop, **options), host, port),
            remaining,
        )
    except asyncio.TimeoutError:
        raise TsTimeoutError(f"connecting to {host}:{port} timed out") from None
    return conn


async def open_raw(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    loop: asyncio.AbstractEventLoop | None = None,
    **options: Any,
) -> Connection:
    """Connect without authenticating (for PING and INFO); no keepalive."""
    loop = loop or asyncio.get_running_loop()
    options.setdefault("label", f"{host}:{port}")
    options["keepalive_interval"] = None
    return await _create(host, port, loop, loop.time() + timeout, options)
