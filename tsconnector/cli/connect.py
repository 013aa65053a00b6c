"""Opening a client for a command: from --dsn, TSCONNECTOR_DSN, --hosts or a throw-away server.

A server that is down is reported at once with its address (the connection attempt is
refused), instead of each request waiting for its whole timeout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..client import TsClient
from ..dsn import DEFAULT_PASSWORD, DEFAULT_USER, DSN_ENV, dsn_from_env, parse_dsn
from .errors import CliError, describe_connect_failure

__all__ = ["Target", "open_client", "resolve_target"]

DEFAULT_DB = "dbtest"
#: Seconds a connection attempt may take before the host is reported as not answering.
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Target:
    """Where a command connects; ``hostlist`` is None for a throw-away embedded server."""

    username: str
    password: str
    dbname: str
    hostlist: list[tuple[Any, ...]] | None

    @property
    def where(self) -> str:
        """The hosts in words, for messages."""
        if self.hostlist is None:
            return "a throw-away in-memory server"
        return ", ".join(f"{h[0]}:{h[1]}" for h in self.hostlist)


def resolve_target(args: argparse.Namespace) -> Target:
    """Combine --dsn (or TSCONNECTOR_DSN), --hosts, --db, --user and --password.

    Options given explicitly win over the parts of the DSN.
    """
    try:
        dsn = parse_dsn(args.dsn) if args.dsn else dsn_from_env()
    except ValueError as exc:
        raise CliError(f"{'--dsn: ' if args.dsn else ''}{exc}") from None
    hostlist: list[tuple[Any, ...]] | None = None
    if args.hosts:
        hostlist = [tuple(h) for h in args.hosts]
    elif dsn is not None:
        hostlist = dsn.hostlist
    embedded = getattr(args, "embedded", None)
    if embedded and hostlist is not None:
        source = "--hosts" if args.hosts else ("--dsn" if args.dsn else DSN_ENV)
        raise CliError(f"--embedded writes into a throw-away server; leave out {source}")
    if embedded is False and hostlist is None:
        raise CliError(
            "no server given: use --hosts host:port, --dsn siridb://... or "
            f"{DSN_ENV} (or --embedded to write into a throw-away in-memory server)"
        )
    return Target(
        username=args.user or (dsn.username if dsn else DEFAULT_USER),
        password=args.password if args.password is not None else (
            dsn.password if dsn else DEFAULT_PASSWORD
        ),
        dbname=args.db or (dsn.dbname if dsn else DEFAULT_DB),
        hostlist=hostlist,
    )


async def _connect(client: TsClient, target: Target) -> None:
    """Connect; fail at once when no host can be used, warn about the hosts that cannot."""
    results = await client.connect()
    assert target.hostlist is not None
    failures = [
        describe_connect_failure(f"{entry[0]}:{entry[1]}", exc)
        for entry, exc in zip(target.hostlist, results)
        if exc is not None
    ]
    if failures and len(failures) == len(results):
        what = f"database {target.dbname!r} as {target.username!r}"
        raise CliError(f"cannot connect to {what}: " + "; ".join(failures))
    for failure in failures:
        print(f"warning: {failure} (using the other hosts)", file=sys.stderr)


@asynccontextmanager
async def open_client(
    target: Target, *, timeout: float = 60.0, precision: str = "s"
) -> AsyncIterator[TsClient]:
    """A connected client for ``target``; an in-memory embedded server when it has no hosts."""
    async with AsyncExitStack() as stack:
        hostlist = target.hostlist
        if hostlist is None:
            from ..server import EmbeddedServer

            server = EmbeddedServer(
                port=0,
                databases=((target.dbname, precision),),
                users=((target.username, target.password),),
            )
            await stack.enter_async_context(server)
            hostlist = [(server.host, server.port)]
            target = Target(target.username, target.password, target.dbname, hostlist)
        client = TsClient(
            target.username,
            target.password,
            target.dbname,
            hostlist,
            timeout=min(timeout, CONNECT_TIMEOUT),
        )

        async def close() -> None:
            client.close()
            await client.wait_closed()

        stack.push_async_callback(close)
        await _connect(client, target)
        yield client
