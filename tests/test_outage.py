"""When the database does not answer: readiness says so, and errors keep their shape."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from scriptlabs.app import create_app
from scriptlabs.config import Settings
from tests.conftest import Api


async def test_a_lost_database_is_503_with_a_code_never_a_bare_500(
    settings: Settings, api: Api
) -> None:
    user = await api.sign_up()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/health/ready")).status_code == 200
            app.state.services.pool.pool.terminate()  # as if the database went away
            assert (await c.get("/health/ready")).status_code == 503
            assert (await c.get("/health/live")).status_code == 200
            response = await c.post(
                "/graphql",
                json={"query": "{ labs { totalCount } }"},
                headers={"authorization": f"Bearer {user.token}"},
            )
            assert response.status_code == 503
            assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
            signed_out = await c.post(
                "/graphql",
                json={
                    "query": 'mutation { signIn(email: "a@example.com", password: "x") {'
                    " accessToken } }"
                },
            )
            # a mutation whose bookkeeping could not reach the database: the same 503
            assert signed_out.status_code == 503
            assert signed_out.headers["retry-after"]
            assert signed_out.json() == {
                "errors": [
                    {
                        "message": "The database is unavailable",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                    }
                ]
            }


async def test_a_driver_error_of_ours_is_a_fault_with_a_request_id_not_an_outage(
    client: httpx.AsyncClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement the driver refuses is a bug, answered 500 with a request id to find it in
    the log; only a database that is not there is 503 'unavailable'."""
    user = await api.sign_up()
    runner = client._transport.app.state.runner  # type: ignore[attr-defined]

    async def refused(*args: object, **kwargs: object) -> None:
        raise asyncpg.InterfaceError("the server expects 0 arguments for this query, 1 was passed")

    monkeypatch.setattr(runner, "run", refused)
    response = await api.post("{ labs { totalCount } }", token=user.token)
    assert response.status_code == 500
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["requestId"]
    assert "unavailable" not in error["message"]
