"""A PostgreSQL restart under load: fast 503s while it is down, served again once it is back.

These tests stop and start a cluster of their own (the session's is shared by every test),
durable (fsync on), so that what a crash keeps is what a real server keeps.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from scriptlabs.config import Settings
from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate
from scriptlabs.db.outage import DatabaseUnavailable, wait_for_database
from tests.conftest import Api, SmtpSink, remove_cluster, serve

CREATE = 'mutation($t: String!) { createLab(input: {title: $t, author: "Restart"}) { id title } }'
COUNT = "{ labs { totalCount } }"
UNAVAILABLE = {
    "errors": [
        {"message": "The database is unavailable", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    ]
}
HUNG = 5.0  # s: an answer slower than this, during an outage, is a hang


class Cluster(EmbeddedPostgres):
    """The restart test's own cluster, with the stops a test needs."""

    def kill(self) -> None:
        """Stop at once, as a crash would (`-m immediate`: recovery at the next start)."""
        args = ["stop", "--wait", "-m", "immediate", "-D", str(self.pgdata)]
        result = self._run_as_server([str(self.bindir / "pg_ctl"), *args])
        assert result.returncode == 0, result.stdout + result.stderr
        self._started = False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    own = Cluster(Path(tmp_path_factory.mktemp("restart")))
    with own:
        asyncio.run(migrate(own.admin_dsn()))
        yield own
    remove_cluster(own)


@pytest.fixture
def restart_settings(settings: Settings, cluster: Cluster, smtp_sink: SmtpSink) -> Settings:
    return replace(
        settings,
        database_url=cluster.dsn(),
        database_admin_url=cluster.admin_dsn(),
        db_pool_min=2,
        db_pool_max=4,
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        mail_poll_seconds=0.2,
        mail_retry_max_seconds=1,
    )


