"""One client connection of the embedded server: framing, dispatch, ordering, backpressure.

Requests are handled as SiriDB 2.0.55 handles them: ping, auth, service and file
requests are answered at once; queries and inserts are checked at once (authentication,
access, payload shape) and then run in arrival order by a per-connection worker, which
answers only once the journal records of a request are durable and applied (or answers
``ERR_SERVER`` when their write failed: nothing was stored). Malformed payloads get the
same treatment as on the real server (an answer, no answer, or a closed connection) and
never affect other connections. An internal error is answered too, and recorded
(:mod:`.internal`). Before authentication a connection may buffer only
``max_unauth_bytes``; the app enforces the handshake and idle timeouts through
:meth:`ClientProtocol.check_timeouts`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..protocol import (
    HEADER,
    AnswerType,
    Frame,
    FrameDecoder,
    FrameError,
    RequestType,
    encode_header,
)
from ..protocol.constants import EMPTY_ANSWERS
from . import qptokens as qt
from .files import file_payload
from .insert import InsertBatch, InsertRejected, parse_insert
from .internal import running
from .model import ACCESS_BITS, ACCESS_PROFILES, Database, User
from .query.answer import is_large_answer
from .query.precision import effective_precision
from .service import handle_service
from .storage import JournalError
from .tee import tee_payload
from .wire import error_payload, iter_pack_answer, pack_answer, success_payload

if TYPE_CHECKING:
    from .limits import ServerLimits
    from .state import ServerState

log = logging.getLogger(__name__)

#: SiriDB answers "Query too long." for query packages above this many bytes.
MAX_QUERY_PKG_SIZE = 65535
#: Stop reading from a client with this many queued queries/inserts.
MAX_QUEUED = 256
#: Let other connections run after this many queued jobs in a row.
JOBS_PER_TURN = 64
#: Journaled inserts of one connection waiting for their fsync at once (they share it);
#: the next one waits for the oldest.
MAX_PIPELINED = 64
#: Queries answered directly from one read while nothing is queued (no task per query);
#: the rest of that read goes through the queue.
INLINE_PER_READ = 128
#: Write gathered answers once this many are waiting, so the client can start on them
#: while the rest are computed (server and client work in parallel, not in turns).
FLUSH_EVERY = 16
#: Answers below this size are gathered and written together; larger ones at once.
_SMALL = 65536

_FILE_TYPES = frozenset(
    {
        RequestType.FILE_SERVERS,
        RequestType.FILE_USERS,
        RequestType.FILE_GROUPS,
        RequestType.FILE_DATABASE,
    }
)
_INSERT_BIT = ACCESS_BITS["insert"]
_pack_header = HEADER.pack
_FULL = ACCESS_PROFILES["full"]
_SERVICE_OK = frozenset({AnswerType.ACK_SERVICE, AnswerType.ACK_SERVICE_DATA})
#: Statements that may change the database: evaluated only once every record journaled
#: before them is applied, so that they see (and validate against) all of it.
_MAY_WRITE = re.compile(r"\s*(?:timeit\s+)?(?:alter|create|drop|grant|revoke)\b", re.I)
QUERY_FAILED = "Critical error while processing the query."
REQUEST_FAILED = "Critical error while processing the request."

#: A queued request: answers at once (returns None) or returns what to await.
Job = Callable[[], Awaitable[None] | None]


def access_denied(user: User, what: str) -> bytes:
    """SiriDB's ERR_USER_ACCESS payload for ``user`` lacking ``what``."""
    return error_payload(f"Access denied. User '{user.name}' has no '{what}' privileges.")


