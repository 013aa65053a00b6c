"""Argument parsing for the command line: one-line usage errors and shared option groups."""

from __future__ import annotations

import argparse
from typing import NoReturn, TypeAlias

from ..dsn import DSN_ENV, parse_hosts

__all__ = [
    "Parser",
    "SubParsers",
    "add_connection_args",
    "hosts_arg",
    "positive_float",
    "positive_int",
]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: What ``add_subparsers()`` returns on a :class:`Parser`.
SubParsers: TypeAlias = "argparse._SubParsersAction[Parser]"


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def hosts_arg(text: str) -> list[tuple[str, int]]:
    """An argparse type: ``host:port[,host:port...]``."""
    try:
        return parse_hosts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_connection_args(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    """Where to connect: ``--dsn``/``TSCONNECTOR_DSN``, ``--hosts``, credentials, timeout."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--dsn",
        default=None,
        help=f"siridb://user:password@host:port,host:port/dbname (default: ${DSN_ENV})",
    )
    group.add_argument(
        "--hosts",
        type=hosts_arg,
        default=None,
        help="host:port[,host:port...] (overrides the DSN's hosts; port 9000 by default)",
    )
    group.add_argument("--db", default=None, help="database name (default dbtest)")
    group.add_argument("--user", default=None, help="user name (default iris)")
    group.add_argument("--password", default=None, help="password (default siri)")
    group.add_argument(
        "--timeout", type=positive_float, default=60.0, help="seconds per request (default 60)"
    )
    if writes:
        group.add_argument(
            "--embedded",
            action="store_true",
            help="without a server: write into a throw-away in-memory server (lost at exit)",
        )
