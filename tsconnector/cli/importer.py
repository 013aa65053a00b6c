"""``tsconnector import``: CSV rows ``series,timestamp,value`` inserted in batches.

Everything before a bad line is stored before the error is reported, so the message
can say exactly which rows made it and where to resume.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..client import TsClient
from ..exceptions import InsertOutcomeUnknown
from .args import SubParsers, add_connection_args, positive_int
from .connect import open_client, resolve_target
from .errors import CliError, describe
from .progress import Progress

__all__ = ["Batch", "CsvLineError", "add_parser", "csv_batches", "run"]


@dataclass
class Batch:
    """Points of consecutive CSV lines: ``{series: [[ts, value], ...]}``."""

    data: dict[str, list[list[Any]]] = field(default_factory=dict)
    rows: int = 0
    first_line: int = 0
    last_line: int = 0


class CsvLineError(ValueError):
    """A CSV line that is not ``series,timestamp,value``; ``pending`` holds the rows before it."""

    def __init__(self, line: int, message: str, pending: Batch) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.pending = pending


def _value(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def csv_batches(lines: Iterable[str], batch_size: int) -> Iterator[Batch]:
    """Yield batches of ``batch_size`` rows; a header line and ``#`` comments are skipped.

    Raises :class:`CsvLineError` (with the rows read before it) at the first bad line.
    """
    reader = csv.reader(lines)
    batch = Batch()
    first_row = True
    for row in reader:
        line = reader.line_num
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 3:
            raise CsvLineError(
                line, f"expected series,timestamp,value, got {len(row)} field(s)", batch
            )
        name, ts_text, value_text = row
        try:
            ts = int(ts_text)
        except ValueError:
            if first_row:
                first_row = False
                continue  # a header line
            raise CsvLineError(line, f"timestamp {ts_text!r} is not an integer", batch) from None
        first_row = False
        if not name:
            raise CsvLineError(line, "the series name is empty", batch)
        if batch.rows == 0:
            batch.first_line = line
        batch.data.setdefault(name, []).append([ts, _value(value_text)])
        batch.rows += 1
        batch.last_line = line
        if batch.rows >= batch_size:
            yield batch
            batch = Batch()
    if batch.rows:
        yield batch


def add_parser(sub: SubParsers) -> None:
    """Register ``import``."""
    m = sub.add_parser(
        "import",
        help="import CSV rows series,timestamp,value in batches",
        description="Import CSV rows series,timestamp,value (a header line is skipped). "
        "Shows a progress bar on a terminal.",
    )
    add_connection_args(m, writes=True)
    m.add_argument("file", help="CSV file, or - for standard input")
    m.add_argument("--batch", type=positive_int, default=10_000, help="points per insert")
    m.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when standard error is a terminal)")


class _Counting:
    """Iterates the lines of a text file, counting the characters read (for the percentage)."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.fh:
            self.read += len(line)
            yield line


async def _store(client: TsClient, batch: Batch, timeout: float, stored: int, name: str) -> None:
    try:
        await client.insert(batch.data, timeout=timeout)
    except InsertOutcomeUnknown as exc:
        raise CliError(
            f"{describe(exc)}; {stored:,} rows stored before lines "
            f"{batch.first_line}-{batch.last_line} of {name}, which may or may not be stored"
        ) from None
    except Exception as exc:
        rest = f"lines {batch.first_line}-{batch.last_line}" if batch.rows else "nothing"
        raise CliError(
            f"{describe(exc)}; {stored:,} rows stored, {rest} of {name} not stored"
        ) from None


async def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    target = resolve_target(args)
    name = "standard input" if args.file == "-" else args.file
    if args.file == "-":
        fh: TextIO = sys.stdin
        size = None
    else:
        fh = open(args.file, encoding="utf-8", newline="")  # noqa: ASYNC230, SIM115 - closed below
        size = os.fstat(fh.fileno()).st_size
    enabled = sys.stderr.isatty() if args.progress is None else args.progress
    progress = Progress(sys.stderr, enabled=enabled, total=size)
    stored = 0
    try:
        async with open_client(target, timeout=args.timeout) as client:
            lines = _Counting(fh)
            try:
                for batch in csv_batches(lines, args.batch):
                    await _store(client, batch, args.timeout, stored, name)
                    stored += batch.rows
                    progress.update(stored, lines.read)
            except CsvLineError as exc:
                if exc.pending.rows:
                    await _store(client, exc.pending, args.timeout, stored, name)
                    stored += exc.pending.rows
                progress.clear()
                raise CliError(
                    f"{name} {exc}; {stored:,} rows stored (all rows before line {exc.line})"
                ) from None
            except UnicodeDecodeError as exc:
                progress.clear()
                raise CliError(
                    f"{name}: not UTF-8 text ({exc.reason}); {stored:,} rows stored"
                ) from None
            except CliError:
                progress.clear()
                raise
    finally:
        if fh is not sys.stdin:
            fh.close()
    progress.update(stored, lines.read, force=True)
    elapsed = progress.elapsed()
    rate = stored / elapsed
    progress.finish(f"imported {stored:,} points in {elapsed:.2f} s ({rate:,.0f} points/s)")
    return 0
