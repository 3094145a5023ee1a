"""`scriptlabs backup FILE` and `scriptlabs restore FILE`: a backup taken while the API writes
restores into an empty database that the API serves unchanged (CONTRACT.md section 1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import orjson

from scriptlabs.config import Settings
from scriptlabs.ops.backup import RESTORE_LOCK_KEY
from tests.conftest import Api, Database, User, create_database, dsn_for, run_cli, serve

ROOT = Path(__file__).resolve().parents[1]

CREATE = "mutation($i: CreateLabInput!) { createLab(input: $i) { id } }"
LABS = (
    "{ labs(first: 100) { edges { node { id title author isbn rating readingStatus"
    " publicationYear notes createdAt updatedAt } } } }"
)
SIGN_IN = (
    "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p)"
    " { accessToken refreshToken user { id } } }"
)
REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }"
RESET = "mutation($e: String!) { requestPasswordReset(email: $e) }"

# Every table of ours, as the owner sees it (no RLS for the owner of a table without FORCE).
TABLES = """
select format('%I.%I', schemaname, tablename) as name
from pg_catalog.pg_tables
where schemaname not in ('pg_catalog', 'information_schema')
order by 1
"""


async def empty_database(database: Database) -> Database:
    """A new database on the test server with nothing in it (no migrations)."""
    name = f"scriptlabs_restore_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database.admin_dsn)
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return Database(dsn_for(database.dsn, name), dsn_for(database.admin_dsn, name))


def settings_for(settings: Settings, db: Database) -> Settings:
    return replace(settings, database_url=db.dsn, database_admin_url=db.admin_dsn)


async def table_rows(db: Database, skip_user: str) -> dict[str, list[str]]:
    """Every row of every table as JSON, sorted; rows of `skip_user` left out."""
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        found = {}
        for table in [r["name"] for r in await conn.fetch(TABLES)]:
            rows = await conn.fetch(f"select to_jsonb(t)::text as row from {table} t")
            kept = []
            for row in rows:
                value = orjson.loads(row["row"])
                if skip_user in (value.get("user_id"), value.get("id")):
                    continue
                kept.append(row["row"])
            found[table] = sorted(kept)
        return found
    finally:
        await conn.close()


async def settle_mail(db: Database, within: float = 10.0) -> None:
    """Wait until the API's sender has handled every queued mail (it changes the rows)."""
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        deadline = time.monotonic() + within
        while await conn.fetchval(
            "select count(*) from scriptlabs_private.mail_outbox"
            " where sent_at is null and failed_at is null"
        ):
            assert time.monotonic() < deadline, "mail still queued"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def fill(api: Api) -> list[User]:
    """Three users with labs, a second session each, and a password reset requested."""
    users = [await api.sign_up() for _ in range(3)]
    for k, user in enumerate(users):
        for i in range(3):
            lab = {
                "title": f"Title {k}.{i} ünïcode",
                "author": f"Author {k}",
                "rating": i + 2,
                "readingStatus": "READ",
                "notes": "a\nnote, with 'quotes'" if i else None,
            }
            await api.ok(CREATE, {"i": lab}, token=user.token)
        await api.ok(SIGN_IN, {"e": user.email, "p": user.password})
    assert await api.ok(RESET, {"e": users[0].email}) == {"requestPasswordReset": True}
    return users


