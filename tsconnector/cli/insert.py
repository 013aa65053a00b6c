"""``tsconnector insert``: one JSON document ``{series: [[ts, value], ...]}`` in one insert."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .args import SubParsers, add_connection_args
from .connect import open_client, resolve_target
from .errors import CliError

__all__ = ["add_parser", "run"]


def add_parser(sub: SubParsers) -> None:
    """Register ``insert``."""
    i = sub.add_parser(
        "insert",
        help="insert a JSON document {series: [[ts, value], ...]}",
        description="Insert one JSON document {series: [[timestamp, value], ...]} "
        'or [{"name": series, "points": [...]}] in one request.',
    )
    add_connection_args(i, writes=True)
    i.add_argument("file", help="JSON file, or - for standard input")


def read_json(path: str) -> Any:
    """The JSON document in ``path`` (``-``: standard input); errors name the file."""
    name = "standard input" if path == "-" else path
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{name}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{name}: not UTF-8 text ({exc.reason})") from None


async def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    target = resolve_target(args)
    data = read_json(args.file)
    async with open_client(target, timeout=args.timeout) as client:
        answer = await client.insert(data, timeout=args.timeout)
    print(answer.get("success_msg", answer))
    return 0