class ClientProtocol(asyncio.Protocol):
    """Serves one client connection."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.decoder = FrameDecoder(state.max_frame_size)
        self.transport: asyncio.Transport | None = None
        self.db: Database | None = None
        self.user: User | None = None
        self.session: Any = None
        #: Authenticated, or made a valid service request (ends the handshake timeout).
        self.authenticated = False
        self.connected_at = 0.0
        self.last_active = 0.0
        self.paused_since: float | None = None
        self.closing_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[tuple[int, Job, bool]] = deque()
        # Journaled inserts not yet durable; their answers go out from a done callback.
        self._tickets: deque[asyncio.Future[None]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        # Small answers wait here until the end of the loop iteration, then go out in
        # one write: pipelined requests cost one send() instead of one each.
        self._out: list[bytes] = []
        # Answers of queries run inline go out after those of the same iteration: SiriDB
        # answers pings (and rejections) at once and query results a little later.
        self._out_late: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._inline_budget = 0

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.connected_at = self.last_active = self._loop.time()
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._drop_output()
        self.state.connections.discard(self)
        self._queue.clear()
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._writable.set()
        self.state.on_connection_lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._loop is not None:
            self.paused_since = self._loop.time()
        self._writable.clear()
        self._set_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.paused_since = None
        self._writable.set()
        self._set_reading()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._loop is not None:
            self.last_active = self._loop.time()
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self.state.rate_log.info("framing", "closing client connection: %s", exc)
            self._dispatch_all(exc.frames)  # the frames before the bad header are valid
            self.close()
            return
        self._dispatch_all(frames)
        if not self.authenticated and self.decoder.buffered > self.state.limits.max_unauth_bytes:
            self.state.rate_log.warning(
                "unauth-bytes",
                "closing an unauthenticated connection that buffered %d bytes (limit %d)",
                self.decoder.buffered, self.state.limits.max_unauth_bytes,
            )
            self.abort()

    def _dispatch_all(self, frames: list[Frame]) -> None:
        self._inline_budget = INLINE_PER_READ
        dispatch = self._dispatch
        for pid, tp, payload in frames:
            if self._closed:
                return
            try:
                dispatch(pid, tp, payload)
            except Exception as exc:  # a bug must never take the server down
                self._internal_error(pid, f"handling package type {tp}", exc)
        self._flush()  # this read's answers go out now, not one loop iteration later

    def _internal_error(
        self, pid: int, where: str, exc: BaseException, message: str = REQUEST_FAILED
    ) -> None:
        """Record an internal error and answer the request that hit it."""
        self.state.internal.record(where, exc)
        self.send(pid, AnswerType.ERR_MSG, error_payload(message))

    def check_timeouts(self, now: float, limits: ServerLimits) -> None:
        """Close this connection when it outstayed a limit (called by the app's sweep)."""
        if self.transport is None:
            return
        if self._closed:  # closing, but the client does not take its last answers
            if self.closing_since is not None and now - self.closing_since > limits.close_timeout:
                self.abort()
            return
        if not self.authenticated:
            timeout = limits.handshake_timeout
            if timeout is not None and now - self.connected_at > timeout:
                self.state.rate_log.info(
                    "handshake-timeout",
                    "closing a connection that did not authenticate within %g s", timeout,
                )
                self.abort()
            return
        idle = limits.idle_timeout
        if idle is None:
            return
        if self.paused_since is not None and now - self.paused_since > idle:
            self.state.rate_log.info(
                "stalled-reader", "aborting a connection that read nothing for %g s", idle
            )
            self.abort()
        elif (
            not self._queue
            and self._worker is None
            and not self._inserts_pending()
            and now - self.last_active > idle
        ):
            self.state.rate_log.info("idle-timeout", "closing a connection idle for %g s", idle)
            self.close()

    def eof_received(self) -> bool:
        return False

    # -- helpers -------------------------------------------------------------------------
    def close(self) -> None:
        """Close after pending answers were written."""
        self._flush()
        if not self._closed and self._loop is not None:
            self.closing_since = self._loop.time()
        self._closed = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (tests use this to simulate failures)."""
        self._closed = True
        self._drop_output()
        self._queue.clear()
        if self.transport is not None:
            self.transport.abort()

    def send(self, pid: int, tp: int, payload: bytes = b"", *, late: bool = False) -> None:
        """Queue (small) or write (large) one answer frame."""
        if len(payload) < _SMALL:
            self._send_small(pid, tp, payload, self._out_late if late else self._out)
            return
        if self._closed or self.transport is None or self.transport.is_closing():
            return
        self._flush()
        # Two write() calls, not writelines(): writelines does not pause the protocol on
        # some Python versions (3.12.0-3.12.8, 3.13.0-3.13.1, CPython gh-127655), and
        # joining would copy a large payload.
        self.transport.write(encode_header(len(payload), pid, tp))
        self.transport.write(payload)

    def _send_small(self, pid: int, tp: int, payload: bytes, out: list[bytes]) -> None:
        """Add a small answer frame to ``out`` (this iteration's answers or the late ones)."""
        if self._closed or self.transport is None or self.transport.is_closing():
            return
        out.append(_pack_header(len(payload), pid, tp, tp ^ 0xFF) + payload)
        if len(self._out) + len(self._out_late) >= FLUSH_EVERY:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write the answers collected in this loop iteration as one buffer."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out = self._out
        if self._out_late:
            out.extend(self._out_late)
            self._out_late = []
        if not out:
            return
        self._out = []
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _drop_output(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out.clear()
        self._out_late.clear()

    def _set_reading(self) -> None:
        if self.transport is None or self._closed:
            return
        want_pause = self._write_paused or len(self._queue) >= MAX_QUEUED
        if want_pause and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        elif not want_pause and self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    def _enqueue(self, pid: int, job: Job, *, insert: bool = False) -> None:
        self._queue.append((pid, job, insert))
        if len(self._queue) >= MAX_QUEUED:
            self._set_reading()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        done = 0
        try:
            while self._queue and not self._closed:
                if self._write_paused:
                    await self._writable.wait()
                    continue
                pid, job, insert = self._queue.popleft()
                try:
                    if self._tickets:
                        # Inserts share fsyncs, but what follows them sees them applied.
                        await self._wait_tickets(MAX_PIPELINED - 1 if insert else 0)
                    pending = job()
                    if pending is not None:
                        await pending
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._internal_error(pid, "running a queued request", exc)
                if self._read_paused and len(self._queue) < MAX_QUEUED // 2:
                    self._set_reading()
                done += 1
                if done % JOBS_PER_TURN == 0:
                    await asyncio.sleep(0)
        finally:
            if asyncio.current_task() is self._worker:
                self._worker = None

    async def _wait_tickets(self, keep: int) -> None:
        """Wait until at most ``keep`` journaled inserts of this connection are pending."""
        tickets = self._tickets
        while tickets and tickets[0].done():
            tickets.popleft()
        if len(tickets) > keep:
            await asyncio.wait([tickets[len(tickets) - keep - 1]])  # they finish in order
            while tickets and tickets[0].done():
                tickets.popleft()

    def _inserts_pending(self) -> bool:
        tickets = self._tickets
        while tickets and tickets[0].done():
            tickets.popleft()
        return bool(tickets)

    # -- dispatch ----------------------------------------------------------------------
    def _dispatch(self, pid: int, tp: int, payload: bytes) -> None:
        if tp == RequestType.QUERY:
            self._on_query(pid, payload)
        elif tp == RequestType.INSERT:
            self._on_insert(pid, payload)
        elif tp == RequestType.AUTH:
            self._on_auth(pid, payload)
        elif tp == RequestType.PING:
            self.send(pid, AnswerType.RES_ACK)
        elif tp in _FILE_TYPES:
            self._on_file(pid, tp)
        elif tp == RequestType.REGISTER_SERVER:
            self._on_register_server(pid)
        elif tp == RequestType.SERVICE:
            state = self.state
            answer, data = handle_service(
                payload, state.accounts, state.database_names, state.version
            )
            if answer in _SERVICE_OK:
                self.authenticated = True
            self.send(pid, answer, data)
        # INFO (4), LOADDB (5) and unknown types get no answer, as on SiriDB 2.0.55.

    def _authenticated(self, pid: int) -> bool:
        if self.db is None:
            self.send(pid, AnswerType.ERR_NOT_AUTHENTICATED)
            return False
        return True

    def _on_auth(self, pid: int, payload: bytes) -> None:
        reader = qt.Reader(payload)
        kind, _ = reader.next()
        if not qt.is_array(kind):
            return
        items = []
        for _ in range(3):
            kind, raw = reader.next()
            if kind != qt.RAW:
                return  # malformed auth: SiriDB logs it and never answers
            items.append(qt.decode_text(raw))
        username, password, dbname = items
        db = self.state.databases.get(dbname)
        if db is None:
            self.send(pid, AnswerType.ERR_AUTH_UNKNOWN_DB)
            return
        user = db.users.get(username)
        if user is None or user.password != password:
            self.send(pid, AnswerType.ERR_AUTH_CREDENTIALS)
            return
        self.db, self.user = db, user
        self.authenticated = True
        self.session = self.state.new_session(db, user)
        self.send(pid, AnswerType.RES_AUTH_SUCCESS)

    def _on_query(self, pid: int, payload: bytes) -> None:
        db = self.db
        if db is None:
            self.send(pid, AnswerType.ERR_NOT_AUTHENTICATED)
            return
        if len(payload) > MAX_QUERY_PKG_SIZE:
            self.send(pid, AnswerType.ERR_QUERY, error_payload("Query too long."))
            return
        request = qt.read_query(payload)
        if request is None:
            return  # malformed: SiriDB does not answer
        raw, value = request
        precision = effective_precision(value, db.precision)
        query = raw.decode("utf-8", "replace")
        session = self.session
        store = self.state.stores.get(db.name) if self.state.stores else None
        if store is not None and store.pending and _MAY_WRITE.match(query):
            # Validate against every record journaled before it, once they are applied.
            self._enqueue(pid, lambda: self._query_after_settle(pid, session, query, precision))
            return
        if (
            self._inline_budget > 0
            and self._worker is None
            and not self._queue
            and not self._write_paused
            and not (self._tickets and self._inserts_pending())
        ):
            # Nothing is queued ahead of it: answer now, without a job or a task.
            self._inline_budget -= 1
            held = self._answer_now(pid, session, query, precision, late=True)
            if held is not None:  # its answer must wait for its journal records
                self._enqueue(pid, lambda: self._answer_when_durable(pid, *held))
            return
        self._enqueue(pid, lambda: self._run_query(pid, session, query, precision))

    def _answer_now(
        self, pid: int, session: Any, query: str, precision: int | None, *, late: bool
    ) -> tuple[asyncio.Future[None] | None, int, Any] | None:
        """Execute and answer a query; returns its journal ticket and result instead of
        answering when the query journaled records (answered once they are applied)."""
        store = self.state.stores.get(session.db.name) if self.state.stores else None
        before = store.seq if store is not None else 0
        token = running.set(self.state.internal)
        try:
            tp, answer = self.state.execute(session, query, precision)
        except JournalError as exc:
            self._journal_failed(pid, exc)
            return None
        except Exception as exc:  # a bug in the query engine must not leave the client waiting
            self._internal_error(pid, f"evaluating {query[:200]!r}", exc, QUERY_FAILED)
            return None
        finally:
            running.reset(token)
        if store is not None and store.seq != before:
            ticket = store.ticket()
            if ticket is not None:
                return ticket, tp, answer
        if is_large_answer(answer):
            return None, tp, answer  # packed in turns with other clients
        self._send_answer(pid, tp, answer, late=late)
        return None

    def _run_query(
        self, pid: int, session: Any, query: str, precision: int | None
    ) -> Awaitable[None] | None:
        """A queued query: answered at once, or a coroutine that waits for its records."""
        held = self._answer_now(pid, session, query, precision, late=False)
        return None if held is None else self._answer_when_durable(pid, *held)

    async def _query_after_settle(
        self, pid: int, session: Any, query: str, precision: int | None
    ) -> None:
        """A query that may write: run once every earlier journal record is applied."""
        store = self.state.stores.get(session.db.name)
        if store is not None:
            await store.settle()
        pending = self._run_query(pid, session, query, precision)
        if pending is not None:
            await pending

    async def _answer_when_durable(
        self, pid: int, ticket: asyncio.Future[None] | None, tp: int, answer: Any
    ) -> None:
        """Answer once the request's journal records are applied; ERR_SERVER (nothing
        stored) when their write failed. A large select answer (no ticket) is packed
        chunk by chunk, other connections running in between."""
        if ticket is not None:
            try:
                await ticket
            except JournalError as exc:
                self._journal_failed(pid, exc)
                return
        if not is_large_answer(answer):
            self._send_answer(pid, tp, answer)
            return
        pieces: list[bytes] = []
        try:
            for piece in iter_pack_answer(answer):
                pieces.append(piece)
                await asyncio.sleep(0)
        except Exception as exc:  # never leave a request unanswered
            self.state.internal.record("packing an answer", exc)
            self.send(pid, AnswerType.ERR_MSG, error_payload(QUERY_FAILED))
            return
        self.send(pid, tp, b"".join(pieces))

    def _journal_failed(self, pid: int, exc: JournalError) -> None:
        """Answer ERR_SERVER: the client may retry, as nothing of the request was stored."""
        self.send(pid, AnswerType.ERR_SERVER, error_payload(str(exc)))

    def _send_answer(self, pid: int, tp: int, answer: Any, *, late: bool = False) -> None:
        try:
            payload = b"" if answer is None and tp in EMPTY_ANSWERS else pack_answer(answer)
        except Exception as exc:  # never leave a request unanswered
            self.state.internal.record("packing an answer", exc)
            tp, payload = AnswerType.ERR_MSG, error_payload(QUERY_FAILED)
        if len(payload) < _SMALL:
            self._send_small(pid, tp, payload, self._out_late if late else self._out)
        else:
            self.send(pid, tp, payload, late=late)

    def _on_insert(self, pid: int, payload: bytes) -> None:
        if not self._authenticated(pid):
            return
        db, user = self.db, self.user
        assert db is not None
        assert user is not None
        if user.access & _INSERT_BIT != _INSERT_BIT:
            self.send(pid, AnswerType.ERR_USER_ACCESS, access_denied(user, "insert"))
            return
        refusal = self.state.control.insert_refusal(self.state.server_name)
        if refusal is not None:  # backup mode
            self.send(pid, AnswerType.ERR_SERVER, error_payload(refusal))
            return
        try:
            batch = parse_insert(payload, db.precision)
        except InsertRejected as exc:
            self.send(pid, AnswerType.ERR_INSERT, error_payload(str(exc)))
            return
        arrivals = self.state.arrivals
        if arrivals is not None:
            arrivals.record(batch.series)
        if batch.count:
            self.state.forward_insert(db, lambda: tee_payload(batch.points()))
        self._enqueue(pid, lambda: self._run_insert(pid, db, batch), insert=True)

    def _run_insert(self, pid: int, db: Database, batch: InsertBatch) -> None:
        """Store a batch: answered at once in memory, once applied when journaled (the
        worker goes on meanwhile, so that pipelined inserts share one fsync)."""
        answer = success_payload(f"Successfully inserted {batch.count} point(s).")
        store = self.state.stores.get(db.name) if batch.count else None
        if store is None:
            if batch.count:
                db.insert(batch.series)
            self.send(pid, AnswerType.RES_INSERT, answer)
            return None
        try:
            db.insert(batch.series)  # journaled; applied once durable
        except JournalError as exc:
            self._journal_failed(pid, exc)
            return None
        ticket = store.ticket()
        if ticket is None:
            self.send(pid, AnswerType.RES_INSERT, answer)
            return None
        self._tickets.append(ticket)
        ticket.add_done_callback(
            functools.partial(self._on_durable, pid, AnswerType.RES_INSERT, answer)
        )
        return None

    def _on_durable(self, pid: int, tp: int, answer: bytes, ticket: asyncio.Future[None]) -> None:
        """Answer a journaled insert once its ticket is done (applied, or failed)."""
        if ticket.cancelled():
            return
        error = ticket.exception()
        if error is None:
            self.send(pid, tp, answer)
        elif isinstance(error, JournalError):
            self._journal_failed(pid, error)
        else:
            self._internal_error(pid, "waiting for the journal", error)

    def _on_file(self, pid: int, tp: int) -> None:
        if not self._authenticated(pid):
            return
        assert self.db is not None
        assert self.user is not None
        if self.user.access & _FULL != _FULL:
            self.send(pid, AnswerType.ERR_USER_ACCESS, access_denied(self.user, "full"))
            return
        state = self.state
        data = file_payload(tp, self.db, state.host_name, state.server_port, state.salt)
        self.send(pid, AnswerType.RES_FILE, data)

    def _on_register_server(self, pid: int) -> None:
        if not self._authenticated(pid):
            return
        assert self.user is not None
        if self.user.access & _FULL != _FULL:
            self.send(pid, AnswerType.ERR_USER_ACCESS, access_denied(self.user, "full"))
            return
        self.send(pid, AnswerType.ERR)  # the embedded server is a single-server cluster
