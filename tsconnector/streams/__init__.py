"""Streams: BTrDB's connection object, asyncio-native, over SiriDB series and the catalog.

Identity and metadata (UUID, collection, tags, annotations, property version) live in
the catalog; each stream's points live in one SiriDB series, ``stream:<uuid>``, so
renaming never moves data. ``StreamSet`` reads many streams in one query. Windows follow
BTrDB's semantics exactly (``[start, start + width)``, time = window start) although
SiriDB's own buckets are ``(end - width, end]``; see :mod:`.windows`::

    db = await tsconnector.streams.connect(client, "sqlite:///catalog.db")
    s = await db.create(uuid.uuid4(), "plant/line1", tags={"name": "temp", "unit": "C"})
    await s.insert([(t0, 21.5), (t0 + 10**9, 21.7)])
    points = await s.values(t0, t0 + 60 * 10**9)

Modules: :mod:`.db` (``StreamDB``, ``connect``), :mod:`.stream`, :mod:`.streamset`,
:mod:`.points`, :mod:`.meta` (tags, annotations, limits), :mod:`.store` (catalog rows,
the ``streams`` SQL view), :mod:`.sqlguard` (read-only SQL check), :mod:`.dataplane`
(queries), :mod:`.windows`, :mod:`.ingest`, :mod:`.transform`, :mod:`.naming`,
:mod:`.timeargs`, :mod:`.errors`.
"""

from __future__ import annotations

from .db import StreamDB, connect
from .errors import (
    AmbiguousStreamError,
    ConflictError,
    InvalidAnnotation,
    InvalidCollection,
    InvalidTagKey,
    InvalidTagValue,
    NotSupportedError,
    QueryRefused,
    SeriesNotFoundError,
    SeriesTypeError,
    StreamExists,
    StreamNotFoundError,
    StreamsError,
)
from .naming import ADOPT_NAMESPACE, SERIES_PREFIX, adopted_uuid, series_for
from .points import RawPoint, StatPoint
from .stream import Stream
from .streamset import StreamSet
from .timeargs import MAXIMUM_TIME, MINIMUM_TIME, to_nanoseconds
from .windows import WindowStats

__all__ = [
    "ADOPT_NAMESPACE",
    "MAXIMUM_TIME",
    "MINIMUM_TIME",
    "SERIES_PREFIX",
    "AmbiguousStreamError",
    "ConflictError",
    "InvalidAnnotation",
    "InvalidCollection",
    "InvalidTagKey",
    "InvalidTagValue",
    "NotSupportedError",
    "QueryRefused",
    "RawPoint",
    "SeriesNotFoundError",
    "SeriesTypeError",
    "StatPoint",
    "Stream",
    "StreamDB",
    "StreamExists",
    "StreamNotFoundError",
    "StreamSet",
    "StreamsError",
    "WindowStats",
    "adopted_uuid",
    "connect",
    "series_for",
    "to_nanoseconds",
]
