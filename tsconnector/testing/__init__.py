"""Test helpers for code that uses tsconnector: a fault-injecting proxy, a multi-pool
cluster of embedded servers and pytest fixtures.

The pytest plugin (``tsconnector.testing.plugin``) is registered through the ``pytest11``
entry point, so installed users get the ``embedded_server``, ``tsclient`` and
``fault_proxy`` fixtures without any import.
"""

from __future__ import annotations

from .cluster import EmbeddedCluster
from .proxy import FaultProxy

__all__ = ["EmbeddedCluster", "FaultProxy"]
