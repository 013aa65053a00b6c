"""The writer's own errors."""

from __future__ import annotations

from ..exceptions import TsConnectorError

__all__ = ["BufferFull", "WriterClosedError"]


class BufferFull(TsConnectorError):
    """``add(..., block=False)`` found no room in the writer's buffer."""


class WriterClosedError(TsConnectorError):
    """Points were added to a writer that is closing or closed."""
