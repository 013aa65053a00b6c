"""The listening sockets of the embedded server, with its own accept loop.

asyncio's accept loop logs a traceback for every failed ``accept()`` when the process is
out of file descriptors (EMFILE/ENFILE), and schedules a retry for each of them: a flood.
This one stops accepting at the connection cap (new clients wait in the listen backlog
until a connection closes), and on EMFILE/ENFILE/ENOBUFS/ENOMEM pauses for a moment and
logs one rate-limited line. Accepted sockets become transports through
``loop.connect_accepted_socket``.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from .ratelog import RateLimitedLog

__all__ = ["Listener", "bind_sockets"]

#: Connections accepted per readiness event before other callbacks get a turn.
ACCEPT_BATCH = 64
#: Seconds to wait before accepting again after running out of descriptors or memory.
RESOURCE_RETRY = 0.5
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


async def bind_sockets(host: str, port: int, backlog: int = 128) -> list[socket.socket]:
    """Listening sockets for ``host`` (every address it resolves to) and ``port``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"could not bind on address {address!r}: {exc.strerror}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"no address to listen on for {host!r}")
    return sockets


class Listener:
    """Accepts connections on ``sockets`` and hands each to ``on_accept``."""

    def __init__(
        self,
        sockets: list[socket.socket],
        on_accept: Callable[[socket.socket], None],
        has_room: Callable[[], bool],
        rate_log: RateLimitedLog,
    ) -> None:
        self.sockets = sockets
        self._on_accept = on_accept
        self._has_room = has_room
        self._log = rate_log
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        #: How often accepting stopped at the connection cap, and for lack of resources.
        self.cap_pauses = 0
        self.resource_errors = 0

    def start(self) -> None:
        """Start (or resume) accepting, unless closed or at the cap."""
        if self._closed or self._reading or self._retry is not None:
            return
        if not self._has_room():
            return
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
        self._reading = True

    def pause(self) -> None:
        """Stop accepting; new connections wait in the kernel's backlog."""
        if self._reading:
            for sock in self.sockets:
                self._loop.remove_reader(sock.fileno())
            self._reading = False

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._has_room():
                self.cap_pauses += 1
                self._log.warning(
                    "connection-cap", "connection limit reached; new connections wait"
                )
                self.pause()
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self.resource_errors += 1
                    self._log.error(
                        "accept-resources",
                        "cannot accept connections (%s); retrying in %.1f s",
                        exc.strerror, RESOURCE_RETRY,
                    )
                    self.pause()
                    self._retry = self._loop.call_later(RESOURCE_RETRY, self._resume)
                else:
                    self._log.error("accept", "accept() failed: %s", exc)
                return
            conn.setblocking(False)
            self._on_accept(conn)

    def _resume(self) -> None:
        self._retry = None
        self.start()

    def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        self._closed = True
        self.pause()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for sock in self.sockets:
            sock.close()
