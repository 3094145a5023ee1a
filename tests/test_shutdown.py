"""Graceful shutdown of `scriptlabs serve` (a real process, real HTTP): on SIGTERM new
connections are refused, requests in flight finish and are answered, what they committed is
kept, and a stuck client cannot hold the shutdown beyond SHUTDOWN_TIMEOUT_S."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import JWT_SECRET, Database, free_port

SIGN_UP = (
    "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) {"
    " accessToken user { email } } }"
)


class Server:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def refuses_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return False
        except ConnectionRefusedError:
            return True


@contextlib.asynccontextmanager
async def running(database: Database, log: Path, workers: int, **env: str) -> AsyncIterator[Server]:
    """`scriptlabs serve` on a free port, ready; killed if a test leaves it running. Its
    output goes to `log`, shown when it does not start."""
    port = free_port()
    output = log.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scriptlabs",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        env={
            **os.environ,
            "DATABASE_URL": database.dsn,
            "DATABASE_ADMIN_URL": database.admin_dsn,
            "JWT_SECRET": JWT_SECRET,
            "DB_POOL_MAX": "4",
            "RATE_LIMIT_SIGNUP_IP": "0",
            **env,
        },
        stdout=output,
        stderr=output,
        start_new_session=True,  # its workers too are killed if the test fails
    )
    server = Server(process, port)
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=server.url) as client:
            while True:
                if process.returncode is not None or time.monotonic() > deadline:
                    output.flush()
                    text = await asyncio.to_thread(log.read_text)
                    pytest.fail(f"the server did not start:\n{text}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield server
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        output.close()


async def _refused_within(server: Server, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(server.refuses_connections):
        assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_lets_a_mutation_in_flight_commit_and_answer_then_exits_cleanly(
    database: Database, admin: asyncpg.Connection, workers: int, tmp_path: Path
) -> None:
    # a sign-up whose password hashing takes a second or more: in flight when SIGTERM comes
    async with running(database, tmp_path / "serve.log", workers, ARGON2_TIME_COST="24") as server:
        email = f"shutdown-{uuid.uuid4().hex[:12]}@example.com"
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            signing_up = asyncio.create_task(
                client.post(
                    "/graphql", json={"query": SIGN_UP, "variables": {"e": email, "p": "pw-123456"}}
                )
            )
            await asyncio.sleep(0.4)  # sent, and hashing
            assert not signing_up.done()
            server.process.send_signal(signal.SIGTERM)
            terminated = time.monotonic()
            # no new connections: at once with one worker; with several, the supervisor holds
            # the listening socket until its workers are done (its backlog is never served)
            await _refused_within(server, 30)
            response = await signing_up
            answered = time.monotonic()
        assert answered > terminated  # it was in flight
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        assert body["data"]["signUp"]["user"]["email"] == email
        assert await asyncio.wait_for(server.process.wait(), 30) == 0
    # what was answered OK is kept
    kept = await admin.fetchval("select count(*) from auth.users where email = $1", email)
    assert kept == 1


async def test_a_stuck_client_holds_the_shutdown_no_longer_than_its_timeout(
    database: Database, tmp_path: Path
) -> None:
    async with running(database, tmp_path / "serve.log", 1, SHUTDOWN_TIMEOUT_S="1") as server:
        # headers, then part of the body that never comes whole: the request is in flight
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"query": '
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        status = await asyncio.wait_for(server.process.wait(), 20)
        took = time.monotonic() - terminated
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert status == 0
    assert took < 10, f"shutdown took {took:.1f} s with SHUTDOWN_TIMEOUT_S=1"
