"""``tsconnector serve``: the embedded server (as ``python -m tsconnector.server``).

Prints ``tsconnector server listening on HOST:PORT`` once it accepts connections, so
``--port 0`` (a free port) can be read by scripts; stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from .args import Parser
from .errors import CliError, describe

__all__ = ["run"]


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` (after ``serve``) and serve until stopped; returns the exit status."""
    from ..server.__main__ import build_parser, serve

    parser = Parser(
        prog="tsconnector serve",
        description="Run the embedded SiriDB-protocol server (user iris / siri on every "
        "database); --port 0 picks a free port.",
        parents=[build_parser()],
        add_help=False,
    )
    args = parser.parse_args(list(argv))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {describe(exc)}") from None
        raise
    return 0
