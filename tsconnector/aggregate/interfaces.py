"""The value types and contracts of aggregated streams, in one place.

Messages are batches of points of one series (:class:`PointBatch`). Once stored they
are :class:`StoredMessage` with a 64-bit global position; an aggregated stream gives each
one a partition and a gapless position in it (:class:`StreamMessage`). A partitioner is
anything with ``get_partition(message) -> int`` (:class:`MessagePartitioner`).
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..catalog import Session

__all__ = [
    "AckStrategy",
    "Handler",
    "MessagePartitioner",
    "MessagePosition",
    "PointBatch",
    "ProjectionResult",
    "StartAtBeginning",
    "StartAtNextMessage",
    "StartAtPointInTime",
    "StartPoint",
    "StoredMessage",
    "StreamMessage",
    "StreamPartitionStatistic",
    "SubscriptionMessage",
]


def _check_name(series: object) -> str:
    if not isinstance(series, str):
        raise TypeError(f"series name must be str, not {type(series).__name__}")
    if not series or "\x00" in series:
        raise ValueError(f"invalid series name {series!r} (empty or with a NUL character)")
    return series


@dataclass(frozen=True)
class PointBatch:
    """Points of one series: ``timestamps[i]`` (database units) carries ``values[i]``.

    Values are ``int``, ``float`` or ``str`` (one kind per series, as SiriDB stores them).
    Build one from ``[[ts, value], ...]`` with :meth:`from_points`.
    """

    series: str
    timestamps: tuple[int, ...]
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        _check_name(self.series)
        timestamps = tuple(self.timestamps)
        values = tuple(self.values)
        if len(timestamps) != len(values):
            raise ValueError(
                f"{self.series!r}: {len(timestamps)} timestamps but {len(values)} values"
            )
        for ts in timestamps:
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise TypeError(f"{self.series!r}: timestamps must be int, not {ts!r}")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError(f"{self.series!r}: values must be int, float or str, not {value!r}")
        object.__setattr__(self, "timestamps", timestamps)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_points(cls, series: str, points: Any) -> PointBatch:
        """A batch from ``[[ts, value], ...]`` or a ``(timestamps, values)`` pair of arrays."""
        if isinstance(points, tuple) and len(points) == 2 and hasattr(points[0], "__len__"):
            first = points[0]
            if hasattr(first, "tolist") or (
                len(first) > 0 and not isinstance(first[0], (list, tuple))
            ):
                ts, vals = points
                ts = ts.tolist() if hasattr(ts, "tolist") else list(ts)
                vals = vals.tolist() if hasattr(vals, "tolist") else list(vals)
                return cls(series, tuple(ts), tuple(vals))
        pairs = list(points)
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{series!r}: a point must be [timestamp, value], not {pair!r}")
        return cls(series, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def __len__(self) -> int:
        return len(self.timestamps)

    def points(self) -> list[list[Any]]:
        """``[[ts, value], ...]`` (what ``TsClient.insert`` takes)."""
        return [[t, v] for t, v in zip(self.timestamps, self.values)]

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return iter(zip(self.timestamps, self.values))

    @property
    def first_ts(self) -> int:
        """The earliest timestamp (``ValueError`` for an empty batch)."""
        return min(self.timestamps)

    @property
    def last_ts(self) -> int:
        """The latest timestamp (``ValueError`` for an empty batch)."""
        return max(self.timestamps)


class MessagePosition(NamedTuple):
    """Where a message was stored: its stream (series), version and global position."""

    stream: str
    version: int
    global_position: int


@dataclass(frozen=True)
class StoredMessage:
    """A message as stored: a point batch with its identity and place in the store.

    ``version`` counts the messages of its stream from 1; ``global_position`` counts all
    messages of the store from 1, gapless and in commit order; ``added_at`` is when it
    was stored (UTC); ``source`` says how it came in (``journal``, ``tee``, ``catchup``
    or ``append``).
    """

    message_id: str
    stream: str
    version: int
    global_position: int
    added_at: _dt.datetime
    points: PointBatch
    source: str = "append"

    @property
    def message(self) -> PointBatch:
        """The batch of points (depeche_db's name for the payload)."""
        return self.points

    @property
    def occurred_at(self) -> int:
        """The message's time: its earliest point's timestamp (database units)."""
        return self.points.first_ts if len(self.points) else 0


@dataclass(frozen=True)
class StreamMessage:
    """A message at its place in an aggregated stream: ``partition`` and ``position``."""

    partition: int
    position: int
    stored_message: StoredMessage

    @property
    def message_id(self) -> str:
        return self.stored_message.message_id

    @property
    def points(self) -> PointBatch:
        return self.stored_message.points


@dataclass
class SubscriptionMessage:
    """A message handed to a subscription handler.

    ``session`` is the catalog session whose transaction also stores the subscription's
    position: what the handler writes through it is committed together with the
    acknowledgement, exactly once (and rolled back with it). ``attempt`` counts from 1.
    """

    partition: int
    position: int
    stored_message: StoredMessage
    session: Session
    attempt: int = 1

    @property
    def message_id(self) -> str:
        return self.stored_message.message_id

    @property
    def points(self) -> PointBatch:
        return self.stored_message.points


@runtime_checkable
class MessagePartitioner(Protocol):
    """Chooses a message's partition: a deterministic ``int >= 0``."""

    def get_partition(self, message: StoredMessage) -> int:
        """The partition of ``message``; the same message must always give the same one."""
        ...


class StreamPartitionStatistic(NamedTuple):
    """One partition of an aggregated stream: its next message and its last position."""

    partition_number: int
    next_message_id: str
    next_message_position: int
    next_message_occurred_at: int
    max_position: int


class ProjectionResult(NamedTuple):
    """What a projector run did: messages projected, and whether more are waiting."""

    n_updated_messages: int
    more_messages_available: bool


class AckStrategy(enum.Enum):
    """When a subscription stores its position.

    ``SINGLE``: after every message (one transaction per message). ``BATCHED``: once per
    batch (one transaction per batch; a failure keeps what succeeded before it).
    """

    SINGLE = "single"
    BATCHED = "batched"


@dataclass(frozen=True)
class StartAtBeginning:
    """Start a new subscription at position 0 of every partition (the default)."""


@dataclass(frozen=True)
class StartAtNextMessage:
    """Start a new subscription after the last message of every partition (only new ones)."""


@dataclass(frozen=True)
class StartAtPointInTime:
    """Start a new subscription at the first message of each partition whose time is
    ``>= time`` (a ``datetime``, naive = UTC, or an ``int`` in database units)."""

    time: _dt.datetime | int


StartPoint = StartAtBeginning | StartAtNextMessage | StartAtPointInTime


@dataclass
class PartitionLag:
    """A partition's state for one subscription: stored position, last position, lag."""

    partition: int
    position: int
    max_position: int

    @property
    def lag(self) -> int:
        return max(0, self.max_position - self.position)


@dataclass
class SubscriptionStats:
    """Counters of one subscription object, and the lag of every partition."""

    handled: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    lease_conflicts: int = 0
    partitions: dict[int, PartitionLag] = field(default_factory=dict)

    @property
    def lag(self) -> dict[int, int]:
        """Messages waiting per partition."""
        return {p: info.lag for p, info in self.partitions.items()}

    @property
    def total_lag(self) -> int:
        return sum(info.lag for info in self.partitions.values())


def batch_points(series: str, points: Any) -> PointBatch:
    """``points`` as a :class:`PointBatch` of ``series`` (a batch is taken as is)."""
    if isinstance(points, PointBatch):
        if points.series != series:
            raise ValueError(f"batch of {points.series!r} given for series {series!r}")
        return points
    return PointBatch.from_points(series, points)


def as_batches(data: Any) -> list[PointBatch]:
    """``{series: points}``, a batch or a sequence of batches, as a list of batches."""
    if isinstance(data, PointBatch):
        return [data]
    if isinstance(data, dict):
        return [batch_points(s, p) for s, p in data.items()]
    if isinstance(data, Sequence) and all(isinstance(b, PointBatch) for b in data):
        return list(data)
    raise TypeError("expected a PointBatch, a sequence of them, or {series: points}")


#: A subscription's handler: called with each message, sync or async.
Handler = Callable[[SubscriptionMessage], Awaitable[Any] | Any]