async def test_a_backup_under_writes_restores_to_a_copy_the_api_serves_unchanged(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    source = await create_database(database, f"scriptlabs_backup_{uuid.uuid4().hex[:8]}")
    file = tmp_path / "scriptlabs.backup"
    async with serve(settings_for(settings, source)) as client:
        api = Api(client)
        users = await fill(api)
        await settle_mail(source)
        before = {u.id: (await api.ok(LABS, token=u.token))["labs"] for u in users}
        writer = await api.sign_up()
        made: list[str] = []
        stop, grew = asyncio.Event(), asyncio.Event()
        lab = {"title": "writer", "author": "w"}

        async def write() -> None:  # a light write load: one lab after another
            while not stop.is_set():
                data = await api.ok(CREATE, {"i": lab}, token=writer.token)
                made.append(data["createLab"]["id"])
                grew.set()
                await asyncio.sleep(0.005)

        async def made_at_least(n: int) -> None:
            while len(made) < n:
                grew.clear()
                await asyncio.wait_for(grew.wait(), 10)

        task = asyncio.create_task(write())
        try:
            await made_at_least(3)
            first_possible = len(made)
            done = await asyncio.to_thread(run_cli, source, "backup", str(file))
            last_possible = len(made)
            await made_at_least(last_possible + 3)  # writes go on after it, too
        finally:
            stop.set()
            await task
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (b"", b"")  # not a terminal: nothing extra
    assert last_possible > first_possible, "the API did not answer during the backup"
    assert file.read_bytes()[:5] == b"PGDMP"
    assert file.stat().st_mode & 0o777 == 0o600  # password hashes and tokens: the owner's only

    target = await empty_database(database)
    done = await asyncio.to_thread(run_cli, target, "restore", str(file))
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (b"", b"")

    # Every row of every table comes back, the migrations record with them.
    assert await table_rows(target, writer.id) == await table_rows(source, writer.id)
    assert run_cli(target, "db", "migrate").stderr == b"up to date\n"

    # The writer's labs: one snapshot, so exactly the first k it made, and its counters agree.
    conn = await asyncpg.connect(target.admin_dsn)
    try:
        kept = [
            str(r["id"])
            for r in await conn.fetch(
                "select id from public.labs where user_id = $1 order by created_at, id",
                uuid.UUID(writer.id),
            )
        ]
        totals = await conn.fetchval(
            "select labs from public.lab_totals where user_id = $1", uuid.UUID(writer.id)
        )
        words = await conn.fetchval(
            "select labs from public.lab_words where user_id = $1 and word = 'writer'",
            uuid.UUID(writer.id),
        )
    finally:
        await conn.close()
    assert first_possible <= len(kept) <= last_possible
    assert kept == made[: len(kept)]
    assert totals == len(kept)
    assert words == len(kept)

    # The API serves the copy: old password, old refresh tokens, old access tokens, same labs.
    async with serve(settings_for(settings, target)) as client:
        api = Api(client)
        signed_in = await api.ok(SIGN_IN, {"e": users[0].email, "p": users[0].password})
        assert signed_in["signIn"]["user"]["id"] == users[0].id
        rotated = await api.ok(REFRESH, {"t": users[1].refresh_token})
        assert rotated["refreshSession"]["refreshToken"] != users[1].refresh_token
        again = await api.ok(REFRESH, {"t": rotated["refreshSession"]["refreshToken"]})
        assert again["refreshSession"]["accessToken"]
        for user in users:
            assert (await api.ok(LABS, token=user.token))["labs"] == before[user.id]
        fresh = signed_in["signIn"]["accessToken"]
        assert (await api.ok(LABS, token=fresh))["labs"] == before[users[0].id]


async def backed_up_database(database: Database, file: Path) -> None:
    source = await create_database(database, f"scriptlabs_backup_{uuid.uuid4().hex[:8]}")
    done = await asyncio.to_thread(run_cli, source, "backup", str(file))
    assert done.returncode == 0, done.stderr


async def count_own_tables(db: Database) -> int:
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        count: int = await conn.fetchval(
            "select count(*) from pg_catalog.pg_tables"
            " where schemaname not in ('pg_catalog', 'information_schema')"
        )
        return count
    finally:
        await conn.close()


async def test_restore_refuses_a_database_that_is_not_empty(
    database: Database, tmp_path: Path
) -> None:
    file = tmp_path / "b.backup"
    await backed_up_database(database, file)
    tables = await count_own_tables(database)
    done = await asyncio.to_thread(run_cli, database, "restore", str(file))
    assert done.returncode == 2
    assert b"is not empty" in done.stderr
    assert b"create a new one" in done.stderr
    assert await count_own_tables(database) == tables


async def test_a_damaged_backup_restores_nothing_and_the_database_stays_usable(
    database: Database, tmp_path: Path
) -> None:
    file = tmp_path / "b.backup"
    await backed_up_database(database, file)
    target = await empty_database(database)
    data = file.read_bytes()

    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_bytes(b"hello\n" * 1000)
    done = await asyncio.to_thread(run_cli, target, "restore", str(not_a_backup))
    assert (done.returncode, done.stdout) == (2, b"")
    assert b"is not a backup" in done.stderr

    cut = tmp_path / "cut.backup"  # a copy that stopped half-way (a full disk, a lost link)
    cut.write_bytes(data[: len(data) // 2])
    done = await asyncio.to_thread(run_cli, target, "restore", str(cut))
    assert done.returncode == 2
    assert b"nothing was restored" in done.stderr
    assert await count_own_tables(target) == 0  # one transaction: all or nothing

    done = await asyncio.to_thread(run_cli, target, "restore", str(file))
    assert done.returncode == 0, done.stderr
    assert await count_own_tables(target) == await count_own_tables(database)


async def test_a_failed_backup_leaves_no_file(database: Database, tmp_path: Path) -> None:
    missing = Database(
        dsn_for(database.dsn, "no_such_db"), dsn_for(database.admin_dsn, "no_such_db")
    )
    file = tmp_path / "b.backup"
    done = await asyncio.to_thread(run_cli, missing, "backup", str(file))
    assert done.returncode == 2
    assert b"no_such_db" in done.stderr
    assert os.listdir(tmp_path) == []
    done = await asyncio.to_thread(run_cli, database, "backup", str(tmp_path / "no" / "b.backup"))
    assert done.returncode == 2
    assert b"cannot write beside" in done.stderr


def on_terminal(db: Database, *args: str) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run the command with standard error on a pseudo-terminal; what it showed there."""
    import pty

    leader, follower = pty.openpty()
    shown = b""
    try:
        done = run_cli(db, *args, stderr=follower)
        os.close(follower)
        follower = -1
        with contextlib.suppress(OSError):  # EIO once the terminal's writer has gone
            while chunk := os.read(leader, 4096):
                shown += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return done, shown


async def test_backup_and_restore_show_progress_on_a_terminal(
    database: Database, tmp_path: Path
) -> None:
    source = await create_database(database, f"scriptlabs_backup_{uuid.uuid4().hex[:8]}")
    file = tmp_path / "b.backup"
    done, shown = await asyncio.to_thread(on_terminal, source, "backup", str(file))
    assert done.returncode == 0, shown
    size = file.stat().st_size
    tables = await count_own_tables(source)
    assert f"backed up {tables} tables into {file} ({size:,} bytes) in ".encode() in shown

    target = await empty_database(database)
    done, shown = await asyncio.to_thread(on_terminal, target, "restore", str(file))
    assert done.returncode == 0, shown
    # a progress line (how far it has got when the line is drawn depends on the machine)
    assert re.search(rb"\rrestored [\d.,]+ [kMG]?B of ", shown), shown
    assert f"restored {file} ({size:,} bytes) in ".encode() in shown
    assert await count_own_tables(target) == await count_own_tables(source)


async def test_a_backup_of_a_schema_that_differs_is_restored_and_the_difference_named(
    database: Database, tmp_path: Path
) -> None:
    source = await create_database(database, f"scriptlabs_backup_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(source.admin_dsn)
    try:  # as if 001_roles.sql had been applied in another text
        await conn.execute(
            "update scriptlabs_meta.schema_migrations set checksum = 'other'"
            " where version = '001_roles'"
        )
    finally:
        await conn.close()
    file = tmp_path / "b.backup"
    assert (await asyncio.to_thread(run_cli, source, "backup", str(file))).returncode == 0
    target = await empty_database(database)
    done = await asyncio.to_thread(run_cli, target, "restore", str(file))
    assert done.returncode == 2
    assert b"was restored, but its schema does not match" in done.stderr
    assert b"001_roles.sql was changed after it was applied" in done.stderr
    assert await count_own_tables(target) == await count_own_tables(source)


async def test_two_restores_at_once_into_one_database_give_one_whole_copy(
    database: Database, tmp_path: Path
) -> None:
    file = tmp_path / "b.backup"
    await backed_up_database(database, file)
    target = await empty_database(database)
    done = await asyncio.gather(
        *(asyncio.to_thread(run_cli, target, "restore", str(file)) for _ in range(2))
    )
    assert sorted(d.returncode for d in done) == [0, 2], [d.stderr for d in done]
    refused = next(d for d in done if d.returncode == 2)
    assert b"is not empty" in refused.stderr or b"nothing was restored" in refused.stderr
    assert await count_own_tables(target) == await count_own_tables(database)


async def test_a_restore_while_another_runs_is_refused_at_once_and_touches_nothing(
    database: Database, tmp_path: Path
) -> None:
    file = tmp_path / "b.backup"
    await backed_up_database(database, file)
    target = await empty_database(database)
    other = await asyncpg.connect(target.admin_dsn)  # stands for a restore in progress
    try:
        assert await other.fetchval("select pg_try_advisory_lock($1)", RESTORE_LOCK_KEY)
        done = await asyncio.to_thread(run_cli, target, "restore", str(file))
        assert done.returncode == 2, done.stderr
        assert b"another restore" in done.stderr
        assert b"nothing was restored" in done.stderr
        assert await count_own_tables(target) == 0
    finally:
        await other.close()
    done = await asyncio.to_thread(run_cli, target, "restore", str(file))
    assert done.returncode == 0, done.stderr
    assert await count_own_tables(target) == await count_own_tables(database)
