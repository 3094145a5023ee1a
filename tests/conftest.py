"""One PostgreSQL for the whole test session (made with the machine's initdb, or DATABASE_URL),
the schema applied by the real migrations, and the app served in-process over ASGI.

Each test signs up its own users; RLS keeps tests apart, so nothing is truncated."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from scriptlabs.app import create_app
from scriptlabs.config import Argon2Params, Settings
from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
CHEAP_ARGON2 = Argon2Params(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass(frozen=True)
class Database:
    dsn: str
    admin_dsn: str


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = os.environ.get("DATABASE_URL")
    if url:
        admin = os.environ.get("DATABASE_ADMIN_URL", url)
        import asyncio

        asyncio.run(migrate(admin))
        yield Database(url, admin)
        return
    cluster = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")), fast=True)
    with cluster:
        import asyncio

        asyncio.run(migrate(cluster.admin_dsn()))
        yield Database(cluster.dsn(), cluster.admin_dsn())


@pytest.fixture(scope="session")
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.dsn,
        database_admin_url=database.admin_dsn,
        jwt_secret=JWT_SECRET,
        argon2=CHEAP_ARGON2,
        db_pool_min=1,
        db_pool_max=10,
    )


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture(scope="session")
async def unplanned_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same API with the planned path off: every operation runs through Strawberry."""
    app = create_app(replace(settings, graphql_planner=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture(scope="session")
async def admin(database: Database) -> AsyncIterator[asyncpg.Connection]:
    """The schema owner's connection (bypasses RLS): for checks the API cannot make."""
    conn = await asyncpg.connect(database.admin_dsn)
    try:
        yield conn
    finally:
        await conn.close()


class Api:
    """A GraphQL client for the tests: `await api.gql(query, variables, token=...)`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {"authorization": f"Bearer {token}"} if token else {}
        all_headers.update(headers or {})
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return await self.client.post("/graphql", json=body, headers=all_headers)

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.post(query, variables, token=token)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def ok(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The data of an operation that must succeed."""
        result = await self.gql(query, variables, token=token)
        assert "errors" not in result, result
        data: dict[str, Any] = result["data"]
        return data

    async def sign_up(self, password: str = "correct horse battery") -> User:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        data = await self.ok(
            "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) {"
            " accessToken refreshToken user { id email } } }",
            {"e": email, "p": password},
        )
        payload = data["signUp"]
        return User(
            id=payload["user"]["id"],
            email=email,
            password=password,
            token=payload["accessToken"],
            refresh_token=payload["refreshToken"],
        )


@dataclass(frozen=True)
class User:
    id: str
    email: str
    password: str
    token: str
    refresh_token: str


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


def error_codes(result: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in result.get("errors", [])]
