"""Errors of the streams layer, named as BTrDB names them where it has a name.

All derive from :class:`StreamsError` (a :class:`~tsconnector.exceptions.TsConnectorError`)
and also from the builtin that fits, so ``except LookupError`` / ``except ValueError``
keep working. :class:`ConflictError` is also the catalog's ``ConflictError``.
"""

from __future__ import annotations

from ..catalog.errors import ConflictError as CatalogConflictError
from ..exceptions import TsConnectorError

__all__ = [
    "AmbiguousStreamError",
    "ConflictError",
    "InvalidAnnotation",
    "InvalidCollection",
    "InvalidTagKey",
    "InvalidTagValue",
    "NotSupportedError",
    "QueryRefused",
    "SeriesNotFoundError",
    "SeriesTypeError",
    "StreamExists",
    "StreamNotFoundError",
    "StreamsError",
]


class StreamsError(TsConnectorError):
    """Base class of every error of :mod:`tsconnector.streams`."""


class StreamNotFoundError(StreamsError, LookupError):
    """No stream has this UUID, or no stream matches this ``collection/name``."""


class AmbiguousStreamError(StreamNotFoundError):
    """A ``collection/name`` matches several streams.

    Also a :class:`StreamNotFoundError`, which is what BTrDB raises in this case.
    """


class StreamExists(StreamsError):
    """``create`` was given a UUID that is already taken."""


class SeriesNotFoundError(StreamsError, LookupError):
    """``adopt`` named a series that does not exist on the server."""


class InvalidCollection(StreamsError, ValueError):
    """A collection is empty, too long, or has an empty path segment."""


class InvalidTagKey(StreamsError, ValueError):
    """A tag key other than BTrDB's ``name``, ``unit``, ``ingress``, ``distiller``."""


class InvalidTagValue(StreamsError, ValueError):
    """A tag value is not a string, too long, or (for ``name``) empty or holds ``/``."""


class InvalidAnnotation(StreamsError, ValueError):
    """An annotation key or its encoded value is empty, too long or not encodable."""


class QueryRefused(StreamsError, PermissionError):
    """``StreamDB.query`` refused a statement: it writes, or reads more than ``streams``."""


class NotSupportedError(StreamsError, NotImplementedError):
    """BTrDB can do this and a SiriDB server cannot (versions, range delete, replace)."""


class ConflictError(StreamsError, CatalogConflictError):
    """``update(expected_version=...)`` lost: the stream is at ``current_version`` now.

    Also the catalog's ``ConflictError`` (``expected`` / ``actual`` hold the same numbers).
    """

    def __init__(self, message: str, *, expected_version: int, current_version: int) -> None:
        CatalogConflictError.__init__(
            self, message, expected=expected_version, actual=current_version
        )
        self.expected_version = expected_version
        self.current_version = current_version


class SeriesTypeError(StreamsError, TypeError):
    """A stream's series holds strings; streams hold numbers."""
