"""One-line error messages for the command line: what went wrong, in words a user can act on."""

from __future__ import annotations

import errno
import json
import os
import socket

from ..exceptions import (
    AuthenticationError,
    InsertError,
    QueryError,
    ServerAnswerError,
    TsConnectorError,
)

__all__ = ["CliError", "describe", "describe_connect_failure"]


class CliError(Exception):
    """An error the command line reports as one line and exit status 1."""


def _first_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()
    return _first_line(str(exc))


def describe_connect_failure(address: str, exc: BaseException) -> str:
    """Why ``address`` could not be used: ``"127.0.0.1:9: connection refused"``."""
    if isinstance(exc, AuthenticationError):
        return f"{address}: {_first_line(exc.message or str(exc))}"
    if isinstance(exc, TimeoutError):
        return f"{address}: no answer (timed out)"
    if isinstance(exc, OSError) and not isinstance(exc, TsConnectorError):
        return f"{address}: {_os_reason(exc)}"
    return f"{address}: {_first_line(str(exc)) if str(exc) else type(exc).__name__}"


def describe(exc: BaseException) -> str:
    """A one-line description of an error raised while running a command."""
    if isinstance(exc, CliError):
        return _first_line(str(exc))
    if isinstance(exc, QueryError):
        return f"query failed: {_first_line(exc.message)}"
    if isinstance(exc, InsertError):
        return f"insert refused by the server: {_first_line(exc.message)}"
    if isinstance(exc, ServerAnswerError):
        return f"{type(exc).__name__}: {_first_line(exc.message or str(exc))}"
    if isinstance(exc, TsConnectorError):
        return f"{type(exc).__name__}: {_first_line(str(exc))}"
    if isinstance(exc, BrokenPipeError):
        return "the output was closed before everything was written (broken pipe)"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, OSError):
        reason = _os_reason(exc)
        return f"{exc.filename}: {reason}" if exc.filename else reason
    if isinstance(exc, (ValueError, TypeError, OverflowError)):
        return _first_line(str(exc))
    return f"unexpected {type(exc).__name__}: {_first_line(str(exc))}"
