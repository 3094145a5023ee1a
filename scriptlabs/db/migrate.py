"""Versioned schema migrations: the numbered SQL files of `db/`, each applied once, in order.

A file's version is its stem (`001_roles`). Applied versions are recorded with a checksum
of the file in `scriptlabs_meta.schema_migrations`; a file changed after it was applied is
an error, never silently re-run. Every step takes the same transaction-level advisory lock,
so several processes migrating at once apply each file exactly once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg

# Names this module's lock in pg_locks (objid); any constant bigint would do.
MIGRATION_LOCK_KEY = 0x5C_1AB5_0001

TAKE_LOCK = "select pg_advisory_xact_lock($1)"

CREATE_META = """
create schema if not exists scriptlabs_meta;
comment on schema scriptlabs_meta is 'Bookkeeping of Script Labs: which migrations are applied.';
create table if not exists scriptlabs_meta.schema_migrations (
  version text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
);
comment on table scriptlabs_meta.schema_migrations is
  'One row per applied file of db/: its stem and the SHA-256 of its text.';
"""

# The API checks for pending migrations with its own login role; the role exists only once
# 001_roles has run, so this runs at the start and again at the end of every migrate().
GRANT_META = """
do $$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'authenticator') then
    grant usage on schema scriptlabs_meta to authenticator;
    grant select on scriptlabs_meta.schema_migrations to authenticator;
  end if;
end
$$
"""

META_EXISTS = "select to_regclass('scriptlabs_meta.schema_migrations') is not null"

APPLIED = """
select version, checksum
from scriptlabs_meta.schema_migrations
"""

APPLIED_VERSIONS = "select version from scriptlabs_meta.schema_migrations"

RECORD = "insert into scriptlabs_meta.schema_migrations (version, checksum) values ($1, $2)"

# The password travels as a parameter and is quoted by the server (%L); the statement
# text is then executed as it comes back.
ALTER_AUTHENTICATOR = "select format('alter role authenticator with login password %L', $1::text)"


# Roles are the cluster's, and the lock above is the database's: two databases of one server
# migrated at once (or a restore beside a migrate) may change the same role together. The one
# that waited then fails with "tuple concurrently updated" (XX000), or "duplicate key" on
# pg_authid (23505) when both created it; its transaction is rolled back whole, so it is run
# again, a few times, after a short random pause.
CATALOG_RACES = ("tuple concurrently updated", "pg_authid")
RACE_ATTEMPTS = 5


class MigrationError(Exception):
    """The schema cannot be brought up to date: a file failed or was changed after use."""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of `db/`."""

    version: str
    path: Path
    sql: str
    checksum: str


def sql_dir() -> Path:
    """The folder of SQL files: `db/` of a checkout, else the copy packaged in the wheel."""
    here = Path(__file__).resolve()
    checkout = here.parents[2]
    # pyproject.toml tells a checkout from site-packages, which may hold an unrelated db/.
    if (checkout / "pyproject.toml").is_file() and (checkout / "db").is_dir():
        return checkout / "db"
    return here.parents[1] / "_sql"


