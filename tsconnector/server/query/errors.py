"""Failures raised while evaluating a query; each maps to one error answer."""

from __future__ import annotations

from tsconnector.protocol.constants import AnswerType


class QueryFailure(Exception):
    """The query cannot be answered; ``str()`` is the message the client sees."""

    answer_type: AnswerType = AnswerType.ERR_QUERY

    def payload(self) -> dict[str, str]:
        return {"error_msg": str(self)}


class AccessDenied(QueryFailure):
    """The user lacks a privilege the statement needs."""

    answer_type = AnswerType.ERR_USER_ACCESS

    def __init__(self, user: str, privilege: str) -> None:
        super().__init__(f"Access denied. User '{user}' has no '{privilege}' privileges.")


class NotAccessible(QueryFailure):
    """The server does not accept the query now (backup mode)."""

    answer_type = AnswerType.ERR_SERVER

    def __init__(self, server_name: str) -> None:
        super().__init__(
            f"Server '{server_name}' is currently not accessible to process this request")
