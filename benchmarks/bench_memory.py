"""Benchmark client memory: peak RSS above the baseline for one 1 M-point insert.

Run: ``python benchmarks/bench_memory.py [--hosts host:port] [--runs N]``.

Each measurement runs in a fresh subprocess holding one client: it imports everything,
builds the data (100 series x 10 k points, as lists or as numpy arrays), connects,
collects garbage and reads its resident set size (the baseline), resets the kernel's
peak-RSS mark (``/proc/self/clear_refs``), inserts the 1 M points as one batch and
reads the peak (``VmHWM``). A second insert of the same data under other names is
traced with ``tracemalloc`` for the peak of Python-visible allocations. Medians of
``--runs`` subprocesses (min 5) per case. Target: tsconnector stays below 2x
the packed payload size above the baseline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

PREFIX = "bm."
SERIES, PER_SERIES = 100, 10_000
DROP = "drop series /^bm[.].*$/ set ignore_threshold true"
CASES = {
    "tsconnector (numpy)": ("ts", "numpy"),
    "tsconnector (lists)": ("ts", "lists"),
    "siridb-connector (lists)": ("siri", "lists"),
    "siridb-connector (numpy: .tolist())": ("siri", "numpy"),
}
MB = 1024 * 1024


# ------------------------------------------------------------------------------- child


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def child(kind: str, data_kind: str, hosts: c.Hostlist, args: Any) -> dict[str, Any]:
    """One measurement (runs inside the subprocess)."""
    from tsconnector.protocol.packer import pack_insert

    arrays = c.make_arrays(SERIES, PER_SERIES, PREFIX)
    data: Any = arrays if data_kind == "numpy" else c.to_lists(arrays)
    if data_kind == "lists":
        del arrays
    payload_size = len(pack_insert(data))
    client = await (c.ts_client if kind == "ts" else c.siri_client)(hosts, args)

    def prepared(batch: Any) -> Any:
        if kind == "siri" and data_kind == "numpy":
            return {n: list(zip(t.tolist(), v.tolist())) for n, (t, v) in batch.items()}
        return batch

    try:
        await client.insert({f"{PREFIX}warmup": [[c.T0, 1.0]]})  # import lazily loaded code
        gc.collect()
        baseline = _status_kb("VmRSS")
        exact = _reset_peak()
        await client.insert(prepared(data), 600)
        peak = _status_kb("VmHWM")
        gc.collect()
        renamed = c.rename(data, PREFIX, PREFIX + "t")
        tracemalloc.start()
        await client.insert(prepared(renamed), 600)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        await c.close_client(client)
    return {
        "payload": payload_size,
        "rss_above": (peak - baseline) * 1024,
        "traced_peak": traced_peak,
        "exact": exact,
    }


# ------------------------------------------------------------------------------ parent


async def drop_series(hosts: c.Hostlist, args: Any) -> None:
    client = await c.ts_client(hosts, args)
    try:
        await client.query(DROP)
    finally:
        await c.close_client(client)


def run_child(case: str, hosts: c.Hostlist, args: Any) -> dict[str, Any]:
    kind, data_kind = CASES[case]
    host_arg = ",".join(f"{h}:{p}" for h, p in hosts)
    argv = [
        c.PYTHON, str(Path(__file__).resolve()), "--child", f"{kind}:{data_kind}",
        "--hosts", host_arg, "--user", args.user, "--password", args.password, "--db", args.db,
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def amain(args: Any) -> None:
    runs = max(5, args.runs)
    print(f"bench_memory: {c.describe_env()}; {SERIES * PER_SERIES:,} points in one "
          f"insert, median of {runs} subprocesses per case")
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    with c.target_hosts(args) as hosts:
        where = args.hosts or f"embedded server (subprocess) {hosts[0][0]}:{hosts[0][1]}"
        print(f"server: {where}")
        for run in range(runs):
            order = list(CASES)
            shift = run % len(order)
            for case in order[shift:] + order[:shift]:
                await drop_series(hosts, args)
                results[case].append(run_child(case, hosts, args))
        await drop_series(hosts, args)
    rows = []
    verdicts = []
    for case, measured in results.items():
        payload = measured[0]["payload"]
        rss = c.median([m["rss_above"] for m in measured])
        traced = c.median([m["traced_peak"] for m in measured])
        rows.append([case, payload / MB, rss / MB, rss / payload, traced / MB, traced / payload])
        if case.startswith("tsconnector"):
            verdicts.append(
                f"  target {case}: peak RSS above baseline {rss / payload:.2f}x the payload "
                f"(< 2x) {'MET' if rss < 2 * payload else 'MISSED'}"
            )
    if not all(m["exact"] for ms in results.values() for m in ms):
        print("note: could not reset the peak RSS mark; RSS figures include data building")
    c.print_table(
        "peak memory of one 1 M-point insert, above the baseline (data already built)",
        ["client (input)", "payload MiB", "peak RSS MiB", "RSS / payload",
         "tracemalloc MiB", "traced / payload"],
        rows,
    )
    print("\nTargets:")
    print("\n".join(verdicts))


def main() -> None:
    parser = c.base_parser(__doc__)
    parser.add_argument("--child", default=None, help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        kind, data_kind = args.child.split(":")
        result = asyncio.run(child(kind, data_kind, c.parse_hosts(args.hosts), args))
        print(json.dumps(result))
        return
    asyncio.run(amain(args))


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
