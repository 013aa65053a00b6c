"""Aggregated streams and subscriptions: depeche_db's model, asyncio-native, on the catalog.

Points written to SiriDB become messages of a :class:`MessageStore` in the catalog (one
message = one batch of points of one series), either through the store's journal
(exactly once) or from SiriDB's tee. An :class:`AggregatedStream` puts the messages of
many series into partitions with gapless positions; its :class:`StreamProjector` is
gap-free without a lookback window and safe in many processes; a :class:`Subscription`
hands the messages to a handler with competing workers, leases, retries and dead
letters::

    store = MessageStore("ingest", catalog, client)
    stream = store.aggregated_stream("all", SeriesNamePartitioner(16), ["%"])
    sub = stream.subscription("alerts", handler, ack_strategy=AckStrategy.BATCHED)
    await store.write("cpu.load", [[ts, 0.5]])
    await sub.run()

Modules: :mod:`.interfaces` (value types, protocols), :mod:`.store`, :mod:`.journal`,
:mod:`.writer`, :mod:`.tee` and :mod:`.teeframes` (the ways in), :mod:`.stream`, :mod:`.projector`,
:mod:`.subscription`, :mod:`.partitioner`, :mod:`.leases`, :mod:`.wakeup`,
:mod:`.schema` (tables), :mod:`.serverview` (counting points on the server).
"""

from __future__ import annotations

from .errors import (
    AggregateError,
    JournalAmbiguous,
    JournalPending,
    LeaseLost,
    MessageNotFound,
    TeeProtocolError,
)
from .interfaces import (
    AckStrategy,
    Handler,
    MessagePartitioner,
    MessagePosition,
    PartitionLag,
    PointBatch,
    ProjectionResult,
    StartAtBeginning,
    StartAtNextMessage,
    StartAtPointInTime,
    StartPoint,
    StoredMessage,
    StreamMessage,
    StreamPartitionStatistic,
    SubscriptionMessage,
    SubscriptionStats,
)
from .journal import RecoveryReport
from .partitioner import SeriesNamePartitioner
from .projector import StreamProjector
from .store import MessageStore
from .stream import AggregatedStream
from .subscription import Subscription
from .tee import ReconcileReport, TeeReceiver
from .writer import JournalWriter

__all__ = [
    "AckStrategy",
    "AggregateError",
    "AggregatedStream",
    "Handler",
    "JournalAmbiguous",
    "JournalPending",
    "JournalWriter",
    "LeaseLost",
    "MessageNotFound",
    "MessagePartitioner",
    "MessagePosition",
    "MessageStore",
    "PartitionLag",
    "PointBatch",
    "ProjectionResult",
    "ReconcileReport",
    "RecoveryReport",
    "SeriesNamePartitioner",
    "StartAtBeginning",
    "StartAtNextMessage",
    "StartAtPointInTime",
    "StartPoint",
    "StoredMessage",
    "StreamMessage",
    "StreamPartitionStatistic",
    "StreamProjector",
    "Subscription",
    "SubscriptionMessage",
    "SubscriptionStats",
    "TeeProtocolError",
    "TeeReceiver",
]
