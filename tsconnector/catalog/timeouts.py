"""Bounded waits for locks and pool slots that never leak what they waited for.

``asyncio.timeout`` (Python 3.11+) or ``async_timeout.timeout`` (3.10) cancel the wait
itself, so a lock acquired at the last moment is either held by the caller or released;
``asyncio.wait_for`` on Python 3.10 could lose it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

from .errors import CatalogBusy

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout as _timeout

T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], seconds: float | None, what: str) -> T:
    """Await ``awaitable`` for at most ``seconds`` (None: no bound); ``CatalogBusy`` after."""
    if seconds is None:
        return await awaitable
    try:
        async with _timeout(seconds):
            return await awaitable
    except asyncio.TimeoutError:
        raise CatalogBusy(f"waited {seconds:g} s for {what}") from None
