"""Benchmark series answers to numpy arrays: ``to_arrays()`` against a Python loop.

Run: ``python benchmarks/bench_results.py [--runs N] [--points N]``. The answer is
1,000,000 points as a SiriDB server encodes them (open map, open arrays, minimal-width
integers, 0xec doubles). Rows, median of ``--runs`` interleaved runs:

* from the answer payload (what a client receives): ``to_arrays(payload)`` against
  siridb-connector's decode (``qpack.unpackb``, gc on) followed by a Python loop that
  fills the arrays, and against that decode alone;
* from an already decoded dict: ``to_arrays(dict)`` against the same Python loop.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import qpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

from tsconnector.results import to_arrays

T0 = 1_699_920_000


def server_payload(series: dict[str, list[list[Any]]]) -> bytes:
    """Encode like SiriDB: an open map (never closed), each point list an open array."""
    return b"\xfd" + b"".join(
        qpack.packb(name) + qpack.packb(points) for name, points in series.items()
    )


def python_loop(answer: dict[str, list[list[Any]]]) -> dict[str, tuple[Any, Any]]:
    """The plain way: preallocate and fill the arrays point by point."""
    out = {}
    for name, points in answer.items():
        n = len(points)
        ts = np.empty(n, dtype=np.int64)
        values = np.empty(n, dtype=np.float64)
        for i, (t, v) in enumerate(points):
            ts[i] = t
            values[i] = v
        out[name] = (ts, values)
    return out


def build_cases(payload: bytes, answer: dict[str, Any]) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("to_arrays(payload bytes)", lambda: to_arrays(payload)),
        (
            "qpack.unpackb + Python loop",
            lambda: python_loop(qpack.unpackb(payload, decode="utf-8")),
        ),
        ("qpack.unpackb only (siridb-connector)", lambda: qpack.unpackb(payload, decode="utf-8")),
        ("to_arrays(decoded dict)", lambda: to_arrays(answer)),
        ("Python loop over decoded dict", lambda: python_loop(answer)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    runs = max(5, args.runs)
    rng = np.random.default_rng(1)
    shapes = {"1 series": 1, "100 series": 100}
    for shape, count in shapes.items():
        per = args.points // count
        answer = {
            f"series.{i:04d}": [[T0 + j, v] for j, v in enumerate(rng.random(per).tolist())]
            for i in range(count)
        }
        payload = server_payload(answer)
        check = to_arrays(payload)
        reference = python_loop(answer)
        for name, (ts, values) in reference.items():
            assert np.array_equal(check[name][0], ts)
            assert np.array_equal(check[name][1], values)
        result = c.interleaved_medians(build_cases(payload, answer), runs)
        total = count * per
        print(
            f"\n{total:,} points, {shape}, median of {runs} runs (payload {len(payload) / 1e6:.1f} MB)"
        )
        print(f"{'path':<40} {'median ms':>10} {'M points/s':>11}")
        for label, seconds in result.items():
            print(f"{label:<40} {seconds * 1e3:>10.1f} {total / seconds / 1e6:>11.2f}")
        print(
            "ratio, from the payload: to_arrays is "
            f"{result['qpack.unpackb + Python loop'] / result['to_arrays(payload bytes)']:.1f}x "
            "faster than decode + Python loop, "
            f"{result['qpack.unpackb only (siridb-connector)'] / result['to_arrays(payload bytes)']:.1f}x "
            "faster than siridb-connector's decode alone"
        )
        print(
            "ratio, from a decoded dict: to_arrays is "
            f"{result['Python loop over decoded dict'] / result['to_arrays(decoded dict)']:.1f}x "
            "faster than the Python loop"
        )


if __name__ == "__main__":
    main()