def list_migrations(directory: Path | None = None) -> list[Migration]:
    """All migrations in version order (file names sort as their numbers)."""
    folder = sql_dir() if directory is None else directory
    if not folder.is_dir():
        raise MigrationError(f"no SQL folder at {folder}")
    found = []
    for path in sorted(folder.glob("*.sql")):
        data = path.read_bytes()
        found.append(
            Migration(
                version=path.stem,
                path=path,
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        )
    return found


async def migrate(admin_dsn: str, *, authenticator_password: str | None = None) -> list[str]:
    """Apply every pending migration, each in its own transaction; return their versions.

    Connects as the schema's owner. Returns `[]` when the schema is up to date. With
    `authenticator_password`, also (re)sets the password of the API's login role.
    """
    wanted = list_migrations()
    conn = await asyncpg.connect(admin_dsn)

    async def start() -> None:
        async with conn.transaction():
            await conn.execute(TAKE_LOCK, MIGRATION_LOCK_KEY)
            await conn.execute(CREATE_META)
            await conn.execute(GRANT_META)
            _check_unchanged(await _applied(conn), wanted)

    async def finish() -> None:
        async with conn.transaction():
            await conn.execute(TAKE_LOCK, MIGRATION_LOCK_KEY)
            await conn.execute(GRANT_META)
            if authenticator_password is not None:
                statement = await conn.fetchval(ALTER_AUTHENTICATOR, authenticator_password)
                await conn.execute(statement)

    try:
        await retry_catalog_races(start)
        done: list[str] = []
        for migration in wanted:
            if await retry_catalog_races(functools.partial(_apply, conn, migration)):
                done.append(migration.version)
        await retry_catalog_races(finish)
        return done
    finally:
        await conn.close()


async def make_roles(conn: asyncpg.Connection) -> None:
    """Run db/001_roles.sql alone (a restore: roles are the server's, never in a dump), under
    the migrations' lock and retried as a migration is."""
    roles = (sql_dir() / "001_roles.sql").read_text(encoding="utf-8")

    async def step() -> None:
        async with conn.transaction():
            await conn.execute(TAKE_LOCK, MIGRATION_LOCK_KEY)
            await conn.execute(roles)

    await retry_catalog_races(step)


async def retry_catalog_races(step: Callable[[], Awaitable[T]]) -> T:
    """Run `step` (one whole transaction) again when it lost a race on a shared catalog."""
    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            return await step()
        except (asyncpg.PostgresError, MigrationError) as exc:
            cause = exc.__cause__ if isinstance(exc, MigrationError) else exc
            if attempt == RACE_ATTEMPTS or not _lost_catalog_race(cause):
                raise
        await asyncio.sleep(random.uniform(0.02, 0.1) * attempt)
    raise AssertionError("unreachable")


def _lost_catalog_race(exc: BaseException | None) -> bool:
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    text = str(exc)
    return (exc.sqlstate == "XX000" and CATALOG_RACES[0] in text) or (
        exc.sqlstate == "23505" and CATALOG_RACES[1] in text
    )


async def pending_migrations(dsn: str) -> list[str]:
    """Versions not applied yet, in order; every version when nothing was ever applied.

    Works with the API's own DSN (role `authenticator`), which may read the record.
    """
    wanted = list_migrations()
    # Two statements, once: nothing worth caching. Behind a transaction-mode PgBouncer a named
    # (cached) statement would outlive this connection on the server connection it was
    # prepared on, where the next process's first statement, named alike, collides with it.
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        applied: set[str] = set()
        if await conn.fetchval(META_EXISTS):
            applied = {row["version"] for row in await conn.fetch(APPLIED_VERSIONS)}
    finally:
        await conn.close()
    return [m.version for m in wanted if m.version not in applied]


async def _apply(conn: asyncpg.Connection, migration: Migration) -> bool:
    """Apply one migration unless another process did first; True when this one did."""
    async with conn.transaction():
        # Re-read under the lock: a concurrent migrate() may have applied it meanwhile.
        await conn.execute(TAKE_LOCK, MIGRATION_LOCK_KEY)
        applied = await _applied(conn)
        if migration.version in applied:
            _check_unchanged(applied, [migration])
            return False
        try:
            await conn.execute(migration.sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{migration.path.name} failed: {exc}") from exc
        await conn.execute(RECORD, migration.version, migration.checksum)
        return True


async def _applied(conn: asyncpg.Connection) -> dict[str, str]:
    return {row["version"]: row["checksum"] for row in await conn.fetch(APPLIED)}


def _check_unchanged(applied: dict[str, str], wanted: list[Migration]) -> None:
    for migration in wanted:
        checksum = applied.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise MigrationError(
                f"{migration.path.name} was changed after it was applied "
                f"(recorded checksum {checksum[:12]}…, file {migration.checksum[:12]}…): "
                "put the change into a new numbered file instead"
            )
