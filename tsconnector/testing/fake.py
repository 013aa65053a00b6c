"""ScriptedServer: a tiny SiriDB-protocol server whose answers a test scripts per request.

Unlike the embedded server it knows no query language: it authenticates, answers pings,
stores inserted points, echoes queries, and lets a ``handler`` answer anything (error
types, late answers, garbage, silence). Every request is handled in its own task, so
answers can be delayed and reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..protocol import AnswerType, FrameDecoder, FrameError, RequestType, encode_frame, pack, unpack

__all__ = ["NO_ANSWER", "Request", "ScriptedServer"]

log = logging.getLogger("tsconnector.testing.fake")

#: Return this from a handler to send no answer at all.
NO_ANSWER: Any = object()


@dataclass
class Request:
    """One received package, decoded where possible, with a way to answer it."""

    pid: int
    tp: int
    raw: bytes
    data: Any
    writer: asyncio.StreamWriter = field(repr=False)

    def answer(self, tp: int, data: Any = None) -> None:
        """Write an answer frame for this pid (``data`` is qpack-encoded if not None)."""
        payload = b"" if data is None else pack(data)
        if not self.writer.transport.is_closing():
            self.writer.write(encode_frame(self.pid, tp, payload))

    def write_raw(self, data: bytes) -> None:
        """Write arbitrary bytes on this connection."""
        if not self.writer.transport.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        """Abort this connection."""
        self.writer.transport.abort()


Handler = Callable[[Request], Awaitable[Any]]


class ScriptedServer:
    """Serve on ``host:port`` (``port=0`` picks a free port); ``handler`` scripts answers.

    ``handler(request)`` returns ``None`` for the default behaviour, :data:`NO_ANSWER`,
    or ``(answer_type, data)``.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: dict[str, str] | None = None,
        databases: tuple[str, ...] = ("dbtest",),
    ) -> None:
        self.handler = handler
        self.host = host
        self._requested_port = port
        self.users = users if users is not None else {"iris": "siri"}
        self.databases = databases
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: set[asyncio.Task[Any]] = set()
        #: Every request received, in order.
        self.requests: list[Request] = []
        #: Points stored by inserts, per series name, in arrival order.
        self.series: dict[str, list[list[Any]]] = {}
        #: Number of requests per package type.
        self.counts: dict[int, int] = {}

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._writers)

    async def start(self) -> ScriptedServer:
        """Start listening."""
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
        return self

    async def close(self) -> None:
        """Stop listening, drop every connection and wait for the handler tasks."""
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for task in list(self._tasks):
            if task not in self._serving:  # connection tasks end by themselves once aborted
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def drop_all(self) -> None:
        """Abort every client connection."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def __aenter__(self) -> ScriptedServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._serving.add(task)
        self._writers.add(writer)
        decoder = FrameDecoder()
        state = {"auth": False}
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                try:
                    frames = decoder.feed(data)
                except FrameError:
                    break
                for pid, tp, raw in frames:
                    try:
                        decoded = unpack(raw) if raw else None
                    except Exception:
                        decoded = raw
                    req = Request(pid, tp, raw, decoded, writer)
                    self.requests.append(req)
                    self.counts[tp] = self.counts.get(tp, 0) + 1
                    child = asyncio.create_task(self._dispatch(req, state))
                    self._tasks.add(child)
                    child.add_done_callback(self._tasks.discard)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)
            self._serving.discard(task)

    async def _dispatch(self, req: Request, state: dict[str, bool]) -> None:
        if self.handler is not None:
            try:
                reply = await self.handler(req)
            except Exception:
                log.exception("handler failed on %r; closing the connection", req)
                req.close()
                return
            if reply is NO_ANSWER:
                return
            if reply is not None:
                req.answer(*reply)
                return
        req_tp = req.tp
        if req_tp == RequestType.PING:
            req.answer(AnswerType.RES_ACK)
        elif req_tp == RequestType.AUTH:
            req.answer(*self._auth(req.data, state))
        elif req_tp in (RequestType.INFO, RequestType.LOADDB):
            return  # SiriDB 2.0.55 never answers these
        elif not state["auth"]:
            req.answer(AnswerType.ERR_NOT_AUTHENTICATED)
        elif req_tp == RequestType.QUERY:
            req.answer(AnswerType.RES_QUERY, {"echo": req.data[0] if req.data else None})
        elif req_tp == RequestType.INSERT:
            req.answer(*self._insert(req.data))
        # other types get no answer, as SiriDB 2.0.55 does for INFO and LOADDB

    def _auth(self, data: Any, state: dict[str, bool]) -> tuple[int, Any]:
        if not isinstance(data, list) or len(data) != 3:
            return (AnswerType.ERR_AUTH_CREDENTIALS, None)
        user, password, dbname = data
        if self.users.get(user) != password:
            return (AnswerType.ERR_AUTH_CREDENTIALS, None)
        if dbname not in self.databases:
            return (AnswerType.ERR_AUTH_UNKNOWN_DB, None)
        state["auth"] = True
        return (AnswerType.RES_AUTH_SUCCESS, None)

    def _insert(self, data: Any) -> tuple[int, Any]:
        if isinstance(data, list):
            items = [(s.get("name"), s.get("points")) for s in data if isinstance(s, dict)]
        elif isinstance(data, dict):
            items = list(data.items())
        else:
            return (AnswerType.ERR_INSERT, {"error_msg": "Expecting an array or map."})
        count = 0
        for name, points in items:
            self.series.setdefault(str(name), []).extend(points or [])
            count += len(points or [])
        return (AnswerType.RES_INSERT, {"success_msg": f"Successfully inserted {count} point(s)."})
