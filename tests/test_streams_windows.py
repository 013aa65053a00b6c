"""Windows with BTrDB's semantics (inclusive start, exclusive end, time = window start),
computed from raw points in chunks, against a reference computation; every precision."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streams_helpers import (
    PRECISIONS,
    LoopServer,
    assert_windows_equal,
    reference_windows,
    unit_ns,
)

from tsconnector.streams.dataplane import DataPlane
from tsconnector.streams.timeargs import unit_range
from tsconnector.streams.windows import WindowAccumulator, WindowSpec

values_st = st.floats(-1e6, 1e6, allow_nan=False)


def test_windows_spec_truncates_end_as_btrdb() -> None:
    spec = WindowSpec.windows(10, 45, 10)
    assert (spec.start, spec.width, spec.count, spec.end) == (10, 10, 3, 40)
    assert WindowSpec.windows(10, 19, 10).count == 0
    assert WindowSpec.windows(10, 5, 10).count == 0
    with pytest.raises(ValueError):
        WindowSpec.windows(0, 10, 0)
    with pytest.raises(TypeError):
        WindowSpec.windows(0, 10, 1.5)  # type: ignore[arg-type]


def test_aligned_spec_clears_low_bits() -> None:
    spec = WindowSpec.aligned(1000, 5000, 10)  # 1024 ns windows
    assert (spec.start, spec.width, spec.count) == (0, 1024, 4)
    spec = WindowSpec.aligned(-1, 1025, 10)
    assert (spec.start, spec.count) == (-1024, 2)
    with pytest.raises(ValueError):
        WindowSpec.aligned(0, 10, 64)


def _split(n: int, cuts: list[int]) -> Iterator[tuple[int, int]]:
    edges = sorted({0, n, *(c % (n + 1) for c in cuts)})
    yield from itertools.pairwise(edges)


@settings(max_examples=300)
@given(
    precision=st.integers(0, 3),
    times=st.lists(st.integers(0, 3000), max_size=80),
    values=st.lists(values_st, min_size=80, max_size=80),
    start_units=st.integers(-5, 3000),
    start_shift=st.sampled_from([0, 0, 1, -1, 7]),
    width_units=st.integers(1, 400),
    width_shift=st.sampled_from([0, 0, 0, 1, -1, 13]),
    count=st.integers(0, 60),
    cuts=st.lists(st.integers(0, 100), max_size=6),
)
def test_accumulator_matches_reference(
    precision: int,
    times: list[int],
    values: list[float],
    start_units: int,
    start_shift: int,
    width_units: int,
    width_shift: int,
    count: int,
    cuts: list[int],
) -> None:
    unit = 10 ** (9 - 3 * precision)
    start = start_units * unit + start_shift
    width = max(1, width_units * unit + width_shift)
    spec = WindowSpec(start, width, count)
    ts = np.array(sorted(times), dtype=np.int64)
    vs = np.array(values[: len(ts)], dtype=np.float64)
    expected = reference_windows(
        zip((int(t) * unit for t in ts), vs.tolist()), start, width, count
    )
    rng = unit_range(spec.start, spec.end, precision)  # what the data plane would fetch
    inside = (ts >= rng.start) & (ts < rng.end)
    ts, vs = ts[inside], vs[inside]
    acc = WindowAccumulator(spec, precision)
    for lo, hi in _split(len(ts), cuts):
        acc.add(ts[lo:hi], vs[lo:hi])
    assert_windows_equal(acc.result().points(), expected)


def test_accumulator_far_from_origin_stays_exact() -> None:
    # seconds precision near the end of int64 units: ns values beyond int64
    acc = WindowAccumulator(WindowSpec(-(16 << 56), 1 << 62, 3), 0)
    acc.add(np.array([0, 10**10, 2 * 10**10], dtype=np.int64), np.array([1.0, 2.0, 3.0]))
    points = acc.result().points()
    assert sum(p.count for p in points) == 3


# -- end to end, through the embedded server ---------------------------------------------


@pytest.fixture(scope="module")
def loop_server() -> Iterator[LoopServer]:
    server = LoopServer()
    yield server
    server.close()


_counter = iter(range(10**9))


@settings(max_examples=50)
@given(
    data=st.data(),
    offsets=st.lists(st.integers(0, 90), min_size=1, max_size=60),
    values=st.lists(values_st, min_size=60, max_size=60),
    width_units=st.integers(1, 25),
    width_shift=st.sampled_from([0, 0, 1, -1]),
    budget=st.sampled_from([1, 3, 17, 1000]),
    aligned=st.booleans(),
)
def test_windows_end_to_end_every_precision(
    loop_server: LoopServer,
    data: st.DataObject,
    offsets: list[int],
    values: list[float],
    width_units: int,
    width_shift: int,
    budget: int,
    aligned: bool,
) -> None:
    for precision in PRECISIONS:
        unit = unit_ns(precision)
        base = 1_700_000_000 * 10**9 // unit  # a realistic epoch time, in units
        times = [base + o for o in offsets]
        name = f"w{next(_counter)}"
        client = loop_server.clients[precision]
        points = [[t, v] for t, v in zip(times, values)]
        loop_server.run(client.insert({name: points}))
        # a boundary exactly on a stored point, or one ns beside it
        anchor = data.draw(st.sampled_from(times)) * unit + data.draw(st.sampled_from([0, 1, -1]))
        if aligned:
            pointwidth = data.draw(st.integers(0, 45))
            spec = WindowSpec.aligned(anchor - (50 * unit), anchor + 60 * unit, pointwidth)
        else:
            width = max(1, width_units * unit + width_shift)
            spec = WindowSpec.windows(anchor - 2 * width, anchor + 3 * width + 5, width)
        plane = DataPlane(client, chunk_points=budget)
        got = loop_server.run(plane.windows([name], spec))[name].points()
        expected = reference_windows(
            ((t * unit, v) for t, v in zip(times, values)), spec.start, spec.width, spec.count
        )
        assert_windows_equal(got, expected)
