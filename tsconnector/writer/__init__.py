"""BufferedWriter: batching ingest that loses nothing (DESIGN decision 5).

Points are buffered in add order, cut into batches by size or age (one insert per
batch, same-series points merged) and delivered by background tasks, several batches
at once. Memory is bounded by ``max_buffer_points`` (``add`` waits, or raises
:class:`BufferFull`). With a ``spool_dir`` every batch is journaled to disk before it is
sent and deleted only after the server acknowledged it (and every batch before it), so
neither an outage nor a crash of the writer loses it. Unknown outcomes are resolved by
reading the batch's time window back (decision 1).

One module per concern: :mod:`.points` (input checks, pieces), :mod:`.buffer`,
:mod:`.batch`, :mod:`.spooling` (spool I/O), :mod:`.readback`, :mod:`.core` (the writer:
cutting and delivery), :mod:`.stats`, :mod:`.errors`.
"""

from .core import BufferedWriter
from .errors import BufferFull, WriterClosedError
from .points import check_series_name
from .stats import WriterStats

__all__ = [
    "BufferFull",
    "BufferedWriter",
    "WriterClosedError",
    "WriterStats",
    "check_series_name",
]
