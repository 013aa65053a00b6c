"""Answer decoding: gc pausing, and series answers straight into numpy arrays."""

from __future__ import annotations

import gc
import json
import math
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qpack
from hypothesis import given, settings
from hypothesis import strategies as st

from tsconnector.exceptions import ProtocolError
from tsconnector.protocol import answers
from tsconnector.protocol.answers import (
    decode_answer,
    decode_series_arrays,
    gc_paused,
    points_to_arrays,
)
from tsconnector.timeutil import INT64_MAX, INT64_MIN

CASES = Path(__file__).parent / "data" / "cases.json"


def server_payload(series: dict[str, list[list[Any]]]) -> bytes:
    """Encode like SiriDB: open map (never closed), each point list an open array."""
    out = [b"\xfd"]
    for name, points in series.items():
        out.append(qpack.packb(name))
        out.append(b"\xfc" + b"".join(qpack.packb(p) for p in points) + b"\xfe")
    return b"".join(out)


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return type(a) is type(b) and a == b


def check(payload: bytes) -> None:
    """decode_series_arrays agrees with qpack + conversion, value types included."""
    expected = qpack.unpackb(payload, decode="utf-8")
    got = decode_series_arrays(payload)
    assert list(got) == list(expected)
    for name, points in expected.items():
        ts, values = got[name]
        assert ts.dtype == np.int64
        assert ts.tolist() == [p[0] for p in points]
        _, want_values = points_to_arrays(points)
        assert values.dtype == want_values.dtype, name
        assert all(same_value(a, b) for a, b in zip(values.tolist(), want_values.tolist()))


def series_answers() -> list[tuple[str, bytes]]:
    out = []
    for case in json.loads(CASES.read_text())["cases"]:
        for frame in (case.get("wire") or {}).get("response_frames", []):
            if frame["type"] != 0:
                continue
            payload = bytes.fromhex(frame["payload_hex"])
            answer = qpack.unpackb(payload, decode="utf-8")
            if isinstance(answer, dict) and all(
                isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 for p in v)
                for v in answer.values()
            ) and "columns" not in answer:
                out.append((case["id"], payload))
    return out


GOLDEN = series_answers()


def test_golden_answers_found() -> None:
    assert len(GOLDEN) > 50


@pytest.mark.parametrize(("case_id", "payload"), GOLDEN, ids=[c for c, _ in GOLDEN])
def test_golden_series_answers(case_id: str, payload: bytes) -> None:
    check(payload)


scalars = st.one_of(
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.integers(min_value=-70, max_value=70),
    st.floats(allow_nan=True),
    st.sampled_from([-1.0, 0.0, 1.0]),
)
timestamps = st.one_of(
    st.integers(min_value=0, max_value=INT64_MAX),
    st.integers(min_value=1_600_000_000, max_value=1_800_000_000),
    st.integers(min_value=0, max_value=200),
)


@settings(max_examples=200)
@given(
    data=st.dictionaries(
        st.text(max_size=110),
        st.lists(st.tuples(timestamps, scalars), max_size=30),
        max_size=6,
    ),
    server_style=st.booleans(),
)
def test_random_answers_match_qpack(data: dict[str, list[Any]], server_style: bool) -> None:
    lists = {name: [list(p) for p in pts] for name, pts in data.items()}
    check(server_payload(lists) if server_style else qpack.packb(lists))


@settings(max_examples=100)
@given(
    data=st.dictionaries(
        st.text(max_size=5),
        st.lists(
            st.tuples(
                st.integers(min_value=1_600_000_000, max_value=1_800_000_000),
                st.one_of(st.text(max_size=120), st.floats(), st.integers()),
            ),
            max_size=12,
        ),
        max_size=4,
    )
)
def test_strings_and_mixed_values(data: dict[str, list[Any]]) -> None:
    lists = {n: [[t, v if not isinstance(v, int) or INT64_MIN <= v <= INT64_MAX else 0]
                 for t, v in pts] for n, pts in data.items()}
    check(server_payload(lists))


def test_large_regular_and_irregular_answers() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    t0 = 1_699_920_000
    floats = rng.random(n)
    floats[::7] = 0.0  # one-byte doubles break the regular stride
    floats[::11] = 1.0
    ints = rng.integers(-(2**40), 2**40, n) >> rng.integers(0, 40, n)
    data = {
        "floats": [[t0 + i, v] for i, v in enumerate(floats.tolist())],
        "ints": [[t0 + i, v] for i, v in enumerate(ints.tolist())],
        "ms": [[t0 * 1000 + i, float(i)] for i in range(1000)],  # other ts width: fallback
        **{f"small.{i}": [[t0 + j, j * 0.5] for j in range(i)] for i in range(30)},
    }
    check(server_payload(data))


def test_false_point_candidates_are_ignored() -> None:
    """Doubles whose bytes look like a point start (0xef 0xea ...) do not confuse it."""
    tricky = struct.unpack("<d", b"\xef\xea\x01\x02\x03\x04\xec\x3f")[0]
    tricky2 = struct.unpack("<d", b"\x00\xef\xea\x80\xb8\x52\x65\x40")[0]
    points = [[1_699_920_000 + i, v] for i, v in enumerate([tricky, tricky2, 0.0] * 300)]
    check(server_payload({"t": points, "u": points[:5]}))


def test_not_a_series_answer() -> None:
    with pytest.raises(ValueError, match="not a series answer"):
        decode_series_arrays(qpack.packb([1, 2]))
    with pytest.raises(ValueError, match="not a series answer"):
        decode_series_arrays(qpack.packb({"success_msg": "ok"}))
    with pytest.raises(ValueError, match="not a series answer"):
        decode_series_arrays(qpack.packb({"columns": ["name"], "series": [["a"]]}))
    assert decode_series_arrays(b"") == {}
    assert decode_series_arrays(qpack.packb({})) == {}
    empty = decode_series_arrays(server_payload({"e": []}))
    assert empty["e"][0].size == 0


def test_points_to_arrays_dtypes() -> None:
    assert points_to_arrays([[1, 2], [3, 4]])[1].dtype == np.int64
    assert points_to_arrays([[1, 2], [3, 4.5]])[1].dtype == np.float64
    assert points_to_arrays([[1, "a"], [3, 4]])[1].tolist() == ["a", 4]
    assert points_to_arrays([])[0].size == 0


def test_decode_answer_pauses_gc_and_restores_it() -> None:
    big = qpack.packb({"s": [[i, float(i)] for i in range(20_000)]})
    seen: list[bool] = []
    original = answers.unpack

    def spy(payload: bytes) -> Any:
        seen.append(gc.isenabled())
        return original(payload)

    answers.unpack = spy  # type: ignore[assignment]
    try:
        assert gc.isenabled()
        assert decode_answer(big)["s"][5] == [5, 5.0]
        assert decode_answer(qpack.packb({"a": 1})) == {"a": 1}
    finally:
        answers.unpack = original  # type: ignore[assignment]
    assert seen == [False, True]
    assert gc.isenabled()
    with pytest.raises(ProtocolError):
        decode_answer(b"\xe7\xff\xff\xff\xff\xff\xff\xff\x7f" + b"\x00" * 40_000)
    assert gc.isenabled()


def test_gc_paused_nesting_exceptions_and_disabled_state() -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()


def test_gc_paused_across_threads() -> None:
    inside = threading.Event()
    release = threading.Event()

    def worker() -> None:
        with gc_paused():
            inside.set()
            assert release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's pause still holds
    release.set()
    thread.join(10)
    assert gc.isenabled()
