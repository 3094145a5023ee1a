"""A real PgBouncer (the machine's `pgbouncer`, transaction pooling) in front of a PostgreSQL.

It listens only on a Unix socket in a private folder (mode 0700), as the embedded cluster
does, and lets in the users it is given without a password (`auth_type = trust`: the folder is
the lock). PgBouncer refuses to run as root: as root it runs as the `postgres` system user,
who owns that folder and can reach the embedded cluster's socket.

Each database is listed twice: under its own name with `pool_size` server connections, and as
`<name>_single` with one, for checks that need every client on the same server connection.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, quote, unquote, urlsplit

from scriptlabs.db.embedded import SERVER_USER, find_bindir

PORT = 6432  # names the socket file only: nothing listens on TCP
ADMIN_USER = "pgbouncer"  # for the admin console (SHOW ...)
START_TIMEOUT_S = 15


class PgBouncerMissing(Exception):
    """No `pgbouncer` binary on this machine."""


def find_pgbouncer() -> str:
    """The `pgbouncer` program: on PATH, or where Debian puts it (/usr/sbin, not on every PATH)."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise PgBouncerMissing("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    return found


@dataclass(frozen=True)
class Upstream:
    """Where PgBouncer finds PostgreSQL, and as whom, read from a libpq-style URL."""

    host: str
    port: int
    dbname: str
    user: str
    password: str

    @classmethod
    def from_dsn(cls, dsn: str) -> Upstream:
        parts = urlsplit(dsn)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            host=query.get("host") or parts.hostname or "localhost",
            port=int(query.get("port") or parts.port or 5432),
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )


class PgBouncer:
    """One PgBouncer process, configured for `upstream` (transaction mode, `pool_size` server
    connections per database and user); a context manager that starts and stops it."""

    def __init__(self, upstream: Upstream, *, pool_size: int, users: list[str]) -> None:
        self.upstream = upstream
        self.pool_size = pool_size
        self.users = users
        self.program = find_pgbouncer()
        self.folder = Path(tempfile.mkdtemp(prefix="scriptlabs-pgbouncer-", dir="/tmp"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.folder / "pgbouncer.log"

    def dsn(self, user: str, dbname: str | None = None) -> str:
        """A URL through PgBouncer, for `user`, to `dbname` (default: the upstream's)."""
        folder = quote(str(self.folder), safe="/")
        return f"postgresql://{user}@/{dbname or self.upstream.dbname}?host={folder}&port={PORT}"

    def single_dsn(self, user: str) -> str:
        """The same database through a pool of one server connection."""
        return self.dsn(user, f"{self.upstream.dbname}_single")

    # -- life cycle

    def start(self) -> None:
        self._write_config()
        account = _run_as()
        kwargs: dict[str, object] = {}
        if account is not None:
            for path in [self.folder, *self.folder.iterdir()]:
                os.chown(path, account.pw_uid, account.pw_gid)
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._process = subprocess.Popen(
            [self.program, str(self.folder / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            **kwargs,  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        socket = self.folder / f".s.PGSQL.{PORT}"
        while not socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PgBouncer did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # immediate shutdown
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.remove()

    # -- the admin console

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console (simple queries only: psql, not asyncpg)."""
        result = subprocess.run(
            [
                _psql(),
                "--no-psqlrc",
                "--csv",
                "--host",
                str(self.folder),
                "--port",
                str(PORT),
                "--username",
                ADMIN_USER,
                "--dbname",
                "pgbouncer",
                "--command",
                f"show {what}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        lines = result.stdout.splitlines()
        header = lines[0].split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    # -- configuration

    def _write_config(self) -> None:
        up = self.upstream
        target = f"host={up.host} port={up.port} dbname={up.dbname}"
        config = f"""\
[databases]
{up.dbname} = {target}
{up.dbname}_single = {target} pool_size=1

[pgbouncer]
pool_mode = transaction
listen_port = {PORT}
unix_socket_dir = {self.folder}
auth_type = trust
auth_file = {self.folder / "userlist.txt"}
admin_users = {ADMIN_USER}
default_pool_size = {self.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
logfile = {self.log_file}
pidfile = {self.folder / "pgbouncer.pid"}
"""
        (self.folder / "pgbouncer.ini").write_text(config, encoding="utf-8")
        # the passwords PgBouncer logs in to PostgreSQL with (none for a trusting server)
        passwords = {user: "" for user in [*self.users, ADMIN_USER]}
        if up.user in passwords:
            passwords[up.user] = up.password
        entries = [f'"{user}" "{password}"' for user, password in passwords.items()]
        (self.folder / "userlist.txt").write_text("\n".join(entries) + "\n", encoding="utf-8")
        (self.folder / "userlist.txt").chmod(0o600)


def _run_as() -> pwd.struct_passwd | None:
    """The account to run PgBouncer as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(
            f"PgBouncer refuses to run as root, and there is no `{SERVER_USER}` user"
        ) from None


def _psql() -> str:
    return shutil.which("psql") or str(find_bindir() / "psql")
