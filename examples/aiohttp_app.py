"""An aiohttp service on tsconnector: the client in a cleanup context, typed app keys.

Run it with ``pip install aiohttp`` and
``TSCONNECTOR_DSN=siridb://iris:siri@127.0.0.1:9000/dbtest python examples/aiohttp_app.py``.

One client per process, made in ``app.cleanup_ctx`` and stored under a ``web.AppKey``;
handlers pass user input as ``$1`` parameters with a short timeout, and answer 503 at
once when no host is ready.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from tsconnector import (
    InsertError,
    PoolError,
    QueryError,
    TsClient,
    TsConnectionError,
    TsTimeoutError,
)

TSCLIENT = web.AppKey("tsclient", TsClient)
QUERY_TIMEOUT = 2.0
INSERT_TIMEOUT = 5.0
UNAVAILABLE = (PoolError, TsTimeoutError, TsConnectionError)


def ready_client(request: web.Request) -> TsClient:
    """The shared client; 503 at once when no host is ready."""
    client = request.app[TSCLIENT]
    if not client.connected:
        raise web.HTTPServiceUnavailable(text="the time-series database is not reachable")
    return client


async def health(request: web.Request) -> web.Response:
    client = ready_client(request)
    hosts = [{"host": s.host, "state": s.state.value} for s in client.stats()]
    return web.json_response({"hosts": hosts})


async def last_point(request: web.Request) -> web.Response:
    client = ready_client(request)
    name = request.match_info["name"]
    try:
        answer = await client.query("select last() from $1", params=[name], timeout=QUERY_TIMEOUT)
    except QueryError as exc:
        raise web.HTTPBadRequest(text=exc.message) from None
    except UNAVAILABLE as exc:
        raise web.HTTPServiceUnavailable(text=str(exc) or "no answer in time") from None
    if name not in answer:
        raise web.HTTPNotFound(text=f"no series {name!r}")
    ts, value = answer[name][0]
    return web.json_response({"series": name, "timestamp": ts, "value": value})


async def add_points(request: web.Request) -> web.Response:
    client = ready_client(request)
    name = request.match_info["name"]
    body = await request.json()
    points = body.get("points") if isinstance(body, dict) else None
    if not isinstance(points, list):
        raise web.HTTPBadRequest(text='expected {"points": [[timestamp, value], ...]}')
    try:
        answer = await client.insert({name: points}, timeout=INSERT_TIMEOUT)
    except (InsertError, ValueError, TypeError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except UNAVAILABLE as exc:
        raise web.HTTPServiceUnavailable(text=str(exc) or "no answer in time") from None
    return web.json_response({"stored": len(points), "message": answer["success_msg"]}, status=201)


def create_app(dsn: str | None = None) -> web.Application:
    """The application; ``dsn`` defaults to ``TSCONNECTOR_DSN``."""

    async def tsclient_ctx(app: web.Application) -> AsyncIterator[None]:
        client = TsClient.from_dsn(dsn, timeout=5)
        await client.connect()  # failures are fine: hosts reconnect in the background
        app[TSCLIENT] = client
        yield
        client.close()
        await client.wait_closed()

    app = web.Application()
    app.cleanup_ctx.append(tsclient_ctx)
    app.router.add_get("/health", health)
    app.router.add_get("/series/{name}/last", last_point)
    app.router.add_post("/series/{name}", add_points)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), port=int(os.environ.get("PORT", "8080")))
