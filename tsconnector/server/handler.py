"""One client connection of the embedded server: framing, dispatch, ordering, backpressure.

Requests are handled as SiriDB 2.0.55 handles them: ping, auth, service and file
requests are answered at once; queries and inserts are checked at once (authentication,
access, payload shape) and then run in arrival order by a per-connection worker, which
makes every journal record durable before it answers. Malformed payloads get the same
treatment as on the real server (an answer, no answer, or a closed connection) and never
affect other connections.
"""

from __future__ import annotations

import asyncio
import logging
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
from .model import ACCESS_BITS, ACCESS_PROFILES, Database, User
from .query.precision import effective_precision
from .service import handle_service
from .tee import tee_payload
from .wire import error_payload, pack_answer, success_payload

if TYPE_CHECKING:
    from .state import ServerState

log = logging.getLogger(__name__)

#: SiriDB answers "Query too long." for query packages above this many bytes.
MAX_QUERY_PKG_SIZE = 65535
#: Stop reading from a client with this many queued queries/inserts.
MAX_QUEUED = 256
#: Let other connections run after this many queued jobs in a row.
JOBS_PER_TURN = 64
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
        self._queue: deque[Job] = deque()
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

    def pause_writing(self) -> None:
        self._write_paused = True
        self._writable.clear()
        self._set_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._writable.set()
        self._set_reading()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            log.info("closing client connection: %s", exc)
            self._dispatch_all(exc.frames)  # the frames before the bad header are valid
            self.close()
            return
        self._dispatch_all(frames)

    def _dispatch_all(self, frames: list[Frame]) -> None:
        self._inline_budget = INLINE_PER_READ
        dispatch = self._dispatch
        for pid, tp, payload in frames:
            if self._closed:
                return
            try:
                dispatch(pid, tp, payload)
            except Exception:  # a bug must never take the server down
                log.exception("error handling package type %d (pid %d)", tp, pid)
        self._flush()  # this read's answers go out now, not one loop iteration later

    def eof_received(self) -> bool:
        return False

    # -- helpers -------------------------------------------------------------------------
    def close(self) -> None:
        """Close after pending answers were written."""
        self._flush()
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
        self.transport.writelines((encode_header(len(payload), pid, tp), payload))

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

    def _enqueue(self, job: Job) -> None:
        self._queue.append(job)
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
                job = self._queue.popleft()
                try:
                    pending = job()
                    if pending is not None:
                        await pending
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("error in a queued request")
                if self._read_paused and len(self._queue) < MAX_QUEUED // 2:
                    self._set_reading()
                done += 1
                if done % JOBS_PER_TURN == 0:
                    await asyncio.sleep(0)
        finally:
            if asyncio.current_task() is self._worker:
                self._worker = None

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
        if (
            self._inline_budget > 0
            and self._worker is None
            and not self._queue
            and not self._write_paused
        ):
            # Nothing is queued ahead of it: answer now, without a job or a task.
            self._inline_budget -= 1
            held = self._answer_now(pid, session, query, precision, late=True)
            if held is not None:  # its answer must wait for its journal records
                tp, answer = held
                self._enqueue(lambda: self._sync_and_answer(pid, session, tp, answer))
            return
        self._enqueue(lambda: self._run_query(pid, session, query, precision))

    def _answer_now(
        self, pid: int, session: Any, query: str, precision: int | None, *, late: bool
    ) -> tuple[int, Any] | None:
        """Execute and answer a query; returns its result instead of answering when the
        query wrote journal records that are not durable yet."""
        try:
            result = self.state.execute(session, query, precision)
        except Exception:  # a bug in the query engine must not leave the client waiting
            log.exception("query failed: %r", query)
            message = "Critical error while processing the query."
            self.send(pid, AnswerType.ERR_MSG, error_payload(message))
            return None
        store = self.state.stores.get(session.db.name)
        if store is not None and store.pending:
            return result
        self._send_answer(pid, result[0], result[1], late=late)
        return None

    def _run_query(
        self, pid: int, session: Any, query: str, precision: int | None
    ) -> Awaitable[None] | None:
        """A queued query: answered at once, or a coroutine that syncs and then answers."""
        held = self._answer_now(pid, session, query, precision, late=False)
        return None if held is None else self._sync_and_answer(pid, session, *held)

    async def _sync_and_answer(self, pid: int, session: Any, tp: int, answer: Any) -> None:
        """Make the query's journal records durable, then answer."""
        store = self.state.stores.get(session.db.name)
        if store is not None and store.pending:
            try:
                await store.sync()
            except Exception as exc:
                log.error("journal write failed: %s", exc)
                self.send(pid, AnswerType.ERR_SERVER, error_payload(f"Journal failure: {exc}"))
                return
        self._send_answer(pid, tp, answer)

    def _send_answer(self, pid: int, tp: int, answer: Any, *, late: bool = False) -> None:
        payload = b"" if answer is None and tp in EMPTY_ANSWERS else pack_answer(answer)
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
        if batch.count:
            self.state.forward_insert(db, lambda: tee_payload(batch.series))
        self._enqueue(lambda: self._run_insert(pid, db, batch))

    async def _run_insert(self, pid: int, db: Database, batch: InsertBatch) -> None:
        if batch.count:
            db.insert(batch.series)
            store = self.state.stores.get(db.name)
            if store is not None:
                try:
                    await store.sync()
                except Exception as exc:
                    log.error("journal write failed: %s", exc)
                    self.send(
                        pid, AnswerType.ERR_SERVER, error_payload(f"Journal failure: {exc}")
                    )
                    return
        message = f"Successfully inserted {batch.count} point(s)."
        self.send(pid, AnswerType.RES_INSERT, success_payload(message))

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
