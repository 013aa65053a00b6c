"""async_server_info: ask a server for its INFO package (SiriDB 2.0.55 never answers it).

The request needs no authentication. Servers that ignore INFO make the call end with
:class:`~tsconnector.exceptions.TsTimeoutError` after ``timeout`` seconds.
"""

from __future__ import annotations

from typing import Any

from .connection import open_raw
from .exceptions import ClientClosedError
from .protocol import RequestType

__all__ = ["async_server_info"]


async def async_server_info(
    host: str = "127.0.0.1", port: int = 9000, *, timeout: float = 2.0
) -> Any:
    """Open a connection, send INFO, return the decoded answer and close.

    Raises TsTimeoutError when no answer comes within ``timeout`` seconds (connecting
    included), ``OSError`` when the server cannot be reached.
    """
    conn = await open_raw(host, port, timeout=timeout)
    try:
        return await conn.request(RequestType.INFO, timeout=timeout)
    finally:
        conn.close(ClientClosedError("info request finished"))
        await conn.wait_closed()
