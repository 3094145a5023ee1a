"""Read replicas: reads land on a real streaming replica, writers read their own writes on any
worker, and the replica's loss fails no request.

The test has a primary of its own (the session's is shared by every test) and a replica made
from it with pg_basebackup, a second postgres streaming from it. Two apps on the same
databases stand for two workers: each has its own memory, so only the marker on the primary
can tell one about the other's writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import httpx
import pytest

from scriptlabs.config import Settings, SettingsError
from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate
from scriptlabs.db.replica import Replica
from tests.conftest import Api, remove_cluster, serve

CREATE = 'mutation($t: String!) { createLab(input: {title: $t, author: "Replica"}) { id } }'
TITLES = "{ labs(first: 50) { nodes { title } } }"
COUNT = "{ labs { totalCount } }"
# calls of the one-statement read (db/012_read_statement.sql) seen by a server's own statistics
READS = "select coalesce(sum(calls), 0)::int8 from pg_stat_statements where query like $1"
READ_STATEMENT = "%scriptlabs_private.read_statement(%"
WINDOW = 2  # s, REPLICA_READ_AFTER_WRITE here


class Server(EmbeddedPostgres):
    def kill(self) -> None:
        """Stop at once, as a crash would."""
        args = ["stop", "--wait", "-m", "immediate", "-D", str(self.pgdata)]
        result = self._run_as_server([str(self.bindir / "pg_ctl"), *args])
        assert result.returncode == 0, result.stdout + result.stderr
        self._started = False


@dataclass
class Pair:
    primary: Server
    replica: Server


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    primary = Server(Path(tmp_path_factory.mktemp("primary")), fast=True)
    replica = Server(Path(tmp_path_factory.mktemp("replica")), fast=True)
    with primary:
        asyncio.run(migrate(primary.admin_dsn()))
        replica._make_dir(replica.server_dir, owned=False)
        replica.server_dir.chmod(0o755)
        replica._make_dir(replica.pgdata, owned=True)
        backup = primary._run_as_server(
            [
                str(primary.bindir / "pg_basebackup"),
                "--pgdata",
                str(replica.pgdata),
                "--host",
                str(primary.socket_dir),
                "--username",
                "postgres",
                "--write-recovery-conf",  # standby.signal and primary_conninfo
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
            ]
        )
        assert backup.returncode == 0, backup.stdout + backup.stderr
        replica.start()  # its own socket folder: settings are written at every start
        try:
            yield Pair(primary, replica)
        finally:
            replica.stop()
    remove_cluster(replica)
    remove_cluster(primary)


@pytest.fixture
def replica_settings(settings: Settings, pair: Pair) -> Settings:
    return replace(
        settings,
        database_url=pair.primary.dsn(),
        database_admin_url=pair.primary.admin_dsn(),
        database_replica_url=pair.replica.dsn(),
        replica_read_after_write=WINDOW,
        replica_max_lag_s=1,
    )


@pytest.fixture
async def workers(replica_settings: Settings) -> AsyncIterator[tuple[Api, Api, Replica, Replica]]:
    """Two apps on the same primary and replica: two workers."""
    async with serve(replica_settings) as a, serve(replica_settings) as b:
        ra, rb = _replica(a), _replica(b)
        assert ra.usable and rb.usable  # checked at start-up
        yield Api(a), Api(b), ra, rb


def _replica(client: httpx.AsyncClient) -> Replica:
    app = client._transport.app  # type: ignore[attr-defined]
    replica = app.state.services.replica
    assert isinstance(replica, Replica)
    return replica


async def _reads(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval(READS, READ_STATEMENT)
        return value
    finally:
        await conn.close()


async def _until(condition: Callable[[], bool], within: float) -> None:
    """Return once `condition` holds, or after `within` seconds (the caller asserts)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.2)


async def _titles(api: Api, token: str) -> list[str]:
    data = await api.ok(TITLES, token=token)
    return [n["title"] for n in data["labs"]["nodes"]]


