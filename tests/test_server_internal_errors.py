"""Internal errors are answered and recorded, never silent (issue 11, item 13).

Every test here causes one on purpose (``allow_internal_errors``); everywhere else the
autouse fixture of ``conftest.py`` fails the test during which a server recorded one,
which is how the frame fuzz and the property tests catch server bugs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_wire import RawClient

from tsconnector.protocol import AnswerType, RequestType
from tsconnector.server import EmbeddedServer, internal
from tsconnector.server import handler as handler_mod
from tsconnector.server.model import Database
from tsconnector.server.query import evaluator

pytestmark = pytest.mark.allow_internal_errors


@pytest.fixture
async def server():
    async with EmbeddedServer() as srv:
        yield srv


@pytest.fixture
async def client(server: EmbeddedServer):
    c = await RawClient.connect(server.port)
    assert await c.auth() == AnswerType.RES_AUTH_SUCCESS
    yield c
    await c.close()


async def test_an_answer_that_cannot_be_packed_is_answered_with_an_error(
    server: EmbeddedServer, client: RawClient
) -> None:
    def huge(session: Any, query: str, precision: int | None) -> tuple[int, Any]:
        return AnswerType.RES_QUERY, {"x": [[1, 2**70]]}

    server.state.execute = huge
    tp, data = await client.query("select * from x")
    assert tp == AnswerType.ERR_MSG
    assert data == {"error_msg": "Critical error while processing the query."}
    assert server.internal_errors.count == 1
    assert server.internal_errors.recent[0].where == "packing an answer"
    await client.ping()


async def test_a_failing_dispatch_is_answered(
    server: EmbeddedServer, client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(handler_mod, "handle_service", broken)
    tp, data = await client.request(RequestType.SERVICE, ["sa", "siri", 64])
    assert (tp, data) == (AnswerType.ERR_MSG,
                          {"error_msg": "Critical error while processing the request."})
    assert server.internal_errors.count == 1
    await client.ping()


async def test_a_failing_queued_request_is_answered(
    server: EmbeddedServer, client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Database, batch: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(Database, "insert", broken)
    tp, _ = await client.insert({"a": [[1699920000, 1]]})
    assert tp == AnswerType.ERR_MSG
    assert server.internal_errors.count == 1
    await client.ping()


async def test_errors_the_query_engine_catches_itself_are_recorded(
    server: EmbeddedServer, client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[internal.InternalError] = []
    server.internal_errors.add_hook(seen.append)

    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(evaluator, "run_select", broken)
    monkeypatch.setattr(evaluator, "run_single", broken)
    before = internal.total()
    tp, data = await client.query('select * from "a"')
    assert tp == AnswerType.ERR_QUERY  # the engine's own answer
    assert "rror" in data["error_msg"]
    assert server.internal_errors.count == 1
    assert "ZeroDivisionError" in seen[0].traceback
    report = internal.check_since(before)
    assert report is not None
    assert report.startswith("1 internal server error(s) recorded")
    assert "ZeroDivisionError" in report


async def test_a_record_that_fails_to_apply_is_recorded(tmp_path: Path) -> None:
    async with EmbeddedServer(data_dir=tmp_path) as srv:
        db = srv.database("dbtest")
        db.commit(("no_such_record", 1))
        await srv.state.stores["dbtest"].sync()
        assert srv.internal_errors.count == 1
        assert "no_such_record" in srv.internal_errors.recent[0].where


def test_no_report_without_errors() -> None:
    assert internal.check_since(internal.total()) is None
