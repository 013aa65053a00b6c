"""Which SiriDB series holds a stream's points, and stream UUIDs from user input.

A stream created here writes to the series ``stream:<uuid>`` (the canonical lowercase
form), which depends on nothing but the UUID: renaming a stream or moving it to another
collection never moves its points. The catalog records the series of every stream, so
a series that existed before (``adopt``) keeps its own name; its stream gets the
deterministic UUID ``uuid5(ADOPT_NAMESPACE, series_name)``, the same in every process
and on every run.
"""

from __future__ import annotations

import re
import uuid as _uuid
from typing import Any

__all__ = [
    "ADOPT_NAMESPACE",
    "SERIES_PREFIX",
    "adopted_uuid",
    "is_uuid_text",
    "series_for",
    "to_uuid",
]

#: The namespace of adopted streams' UUIDs:
#: ``uuid5(NAMESPACE_URL, "tsconnector:streams:adopted-series")``.
ADOPT_NAMESPACE = _uuid.UUID("5d97dd59-1071-56e1-9659-57d2921e02cd")

#: Prefix of the series name of a stream created by this layer.
SERIES_PREFIX = "stream:"

_UUID_TEXT = re.compile(
    r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


def series_for(uuid: _uuid.UUID) -> str:
    """The series name of a stream created with ``uuid``."""
    return SERIES_PREFIX + str(uuid)


def adopted_uuid(series: str) -> _uuid.UUID:
    """The UUID a stream adopting the series ``series`` gets."""
    return _uuid.uuid5(ADOPT_NAMESPACE, series)


def is_uuid_text(text: str) -> bool:
    """True for the 36-character hyphenated form of a UUID, in any case."""
    return bool(_UUID_TEXT.match(text))


def to_uuid(value: Any) -> _uuid.UUID:
    """A ``uuid.UUID`` from a UUID or its text (any case, with or without hyphens)."""
    if isinstance(value, _uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return _uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None
    raise TypeError(f"a stream UUID is a uuid.UUID or a str, not {type(value).__name__}")
