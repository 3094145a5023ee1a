"""`scriptlabs backup FILE` and `scriptlabs restore FILE` (CONTRACT.md section 1, operations).

A backup is pg_dump's custom format (`-Fc`) of the whole database the API uses, taken as the
owner: pg_dump reads every table in one repeatable-read snapshot, so a backup taken while the
API writes is consistent (every lab with its user, every counter with its rows). It is written
beside FILE and renamed into place at the end: FILE is either a whole backup or absent.

A restore goes into an empty database only. Roles are cluster-wide and not in a dump, so the
roles migration (db/001_roles.sql) runs first; pg_restore then runs in one transaction
(nothing is left behind when it fails) without the dump's owners (`--no-owner`: the objects
belong to the restoring owner, as after `scriptlabs db migrate`) but with its grants to the
API's roles. The migrations table comes along; `migrate()` then finds the copy up to date
(or brings an older backup up to date) and sets the login role's password from DATABASE_URL,
as `scriptlabs db migrate` does.

pg_dump and pg_restore come from the machine's PostgreSQL: the newest found, which must not be
older than the server (an older pg_dump refuses a newer server). Progress, on a terminal only:
rows copied for a backup (pg_stat_progress_copy of pg_dump's session against the planner's
row estimates), bytes of the file read for a restore, with the step pg_dump/pg_restore is at.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from scriptlabs.db.migrate import MigrationError, make_roles, migrate
from scriptlabs.ops.progress import Progress, human_seconds

DEBIAN_ROOT = Path("/usr/lib/postgresql")
ARCHIVE_MAGIC = b"PGDMP"  # the first bytes of a custom-format archive
POLL_S = 0.2

# Held by a restore for as long as it runs (pg_locks objid); the migrations use ...0001.
RESTORE_LOCK_KEY = 0x5C_1AB5_0002
TRY_RESTORE_LOCK = "select pg_try_advisory_lock($1)"

SERVER_VERSION = "select current_setting('server_version_num')::int / 10000"

# Planner estimates (reltuples: -1 when never analysed): a progress line, not a count.
ESTIMATED_ROWS = """
select coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%'
"""

# pg_dump's COPY of the table it is at, found by the application name it was given.
COPY_PROGRESS = """
select p.relid, p.tuples_processed
from pg_catalog.pg_stat_progress_copy p
join pg_catalog.pg_stat_activity a on a.pid = p.pid
where a.application_name = $1
"""

# Anything of our own in the target: relations, functions, types or schemas that no
# extension owns (pg_stat_statements' views in public do not count).
OWN_OBJECTS = """
select
  (select count(*)
   from pg_catalog.pg_class c
   join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where n.nspname not in ('pg_catalog', 'information_schema')
     and n.nspname not like 'pg\\_toast%'
     and n.nspname not like 'pg\\_temp%'
     and not exists (
       select from pg_catalog.pg_depend d
       where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid
         and d.deptype = 'e'))
  +
  (select count(*)
   from pg_catalog.pg_namespace n
   where n.nspname not in ('public', 'information_schema')
     and n.nspname not like 'pg\\_%'
     and not exists (
       select from pg_catalog.pg_depend d
       where d.classid = 'pg_catalog.pg_namespace'::regclass and d.objid = n.oid
         and d.deptype = 'e'))
"""

# The --verbose lines worth showing as the step: `pg_dump: dumping contents of table
# "public.labs"`, `pg_restore: creating INDEX "public.labs_search_idx"`.
VERBOSE_STEP = re.compile(
    r"^pg_(?:dump|restore): ((?:dumping contents of table|processing data for table|creating) .*)$"
)
STEP_MAX = 60


class BackupError(Exception):
    """The backup or the restore cannot be done; the message is for the operator."""


def find_tool(name: str, server_major: int) -> Path:
    """The newest `name` (pg_dump, pg_restore) of the machine, not older than the server."""
    found: dict[Path, int] = {}
    if DEBIAN_ROOT.is_dir():
        for bindir in DEBIAN_ROOT.glob("*/bin"):
            if bindir.parent.name.isdigit() and (bindir / name).is_file():
                found[bindir / name] = int(bindir.parent.name)
    on_path = shutil.which(name)
    if on_path is not None and Path(on_path) not in found:
        version = _tool_version(Path(on_path))
        if version is not None:
            found[Path(on_path)] = version
    usable = {path: v for path, v in found.items() if v >= server_major}
    if not usable:
        have = ", ".join(f"{p} ({v})" for p, v in found.items()) or "none"
        raise BackupError(
            f"no {name} of PostgreSQL {server_major} or newer on this machine (found: {have}); "
            f"install the client of the server's version (Debian: postgresql-client-{server_major})"
        )
    return max(usable, key=lambda path: usable[path])


def _tool_version(path: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(match.group(1)) if match else None


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and the environment that carries it (PGPASSWORD), so
    the password never shows in the process list."""
    parts = urlsplit(dsn)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if parts.password is None:
        return dsn, env
    env["PGPASSWORD"] = unquote(parts.password)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), env


