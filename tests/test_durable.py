"""Record framings: the spool's (length, CRC) and the server's resynchronisable one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tsconnector.durable import (
    Damage,
    iter_bodies,
    pack_frame,
    pack_record,
    scan_records,
    unpack_record,
)

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


# -- the resynchronisable framing of the server's log and snapshots ----------------------
def _intact(blob: bytes) -> list:
    return [unpack_record(item[2]) for item in scan_records(blob) if not isinstance(item, Damage)]


@given(records_st, st.data())
def test_scan_keeps_every_intact_record_around_a_flipped_byte(
    records: list, data: st.DataObject
) -> None:
    frames = [pack_frame(r) for r in records]
    if not frames:
        return
    blob = bytearray(b"".join(frames))
    victim = data.draw(st.integers(0, len(frames) - 1))
    start = sum(len(f) for f in frames[:victim])
    blob[start + data.draw(st.integers(0, len(frames[victim]) - 1))] ^= data.draw(
        st.integers(1, 255))
    items = list(scan_records(bytes(blob)))
    damage = [item for item in items if isinstance(item, Damage)]
    assert _intact(bytes(blob)) == records[:victim] + records[victim + 1 :]
    assert [(d.offset, d.size) for d in damage] == [(start, len(frames[victim]))]


@given(records_st.filter(bool), st.data())
def test_scan_of_a_cut_file_keeps_the_prefix_and_marks_a_torn_tail(
    records: list, data: st.DataObject
) -> None:
    blob = b"".join(pack_frame(r) for r in records)
    cut = data.draw(st.integers(0, len(blob) - 1))
    items = list(scan_records(blob[:cut]))
    got = _intact(blob[:cut])
    assert got == records[: len(got)]
    damage = [item for item in items if isinstance(item, Damage)]
    if damage:
        (tail,) = damage
        assert tail.torn
        assert tail.offset + tail.size == cut


@given(records_st.filter(bool), st.data())
def test_scan_reads_the_first_framing_and_resynchronises_in_it(
    records: list, data: st.DataObject
) -> None:
    frames = [pack_record(r) for r in records]
    blob = b"".join(frames)
    assert _intact(blob) == records
    junk = data.draw(st.binary(min_size=1, max_size=20).filter(lambda b: b.strip(b"\0")))
    at = sum(len(f) for f in frames[: len(frames) // 2])
    assert _intact(blob[:at] + junk + blob[at:]) == records
