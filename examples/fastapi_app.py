"""A FastAPI service on tsconnector: one shared client per process, short timeouts, 503s.

Run it with ``pip install fastapi uvicorn`` and
``TSCONNECTOR_DSN=siridb://iris:siri@127.0.0.1:9000/dbtest uvicorn examples.fastapi_app:app``.

- The client is created in the lifespan and shared by every request (never one per
  request). The service starts even when no server is up yet: the client keeps
  reconnecting in the background, and ``/health`` says whether a host is ready.
- Handlers pass user input only as ``$1`` parameters and bound every call with a short
  timeout, so a slow database never ties up the web server.
- When no host is ready the handlers answer 503 at once instead of waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from tsconnector import (
    InsertError,
    PoolError,
    QueryError,
    TsClient,
    TsConnectionError,
    TsTimeoutError,
)

#: Seconds an HTTP request may wait for the database.
QUERY_TIMEOUT = 2.0
INSERT_TIMEOUT = 5.0


class Points(BaseModel):
    """``{"points": [[timestamp, value], ...]}``; timestamps in the database's precision."""

    points: list[tuple[int, float]]


def ready_client(request: Request) -> TsClient:
    """The shared client; 503 at once when no host is ready."""
    client: TsClient = request.app.state.tsclient
    if not client.connected:
        raise HTTPException(503, "the time-series database is not reachable")
    return client


Client = Annotated[TsClient, Depends(ready_client)]


def create_app(dsn: str | None = None) -> FastAPI:
    """The application; ``dsn`` defaults to ``TSCONNECTOR_DSN``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = TsClient.from_dsn(dsn, timeout=5)
        await client.connect()  # failures are fine: hosts reconnect in the background
        app.state.tsclient = client
        try:
            yield
        finally:
            client.close()
            await client.wait_closed()

    app = FastAPI(title="tsconnector example", lifespan=lifespan)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        client: TsClient = request.app.state.tsclient
        if not client.connected:
            raise HTTPException(503, "no database host is ready")
        return {"hosts": [{"host": s.host, "state": s.state.value} for s in client.stats()]}

    @app.get("/series/{name}/last")
    async def last_point(name: str, client: Client) -> dict[str, Any]:
        try:
            answer = await client.query(
                "select last() from $1", params=[name], timeout=QUERY_TIMEOUT
            )
        except QueryError as exc:
            raise HTTPException(400, exc.message) from None
        except (PoolError, TsTimeoutError, TsConnectionError) as exc:
            raise HTTPException(503, str(exc) or "the database did not answer in time") from None
        if name not in answer:
            raise HTTPException(404, f"no series {name!r}")
        ts, value = answer[name][0]
        return {"series": name, "timestamp": ts, "value": value}

    @app.post("/series/{name}", status_code=201)
    async def add_points(name: str, body: Points, client: Client) -> dict[str, Any]:
        try:
            answer = await client.insert(
                {name: [list(p) for p in body.points]}, timeout=INSERT_TIMEOUT
            )
        except InsertError as exc:
            raise HTTPException(400, exc.message) from None
        except (PoolError, TsTimeoutError, TsConnectionError) as exc:
            # Includes InsertOutcomeUnknown: the client may retry after checking.
            raise HTTPException(503, str(exc) or "the database did not answer in time") from None
        return {"stored": len(body.points), "message": answer["success_msg"]}

    return app


app = create_app()