@pytest.fixture
async def restart_client(restart_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(restart_settings) as c:
        yield c


@dataclass
class Answer:
    kind: str  # "create" or "count"
    title: str | None
    status: int  # 0: no answer within HUNG seconds
    body: dict[str, Any]
    retry_after: str | None
    started: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and "errors" not in self.body


async def _ask(api: Api, kind: str, token: str, title: str | None, answers: list[Answer]) -> Answer:
    started = time.monotonic()
    try:
        async with asyncio.timeout(HUNG):
            if kind == "create":
                response = await api.post(CREATE, {"t": title}, token=token)
            else:
                response = await api.post(COUNT, token=token)
        status, body = response.status_code, response.json()
        retry_after = response.headers.get("retry-after")
    except TimeoutError:
        status, body, retry_after = 0, {}, None
    answer = Answer(kind, title, status, body, retry_after, started, time.monotonic() - started)
    answers.append(answer)
    return answer


async def _load(
    api: Api, token: str, name: str, stop: asyncio.Event, answers: list[Answer]
) -> None:
    """One client: a mutation and a query, again and again."""
    i = 0
    while not stop.is_set():
        i += 1
        created = await _ask(api, "create", token, f"restart-{name}-{i}", answers)
        counted = await _ask(api, "count", token, None, answers)
        if not (created.ok and counted.ok):
            await asyncio.sleep(0.05)  # as a client would, after a refusal


def _check_refusal(answer: Answer) -> None:
    """An answer that is not a success is the outage's 503, never a 500 or a hang."""
    assert answer.status != 0, f"no answer within {HUNG} s: {answer}"
    assert answer.status == 503, answer
    assert answer.body == UNAVAILABLE, answer
    assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer


async def _titles(cluster: Cluster, user_id: str) -> set[str]:
    conn = await asyncpg.connect(cluster.admin_dsn())
    try:
        rows = await conn.fetch(
            "select title from public.labs where user_id = $1", uuid.UUID(user_id)
        )
    finally:
        await conn.close()
    return {row["title"] for row in rows}


async def _until(check: Any, within: float) -> float:
    """Poll `check()` (an awaitable factory) until it is true; the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_postgresql_crash_and_restart_under_load_is_ridden_out_without_a_restart(
    restart_client: httpx.AsyncClient, cluster: Cluster, smtp_sink: SmtpSink
) -> None:
    api = Api(restart_client)
    user = await api.sign_up()
    answers: list[Answer] = []
    stop = asyncio.Event()
    clients = [asyncio.create_task(_load(api, user.token, str(n), stop, answers)) for n in range(4)]
    try:
        await _until(lambda: _succeeded(answers, 8), 10)
        await asyncio.to_thread(cluster.kill)
        killed = time.monotonic()
        # while it is down: every answer a fast 503
        await _until(lambda: _refused_since(answers, killed, 8), 10)
        assert (await restart_client.get("/health/ready")).status_code == 503
        assert (await restart_client.get("/health/live")).status_code == 200
        await asyncio.sleep(1.0)  # an outage of a second or more
        down = [a for a in answers if a.started > killed + 0.2]
        assert down, "no request was made during the outage"
        for answer in down:
            _check_refusal(answer)
            assert answer.seconds < 1.0, answer  # refused at once, not after a wait
        await asyncio.to_thread(cluster.start)
        back = time.monotonic()
        # served again within seconds, by the same server
        await _until(lambda: _succeeded_since(answers, back, 8), 10)
        assert (await restart_client.get("/health/ready")).status_code == 200
        recovered = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert recovered - back < 10
    # from the first success after the restart on, nothing failed
    first_ok = min(a.started for a in answers if a.ok and a.started > back)
    late = [a for a in answers if a.started > first_ok + 0.5 and not a.ok]
    assert not late, late[:3]
    for answer in answers:
        if answer.status == 200 and not answer.ok:
            _check_lost_commit(answer)
        elif not answer.ok:
            _check_refusal(answer)
    # nothing answered OK is lost; nothing refused was written
    kept = await _titles(cluster, user.id)
    created = {a.title for a in answers if a.kind == "create" and a.ok}
    refused = {a.title for a in answers if a.kind == "create" and a.status == 503}
    assert created <= kept, sorted(created - kept)[:5]
    assert not refused & kept, sorted(refused & kept)[:5]
    # the mail sender is back at work too
    await api.ok("mutation($e: String!) { requestPasswordReset(email: $e) }", {"e": user.email})
    await smtp_sink.wait_for(user.email, 1, within=10)


def _check_lost_commit(answer: Answer) -> None:
    """A 200 that failed: only a mutation whose commit was cut off, answered as a fault."""
    assert answer.kind == "create", answer
    (error,) = answer.body["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR", answer
    assert answer.body["data"] is None, answer


async def _succeeded(answers: list[Answer], count: int) -> bool:
    return sum(a.ok for a in answers) >= count


async def _refused_since(answers: list[Answer], since: float, count: int) -> bool:
    return sum(a.status == 503 for a in answers if a.started > since) >= count


async def _succeeded_since(answers: list[Answer], since: float, count: int) -> bool:
    """The last `count` answers, all started after `since`, all successes."""
    recent = answers[-count:]
    return len(recent) == count and all(a.ok and a.started > since for a in recent)


async def test_a_flood_during_an_outage_gets_fast_503s_and_nothing_piles_up(
    restart_client: httpx.AsyncClient, restart_settings: Settings, cluster: Cluster
) -> None:
    api = Api(restart_client)
    user = await api.sign_up()
    pool = restart_client._transport.app.state.services.pool  # type: ignore[attr-defined]
    await asyncio.to_thread(cluster.stop)
    try:
        first = await api.post(COUNT, token=user.token)
        assert first.status_code == 503, first.text
        tasks_before = len(asyncio.all_tasks())
        answers: list[Answer] = []
        await asyncio.gather(
            *(
                _ask(api, "create" if n % 2 else "count", user.token, f"flood-{n}", answers)
                for n in range(300)
            )
        )
        for answer in answers:
            _check_refusal(answer)
        # nothing waits for a turn or a connection: the gate is free, and no task was left
        # behind per request (the session's other background tasks, such as a LISTEN
        # connection reconnecting, come and go: a few, never one per request of the 300)
        assert not pool.gate.locked()
        assert len(asyncio.all_tasks()) <= tasks_before + 10
        assert pool.breaker.down
    finally:
        await asyncio.to_thread(cluster.start)
    await _until(lambda: _serves(api, user.token), 10)
    answers = []
    await asyncio.gather(*(_ask(api, "count", user.token, None, answers) for _ in range(50)))
    assert all(a.ok for a in answers), [a for a in answers if not a.ok][:3]


async def _serves(api: Api, token: str) -> bool:
    response = await api.post(COUNT, token=token)
    return response.status_code == 200 and "errors" not in response.json()


async def test_connections_killed_under_the_pool_are_replaced_without_an_error(
    restart_client: httpx.AsyncClient, cluster: Cluster
) -> None:
    """pg_terminate_backend on every pooled connection (as a restart of PgBouncer's
    servers, or an operator, would): the next requests succeed on new connections."""
    api = Api(restart_client)
    user = await api.sign_up()
    await asyncio.gather(*(api.ok(COUNT, token=user.token) for _ in range(8)))
    conn = await asyncpg.connect(cluster.admin_dsn())
    try:
        killed = await conn.fetchval(
            "select count(pg_catalog.pg_terminate_backend(pid)) from pg_catalog.pg_stat_activity"
            " where application_name = 'scriptlabs'"
        )
    finally:
        await conn.close()
    assert killed >= 1
    results = await asyncio.gather(
        *(api.post(COUNT, token=user.token) for _ in range(8)),
        *(api.post(CREATE, {"t": f"killed-{n}"}, token=user.token) for n in range(4)),
    )
    for response in results:
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text


async def test_serve_waits_for_a_database_that_is_starting(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.stop)
    starting = asyncio.create_task(asyncio.to_thread(_start_later, cluster, 0.5))
    try:
        await wait_for_database(cluster.dsn(), 20)
        conn = await asyncpg.connect(cluster.dsn())
        await conn.close()
    finally:
        await starting


async def test_serve_gives_up_on_a_database_that_does_not_come(cluster: Cluster) -> None:
    missing = cluster.dsn().replace("/scriptlabs?", "/scriptlabs?port=1&")
    with pytest.raises(DatabaseUnavailable, match="did not answer within 1 s"):
        await wait_for_database(missing, 1)


def _start_later(cluster: Cluster, delay: float) -> None:
    time.sleep(delay)
    cluster.start()


class StallingProxy:
    """TCP on 127.0.0.1 to the cluster's Unix socket. `cut()`: from then on nothing passes
    either way and nothing is refused or reset, as with a network cut or a hung host;
    `heal()` drops the stalled connections (the server behind them is gone) and forwards."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.forwarding = asyncio.Event()
        self.forwarding.set()
        self.links: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.links.add(writer)
        try:
            if not self.forwarding.is_set():
                await reader.read()  # swallow, answer nothing
                return
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
            self.links.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        except OSError:
            pass
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.forwarding.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        self.forwarding.clear()

    def heal(self) -> None:
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()
        self.forwarding.set()

    async def close(self) -> None:
        self.heal()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_database_that_stops_answering_gets_503s_and_no_request_hangs(
    restart_settings: Settings, cluster: Cluster
) -> None:
    """No refusal, no reset: the database just stops answering. Requests in flight end at
    their deadline, the outage is then known, and later requests are refused at once."""
    proxy = StallingProxy(str(cluster.socket_dir / ".s.PGSQL.5432"))
    port = await proxy.start()
    settings = replace(
        restart_settings,
        database_url=f"postgresql://authenticator@127.0.0.1:{port}/scriptlabs",
        statement_timeout_ms=1000,
        db_connect_timeout_s=1,
    )
    try:
        async with serve(settings) as client:
            api = Api(client)
            user = await api.sign_up()
            await api.ok(COUNT, token=user.token)
            proxy.cut()
            # in flight when it stopped answering: each answered within its deadline and the
            # bounded hand-back of its connection, never held (HUNG: status 0)
            answers: list[Answer] = []
            await asyncio.gather(
                *(
                    _ask(api, kind, user.token, f"silent-{n}", answers)
                    for n, kind in enumerate(["count", "create"] * 3)
                )
            )
            for answer in answers:
                assert answer.status != 0, answer
                if answer.body.get("errors", [{}])[0].get("extensions", {}).get("code") == (
                    "TIMEOUT"
                ):
                    assert answer.status == 200, answer
                else:
                    _check_refusal(answer)
            # then known down: refused at once
            refused: list[Answer] = []
            await asyncio.gather(
                *(_ask(api, "count", user.token, None, refused) for _ in range(20))
            )
            for answer in refused:
                _check_refusal(answer)
                assert answer.seconds < 1.0, answer
            assert (await client.get("/health/ready")).status_code == 503
            proxy.heal()
            await _until(lambda: _serves(api, user.token), 10)
    finally:
        await proxy.close()
