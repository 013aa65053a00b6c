"""SiriDB's series-to-pool lookup against a reference written from its description.

The reference below is built from the algorithm as described (ANCHORS.md section 5 and
``src/siri/db/lookup.c``'s comments), not from the implementation under test: for each
new pool ``n``, the slots of every existing pool ``p``, taken in slot order, are counted
``p + 1, p + 2, ...``; a slot whose count is a multiple of ``n + 1`` moves to pool ``n``.
It is vectorised per pool with numpy, a different formulation from the slot-by-slot
loop of the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsconnector.protocol.lookup import LOOKUP_SIZE, lookup_table, name_sum, pool_of


def reference_table(num_pools: int) -> np.ndarray:
    table = np.zeros(8192, dtype=np.int64)
    for new in range(1, num_pools):
        moves = []
        for old in range(new):
            slots = np.flatnonzero(table == old)
            counts = old + np.arange(1, len(slots) + 1)
            moves.append(slots[counts % (new + 1) == 0])
        for slots in moves:
            table[slots] = new
    return table


def reference_sum(name: bytes, signed: bool) -> int:
    """The C loop ``uint32_t n; n += (char) byte``: wrap at 2**32, then % 8192."""
    dtype = np.int8 if signed else np.uint8
    values = np.frombuffer(name, dtype=dtype).astype(np.int64)
    return int(values.sum()) % 2**32 % 8192


REFERENCE = {n: reference_table(n) for n in range(1, 17)}


@pytest.mark.parametrize("num_pools", range(1, 17))
def test_table_matches_the_reference(num_pools: int) -> None:
    table = lookup_table(num_pools)
    assert len(table) == LOOKUP_SIZE
    assert list(table) == REFERENCE[num_pools].tolist()


@pytest.mark.parametrize("num_pools", range(2, 17))
def test_adding_a_pool_only_moves_slots_to_the_new_pool(num_pools: int) -> None:
    before, after = np.array(lookup_table(num_pools - 1)), np.array(lookup_table(num_pools))
    moved = before != after
    assert (after[moved] == num_pools - 1).all()
    share = moved.sum() / LOOKUP_SIZE  # about 1/n of every pool moves
    assert abs(share - 1 / num_pools) < 0.01


def test_known_tables() -> None:
    assert set(lookup_table(1)) == {0}
    # two pools: odd slots (counts 2, 4, ... of pool 0) go to pool 1
    assert list(lookup_table(2)) == [i % 2 for i in range(LOOKUP_SIZE)]
    assert lookup_table(3)[:12] == (0, 1, 0, 2, 2, 1, 0, 1, 0, 2, 2, 1)


def test_known_names() -> None:
    # checked against SiriDB 2.0.55 with two pools: "a" (97) in pool 1, "b" (98) in pool 0
    assert pool_of("a", 2) == 1
    assert pool_of("b", 2) == 0
    # bytes >= 0x80 count negative on x86: "é" is c3 a9 -> -61 - 87 = -148
    assert name_sum("é".encode()) == 8192 - 148
    assert name_sum("é".encode(), signed_char=False) == 0xC3 + 0xA9


@pytest.mark.parametrize("num_pools", [0, -1, 1.5, True, "3"])
def test_bad_number_of_pools(num_pools: object) -> None:
    with pytest.raises(ValueError, match="number of pools"):
        lookup_table(num_pools)  # type: ignore[arg-type,unused-ignore]


@given(st.binary(max_size=300), st.booleans())
def test_name_sum_matches_the_c_loop(name: bytes, signed: bool) -> None:
    assert name_sum(name, signed) == reference_sum(name, signed)


@given(st.text(max_size=60), st.integers(1, 16), st.booleans())
def test_pool_of_matches_the_reference(name: str, num_pools: int, signed: bool) -> None:
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not a name qpack can send
        return
    expected = int(REFERENCE[num_pools][reference_sum(raw, signed)])
    assert pool_of(name, num_pools, signed) == expected
    assert pool_of(raw, num_pools, signed) == expected
    assert pool_of(name, lookup_table(num_pools), signed) == expected
