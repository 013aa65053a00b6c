"""The writer's counters: kept in :class:`Counters`, reported as :class:`WriterStats`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Counters", "WriterStats"]


@dataclass(frozen=True)
class WriterStats:
    """A snapshot of a writer's counters (points unless said otherwise).

    ``failed``: points given up (``on_error``); ``lost``: points of spooled batches that
    damaged spool bytes destroyed (also reported through ``on_error`` and the log);
    ``in_flight``: batches being delivered right now.
    """

    added: int
    buffered: int
    spooled: int
    sent: int
    replayed: int
    failed: int
    lost: int
    checked_present: int
    batches_sent: int
    retries: int
    ambiguous: int
    peak_buffered: int
    position: int
    spool_bytes: int
    last_error: str | None
    in_flight: int = 0


@dataclass
class Counters:
    """What the writer has done so far (the cumulative part of :class:`WriterStats`)."""

    added: int = 0
    sent: int = 0
    replayed: int = 0
    failed: int = 0
    lost: int = 0
    present: int = 0
    batches_sent: int = 0
    retries: int = 0
    ambiguous: int = 0
    peak: int = 0
    last_error: str | None = None
