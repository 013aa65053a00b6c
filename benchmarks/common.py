"""Shared helpers for the benchmark scripts: servers in subprocesses, data, runners, tables.

Every server a benchmark talks to runs in its own process, so its CPU time never counts
against the client being measured. Two kinds exist: the embedded server
(``python -m tsconnector.server``) or any ``--hosts`` given, and an *instant* server
(``python benchmarks/common.py instant``) that answers every request at once with a
fixed answer without looking at the payload, used to measure client-side time alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tsconnector.protocol import HEADER, AnswerType, RequestType  # noqa: E402

PYTHON = sys.executable
USER, PASSWORD, DBNAME = "iris", "siri", "dbtest"
#: First timestamp of generated data (seconds; fits the 32-bit second precision).
T0 = 1_700_000_000
Hostlist = list[tuple[str, int]]


# --------------------------------------------------------------------------- arguments


def base_parser(doc: str | None, default_runs: int = 5) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--hosts",
        default=None,
        help="comma separated host:port list of a running server (default: start the "
        "embedded server in a subprocess on a free port)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=default_runs,
        help=f"runs per case, median taken (min 5; default {default_runs})",
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="with --hosts: the process id of that server (on this machine), to report "
        "its CPU time and whether it is the bottleneck",
    )
    parser.add_argument("--user", default=USER)
    parser.add_argument("--password", default=PASSWORD)
    parser.add_argument("--db", default=DBNAME)
    return parser


def parse_hosts(text: str) -> Hostlist:
    """``"h1:9000,h2:9000"`` as ``[("h1", 9000), ("h2", 9000)]``."""
    hosts: Hostlist = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"--hosts: expected host:port, got {item!r}")
        hosts.append((host, int(port)))
    return hosts


# ----------------------------------------------------------------------------- servers


class ServerProcess:
    """A server in a subprocess that prints ``... listening on HOST:PORT`` when ready."""

    def __init__(self, argv: Sequence[str], timeout: float = 30.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=None, cwd=ROOT, env=env, text=True
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = re.search(r"listening on (\S+):(\d+)", line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return
        self.stop()
        raise RuntimeError(f"server did not start: {' '.join(argv)} (last line {line!r})")

    @property
    def hostlist(self) -> Hostlist:
        return [(self.host, self.port)]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """Terminate the server and wait for it (killed if it does not stop)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def embedded_server() -> Iterator[ServerProcess]:
    """The embedded server on a free port, in a subprocess, memory only."""
    server = ServerProcess(
        [PYTHON, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0"]
    )
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def target_hosts(args: argparse.Namespace) -> Iterator[Hostlist]:
    """The hosts to benchmark: ``--hosts`` when given, else a fresh embedded server."""
    if args.hosts:
        yield parse_hosts(args.hosts)
        return
    with embedded_server() as server:
        yield server.hostlist


@contextlib.contextmanager
def target_server(
    args: argparse.Namespace,
) -> Iterator[tuple[Hostlist, Callable[[], float] | None]]:
    """Like :func:`target_hosts`, with a function giving the server process's CPU seconds
    (None for ``--hosts`` unless ``--server-pid`` names the process serving them)."""
    if args.hosts:
        pid = args.server_pid
        yield parse_hosts(args.hosts), (functools.partial(cpu_seconds, pid) if pid else None)
        return
    with embedded_server() as server:
        yield server.hostlist, server.cpu_seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc); NaN when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def instant_server(answer_file: str | None = None) -> Iterator[ServerProcess]:
    """An instant-answer server in a subprocess (see :func:`serve_instant`)."""
    argv = [PYTHON, str(Path(__file__).resolve()), "instant"]
    if answer_file is not None:
        argv += ["--answer", answer_file]
    server = ServerProcess(argv)
    try:
        yield server
    finally:
        server.stop()


class _InstantProtocol(asyncio.Protocol):
    """Answers each frame as soon as it was received: AUTH ok, PING ack, INSERT success,
    QUERY the canned answer. Payloads are skipped, never buffered, copied or decoded."""

    def __init__(self, query_answer: bytes) -> None:
        self.query_answer = query_answer
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.skip = 0
        self.frame: tuple[int, int] | None = None  # (pid, type) being skipped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        out: list[bytes] = []
        pos, end = 0, len(data)
        size = HEADER.size
        while True:
            if self.frame is not None:
                taken = min(self.skip, end - pos)
                self.skip -= taken
                pos += taken
                if self.skip:
                    break
                self._answer(*self.frame, out)
                self.frame = None
            if pos >= end:
                break
            need = size - len(self.head)
            self.head += data[pos : pos + need]
            pos += need
            if len(self.head) < size:
                break
            length, pid, tp, _check = HEADER.unpack(self.head)
            self.head = b""
            self.skip = length
            self.frame = (pid, tp)
        if out:
            self.transport.write(b"".join(out))

    def _answer(self, pid: int, tp: int, out: list[bytes]) -> None:
        if tp == RequestType.AUTH:
            answer, body = AnswerType.RES_AUTH_SUCCESS, b""
        elif tp == RequestType.INSERT:
            answer, body = AnswerType.RES_INSERT, _INSERT_OK
        elif tp == RequestType.QUERY:
            answer, body = AnswerType.RES_QUERY, self.query_answer
        else:
            answer, body = AnswerType.RES_ACK, b""
        out.append(HEADER.pack(len(body), pid, answer, answer ^ 0xFF))
        out.append(body)