async def _server_facts(dsn: str) -> tuple[int, int, int]:
    """The server's major version, its estimated rows and our objects in the database."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to the database: {exc}") from None
    try:
        return (
            int(await conn.fetchval(SERVER_VERSION)),
            int(await conn.fetchval(ESTIMATED_ROWS)),
            int(await conn.fetchval(OWN_OBJECTS)),
        )
    finally:
        await conn.close()


async def _run(
    args: list[str],
    env: dict[str, str],
    on_line: Callable[[str], None],
    poll: Callable[[int], Awaitable[None]] | None,
) -> tuple[int, list[str]]:
    """Run a tool, passing each line of its standard error to `on_line` and calling `poll`
    with its pid every POLL_S; its exit status and the last lines it wrote."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    tail: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            tail.append(line)
            del tail[:-40]
            on_line(line)

    async def watch() -> None:
        assert poll is not None
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await poll(proc.pid)
            await asyncio.sleep(POLL_S)

    reader = asyncio.create_task(read())
    watcher = asyncio.create_task(watch()) if poll is not None else None
    try:
        status = await proc.wait()
        await reader
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if proc.returncode is None:  # interrupted: stop the tool with us
            proc.terminate()
            await proc.wait()
    return status, tail


def _errors(tail: list[str]) -> str:
    wanted = [line for line in tail if "error" in line.lower() or "fatal" in line.lower()]
    return "\n".join(wanted[-10:] or tail[-10:])