async def test_reads_go_to_the_replica_and_writers_read_their_writes(
    workers: tuple[Api, Api, Replica, Replica], pair: Pair
) -> None:
    a, b, ra, rb = workers
    writer = await a.sign_up()
    reader = await a.sign_up()
    await a.ok(CREATE, {"t": "before"}, token=writer.token)
    await asyncio.sleep(WINDOW + 0.2)  # fresh tokens and the first write: the window passes

    # reads land on the replica: its own statistics count them, the primary's do not
    on_replica, on_primary = (
        await _reads(pair.replica.admin_dsn()),
        await _reads(pair.primary.admin_dsn()),
    )
    for api in (a, b) * 5:
        assert await _titles(api, writer.token) == ["before"]
        await api.ok(COUNT, token=reader.token)
    assert await _reads(pair.replica.admin_dsn()) >= on_replica + 20
    assert await _reads(pair.primary.admin_dsn()) == on_primary
    assert ra.reads >= 10 and rb.reads >= 10

    # replay paused: a write on one worker, read at once on the other, is there all the same
    # (the marker on the primary sends the writer's reads there); another user's read still
    # goes to the replica, which has not seen the write
    admin = await asyncpg.connect(pair.replica.admin_dsn())
    try:
        await admin.execute("select pg_wal_replay_pause()")
        # a token issued within the window reads from the primary: the replica has not seen
        # the new user's session, and would refuse it
        fresh = await a.sign_up()
        assert await _titles(b, fresh.token) == []
        await a.ok(CREATE, {"t": "after"}, token=writer.token)
        primary_reads = rb.primary_reads
        assert sorted(await _titles(b, writer.token)) == ["after", "before"]
        assert rb.primary_reads == primary_reads + 1
        replica_reads = rb.reads
        await b.ok(COUNT, token=reader.token)
        assert rb.reads == replica_reads + 1
        # the writer is remembered by the other worker for the rest of the window (no probe)
        assert sorted(await _titles(b, writer.token)) == ["after", "before"]

        # a replica left behind for longer than REPLICA_MAX_LAG_S is not used
        await _until(lambda: not rb.usable, 5)
        assert not rb.usable and rb.lag is not None and rb.lag > 1
        replica_reads = rb.reads
        await asyncio.sleep(WINDOW)  # the writer's window passes: still the primary
        assert sorted(await _titles(b, writer.token)) == ["after", "before"]
        assert rb.reads == replica_reads
    finally:
        await admin.execute("select pg_wal_replay_resume()")
        await admin.close()
    await _until(lambda: rb.usable, 5)
    assert rb.usable
    assert sorted(await _titles(b, writer.token)) == ["after", "before"]


async def test_losing_the_replica_fails_no_request(
    workers: tuple[Api, Api, Replica, Replica], pair: Pair
) -> None:
    a, b, ra, rb = workers
    users = [await a.sign_up() for _ in range(3)]
    await asyncio.sleep(WINDOW + 0.2)
    stop = asyncio.Event()
    answered = 0

    async def read_on(api: Api, token: str) -> None:
        nonlocal answered
        while not stop.is_set():
            response = await api.post(COUNT, token=token)
            assert response.status_code == 200, response.text
            assert "errors" not in response.json(), response.text
            answered += 1

    # many clients at once on both workers, while the replica dies under them
    readers = [
        asyncio.create_task(read_on(api, user.token)) for api in (a, b) for user in users * 3
    ]
    try:
        await asyncio.sleep(0.5)
        assert ra.reads > 0 and rb.reads > 0
        pair.replica.kill()
        await asyncio.sleep(1.5)
        assert not ra.usable and not rb.usable
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert answered > 50
    primary_reads = ra.primary_reads
    await a.ok(COUNT, token=users[0].token)  # straight to the primary now
    assert ra.primary_reads == primary_reads + 1
    pair.replica.start()  # back for any test after this one
    await _until(lambda: ra.usable, 10)
    assert ra.usable


def test_the_lag_bound_is_below_the_window() -> None:
    env = {"REPLICA_READ_AFTER_WRITE": "3", "REPLICA_MAX_LAG_S": "3"}
    with pytest.raises(SettingsError, match="REPLICA_MAX_LAG_S"):
        Settings.from_env(env)
    assert Settings.from_env({"DATABASE_REPLICA_URL": "postgresql://r/x"}).replica_max_lag_s == 3
