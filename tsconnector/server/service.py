"""Service-account requests (package type 32) as SiriDB answers them on the client port.

The payload is ``[account, password, request, ...]``; a malformed envelope gets
``ERR_SERVICE_INVALID_REQUEST``, bad credentials ``ERR_SERVICE`` with SiriDB's message.
Account management and the read-only requests are supported; requests that would create
or expand databases answer ``ERR_SERVICE`` (the embedded server has one fixed set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import qpack

from ..protocol import AnswerType
from . import qptokens as qt
from .wire import OPEN_ARRAY, error_payload

NEW_ACCOUNT = 0
CHANGE_PASSWORD = 1
DROP_ACCOUNT = 2
NEW_DATABASE = 3
NEW_POOL = 4
NEW_REPLICA = 5
DROP_DATABASE = 6
GET_VERSION = 64
GET_ACCOUNTS = 65
GET_DATABASES = 66

Answer = tuple[int, bytes]


@dataclass
class ServiceAccounts:
    """Service accounts (name -> password), in creation order."""

    accounts: dict[str, str] = field(default_factory=lambda: {"sa": "siri"})

    def check(self, name: str, password: str) -> str | None:
        """None when valid, else SiriDB's error message."""
        stored = self.accounts.get(name)
        if stored is None:
            return f"cannot find service account '{name}'"
        if stored != password:
            return f"incorrect password for service account '{name}'"
        return None


def handle_service(
    payload: bytes,
    accounts: ServiceAccounts,
    database_names: Callable[[], list[str]],
    version: str,
) -> Answer:
    """Answer one service request."""
    reader = qt.Reader(payload)
    kind, _ = reader.next()
    user_kind, user = reader.next()
    pass_kind, password = reader.next()
    req_kind, request = reader.next()
    if not (qt.is_array(kind) and user_kind == qt.RAW and pass_kind == qt.RAW
            and req_kind == qt.INT):
        return AnswerType.ERR_SERVICE_INVALID_REQUEST, b""
    error = accounts.check(qt.decode_text(user), qt.decode_text(password))
    if error is not None:
        return AnswerType.ERR_SERVICE, error_payload(error)
    if request == GET_VERSION:
        return AnswerType.ACK_SERVICE_DATA, OPEN_ARRAY + qpack.packb(version)
    if request == GET_ACCOUNTS:
        return AnswerType.ACK_SERVICE_DATA, _open_list(list(accounts.accounts))
    if request == GET_DATABASES:
        return AnswerType.ACK_SERVICE_DATA, _open_list(database_names())
    if request in (NEW_ACCOUNT, CHANGE_PASSWORD, DROP_ACCOUNT):
        return _account_request(request, reader, accounts)
    if request in (NEW_DATABASE, NEW_POOL, NEW_REPLICA, DROP_DATABASE):
        return AnswerType.ERR_SERVICE, error_payload(
            "the embedded server cannot create, expand or drop databases"
        )
    return AnswerType.ERR_SERVICE_INVALID_REQUEST, b""


def _open_list(items: list[str]) -> bytes:
    return OPEN_ARRAY + b"".join(qpack.packb(item) for item in items)


def _account_request(request: int, reader: qt.Reader, accounts: ServiceAccounts) -> Answer:
    kind, _ = reader.next()
    if not qt.is_map(kind):
        return AnswerType.ERR_SERVICE_INVALID_REQUEST, b""
    account: str | None = None
    password: str | None = None
    while True:
        kind, key = reader.next()
        if kind != qt.RAW:
            break
        if b"account".startswith(key):
            kind, value = reader.next()
            if kind == qt.RAW:
                account = qt.decode_text(value)
                continue
        if b"password".startswith(key):
            kind, value = reader.next()
            if kind == qt.RAW:
                password = qt.decode_text(value)
                continue
        return AnswerType.ERR_SERVICE_INVALID_REQUEST, b""
    if account is None or (request != DROP_ACCOUNT and password is None):
        return AnswerType.ERR_SERVICE_INVALID_REQUEST, b""
    store = accounts.accounts
    if request == NEW_ACCOUNT:
        assert password is not None
        if account in store:
            return _err(f"service account '{account}' already exists")
        if len(account.encode()) < 2:
            return _err("service account name should have at least 2 characters")
        if len(password.encode()) < 2:
            return _err("service account password should have at least 2 characters")
        store[account] = password
    elif account not in store:
        return _err(f"cannot find service account '{account}'")
    elif request == CHANGE_PASSWORD:
        assert password is not None
        store[account] = password
    else:
        del store[account]
    return AnswerType.ACK_SERVICE, b""


def _err(message: str) -> Answer:
    return AnswerType.ERR_SERVICE, error_payload(message)