async def backup(admin_dsn: str, file: Path, progress: TextIO | None) -> int:
    """Write a custom-format dump of the database to `file`; its size in bytes."""
    major, estimated, _ = await _server_facts(admin_dsn)
    pg_dump = find_tool("pg_dump", major)
    dsn, env = libpq_target(admin_dsn)
    app_name = f"scriptlabs-backup-{secrets.token_hex(4)}"
    env["PGAPPNAME"] = app_name
    draft = _private_draft(file)
    bar = Progress(progress, "backed up", "rows", estimated, estimated=True)
    seen: dict[int, int] = {}  # rows copied per table, as last polled
    step = ""
    tables = 0

    def on_line(line: str) -> None:
        nonlocal step, tables
        match = VERBOSE_STEP.search(line)
        if match:
            step = match.group(1)[:STEP_MAX]
            tables += step.startswith("dumping contents")
            bar.show(sum(seen.values()), step)

    poll = None
    if progress is not None:
        watcher = await asyncpg.connect(admin_dsn)

        async def poll(_pid: int) -> None:
            for row in await watcher.fetch(COPY_PROGRESS, app_name):
                seen[row["relid"]] = max(seen.get(row["relid"], 0), row["tuples_processed"])
            bar.show(sum(seen.values()), step)

    args = [str(pg_dump), "--format=custom", f"--file={draft}", f"--dbname={dsn}"]
    if progress is not None:
        args.append("--verbose")
    try:
        status, tail = await _run(args, env, on_line, poll)
        if status != 0:
            raise BackupError(f"pg_dump failed (exit status {status}):\n{_errors(tail)}")
        size = draft.stat().st_size
        draft.replace(file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            draft.unlink()
        if progress is not None:
            await watcher.close()
    bar.close_with(
        f"backed up {tables} tables into {file} ({size:,} bytes) "
        f"in {human_seconds(time.monotonic() - bar.started)}"
    )
    return size


async def restore(
    admin_dsn: str, file: Path, progress: TextIO | None, *, authenticator_password: str | None
) -> list[str]:
    """Restore the backup `file` into the empty database of `admin_dsn`; the migrations
    applied after it (none when the backup is of the current version).

    One restore at a time per database: the emptiness check, the roles and pg_restore run
    under a session advisory lock, and a second restore started meanwhile is refused at
    once (it would find the database no longer empty)."""
    total, resolved = _archive(file)
    try:
        conn = await asyncpg.connect(admin_dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to the database: {exc}") from None
    try:
        name = urlsplit(admin_dsn).path.lstrip("/") or "the database"
        if not await conn.fetchval(TRY_RESTORE_LOCK, RESTORE_LOCK_KEY):
            raise BackupError(f"another restore into {name} is running; nothing was restored")
        major = int(await conn.fetchval(SERVER_VERSION))
        own = int(await conn.fetchval(OWN_OBJECTS))
        if own:
            raise BackupError(
                f"{name} is not empty ({own} tables, functions or schemas of its own): a "
                "backup is restored into an empty database only: create a new one and point "
                "DATABASE_URL and DATABASE_ADMIN_URL at it (embedded: a new SCRIPTLABS_DATA_DIR)"
            )
        pg_restore = find_tool("pg_restore", major)
        await make_roles(conn)  # the cluster's, not the dump's: the API's four must exist
        await _pg_restore(pg_restore, admin_dsn, file, total, resolved, progress)
    finally:
        await conn.close()  # the session lock goes with the session
    try:
        return await migrate(admin_dsn, authenticator_password=authenticator_password)
    except MigrationError as exc:
        raise BackupError(
            f"{file} was restored, but its schema does not match the migrations of this "
            f"version: {exc}"
        ) from None


async def _pg_restore(
    pg_restore: Path,
    admin_dsn: str,
    file: Path,
    total: int,
    resolved: str,
    progress: TextIO | None,
) -> None:
    """Run pg_restore of `file` in one transaction, drawing its progress."""
    dsn, env = libpq_target(admin_dsn)
    bar = Progress(progress, "restored", "", total, in_bytes=True)
    read = 0
    step = ""

    def on_line(line: str) -> None:
        nonlocal step
        match = VERBOSE_STEP.search(line)
        if match:
            step = match.group(1)[:STEP_MAX]
            bar.show(read, step)

    async def poll(pid: int) -> None:
        nonlocal read
        read = max(read, _file_offset(pid, resolved))
        bar.show(read, step)

    args = [
        str(pg_restore),
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={dsn}",
    ]
    if progress is not None:
        args.append("--verbose")
    started = time.monotonic()
    status, tail = await _run(
        [*args, str(file)], env, on_line, poll if progress is not None else None
    )
    if status != 0:
        raise BackupError(
            f"pg_restore failed (exit status {status}); nothing was restored:\n{_errors(tail)}"
        )
    bar.close_with(
        f"restored {file} ({total:,} bytes) in {human_seconds(time.monotonic() - started)}"
    )


def _private_draft(file: Path) -> Path:
    """An empty file beside `file`, readable by its owner only, for pg_dump to fill: a
    backup holds password hashes and tokens (pg_dump keeps the mode of a file it truncates)."""
    draft = file.with_name(f".{file.name}.{secrets.token_hex(4)}.partial")
    try:
        os.close(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot write beside {file}: {exc.strerror}") from None
    return draft


def _archive(file: Path) -> tuple[int, str]:
    """The size and real path of a backup file, checked to be one."""
    try:
        with file.open("rb") as f:
            magic = f.read(len(ARCHIVE_MAGIC))
        size, resolved = file.stat().st_size, str(file.resolve())
    except OSError as exc:
        raise BackupError(f"cannot read {file}: {exc.strerror}") from None
    if magic != ARCHIVE_MAGIC:
        raise BackupError(f"{file} is not a backup (pg_dump's custom format)")
    return size, resolved


def _file_offset(pid: int, path: str) -> int:
    """How far process `pid` has read `path` (Linux /proc; 0 where that is not known)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == path:
                    info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                    match = re.search(r"^pos:\s*(\d+)", info, re.MULTILINE)
                    if match:
                        return int(match.group(1))
    return 0
