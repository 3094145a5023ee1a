"""One PostgreSQL for the whole test session (made with the machine's initdb, or DATABASE_URL),
the schema applied by the real migrations, and the app served in-process over ASGI.

Each test signs up its own users; RLS keeps tests apart, so nothing is truncated."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller

from scriptlabs.app import create_app
from scriptlabs.config import Argon2Params, Settings
from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
CHEAP_ARGON2 = Argon2Params(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass(frozen=True)
class Database:
    dsn: str
    admin_dsn: str


def run_cli(
    database: Database, *args: str, stderr: int = subprocess.PIPE, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """`scriptlabs ARGS...` in a process of its own, against `database`, as an operator runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": database.dsn,
        "DATABASE_ADMIN_URL": database.admin_dsn,
        "JWT_SECRET": JWT_SECRET,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "scriptlabs", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=timeout,
        check=False,
    )


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
    try:
        with cluster:
            import asyncio

            asyncio.run(migrate(cluster.admin_dsn()))
            yield Database(cluster.dsn(), cluster.admin_dsn())
    finally:
        remove_cluster(cluster)


def remove_cluster(cluster: EmbeddedPostgres) -> None:
    """Delete a stopped test cluster's files. As root they are kept outside the test's
    temporary folder (the server's account cannot reach it), where nothing else removes them."""
    if cluster.server_dir != cluster.data_dir:
        shutil.rmtree(cluster.server_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.dsn,
        database_admin_url=database.admin_dsn,
        jwt_secret=JWT_SECRET,
        argon2=CHEAP_ARGON2,
        db_pool_min=1,
        db_pool_max=10,
        # every test client comes from 127.0.0.1: the limits have tests of their own
        rate_limit_signin_email=0,
        rate_limit_signin_ip=0,
        rate_limit_signup_ip=0,
        rate_limit_reset_ip=0,
    )


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app for `settings`, started (lifespan entered), and an HTTP client for it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings) as c:
        yield c


@pytest.fixture(scope="session")
async def unplanned_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same API with the planned path off: every operation runs through Strawberry."""
    async with serve(replace(settings, graphql_planner=False)) as c:
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


def code(result: dict[str, Any]) -> str | None:
    """The one error code of a result, None when it succeeded."""
    if "errors" not in result:
        return None
    assert len(result["errors"]) == 1, result
    value: str = result["errors"][0]["extensions"]["code"]
    return value


def retry_after(result: dict[str, Any]) -> int:
    assert code(result) == "RATE_LIMITED", result
    error = result["errors"][0]
    assert set(error["extensions"]) == {"code", "retryAfter"}, error
    value = error["extensions"]["retryAfter"]
    assert isinstance(value, int), error
    assert value >= 1, error
    return value


def error_codes(result: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in result.get("errors", [])]


# -- mail: an SMTP sink, and an API (with its own database) whose sender mails into it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServeProcess:
    """`scriptlabs serve` running in a process of its own."""

    url: str
    port: int
    pid: int


@contextlib.contextmanager
def serve_process(database: Database, *, workers: int = 1, **env: str) -> Iterator[ServeProcess]:
    """`scriptlabs serve` (uvicorn, uvloop, httptools; `--workers` when more than one) on a
    free port over `database`, once it answers /health/ready; `env` on top of the test's."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database.dsn,
        "DATABASE_ADMIN_URL": database.admin_dsn,
        "JWT_SECRET": JWT_SECRET,
        "PYTHONPATH": str(ROOT),
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve makes its own for several workers
    command = [sys.executable, "-m", "scriptlabs", "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    proc = subprocess.Popen(
        command,
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the server stopped"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health/ready", timeout=2).is_success:
                    break
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.05)
        yield ServeProcess(url, port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.asynccontextmanager
async def in_process_server(app: Any, *, lifespan: str = "on") -> AsyncIterator[int]:
    """`app` under a real uvicorn on a free port, in this event loop, with the HTTP protocol
    `scriptlabs serve` runs (one write per answer); yields the port."""
    import uvicorn

    from scriptlabs.http.protocol import CoalescingHttpToolsProtocol

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=CoalescingHttpToolsProtocol,
        lifespan=lifespan,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd, in its own thread) that keeps every message."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        """Every message received so far for `address`."""
        with self._lock:
            return [m for m in self._messages if m["To"] == address]

    async def wait_for(
        self, address: str, count: int = 1, within: float = 10.0
    ) -> list[EmailMessage]:
        """The messages for `address` once there are `count` of them (polled, with a deadline)."""
        deadline = time.monotonic() + within
        while len(found := self.to(address)) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} mails to {address}"
            await asyncio.sleep(0.02)
        return found


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def dsn_for(dsn: str, dbname: str) -> str:
    """`dsn` naming another database of the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


async def create_database(database: Database, name: str) -> Database:
    """A new, migrated database on the test server (skips the test where that is not allowed)."""
    conn = await asyncpg.connect(database.admin_dsn)
    try:
        await conn.execute(f'create database "{name}"')
    except asyncpg.PostgresError as exc:
        pytest.skip(f"cannot create a database for the mail tests: {exc}")
    finally:
        await conn.close()
    created = Database(dsn_for(database.dsn, name), dsn_for(database.admin_dsn, name))
    await migrate(created.admin_dsn)
    return created


@pytest.fixture(scope="session")
async def mail_database(database: Database) -> Database:
    """A database of its own for the mail tests: no other API's sender competes for its outbox
    (the `client` fixture's sender, without SMTP_HOST, would log their mail instead)."""
    return await create_database(database, f"scriptlabs_mail_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def mail_settings(settings: Settings, mail_database: Database, smtp_sink: SmtpSink) -> Settings:
    return replace(
        settings,
        database_url=mail_database.dsn,
        database_admin_url=mail_database.admin_dsn,
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        public_url="https://app.scriptlabs.test",
        mail_from="Script Labs <no-reply@scriptlabs.test>",
        mail_poll_seconds=0.2,
        mail_retry_max_seconds=1,
    )


@pytest.fixture(scope="session")
async def mail_client(mail_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API on `mail_database`, its mail sender delivering into `smtp_sink`."""
    async with serve(mail_settings) as c:
        yield c


@pytest.fixture(scope="session")
async def mail_admin(mail_database: Database) -> AsyncIterator[asyncpg.Connection]:
    """The owner's connection to `mail_database`."""
    conn = await asyncpg.connect(mail_database.admin_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def mail_api(mail_client: httpx.AsyncClient) -> Api:
    return Api(mail_client)
