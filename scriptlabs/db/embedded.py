"""A private PostgreSQL cluster for development and tests, made with the machine's binaries.

The cluster lives in `<data_dir>/pgdata`, listens only on a Unix socket in `<data_dir>/run`
(or a short directory under /tmp when that path is too long for a socket), logs to
`<data_dir>/postgres.log`, and trusts local connections: the socket is mode 0700, so only
the server's own OS user (and root) can reach it. Everything here is synchronous
(subprocess); call it before the event loop starts or through `asyncio.to_thread`.

initdb and postgres refuse to run as root. As root, they run as the `postgres` system user,
which then owns the cluster's files; `<data_dir>` itself gets search permission for others
(o+x) if it lacks it, which opens none of its files. When that user cannot reach the folder
holding `<data_dir>` (a checkout under /root, which is mode 0700), the cluster goes to
`/var/lib/scriptlabs/<hash of data_dir>/` instead, and `<data_dir>/pgdata` is a symbolic
link to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

MIN_VERSION = 15
DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
SUPERUSER = "postgres"
LOGIN_ROLE = "authenticator"
# A socket path must fit sun_path: 108 bytes including the terminating NUL.
SOCKET_PATH_MAX = 107
SOCKET_NAME = ".s.PGSQL.5432"
# Socket and server paths go into postgresql.conf, a shell command (pg_ctl) and a DSN:
# outside this alphabet they move to a hash-named directory.
SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@-]+")
FALLBACK_ROOT = Path("/var/lib/scriptlabs")
SETTINGS_FILE = "scriptlabs.conf"
START_TIMEOUT_S = 60

SETTINGS = {
    "listen_addresses": "",
    "unix_socket_permissions": "0700",
    "shared_preload_libraries": "pg_stat_statements",
    "max_connections": "300",
    "shared_buffers": "256MB",
    # bulk loads (demo-data) otherwise checkpoint every few seconds
    "max_wal_size": "4GB",
}
# For throwaway test clusters: a crash may lose or corrupt data, which they do not keep.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class EmbeddedError(Exception):
    """The embedded cluster cannot be found, created, started or stopped."""


def find_bindir() -> Path:
    """The `bin` folder of the newest PostgreSQL server (15 or newer) on this machine."""
    found: dict[Path, int] = {}
    if DEBIAN_ROOT.is_dir():
        for bindir in DEBIAN_ROOT.glob("*/bin"):
            if bindir.parent.name.isdigit() and _has_server(bindir):
                found[bindir] = int(bindir.parent.name)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            bindir = Path(out)
            if out and bindir not in found and _has_server(bindir):
                version = _server_version(bindir)
                if version is not None:
                    found[bindir] = version
    usable = {bindir: version for bindir, version in found.items() if version >= MIN_VERSION}
    if not usable:
        raise EmbeddedError(
            f"no PostgreSQL server {MIN_VERSION} or newer found in {DEBIAN_ROOT}/*/bin or "
            "`pg_config --bindir`: install it (Debian: `apt-get install postgresql`), "
            "or set DATABASE_URL to use an existing server"
        )
    return max(usable, key=lambda bindir: usable[bindir])


def dev_secret(data_dir: Path, name: str, nbytes: int = 48) -> str:
    """A secret kept in `<data_dir>/secrets/<name>` (mode 0600), generated on first use."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
        raise ValueError(f"not a secret name: {name!r}")
    folder = Path(data_dir) / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(nbytes)
    # Written aside and linked into place: a concurrent reader never sees a partial file,
    # and of two concurrent writers the first one's value wins for both.
    draft = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(value + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            value = path.read_text(encoding="utf-8").strip()
    finally:
        draft.unlink()
    return value


class EmbeddedPostgres:
    """One local cluster under `data_dir`, with the database `scriptlabs` in it.

    `fast=True` turns durability off (fsync, synchronous_commit, full_page_writes): for tests.
    As a context manager it initialises, starts and creates the database on entry, and stops
    the server on exit if it started it.
    """

    database = "scriptlabs"

    def __init__(self, data_dir: Path, *, fast: bool = False, bindir: Path | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.fast = fast
        self._bindir = bindir
        self._started = False

    # -- where things are

    @functools.cached_property
    def bindir(self) -> Path:
        """The server binaries used."""
        return self._bindir if self._bindir is not None else find_bindir()

    @functools.cached_property
    def server_dir(self) -> Path:
        """The folder holding pgdata, run and postgres.log: data_dir unless it is unreachable."""
        link = self.data_dir / "pgdata"
        if link.is_symlink():
            return link.resolve().parent
        if _is_root() and not _reachable(self.data_dir.parent, _server_account()):
            return FALLBACK_ROOT / _digest(self.data_dir)
        return self.data_dir

    @property
    def pgdata(self) -> Path:
        """The cluster's data directory."""
        return self.server_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.server_dir / "postgres.log"

    @functools.cached_property
    def socket_dir(self) -> Path:
        """The folder of the server's Unix socket."""
        run = self.server_dir / "run"
        if len(str(run / SOCKET_NAME).encode()) <= SOCKET_PATH_MAX and SAFE_PATH.fullmatch(
            str(run)
        ):
            return run
        # /tmp itself, not $TMPDIR, which may be just as long
        return Path("/tmp") / f"scriptlabs-{_digest(self.data_dir)}"  # noqa: S108

    def admin_dsn(self) -> str:
        """DSN of the cluster's superuser, the owner of the schema."""
        return self._dsn(SUPERUSER)

    def dsn(self) -> str:
        """DSN of the API's login role."""
        return self._dsn(LOGIN_ROLE)

    def _dsn(self, role: str) -> str:
        return f"postgresql://{role}@/{self.database}?host={quote(str(self.socket_dir), safe='/')}"

    # -- life cycle

    def ensure_initialized(self) -> None:
        """Create the cluster with initdb unless it exists."""
        with self._lock():
            if (self.pgdata / "PG_VERSION").is_file():
                self._link_pgdata()
                return
            self._make_dir(self.server_dir, owned=False)
            if _is_root() and not _reachable(self.server_dir, _server_account()):
                # e.g. made by mkdtemp (0700): traversal only, its files keep their modes
                self.server_dir.chmod(self.server_dir.stat().st_mode | stat.S_IXOTH)
            self._make_dir(self.pgdata, owned=True)
            args = [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.pgdata),
                "--username",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ]
            if self.fast:
                args.append("--no-sync")
            result = self._run_as_server([*args, "--locale=C.UTF-8"])
            if result.returncode != 0:
                # initdb empties the folder after a failure; C is valid everywhere.
                result = self._run_as_server([*args, "--locale=C"])
            if result.returncode != 0:
                raise EmbeddedError(f"initdb failed in {self.pgdata}:\n{_output(result)}")
            with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(f"\n# Script Labs settings\ninclude_if_exists '{SETTINGS_FILE}'\n")
            self._link_pgdata()

    def is_running(self) -> bool:
        """Whether a server runs on this cluster, started by us or not."""
        if not (self.pgdata / "PG_VERSION").is_file():
            return False
        result = self._run_as_server(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.pgdata)]
        )
        return result.returncode == 0

    def start(self) -> None:
        """Start the server and wait until it accepts connections; reuse one already running.

        A server that was running before is left running by `stop()`.
        """
        with self._lock():
            if self.is_running():
                return
            self._write_settings()
            self._make_dir(self.socket_dir, owned=True)
            if not self.log_file.exists():
                self.log_file.touch(mode=0o600)
                self._give_to_server(self.log_file)
            result = self._run_as_server(
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "--wait",
                    f"--timeout={START_TIMEOUT_S}",
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                ]
            )
            if result.returncode != 0:
                raise EmbeddedError(
                    f"PostgreSQL did not start:\n{_output(result)}\n"
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            self._started = True

    def stop(self) -> None:
        """Stop the server (fast shutdown) if this object started it."""
        if not self._started:
            return
        result = self._run_as_server(
            [str(self.bindir / "pg_ctl"), "stop", "--wait", "-m", "fast", "-D", str(self.pgdata)]
        )
        if result.returncode != 0 and self.is_running():
            raise EmbeddedError(f"PostgreSQL did not stop:\n{_output(result)}")
        self._started = False

    def create_database(self) -> None:
        """Create the database `scriptlabs` (with pg_stat_statements) unless it exists."""
        exists = self._psql("postgres", "select 1 from pg_database where datname = 'scriptlabs'")
        if exists.stdout.strip() != "1":
            created = self._psql("postgres", f"create database {self.database}")
            if created.returncode != 0 and "already exists" not in created.stderr:
                raise EmbeddedError(f"could not create the database:\n{_output(created)}")
        extension = self._psql(self.database, "create extension if not exists pg_stat_statements")
        if extension.returncode != 0:
            raise EmbeddedError(f"could not create pg_stat_statements:\n{_output(extension)}")

    def __enter__(self) -> EmbeddedPostgres:
        self.ensure_initialized()
        self.start()
        try:
            self.create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers

    def _psql(self, database: str, sql: str) -> subprocess.CompletedProcess[str]:
        # Runs as the caller: root may connect to the 0700 socket, and anyone else runs
        # the server as themselves.
        return subprocess.run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                "--host",
                str(self.socket_dir),
                "--username",
                SUPERUSER,
                "--dbname",
                database,
                "--command",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def _run_as_server(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server program: as the `postgres` system user when we are root."""
        if not _is_root():
            return subprocess.run(args, capture_output=True, text=True, check=False)
        account = _server_account()
        env = {
            **os.environ,
            "HOME": account.pw_dir,
            "USER": account.pw_name,
            "LOGNAME": account.pw_name,
        }
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            env=env,
            cwd="/",
        )

    def _make_dir(self, path: Path, *, owned: bool) -> None:
        """Create a folder; `owned` ones belong to the server's user and are private."""
        path.mkdir(mode=0o700 if owned else 0o755, parents=True, exist_ok=True)
        if not owned:
            return
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise EmbeddedError(f"{path} is not a directory")
        server_uid = _server_account().pw_uid if _is_root() else os.geteuid()
        if info.st_uid not in (os.geteuid(), server_uid):
            # a shared place such as /tmp: someone else's folder must not hold our socket
            raise EmbeddedError(f"{path} belongs to another user")
        if _is_root():
            os.chown(path, server_uid, _server_account().pw_gid)
        path.chmod(0o700)

    def _give_to_server(self, path: Path) -> None:
        if _is_root():
            os.chown(path, _server_account().pw_uid, _server_account().pw_gid)

    def _link_pgdata(self) -> None:
        """When the cluster lives elsewhere, leave a link to it in the data folder."""
        link = self.data_dir / "pgdata"
        if self.server_dir != self.data_dir and not link.is_symlink():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.pgdata, target_is_directory=True)

    def _write_settings(self) -> None:
        settings = SETTINGS | {"unix_socket_directories": str(self.socket_dir)}
        if self.fast:
            settings |= FAST_SETTINGS
        lines = [f"{name} = '{value}'" for name, value in settings.items()]
        path = self.pgdata / SETTINGS_FILE
        path.write_text(
            "# Written by Script Labs at every start; edits are lost.\n" + "\n".join(lines) + "\n",
            encoding="utf-8",
        )
        self._give_to_server(path)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise set-up and start between processes sharing this data folder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".embedded.lock").open("a") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres", "psql"))


def _server_version(bindir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(match.group(1)) if match else None


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _server_account() -> pwd.struct_passwd:
    """The `postgres` system user, created when missing (we are root here)."""
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", SERVER_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise EmbeddedError(
            f"PostgreSQL refuses to run as root and there is no `{SERVER_USER}` user to run it "
            f"as; creating one failed:\n{_output(result)}\n"
            "Create it (`useradd --system postgres`) or run as an ordinary user."
        ) from None


def _reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether `account` may traverse `path` and every existing folder on the way."""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for part in [*reversed(path.parents), path]:
        try:
            info = part.stat()
        except FileNotFoundError:
            return True  # created by us, mode 0755
        if info.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr).strip()
