"""Limits that keep one embedded server available to everyone under load or attack.

SiriDB has no limits on connections, handshakes or idle sockets; the embedded server
sets sane ones, each configurable on ``EmbeddedServer(...)`` and the command line.
Authenticated clients keep SiriDB's own frame limit (40 MiB, ``max_frame_size``).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "FD_RESERVE", "ServerLimits", "fd_capped_connections"]

#: File descriptors kept free for the journal, snapshots and the listener.
FD_RESERVE = 64


@dataclass(frozen=True)
class ServerLimits:
    """Per-server limits; ``None`` timeouts switch that timeout off."""

    #: Open client connections; more wait in the listen backlog until one closes.
    max_connections: int = 1000
    #: Seconds a new connection has to authenticate (or make a service request).
    handshake_timeout: float | None = 10.0
    #: Seconds an authenticated connection may send nothing (and read nothing) at all.
    idle_timeout: float | None = 600.0
    #: Bytes an unauthenticated connection may have buffered (an incomplete frame).
    max_unauth_bytes: int = 65536
    #: Seconds ``close()`` waits for clients to take their last answers before aborting.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_unauth_bytes < 1024:
            raise ValueError("max_unauth_bytes must be at least 1024")
        for name in ("handshake_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (or None for no timeout)")
        if self.close_timeout < 0:
            raise ValueError("close_timeout must not be negative")


DEFAULT_LIMITS = ServerLimits()


def fd_capped_connections(wanted: int) -> int:
    """``wanted``, lowered so that connections can never exhaust the process's file
    descriptors (``RLIMIT_NOFILE`` minus :data:`FD_RESERVE`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))
