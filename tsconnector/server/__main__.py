"""Command line: ``python -m tsconnector.server --host H --port P [--data-dir D] [--db N:s]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .app import EmbeddedServer, parse_duration, parse_precision


def _db_spec(text: str) -> tuple[str, int, dict[str, object]]:
    """``NAME[:PRECISION[:BUFFER_SIZE[:DURATION_NUM[:DURATION_LOG]]]]``."""
    name, *rest = text.split(":")
    if not name or len(rest) > 4:
        raise argparse.ArgumentTypeError(f"invalid database {text!r}")
    options: dict[str, object] = {}
    try:
        precision = parse_precision(rest[0] if rest and rest[0] else "s")
        if len(rest) > 1 and rest[1]:
            options["buffer_size"] = int(rest[1])
        if len(rest) > 2 and rest[2]:
            options["duration_num"] = parse_duration(rest[2])
        if len(rest) > 3 and rest[3]:
            options["duration_log"] = parse_duration(rest[3])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, precision, options


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--log-level", default="WARNING")
    return parser


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    server = EmbeddedServer(
        args.host,
        args.port,
        data_dir=args.data_dir,
        databases=args.db or [("dbtest", 0, {})],
        server_port=args.server_port,
        optimize_interval=args.optimize_interval,
    )
    await server.start()
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
