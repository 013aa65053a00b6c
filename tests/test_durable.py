"""Record framing shared by the server's write-ahead log and the writer's spool."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tsconnector.durable import iter_bodies, pack_record, unpack_record

records_st = st.lists(
    st.dictionaries(
        st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20), max_size=4
    ),
    max_size=8,
)


@given(records_st, st.data())
def test_any_torn_tail_yields_exactly_the_intact_prefix(records: list, data: st.DataObject) -> None:
    blob = b"".join(pack_record(r) for r in records)
    cut = data.draw(st.integers(0, len(blob)))
    got = [unpack_record(body) for _, _, body in iter_bodies(blob[:cut])]
    assert got == records[: len(got)]
    ends = [offset + size for offset, size, _ in iter_bodies(blob)]
    assert len(got) == sum(1 for end in ends if end <= cut)


@given(records_st.filter(bool), st.data())
def test_a_flipped_byte_stops_reading_at_that_record(records: list, data: st.DataObject) -> None:
    frames = [pack_record(r) for r in records]
    blob = bytearray(b"".join(frames))
    victim = data.draw(st.integers(0, len(frames) - 1))
    start = sum(len(f) for f in frames[:victim])
    blob[start + 8 + data.draw(st.integers(0, len(frames[victim]) - 9))] ^= 0x5A
    got = [unpack_record(body) for _, _, body in iter_bodies(bytes(blob))]
    assert got == records[:victim]
