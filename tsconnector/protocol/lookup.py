"""SiriDB's series-to-pool mapping, computed the way the server computes it.

A SiriDB database is split into pools; the pool that owns a series is a function of the
series name and the number of pools only (``src/siri/db/lookup.c``): the bytes of the
name are added up as C ``char`` values into an unsigned 32-bit sum, and the sum modulo
8192 indexes a table built from the number of pools. ``char`` is signed on x86 (bytes
>= 0x80 count as negative) and unsigned on ARM, so the signedness of the servers'
platform is a parameter. Pure functions, no I/O: the client routes inserts with them and
the embedded server uses them to tell which series it does not own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

__all__ = ["LOOKUP_SIZE", "lookup_table", "name_sum", "pool_of"]

#: Entries of SiriDB's lookup table (``SIRIDB_LOOKUP_SZ``).
LOOKUP_SIZE = 8192


@functools.lru_cache(maxsize=32)
def lookup_table(num_pools: int) -> tuple[int, ...]:
    """The pool of each of the 8192 slots for a database of ``num_pools`` pools.

    Built as SiriDB builds it: every slot starts in pool 0; each new pool ``n`` (1, 2,
    ...) takes over, from every existing pool ``p``, the slots where a running count
    (starting at ``p``) of that pool's slots reaches a multiple of ``n + 1``. So adding a
    pool only moves slots from old pools to the new one, about ``1 / (n + 1)`` of each.
    """
    if isinstance(num_pools, bool) or not isinstance(num_pools, int) or num_pools < 1:
        raise ValueError(f"the number of pools must be an integer >= 1, not {num_pools!r}")
    table = [0] * LOOKUP_SIZE
    for new in range(1, num_pools):
        every = new + 1
        counts = list(range(new))  # one running count per existing pool
        for slot, owner in enumerate(table):
            counts[owner] += 1
            if counts[owner] % every == 0:
                table[slot] = new
    return tuple(table)


def name_sum(name: bytes, signed_char: bool = True) -> int:
    """The byte sum of ``name`` modulo 8192, as SiriDB adds up a name's ``char`` values.

    With ``signed_char`` (x86) each byte >= 0x80 counts as ``byte - 256``.
    """
    total = sum(name)
    if signed_char:
        high = len(name) - len(name.translate(None, _HIGH_BYTES))
        total -= 256 * high
    return total % LOOKUP_SIZE


_HIGH_BYTES = bytes(range(0x80, 0x100))


def pool_of(
    name: str | bytes, num_pools: int | Sequence[int], signed_char: bool = True
) -> int:
    """The pool that owns series ``name`` (a str is taken as its UTF-8 bytes).

    ``num_pools`` is the number of pools, or a table from :func:`lookup_table`.
    """
    table = lookup_table(num_pools) if isinstance(num_pools, int) else num_pools
    if isinstance(name, str):
        if name.isascii():
            return table[sum(name.encode()) % LOOKUP_SIZE]
        name = name.encode("utf-8")
    return table[name_sum(name, signed_char)]
