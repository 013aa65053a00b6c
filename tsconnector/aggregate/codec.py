"""How a point batch is kept in the catalog: msgpack ``[timestamps, values]``."""

from __future__ import annotations

import msgpack

from .interfaces import PointBatch


def encode_points(batch: PointBatch) -> bytes:
    """The payload bytes of ``batch`` (series name not included: it has its own column)."""
    payload: bytes = msgpack.packb([list(batch.timestamps), list(batch.values)], use_bin_type=True)
    return payload


def decode_points(series: str, payload: bytes) -> PointBatch:
    """The batch of ``series`` stored as ``payload``."""
    timestamps, values = msgpack.unpackb(bytes(payload), raw=False, strict_map_key=False)
    return PointBatch(series, tuple(timestamps), tuple(values))
