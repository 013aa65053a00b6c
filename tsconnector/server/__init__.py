"""The embedded SiriDB-protocol server: ``EmbeddedServer`` and ``python -m tsconnector.server``."""

from __future__ import annotations

from .app import EmbeddedServer, parse_precision

__all__ = ["EmbeddedServer", "parse_precision"]
