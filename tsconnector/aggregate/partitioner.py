"""Ready partitioners: :class:`SeriesNamePartitioner` spreads series over ``n`` partitions."""

from __future__ import annotations

import hashlib

from .interfaces import StoredMessage


class SeriesNamePartitioner:
    """Partition by series name: ``blake2b(name) mod n``, the same in every process.

    All messages of one series land in one partition, so a series is processed in order.
    """

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of partitions must be an int >= 1, not {n!r}")
        self.n = n

    def partition_of(self, series: str) -> int:
        """The partition of ``series``."""
        digest = hashlib.blake2b(series.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.n

    def get_partition(self, message: StoredMessage) -> int:
        return self.partition_of(message.stream)

    def __repr__(self) -> str:
        return f"SeriesNamePartitioner({self.n})"
