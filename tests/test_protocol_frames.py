"""Frame codec and answer mapping, checked byte for byte against recorded SiriDB traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import qpack
from hypothesis import given
from hypothesis import strategies as st

from tsconnector.exceptions import (
    AuthenticationError,
    InsertError,
    PoolError,
    ProtocolError,
    QueryError,
    ServerError,
    ServerRuntimeError,
    UnexpectedAnswerError,
    UserAuthError,
)
from tsconnector.protocol import (
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    AnswerType,
    Frame,
    FrameDecoder,
    FrameError,
    encode_frame,
    encode_header,
    exception_for,
    pack,
    unpack,
)

EXCHANGES = json.loads((Path(__file__).parent / "data" / "frames.json").read_text())["exchanges"]


def _recorded_frames(records: list[dict]) -> list[Frame]:
    return [Frame(r["pid"], r["type"], bytes.fromhex(r["payload_hex"])) for r in records]


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[e["name"] for e in EXCHANGES])
def test_recorded_responses_decode_to_recorded_frames(exchange: dict) -> None:
    decoder = FrameDecoder()
    frames = decoder.feed(bytes.fromhex(exchange["response_hex"]))
    assert frames == _recorded_frames(exchange.get("response_frames") or [])
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "exchange",
    [
        e
        for e in EXCHANGES
        if "truncated" not in e["request_hex"]
        and all(f.get("check_ok", True) for f in e.get("request_frames") or [])
    ],
    ids=lambda e: e["name"],
)
def test_recorded_requests_reencode_byte_for_byte(exchange: dict) -> None:
    raw = bytes.fromhex(exchange["request_hex"])
    records = [r for r in exchange.get("request_frames") or [] if "payload_hex" in r]
    complete = [r for r in records if len(bytes.fromhex(r["payload_hex"])) == r["length"]]
    rebuilt = b"".join(
        encode_frame(r["pid"], r["type"], bytes.fromhex(r["payload_hex"])) for r in complete
    )
    assert raw.startswith(rebuilt)


def test_bad_check_byte_is_a_framing_error() -> None:
    (exchange,) = [e for e in EXCHANGES if e["name"] == "bad_check_byte"]
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="check byte"):
        decoder.feed(bytes.fromhex(exchange["request_hex"]))
    with pytest.raises(FrameError):  # the stream cannot be resynchronised
        decoder.feed(encode_frame(1, 3))


def test_oversized_length_is_a_framing_error() -> None:
    (exchange,) = [e for e in EXCHANGES if e["name"] == "oversized_length_header"]
    with pytest.raises(FrameError, match="exceeds"):
        FrameDecoder().feed(bytes.fromhex(exchange["request_hex"]))
    # exactly the limit is accepted (the frame is merely incomplete)
    assert FrameDecoder().feed(encode_header(MAX_FRAME_SIZE, 1, 0)) == []


def test_configurable_limit() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    assert decoder.feed(encode_frame(7, 0, b"x" * 10)) == [Frame(7, 0, b"x" * 10)]
    with pytest.raises(FrameError):
        decoder.feed(encode_frame(8, 0, b"x" * 11))


@given(
    st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=40)), max_size=12),
    st.data(),
)
def test_oversized_frames_are_skipped_and_reported(
    frames: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    """With ``skip_oversized`` frames over the limit vanish, whatever the read sizes."""
    limit = 16
    stream = b"".join(encode_frame(pid, 0, payload) for pid, payload in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder(limit, skip_oversized=True)
    got: list[Frame] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
        got.extend(decoder.feed(stream[start:stop]))
    assert got == [Frame(pid, 0, p) for pid, p in frames if len(p) <= limit]
    assert decoder.oversized == [(pid, 0, len(p)) for pid, p in frames if len(p) > limit]
    assert decoder.buffered == 0
    assert decoder.skipping == 0


def test_split_frame_across_reads() -> None:
    part1, part2 = (
        bytes.fromhex(e["request_hex"])
        for e in EXCHANGES
        if e["name"].startswith("split_frame_across_writes")
    )
    decoder = FrameDecoder()
    assert decoder.feed(part1) == []
    assert decoder.buffered == len(part1)
    (frame,) = decoder.feed(part2)
    assert frame.pid == 0x2E
    assert frame.tp == 0
    assert unpack(frame.payload) == ["show version", None]


def test_pid_wraps_and_edges_are_kept() -> None:
    assert encode_header(0, 65536 + 5, 3)[4:6] == (5).to_bytes(2, "little")
    for pid in (0, 65535):
        assert FrameDecoder().feed(encode_frame(pid, 3)) == [Frame(pid, 3, b"")]


frame_st = st.builds(
    Frame,
    st.integers(0, 65535),
    st.integers(0, 255),
    st.binary(max_size=300),
)


@given(st.lists(frame_st, max_size=20), st.lists(st.integers(1, 64), min_size=1, max_size=50))
def test_any_chunking_yields_the_same_frames(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(*f) for f in frames)
    decoder = FrameDecoder()
    out: list[Frame] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out.extend(decoder.feed(stream[pos : pos + step]))
        pos += step
        i += 1
    assert out == frames
    assert decoder.buffered == 0


@given(st.binary(max_size=200))
def test_decoder_never_raises_anything_but_frame_error(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_size=1000)
    try:
        frames = decoder.feed(data)
    except FrameError:
        return
    consumed = sum(HEADER_SIZE + len(f.payload) for f in frames)
    assert consumed + decoder.buffered == len(data)


@pytest.mark.parametrize(
    ("tp", "cls"),
    [
        (AnswerType.ERR_MSG, ServerRuntimeError),
        (AnswerType.ERR_QUERY, QueryError),
        (AnswerType.ERR_INSERT, InsertError),
        (AnswerType.ERR_SERVER, ServerError),
        (AnswerType.ERR_POOL, PoolError),
        (AnswerType.ERR_USER_ACCESS, UserAuthError),
        (AnswerType.ERR, ServerRuntimeError),
        (AnswerType.ERR_NOT_AUTHENTICATED, AuthenticationError),
        (AnswerType.ERR_AUTH_CREDENTIALS, AuthenticationError),
        (AnswerType.ERR_AUTH_UNKNOWN_DB, AuthenticationError),
        (AnswerType.ERR_LOADING_DB, ServerRuntimeError),
        (AnswerType.ERR_FILE, ServerRuntimeError),
        (99, UnexpectedAnswerError),
    ],
)
def test_answer_types_map_to_siridb_exceptions(tp: int, cls: type) -> None:
    exc = exception_for(tp, {"error_msg": "boom"})
    assert type(exc) is cls
    if tp in (64, 65, 66, 67, 68, 69):
        assert str(exc) == "boom"


def test_builtin_bases() -> None:
    assert issubclass(UserAuthError, AuthenticationError)
    assert isinstance(exception_for(99), TypeError)
    assert isinstance(exception_for(AnswerType.ERR), RuntimeError)


def test_recorded_error_answers_carry_the_server_message() -> None:
    (exchange,) = [e for e in EXCHANGES if e["name"] == "query_error_semantic"]
    (frame,) = FrameDecoder().feed(bytes.fromhex(exchange["response_hex"]))
    exc = exception_for(frame.tp, unpack(frame.payload))
    assert isinstance(exc, QueryError)
    assert exc.message == "Cannot use mean() on string type."


def test_pack_overflow_and_decode_errors() -> None:
    with pytest.raises(OverflowError, match="18446744073709551616"):
        pack({"x": [[1, 2**64]]})
    with pytest.raises(OverflowError):
        pack({"x": [[-(2**63) - 1, 1]]})
    assert unpack(pack({"x": [[1, 2**63 - 1]]})) == {"x": [[1, 2**63 - 1]]}
    with pytest.raises(ProtocolError):
        unpack(b"\xe8")  # int8 marker with no byte after it
    assert unpack(b"") is None
    assert qpack.unpackb(pack(["a", None]), decode="utf-8") == ["a", None]


def test_frames_before_a_bad_header_are_kept_on_the_error() -> None:
    good = encode_frame(1, 3) + encode_frame(2, 0, b"\x01")
    bad = bytes.fromhex("0f00000032000000")  # check byte 0x00 for type 0
    with pytest.raises(FrameError) as info:
        FrameDecoder().feed(good + bad)
    assert info.value.frames == [Frame(1, 3, b""), Frame(2, 0, b"\x01")]


@pytest.mark.parametrize("payload", [b"\xfe", b"\xff", b"\xfe\x01", b"\xff\xfe"])
def test_payload_starting_with_a_close_marker_is_a_protocol_error(payload: bytes) -> None:
    # qpack's C decoder would crash the interpreter on these; unpack must refuse them.
    with pytest.raises(ProtocolError, match="close marker"):
        unpack(payload)
