"""The command line: ``tsconnector serve | query | insert | import | bench``.

Errors are one line on standard error: exit status 1 for a failed command, 2 for a
usage error, 130 after Ctrl-C. ``TSCONNECTOR_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..version import __version__
from . import bench, importer, insert, query
from .args import Parser
from .errors import describe

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
_COMMANDS: dict[str, Command] = {
    "query": query.run,
    "insert": insert.run,
    "import": importer.run,
    "bench": bench.run,
}


def build_parser() -> Parser:
    """The parser of every command except ``serve`` (which has its own)."""
    parser = Parser(
        prog="tsconnector",
        description="Talk to SiriDB-protocol servers, or run the embedded one. Connect with "
        "--dsn siridb://user:password@host:port/dbname, $TSCONNECTOR_DSN or --hosts.",
    )
    parser.add_argument("--version", action="version", version=f"tsconnector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the embedded server (tsconnector serve --help)",
                   add_help=False)
    query.add_parser(sub)
    insert.add_parser(sub)
    importer.add_parser(sub)
    bench.add_parser(sub)
    return parser


def _silence_stdout() -> None:
    """After a broken pipe: send further output (and the exit-time flush) nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fail(prog: str, exc: BaseException) -> int:
    if os.environ.get("TSCONNECTOR_DEBUG"):
        raise exc
    sys.stderr.write(f"{prog}: error: {describe(exc)}\n")
    sys.stderr.flush()
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    prog = "tsconnector"
    try:
        if args_list[:1] == ["serve"]:
            from . import serve

            prog = "tsconnector serve"
            return serve.run(args_list[1:])
        args = build_parser().parse_args(args_list)
        prog = f"tsconnector {args.command}"
        status = asyncio.run(_COMMANDS[args.command](args))
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except BrokenPipeError as exc:
        _silence_stdout()
        return _fail(prog, exc)
    except Exception as exc:
        return _fail(prog, exc)
