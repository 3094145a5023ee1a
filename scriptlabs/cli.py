"""The `scriptlabs` command: serve, db migrate/url/health/maintain, schema, demo-data, persisted,
export, import, backup, restore, report."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from scriptlabs.config import Settings, SettingsError, cores
from scriptlabs.db.embedded import EmbeddedError, EmbeddedPostgres, dev_secret
from scriptlabs.db.migrate import MigrationError, migrate, pending_migrations
from scriptlabs.db.outage import DatabaseUnavailable, wait_for_database
from scriptlabs.telemetry.logs import log_config

log = logging.getLogger("scriptlabs")
SCHEMA_FILE = Path("schema.graphql")


class CommandError(Exception):
    """Stops the command with a message for the operator and exit status 2."""


@contextlib.contextmanager
def database(settings: Settings, *, migrate_embedded: bool = True) -> Iterator[Settings]:
    """Settings pointed at a database: DATABASE_URL's, or the embedded cluster (started,
    migrated, and stopped again on exit if this call started it)."""
    if settings.database_url:
        yield settings
        return
    cluster = EmbeddedPostgres(settings.data_dir)
    print(f"==> embedded PostgreSQL in {cluster.data_dir}", file=sys.stderr)
    with cluster:
        if migrate_embedded:
            applied = asyncio.run(migrate(cluster.admin_dsn()))
            if applied:
                print(f"==> applied migrations: {', '.join(applied)}", file=sys.stderr)
        yield settings.with_database(cluster.dsn(), cluster.admin_dsn())


def with_secret(settings: Settings) -> Settings:
    if settings.jwt_secret:
        return settings
    return settings.with_secret(dev_secret(settings.data_dir, "jwt_secret"))


def _exit_on_signal(signum: int, _frame: object) -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown: leave through the `with` blocks
    # so the embedded cluster is stopped too. A stop that was asked for and done gracefully
    # is a success (status 0), as with several workers, whose supervisor returns normally.
    raise SystemExit(0)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from scriptlabs.http import workers
    from scriptlabs.http.protocol import CoalescingHttpToolsProtocol

    signal.signal(signal.SIGTERM, _exit_on_signal)
    settings = with_secret(settings)
    with database(settings) as settings:
        assert settings.database_url is not None
        if settings.db_startup_wait_s:
            # a server and its database are often started together: wait for it a while
            try:
                asyncio.run(
                    wait_for_database(
                        settings.database_url,
                        settings.db_startup_wait_s,
                        connect_timeout=settings.db_connect_timeout_s,
                    )
                )
            except DatabaseUnavailable as exc:
                raise CommandError(f"{exc}: is DATABASE_URL right, and the server up?") from None
        pending = asyncio.run(pending_migrations(settings.database_url))
        if pending:
            raise CommandError(
                f"the database has pending migrations ({', '.join(pending)}); "
                "run `scriptlabs db migrate` (with DATABASE_ADMIN_URL set to the owner's DSN)"
            )
        print(f"==> serving on http://{args.host}:{args.port}/graphql", file=sys.stderr)
        log_format = settings.log_format or ("text" if sys.stderr.isatty() else "json")
        settings = replace(settings, log_format=log_format)
        assert settings.database_url is not None
        os.environ["LOG_FORMAT"] = log_format  # the workers' settings too
        options = {
            "host": args.host,
            "port": args.port,
            "loop": "uvloop",
            "http": CoalescingHttpToolsProtocol,  # httptools, one write per answer
            "proxy_headers": False,  # client addresses: TRUSTED_PROXIES, in the app
            "access_log": False,
            "server_header": False,
            # a WebSocket message is a request: the same size limit (http/websocket.py)
            "ws_max_size": settings.max_body_bytes,
            # SIGTERM: stop accepting, let requests in flight finish for at most this long,
            # then run the app's shutdown (subscriptions closed, pool closed)
            "timeout_graceful_shutdown": settings.shutdown_timeout_s,
            "log_level": settings.log_level,
            "log_config": log_config(log_format, settings.log_level),
        }
        if args.workers > 1:
            _share_metrics()  # before the workers start: they read it at import
            os.environ["DATABASE_URL"] = settings.database_url
            os.environ["JWT_SECRET"] = settings.jwt_secret or ""
            if not os.environ.get("DB_POOL_MAX", "").strip():  # compose passes it empty
                # the workers share two requests' turns per core (at most the default 10 in
                # all): they share the cores with PostgreSQL, and more backends than that only
                # queue for them and lengthen the slowest answers (bench/RESULTS.md). Exports
                # and imports have connections of their own on top (Settings.db_connections_max)
                shared = min(settings.db_pool_max, 2 * cores())
                per_worker = max(MIN_POOL_PER_WORKER, shared // args.workers)
                os.environ["DB_POOL_MAX"] = str(per_worker)
                os.environ["DB_POOL_MIN"] = str(min(settings.db_pool_min, per_worker))
            # each worker on a listening socket of its own (http/workers.py)
            workers.run(
                uvicorn.Config(
                    "scriptlabs.app:create_app", factory=True, workers=args.workers, **options
                )
            )
        else:
            from scriptlabs.app import create_app

            uvicorn.run(create_app(settings), **options)
    return 0


MIN_POOL_PER_WORKER = 2  # with several workers and DB_POOL_MAX unset


def _share_metrics() -> None:
    """A fresh private folder where the workers keep their metrics, so that a scrape adds up
    all of them (prometheus-client's multiprocess mode); removed when serve ends."""
    folder = tempfile.mkdtemp(prefix="scriptlabs-metrics-")  # mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(shutil.rmtree, folder, True)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    if settings.database_url is None:
        with database(settings):
            pass  # starting the embedded cluster migrates it
        print("==> embedded database is up to date", file=sys.stderr)
        return 0
    admin = settings.database_admin_url or settings.database_url
    password = urlsplit(settings.database_url).password
    applied = asyncio.run(migrate(admin, authenticator_password=password))
    print(f"applied: {', '.join(applied)}" if applied else "up to date", file=sys.stderr)
    return 0


def cmd_url(settings: Settings, args: argparse.Namespace) -> int:
    if settings.database_url:
        print(settings.database_admin_url if args.admin else settings.database_url)
        return 0
    cluster = EmbeddedPostgres(settings.data_dir)
    print(cluster.admin_dsn() if args.admin else cluster.dsn())
    return 0


def cmd_schema(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.graphql.schema import build_schema

    sdl = build_schema(settings).as_str() + "\n"
    if not args.check:
        sys.stdout.write(sdl)
        return 0
    current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    if current != sdl:
        raise CommandError(
            "schema.graphql is stale: run `scriptlabs schema > schema.graphql` and commit it"
        )
    print("schema.graphql is up to date", file=sys.stderr)
    return 0


def cmd_cleanup_tokens(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.auth.reset import cleanup_expired_tokens

    deleted = _as_owner(settings, cleanup_expired_tokens)
    print(f"deleted {deleted} rows (expired or used reset tokens, old mail and sessions)")
    return 0


def _as_owner(settings: Settings, work: Any) -> Any:
    """`work(conn)` on a connection as the database owner (DATABASE_ADMIN_URL or embedded)."""

    async def run(dsn: str) -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with database(settings) as settings:
        admin = settings.database_admin_url or settings.database_url
        assert admin is not None
        return asyncio.run(run(admin))


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops import report

    if not 1 <= args.days <= 3660:
        raise CommandError("--days must be between 1 and 3660")
    days = _as_owner(settings, lambda conn: report.report(conn, args.days))
    if args.json:
        print(json.dumps([d.as_json() for d in days], indent=2))
    else:
        print(report.table(days))
    return 0


def cmd_db_health(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops import dbhealth

    figures = _as_owner(settings, dbhealth.health)
    print(json.dumps(figures, indent=2) if args.json else dbhealth.table(figures))
    return 0


def cmd_db_maintain(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops import dbhealth

    for line in _as_owner(settings, dbhealth.maintain):
        print(line)
    return 0


def cmd_demo_data(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.auth.passwords import make_hasher
    from scriptlabs.labs.demo import load_demo_data

    if args.labs < 0 or args.users < 1:
        raise CommandError("--labs must be 0 or more and --users 1 or more")
    if (args.others is None) != (args.others_labs is None):
        raise CommandError("--others and --others-labs go together")
    others, others_labs = args.others or 0, args.others_labs or 0
    if others < 0 or others_labs < 0:
        raise CommandError("--others and --others-labs must be 0 or more")
    from scriptlabs.ops.progress import Progress, terminal

    password_hash = make_hasher(settings.argon2).hash(args.password)
    bar = Progress(terminal(), "loaded", "labs", args.labs + others * others_labs)
    with database(settings) as settings:
        admin = settings.database_admin_url or settings.database_url
        assert admin is not None
        users = asyncio.run(
            load_demo_data(
                admin,
                labs=args.labs,
                users=args.users,
                others=others,
                others_labs=others_labs,
                password=args.password,
                password_hash=password_hash,
                progress=(
                    (lambda done, step: bar.show(done, step, force=bool(step)))
                    if bar.stream is not None
                    else None
                ),
            )
        )
    people = f"{len(users):,} user" + ("" if len(users) == 1 else "s")
    bar.close_with(f"loaded {sum(user.labs for user in users):,} labs for {people}")
    for user in users:
        print(f"{user.email}\t{user.id}\t{user.labs}")
    return 0


def cmd_persisted(settings: Settings, args: argparse.Namespace) -> int:
    """Registered documents of PERSISTED_QUERIES=only (scriptlabs.ops.persisted)."""
    from scriptlabs.ops import persisted

    forms: list[tuple[str, list[persisted.Form]]] = []
    if args.persisted_command == "add":
        from scriptlabs.graphql.schema import build_schema

        schema = build_schema(settings)._schema
        for path in args.files:
            try:
                text = Path(path).read_text(encoding="utf-8")
                read = (
                    persisted.manifest_forms if path.endswith(".json") else persisted.document_forms
                )
                forms.append((path, read(text, schema)))
            except (OSError, UnicodeDecodeError, persisted.DocumentError) as exc:
                raise CommandError(f"{path}: {exc}") from None

    async def run(dsn: str) -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            if args.persisted_command == "add":
                lines = []
                for path, path_forms in forms:
                    await persisted.register(conn, path_forms, Path(path).name)
                    lines += [f"{f.hash}\t{path}\t{f.label}" for f in path_forms]
                return lines
            if args.persisted_command == "remove":
                removed = await persisted.unregister(conn, args.hashes)
                return [f"removed {removed} of {len(args.hashes)}"]
            return [
                f"{r['hash']}\t{r['created_at'].isoformat()}\t{r['size']}\t{r['source'] or ''}"
                for r in await persisted.registered(conn)
            ]
        finally:
            await conn.close()

    with database(settings) as settings:
        admin = settings.database_admin_url or settings.database_url
        assert admin is not None
        for line in asyncio.run(run(admin)):
            print(line)
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops.export import UnknownUser, export_user_labs

    progress = sys.stderr if sys.stderr.isatty() else None
    with database(settings) as settings:
        try:
            asyncio.run(
                export_user_labs(settings, args.user, args.format, sys.stdout.buffer, progress)
            )
        except UnknownUser:
            raise CommandError(f"no user has the email {args.user!r}") from None
        except BrokenPipeError:  # the reader stopped (`| head`): no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops.backup import BackupError, backup
    from scriptlabs.ops.progress import terminal

    with database(settings, migrate_embedded=False) as settings:
        admin = settings.database_admin_url or settings.database_url
        assert admin is not None
        try:
            asyncio.run(backup(admin, Path(args.file), terminal()))
        except BackupError as exc:
            raise CommandError(str(exc)) from None
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops.backup import BackupError, restore
    from scriptlabs.ops.progress import terminal

    with database(settings, migrate_embedded=False) as settings:
        admin = settings.database_admin_url or settings.database_url
        assert admin is not None and settings.database_url is not None
        password = urlsplit(settings.database_url).password
        try:
            applied = asyncio.run(
                restore(admin, Path(args.file), terminal(), authenticator_password=password)
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
    if applied:
        print(f"==> applied migrations: {', '.join(applied)}", file=sys.stderr)
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from scriptlabs.ops.export import UnknownUser
    from scriptlabs.ops.imports import import_user_labs

    progress = sys.stderr if sys.stderr.isatty() else None
    try:
        source = open(args.file, "rb")  # noqa: SIM115 - closed below, after the database
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    with source, database(settings) as settings:
        try:
            report, committed = asyncio.run(
                import_user_labs(
                    settings, args.user, source, skip_bad=args.skip_bad, progress=progress
                )
            )
        except UnknownUser:
            raise CommandError(f"no user has the email {args.user!r}") from None
    for error in report.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    if report.error_count > len(report.errors):
        more = report.error_count - len(report.errors)
        print(f"{args.file}: ... and {more:,} more errors", file=sys.stderr)
    if committed:
        skipped = f", skipped {report.bad_rows:,} bad rows" if report.bad_rows else ""
        print(f"imported {report.inserted:,} labs{skipped}")
        return 0
    print(
        f"imported nothing: {report.bad_rows:,} bad rows of {report.rows:,}"
        + (" (the file could not be read to its end)" if report.fatal else ""),
        file=sys.stderr,
    )
    return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scriptlabs", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API (embedded PostgreSQL without DATABASE_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=cmd_serve)

    db = sub.add_parser("db", help="the database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply pending migrations (idempotent)").set_defaults(
        run=cmd_migrate
    )
    health = db_sub.add_parser(
        "health", help="sizes, cache hit ratios, connections, dead rows, slowest statements"
    )
    health.add_argument("--json", action="store_true", help="JSON instead of a table")
    health.set_defaults(run=cmd_db_health)
    db_sub.add_parser(
        "maintain", help="ANALYZE the API's tables and delete expired tokens; says what it did"
    ).set_defaults(run=cmd_db_maintain)
    url = db_sub.add_parser("url", help="print the DSN the API uses")
    url.add_argument("--admin", action="store_true", help="the owner's DSN instead")
    url.set_defaults(run=cmd_url)

    schema = sub.add_parser("schema", help="print the GraphQL SDL")
    schema.add_argument("--check", action="store_true", help="fail when schema.graphql is stale")
    schema.set_defaults(run=cmd_schema)

    demo = sub.add_parser("demo-data", help="add demo users and labs")
    demo.add_argument("--labs", type=int, required=True)
    demo.add_argument("--users", type=int, default=1)
    demo.add_argument("--password", default="demo-password")
    demo.add_argument(
        "--others",
        type=int,
        metavar="K",
        help="K more users, after the U, with --others-labs labs each; all their labs interleaved",
    )
    demo.add_argument("--others-labs", type=int, metavar="M")
    demo.set_defaults(run=cmd_demo_data)

    persisted = sub.add_parser("persisted", help="documents registered for PERSISTED_QUERIES=only")
    persisted_sub = persisted.add_subparsers(dest="persisted_command", required=True)
    add = persisted_sub.add_parser(
        "add",
        help="register each file's whole document, or each operation of an Apollo manifest "
        "(.json); prints hash, file and form",
    )
    add.add_argument("files", nargs="+", metavar="FILE.graphql|MANIFEST.json")
    add.set_defaults(run=cmd_persisted)
    persisted_sub.add_parser(
        "list", help="print hash, registered at, size and source of each document"
    ).set_defaults(run=cmd_persisted)
    remove = persisted_sub.add_parser("remove", help="unregister documents by hash")
    remove.add_argument("hashes", nargs="+", metavar="HASH")
    remove.set_defaults(run=cmd_persisted)

    export = sub.add_parser("export", help="write a user's labs to standard output")
    export.add_argument("--user", required=True, metavar="EMAIL")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.set_defaults(run=cmd_export)

    backup = sub.add_parser("backup", help="write a consistent dump of the database to FILE")
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(run=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup into an empty database")
    restore.add_argument("file", metavar="FILE")
    restore.set_defaults(run=cmd_restore)
    imports = sub.add_parser(
        "import", help="add the labs of a CSV file (the export's or Goodreads') to a user's"
    )
    imports.add_argument("--user", required=True, metavar="EMAIL")
    imports.add_argument("file", metavar="FILE.csv")
    imports.add_argument(
        "--skip-bad", action="store_true", help="import the good rows, report the bad ones"
    )
    imports.set_defaults(run=cmd_import)
    report = sub.add_parser(
        "report", help="per day: active users, labs created, searches, share that found nothing"
    )
    report.add_argument("--days", type=int, default=7, help="the last N days (default 7)")
    report.add_argument("--json", action="store_true", help="JSON instead of a table")
    report.set_defaults(run=cmd_report)

    sub.add_parser(
        "cleanup-tokens", help="delete expired and used reset tokens (and old mail, sessions)"
    ).set_defaults(run=cmd_cleanup_tokens)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        return int(args.run(settings, args))
    except (CommandError, SettingsError, EmbeddedError, MigrationError) as exc:
        print(f"scriptlabs: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
