"""Exceptions raised by tsconnector, named as SiriDB's own connector names them.

Every exception of this project derives from :class:`TsConnectorError`, and also from
the matching builtin where one fits, so ``except TimeoutError`` and
``except ConnectionError`` keep working.
"""

from __future__ import annotations

from typing import Any


class TsConnectorError(Exception):
    """Base class of every error raised by tsconnector."""


class ServerAnswerError(TsConnectorError):
    """An error answer from the server; ``message`` holds its ``error_msg``."""

    def __init__(self, message: str = "", *, answer_type: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.answer_type = answer_type


class QueryError(ServerAnswerError):
    """The server rejected a query (syntax, unknown name, limit...)."""


class InsertError(ServerAnswerError):
    """The server rejected an insert; nothing of it was stored."""


class ServerError(ServerAnswerError):
    """This server cannot answer now; another server may (retried on another host)."""


class PoolError(ServerAnswerError):
    """A pool has no online server, or the client has no ready connection."""


class AuthenticationError(ServerAnswerError):
    """Authentication failed: wrong credentials, unknown database or not authenticated."""


class UserAuthError(AuthenticationError):
    """The user lacks the privilege for this request (SiriDB answer 69)."""


class ServerRuntimeError(ServerAnswerError, RuntimeError):
    """A generic server-side failure (answers 64, 70, 74, 75)."""


class UnexpectedAnswerError(TsConnectorError, TypeError):
    """The server answered with a package type the client does not know."""


class ProtocolError(TsConnectorError):
    """The byte stream from the server could not be decoded (bad frame or payload)."""


class AnswerTooLarge(ProtocolError):
    """An answer is larger than the client's frame limit (``max_frame_size``).

    It was discarded as it arrived; the connection stays usable and the call is not
    retried. ``size`` and ``limit`` are in bytes.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class TsTimeoutError(TsConnectorError, TimeoutError):
    """No answer arrived before the call's deadline."""


class TsConnectionError(TsConnectorError, ConnectionError):
    """The connection was lost or could not be made while a request was in flight."""


class InsertOutcomeUnknown(TsConnectionError):
    """The connection was lost after an insert was written, before its answer arrived.

    The server may or may not have stored the points, and SiriDB keeps duplicates, so
    the insert is not retried. ``payload`` holds the data as given to ``insert`` so the
    caller can check (for example with a count query) and re-send what is missing.
    """

    def __init__(self, message: str, payload: Any) -> None:
        super().__init__(message)
        self.payload = payload


class InsertPartlyApplied(InsertOutcomeUnknown):
    """An insert split per pool (``discover=True``) of which not every part is stored.

    Each part went to its own server as its own request; some were stored and others
    were not, or their outcome is unknown. ``applied`` holds the parts that were stored
    (never send them again), ``not_applied`` the parts that surely were not (safe to send
    again), ``unknown`` the parts that may or may not be stored (check first), each in
    the form the data was given in (None when there is none); ``errors`` the error of
    each failed part. ``payload`` is ``not_applied`` and ``unknown`` together: what a
    caller that handles :class:`InsertOutcomeUnknown` checks and re-sends.
    """

    def __init__(
        self,
        message: str,
        *,
        applied: Any,
        not_applied: Any,
        unknown: Any,
        errors: list[BaseException],
        payload: Any,
    ) -> None:
        super().__init__(message, payload)
        self.applied = applied
        self.not_applied = not_applied
        self.unknown = unknown
        self.errors = errors


class ClientClosedError(TsConnectionError):
    """The client was closed before or while the request was made."""