# {"success_msg": "Successfully inserted points."} as SiriDB lays it out.
_INSERT_OK = b"\xfd\x8bsuccess_msg\x9dSuccessfully inserted points."


def serve_instant(argv: Sequence[str]) -> None:
    """Run the instant-answer server on a free port until terminated."""
    parser = argparse.ArgumentParser(prog="common.py instant")
    parser.add_argument("--answer", default=None, help="file with the raw QUERY answer")
    args = parser.parse_args(argv)
    answer = Path(args.answer).read_bytes() if args.answer else b"\xfd"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _InstantProtocol(answer), "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        print(f"instant server listening on {host}:{port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


# ----------------------------------------------------------------------------- clients


async def ts_client(hosts: Hostlist, args: argparse.Namespace | None = None) -> Any:
    """A connected :class:`tsconnector.TsClient`."""
    from tsconnector.client import TsClient

    user, password, db = _credentials(args)
    client = TsClient(user, password, db, hosts, keepalive=False)
    errors = [e for e in await client.connect() if e is not None]
    if errors:
        raise errors[0]
    return client


async def siri_client(hosts: Hostlist, args: argparse.Namespace | None = None) -> Any:
    """A connected siridb-connector ``SiriDBClient`` (keepalive off, like ours)."""
    from siridb.connector import SiriDBClient

    user, password, db = _credentials(args)
    client = SiriDBClient(user, password, db, [list(h) for h in hosts], keepalive=False)
    await client.connect()
    return client


async def close_client(client: Any) -> None:
    """Close either kind of client and wait until it is closed."""
    client.close()
    wait = getattr(client, "wait_closed", None)
    if wait is not None:
        with contextlib.suppress(Exception):
            await wait()
    await asyncio.sleep(0)


def _credentials(args: argparse.Namespace | None) -> tuple[str, str, str]:
    if args is None:
        return USER, PASSWORD, DBNAME
    return args.user, args.password, args.db


# -------------------------------------------------------------------------------- data


def make_arrays(
    series: int, per_series: int, prefix: str = "bench.", seed: int = 7
) -> dict[str, Any]:
    """``{name: (int64 timestamps, float64 values)}``: one point per second per series."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ts = np.arange(T0, T0 + per_series, dtype=np.int64)
    return {f"{prefix}{i:04d}": (ts, rng.random(per_series)) for i in range(series)}


def to_lists(arrays: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The same points as ``{name: [[ts, value], ...]}`` lists."""
    return {
        name: [list(p) for p in zip(ts.tolist(), vs.tolist())] for name, (ts, vs) in arrays.items()
    }


def rename(data: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The same points under names with prefix ``old`` replaced by ``new`` (no copy)."""
    return {new + name[len(old) :]: points for name, points in data.items()}


# ------------------------------------------------------------------------------ timing


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def median_async(
    cases: Sequence[tuple[str, Callable[[int], Awaitable[float | None]]]], runs: int
) -> dict[str, list[float]]:
    """Run each case ``runs`` times, interleaved (case order rotates every round).

    A case is ``fn(run_index)`` returning its own measured seconds (or None to have the
    call timed as a whole). Interleaving spreads load changes over all cases alike.
    """
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for run in range(runs):
        shift = run % len(cases)
        for label, fn in [*cases[shift:], *cases[:shift]]:
            start = time.perf_counter()
            measured = await fn(run)
            times[label].append(time.perf_counter() - start if measured is None else measured)
    return times


def interleaved_medians(
    cases: Sequence[tuple[str, Callable[[], Any]]], runs: int
) -> dict[str, float]:
    """Median seconds of each case (after one warm-up call each), in the given order.

    The cases run in a new random order every round, so load changes on a shared
    machine hit every case alike.
    """
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _, func in cases:
        func()  # warm up (allocator, caches)
    order = list(cases)
    for _ in range(runs):
        random.shuffle(order)
        for label, func in order:
            start = time.perf_counter()
            func()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(times[label]) for label, _ in cases}


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    """Seconds of ``runs`` calls of ``fn`` (after one warm-up call)."""
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


# ------------------------------------------------------------------------------ output


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain-text table; the first column left aligned, the others right."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print(f"\n{title}")
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))
    )
    print(line)
    print("-" * len(line))
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(ours: float, theirs: float) -> str:
    """``theirs / ours`` for times (how many times faster we are), as ``"2.31x"``."""
    return f"{theirs / ours:.2f}x" if ours > 0 else "-"


def verdict(name: str, value: float, target: float) -> str:
    ok = "MET" if value >= target else "MISSED"
    return f"  target {name}: {value:.2f}x (>= {target:g}x) {ok}"


def verdict_at_most(name: str, value: float, target: float) -> str:
    ok = "MET" if value <= target else "MISSED"
    return f"  target {name}: {value:.2f}x (<= {target:g}x) {ok}"


def describe_env() -> str:
    import platform

    import qpack

    try:
        from importlib.metadata import version

        siri = version("siridb-connector")
    except Exception:
        siri = "?"
    return (
        f"python {platform.python_version()}, qpack {getattr(qpack, '__version__', '?')}, "
        f"siridb-connector {siri}, {os.cpu_count()} cpu(s)"
    )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "instant":
        serve_instant(sys.argv[2:])
    else:
        raise SystemExit("usage: python benchmarks/common.py instant [--answer FILE]")
