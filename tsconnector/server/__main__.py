"""Command line: ``python -m tsconnector.server --host H --port P [--data-dir D] [--db N:s]``.

Errors that stop the start are one line on stderr with an exit code: 2 bad arguments
(also an invalid database name), 65 damaged data (start with ``--repair``), 75 data
directory in use by another server, 1 anything else (such as a port in use).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from ..timeutil import parse_precision
from .app import EmbeddedServer, parse_duration
from .datadir import validate_database_name
from .errors import InvalidDatabaseName, ServerStartError
from .limits import DEFAULT_LIMITS


def _db_spec(text: str) -> tuple[str, int, dict[str, object]]:
    """``NAME[:PRECISION[:BUFFER_SIZE[:DURATION_NUM[:DURATION_LOG]]]]``."""
    name, *rest = text.split(":")
    if not name or len(rest) > 4:
        raise argparse.ArgumentTypeError(f"invalid database {text!r}")
    options: dict[str, object] = {}
    try:
        name = validate_database_name(name)
        precision = parse_precision(rest[0] if rest and rest[0] else "s")
        if len(rest) > 1 and rest[1]:
            options["buffer_size"] = int(rest[1])
        if len(rest) > 2 and rest[2]:
            options["duration_num"] = parse_duration(rest[2])
        if len(rest) > 3 and rest[3]:
            options["duration_log"] = parse_duration(rest[3])
    except (InvalidDatabaseName, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, precision, options


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


def _timeout(text: str) -> float | None:
    """Seconds; 0 switches the timeout off."""
    return _seconds(text) or None


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULT_LIMITS
    parser = argparse.ArgumentParser(
        prog="python -m tsconnector.server",
        description="Run the embedded SiriDB-protocol server (user iris / siri on every db).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--data-dir", default=None, help="keep data here (default: memory)")
    parser.add_argument(
        "--db", action="append", type=_db_spec, default=None,
        metavar="NAME[:s|ms|us|ns[:BUFFER_SIZE[:DURATION_NUM[:DURATION_LOG]]]]",
        help="database to serve (repeatable; default dbtest:s; durations like 1w, 1d)",
    )
    parser.add_argument("--optimize-interval", type=float, default=3600.0,
                        help="seconds between drops of expired shards (default 3600)")
    parser.add_argument("--server-port", type=int, default=9010,
                        help="back-end port shown in server names (default 9010)")
    parser.add_argument("--topology", default=None, metavar="FILE",
                        help="JSON cluster layout to list (servers and their pools); this "
                             "server is the entry named HOST:SERVER_PORT")
    parser.add_argument("--repair", action="store_true",
                        help="start despite damaged files: keep every intact record, move "
                             "damaged files to <db>/damaged/ and report what was lost")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-connections", type=_at_least(1), default=d.max_connections,
                        help=f"open client connections (default {d.max_connections})")
    limits.add_argument("--handshake-timeout", type=_timeout, default=d.handshake_timeout,
                        metavar="SECONDS",
                        help=f"time to authenticate (default {d.handshake_timeout:g}; 0 off)")
    limits.add_argument("--idle-timeout", type=_timeout, default=d.idle_timeout,
                        metavar="SECONDS",
                        help=f"close silent connections (default {d.idle_timeout:g}; 0 off)")
    limits.add_argument("--max-unauth-bytes", type=_at_least(1024), default=d.max_unauth_bytes,
                        metavar="BYTES",
                        help="bytes buffered before authentication "
                             f"(default {d.max_unauth_bytes})")
    limits.add_argument("--close-timeout", type=_seconds, default=d.close_timeout,
                        metavar="SECONDS",
                        help="on shutdown, time clients get to take their last answers "
                             f"(default {d.close_timeout:g})")
    parser.add_argument("--log-level", default="WARNING")
    return parser


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly (within ``--close-timeout``)."""
    server = EmbeddedServer(
        args.host,
        args.port,
        data_dir=args.data_dir,
        databases=args.db or [("dbtest", 0, {})],
        server_port=args.server_port,
        optimize_interval=args.optimize_interval,
        repair=args.repair,
        max_connections=args.max_connections,
        handshake_timeout=args.handshake_timeout,
        idle_timeout=args.idle_timeout,
        max_unauth_bytes=args.max_unauth_bytes,
        close_timeout=args.close_timeout,
        topology=args.topology,
    )
    await server.start()
    for entry in server.repair_report:
        print(f"repair: {_describe(entry)}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"tsconnector server listening on {server.host}:{server.port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def _describe(entry: dict[str, object]) -> str:
    where = entry.get("moved_to") or entry.get("kept_in")
    return (
        f"{entry['file']}: {entry['bytes']} bytes at byte {entry['offset']} "
        f"({entry['reason']}) -> {where}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if hasattr(signal, "SIGXFSZ"):
        # A file size limit must fail the write (EFBIG, answered as "not stored"),
        # not kill the server.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        asyncio.run(serve(args))
    except ServerStartError as exc:
        print(f"tsconnector server: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"tsconnector server: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
