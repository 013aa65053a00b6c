"""Access rights as SiriDB numbers and writes them.

The model keeps its own bit layout (:data:`tsconnector.server.model.ACCESS_BITS`);
SiriDB's numbers matter where users see or compare them: ``list users`` writes rights
as ``'alter, count, drop and show'`` and ``where access < modify`` compares numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from tsconnector.server.model import ACCESS_BITS, ACCESS_PROFILES

__all__ = ["SIRIDB_ACCESS", "access_mask", "access_text", "siridb_access"]

#: SiriDB's bit for each single right.
SIRIDB_ACCESS: Final = {
    "show": 1, "count": 2, "list": 4, "select": 8, "insert": 16,
    "create": 32, "alter": 64, "drop": 128, "grant": 256, "revoke": 512,
}

#: How SiriDB writes rights: the largest profiles first, then single rights A-Z.
_WRITE_ORDER: Final = (
    ("full", 1023), ("modify", 255), ("write", 63), ("read", 15),
    ("alter", 64), ("count", 2), ("create", 32), ("drop", 128), ("grant", 256),
    ("insert", 16), ("list", 4), ("revoke", 512), ("select", 8), ("show", 1),
)


def access_mask(words: Iterable[str]) -> int:
    """The model's mask for access keywords (rights and profiles)."""
    mask = 0
    for word in words:
        mask |= ACCESS_PROFILES.get(word, ACCESS_BITS.get(word, 0))
    return mask


def siridb_access(mask: int) -> int:
    """A model mask as SiriDB's number."""
    return sum(SIRIDB_ACCESS[name] for name, bit in ACCESS_BITS.items() if mask & bit)


def access_text(mask: int) -> str:
    """A model mask written the way SiriDB writes rights."""
    bits = siridb_access(mask)
    parts: list[str] = []
    text = ""
    for name, value in _WRITE_ORDER:
        if not bits:
            break
        if bits & value == value:
            bits -= value
            if not parts:
                text = name
            elif bits:
                text += ", " + name
            else:
                text += " and " + name
            parts.append(name)
    return text if parts else "no access"
