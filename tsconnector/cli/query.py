"""``tsconnector query``: one-shot queries (table, JSON or CSV), statements from standard
input, or the interactive prompt when no statement is given on a terminal."""

from __future__ import annotations

import argparse
import sys

from ..client import TsClient
from ..exceptions import QueryError
from ..protocol import PRECISION_NAMES
from .args import SubParsers, add_connection_args
from .connect import open_client, resolve_target
from .errors import CliError
from .output import write_out
from .render import FORMATS, render

__all__ = ["add_parser", "run"]


def add_parser(sub: SubParsers) -> None:
    """Register ``query``."""
    q = sub.add_parser(
        "query",
        help="run queries; without one, an interactive prompt",
        description="Run queries and print the answers. Without a statement: an interactive "
        "prompt on a terminal, or one statement per line from standard input.",
    )
    add_connection_args(q, writes=False)
    q.add_argument("query", nargs="*", help="statements (none: interactive prompt)")
    q.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: table on a terminal, json otherwise)",
    )
    q.add_argument("--precision", choices=PRECISION_NAMES, default=None,
                   help="time precision of the answer (default: the database's)")
    q.add_argument("--compact", action="store_true", help="JSON: one document per line")
    q.add_argument("--history", default=None,
                   help="history file of the prompt (default ~/.tsconnector_history)")


async def answer_text(
    client: TsClient, statement: str, fmt: str, precision: int | None, timeout: float,
    *, compact: bool = False,
) -> str:
    """Run one statement and render its answer."""
    answer = await client.query(statement, precision, timeout=timeout)
    shown = precision
    if fmt == "table" and shown is None:
        try:
            shown = await client.db_time_precision(timeout)
        except Exception:  # a user without the privilege still gets the table
            shown = None
    return render(answer, fmt, precision=shown, compact=compact)


async def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    statements = [s for s in args.query if s.strip()]
    if not statements and sys.stdin.isatty():
        from .shell import load_prompt_toolkit, run_shell

        load_prompt_toolkit()  # fail before connecting when the extra is missing
        target = resolve_target(args)
        async with open_client(target, timeout=args.timeout) as client:
            return await run_shell(client, target, args)
    if not statements:
        statements = [
            line.strip() for line in sys.stdin if line.strip() and not line.lstrip().startswith("#")
        ]
        if not statements:
            raise CliError("no statement given (on the command line or on standard input)")
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    precision = None if args.precision is None else PRECISION_NAMES.index(args.precision)
    target = resolve_target(args)
    async with open_client(target, timeout=args.timeout) as client:
        for statement in statements:
            try:
                text = await answer_text(
                    client, statement, fmt, precision, args.timeout, compact=args.compact
                )
            except QueryError as exc:
                where = f" (statement {statement!r})" if len(statements) > 1 else ""
                raise CliError(f"query failed: {' '.join(exc.message.split())}{where}") from None
            write_out(text)
    return 0
