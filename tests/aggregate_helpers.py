"""Helpers of the aggregate tests: worker processes and shared backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from shared_helpers import WorkerProcs

WORKER = str(Path(__file__).with_name("aggregate_worker.py"))
SHARED = pytest.mark.parametrize(
    "catalog_backend",
    ["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)


class Workers(WorkerProcs):
    """Aggregate worker processes: each prints ``ready``; ``tell`` writes ``next``."""

    def __init__(self) -> None:
        super().__init__(WORKER)

    def tell(self, procs: list[asyncio.subprocess.Process] | None = None) -> None:
        """Let the workers (all, or those of ``procs``) take their next step."""
        self.send(b"next\n", procs)
