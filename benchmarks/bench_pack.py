"""Benchmark insert packing: tsconnector (lists, numpy) against qpack C, msgpack C and
siridb-connector's path (numpy arrays converted with ``.tolist()``, then qpack).

Run: ``python benchmarks/bench_pack.py [--runs N] [--points N]``. Prints, for each shape
(100 series x 10 k points; 10 k series x 100 points), the median time of ``--runs`` runs,
points per second and the speed ratio against qpack's C ``packb`` on the same lists.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import qpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

from tsconnector.protocol.packer import pack_insert, pack_insert_buffer

T0 = 1_699_920_000


def make_arrays(series: int, per_series: int, seed: int = 1) -> dict[str, tuple[Any, Any]]:
    """``{name: (timestamps int64, values float64)}`` with second timestamps."""
    rng = np.random.default_rng(seed)
    ts = np.arange(T0, T0 + per_series, dtype=np.int64)
    return {f"bench.series.{i:05d}": (ts.copy(), rng.random(per_series)) for i in range(series)}


def to_lists(arrays: dict[str, tuple[Any, Any]]) -> dict[str, list[list[Any]]]:
    """The same data as lists of ``[ts, value]`` pairs."""
    return {
        name: [[t, v] for t, v in zip(ts.tolist(), vs.tolist())]
        for name, (ts, vs) in arrays.items()
    }


def siridb_connector_path(arrays: dict[str, tuple[Any, Any]]) -> bytes:
    """What a siridb-connector user does with numpy data: convert to lists, then qpack."""
    return qpack.packb(
        {name: list(zip(ts.tolist(), vs.tolist())) for name, (ts, vs) in arrays.items()}
    )


def check_same(arrays: dict[str, tuple[Any, Any]], lists: dict[str, list[list[Any]]]) -> None:
    """Sanity check: tsconnector's bytes decode to the same data as qpack's."""
    expected = qpack.unpackb(qpack.packb(lists), decode="utf-8")
    for data in (pack_insert(arrays), pack_insert(lists), bytes(pack_insert_buffer(arrays))):
        if qpack.unpackb(data, decode="utf-8") != expected:
            raise SystemExit("packed bytes do not decode to the input data")


def bench_shape(series: int, per_series: int, runs: int) -> list[tuple[str, float]]:
    arrays = make_arrays(series, per_series)
    lists = to_lists(arrays)
    check_same(arrays, lists)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("tsconnector pack_insert (numpy arrays)", lambda: pack_insert(arrays)),
        (
            "tsconnector pack_insert_buffer (numpy, no final copy)",
            lambda: pack_insert_buffer(arrays, headroom=8),
        ),
        ("tsconnector pack_insert (lists)", lambda: pack_insert(lists)),
        ("qpack C packb (lists)", lambda: qpack.packb(lists)),
        ("msgpack C packb (lists)", lambda: msgpack.packb(lists)),
        ("siridb-connector path (numpy .tolist() + qpack)", lambda: siridb_connector_path(arrays)),
    ]
    return list(c.interleaved_medians(cases, runs).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (median taken)")
    parser.add_argument("--points", type=int, default=1_000_000, help="points per shape")
    args = parser.parse_args()
    runs = max(5, args.runs)
    total = args.points
    print(f"packing {total:,} points, median of {runs} runs, gc enabled\n")
    header = f"{'shape':<18} {'packer':<54} {'median ms':>10} {'M points/s':>11} {'vs qpack C':>11}"
    print(header)
    print("-" * len(header))
    for series in (100, 10_000):
        per_series = total // series
        results = bench_shape(series, per_series, runs)
        base = dict(results)["qpack C packb (lists)"]
        shape = f"{series} x {per_series}"
        for label, seconds in results:
            rate = series * per_series / seconds / 1e6
            print(
                f"{shape:<18} {label:<54} {seconds * 1e3:>10.1f} {rate:>11.2f} {base / seconds:>10.2f}x"
            )
        gc.collect()
        print()


if __name__ == "__main__":
    main()
