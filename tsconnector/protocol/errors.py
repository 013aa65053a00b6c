"""Map answer packages to results or exceptions (pure functions, no I/O)."""

from __future__ import annotations

from typing import Any

from ..exceptions import (
    AuthenticationError,
    InsertError,
    PoolError,
    QueryError,
    ServerAnswerError,
    ServerError,
    ServerRuntimeError,
    UnexpectedAnswerError,
    UserAuthError,
)
from .constants import AnswerType

_WITH_MESSAGE: dict[int, type[ServerAnswerError]] = {
    AnswerType.ERR_MSG: ServerRuntimeError,
    AnswerType.ERR_QUERY: QueryError,
    AnswerType.ERR_INSERT: InsertError,
    AnswerType.ERR_SERVER: ServerError,
    AnswerType.ERR_POOL: PoolError,
    AnswerType.ERR_USER_ACCESS: UserAuthError,
    AnswerType.ERR_SERVICE: ServerRuntimeError,
    AnswerType.ERR_SERVICE_INVALID_REQUEST: ServerRuntimeError,
}

_WITHOUT_MESSAGE: dict[int, tuple[type[ServerAnswerError], str]] = {
    AnswerType.ERR: (ServerRuntimeError, "Unknown error occurred on the server."),
    AnswerType.ERR_NOT_AUTHENTICATED: (
        AuthenticationError,
        "This connection is not authenticated.",
    ),
    AnswerType.ERR_AUTH_CREDENTIALS: (AuthenticationError, "Invalid credentials."),
    AnswerType.ERR_AUTH_UNKNOWN_DB: (AuthenticationError, "Unknown database."),
    AnswerType.ERR_LOADING_DB: (ServerRuntimeError, "Error loading database."),
    AnswerType.ERR_FILE: (ServerRuntimeError, "Error while reading a file from the server."),
}

#: Answer types that are successful results.
SUCCESS_TYPES = frozenset(
    {
        AnswerType.RES_QUERY,
        AnswerType.RES_INSERT,
        AnswerType.RES_AUTH_SUCCESS,
        AnswerType.RES_ACK,
        AnswerType.RES_INFO,
        AnswerType.RES_FILE,
        AnswerType.ACK_SERVICE,
        AnswerType.ACK_SERVICE_DATA,
    }
)


def is_error_type(tp: int) -> bool:
    """True for answer types that signal an error (64 and above, but known ones)."""
    return tp in _WITH_MESSAGE or tp in _WITHOUT_MESSAGE


def error_message(data: Any) -> str:
    """The ``error_msg`` of a decoded error payload, or a readable fallback."""
    if isinstance(data, dict):
        msg = data.get("error_msg")
        if isinstance(msg, str):
            return msg
    return "" if data is None else str(data)


def exception_for(tp: int, data: Any = None) -> Exception:
    """The exception a client raises for an answer of type ``tp`` with decoded ``data``.

    Unknown answer types give :class:`UnexpectedAnswerError` (a ``TypeError``).
    """
    cls = _WITH_MESSAGE.get(tp)
    if cls is not None:
        return cls(error_message(data), answer_type=tp)
    fixed = _WITHOUT_MESSAGE.get(tp)
    if fixed is not None:
        return fixed[0](fixed[1], answer_type=tp)
    return UnexpectedAnswerError(f"unexpected answer package type {tp}")
