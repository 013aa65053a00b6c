"""Errors of the aggregate layer, all under :class:`~tsconnector.exceptions.TsConnectorError`."""

from __future__ import annotations

from typing import Any

from ..exceptions import TsConnectorError

__all__ = [
    "AggregateError",
    "JournalAmbiguous",
    "JournalPending",
    "LeaseLost",
    "MessageNotFound",
    "TeeProtocolError",
]


class AggregateError(TsConnectorError):
    """Base class of the errors of :mod:`tsconnector.aggregate`."""


class MessageNotFound(AggregateError, KeyError):
    """No message of the store has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JournalPending(AggregateError, TimeoutError):
    """A series is being written by another writer (its lease is held); try again later."""


class JournalAmbiguous(AggregateError):
    """Recovery cannot tell whether a logged batch reached the server.

    The server's point count in the batch's time range changed by something other than
    0 (not inserted) or the batch's size (inserted), or the batch's points are not all
    there: another program wrote to the same range. The entry stays in the journal with
    state ``ambiguous``; ``entries`` lists them. Settle each with
    ``store.resolve(journal_id, inserted=...)`` after checking the series by hand.
    """

    def __init__(self, message: str, entries: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.entries = entries


class LeaseLost(AggregateError):
    """A lease (series, partition, projector) expired and another owner took it over."""


class TeeProtocolError(AggregateError, ValueError):
    """Bytes from a tee could not be read as SiriDB insert packages.

    ``payloads`` holds whole packages decoded before the error, when there are any.
    """

    payloads: list[bytes] = []
