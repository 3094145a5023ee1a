"""The processes of a bench run: the servers under test, wrk, and HTTP requests to them."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from meter import descendants

from scriptlabs.db.embedded import dev_secret

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LUA = BENCH_DIR / "graphql.lua"
SCRIPTLABS = ROOT / ".venv" / "bin" / "scriptlabs"
POSTGRAPHILE_PACKAGE = "postgraphile@4"
FILTER_PACKAGE = "postgraphile-plugin-connection-filter@2"  # v4's filter argument
# PostGraphile v5 comes from the peers folder beside the repository: postgraphile5.sh installs
# it (pinned versions and a Node 22 binary) into PG_GRAPHILE_DIR, postgraphile5.mjs serves it
PEERS_DIR = ROOT.parent / "shared" / "peers"
V5_DIR = Path(os.environ.get("PG_GRAPHILE_DIR") or "/tmp/bench-postgraphile5")


class BenchError(Exception):
    """Stops the run with a message."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """A GraphQL server on a free port against the bench's database: `scriptlabs serve
    --workers N`, or with `command`, another one (PostGraphile; it reads PORT and WORKERS from
    its environment), probed with a `{ __typename }` query."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        command: list[str] | None = None,
        *,
        workers: int = 1,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.env = {**env, "WORKERS": str(workers)} if command else env
        self.command = command
        self.workers = workers
        self.cwd = cwd
        self.scriptlabs = command is None
        self.log_path = log_dir / f"serve-{name.replace(' ', '-')}.log"
        self.starts = 0
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        command = self.command or [
            str(SCRIPTLABS),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.starts += 1
        with self.log_path.open("a" if self.starts > 1 else "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command,
                env={**self.env, "PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )

    def ensure_running(self) -> None:
        """Start the server again if something else ended it (a shared machine), and say so."""
        if self.process.poll() is None:
            return
        code = self.process.returncode
        print(f"    ! the {self.name} API had exited (status {code}): started again", flush=True)
        self._start()
        self.wait_ready()

    def _answers(self) -> bool:
        if self.scriptlabs:
            ready = self.url.replace("/graphql", "/health/ready")
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as answer:
                return bool(answer.status == 200)
            return False
        with contextlib.suppress(OSError, ValueError):
            return post(self.url, {"query": "{ __typename }"})[0] == 200
        return False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the {self.name} API exited; see {self.log_path}")
            if self._answers():
                return
            time.sleep(0.2)
        raise BenchError(f"the {self.name} API did not get ready; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM to the server (it stops its own workers), then SIGKILL to whatever of its
        process tree is left after 20 s."""
        if self.process.poll() is not None:
            return
        tree = descendants(self.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in tree - {self.pid}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def post(url: str, body: dict[str, Any], token: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def get_url(url: str, body: dict[str, Any]) -> str:
    """`url` with the request in its query string, as GET /graphql takes it."""
    params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    return f"{url}?{urllib.parse.urlencode(params)}"


def get(url: str, body: dict[str, Any], token: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(get_url(url, body), headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_postgraphile(env: dict[str, str], folder: Path, workers: int = 1) -> Server:
    """PostGraphile v4 (bench/postgraphile.js) and its filter plugin, installed with npm into
    the data folder."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise BenchError("PostGraphile v4 needs node and npm (apt-get install npm)")
    prefix = folder / "postgraphile"
    modules = prefix / "node_modules"
    if not (modules / "postgraphile").is_dir() or not (modules / FILTER_PACKAGE[:-2]).is_dir():
        print(f"==> npm install {POSTGRAPHILE_PACKAGE} {FILTER_PACKAGE} into {prefix}", flush=True)
        prefix.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                POSTGRAPHILE_PACKAGE,
                FILTER_PACKAGE,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if installed.returncode != 0:
            raise BenchError(f"npm install {POSTGRAPHILE_PACKAGE} failed:\n{installed.stderr}")
    node_env = {
        **env,
        "NODE_PATH": str(prefix / "node_modules"),
        "NODE_ENV": "production",
        "JWT_SECRET": dev_secret(folder, "jwt_secret"),
    }
    command = [node, str(BENCH_DIR / "postgraphile.js")]
    return Server(f"v4 w{workers}", node_env, folder, command, workers=workers)


def start_postgraphile5(
    env: dict[str, str], folder: Path, workers: int, peers_dir: Path, v5_dir: Path
) -> Server:
    """PostGraphile v5 (postgraphile5.mjs of the peers folder) with the Node 22 that
    postgraphile5.sh installs into `v5_dir` (installed here on first use)."""
    script, server = peers_dir / "postgraphile5.sh", peers_dir / "postgraphile5.mjs"
    if not script.is_file() or not server.is_file():
        raise BenchError(f"PostGraphile v5: no postgraphile5.sh and .mjs in {peers_dir}")
    node = v5_dir / "node_modules" / ".bin" / "node"
    if not os.access(node, os.X_OK):
        print(f"==> {script.name} install (PostGraphile v5 into {v5_dir})", flush=True)
        installed = subprocess.run(
            [str(script.resolve()), "install"],
            env={**os.environ, "PG_GRAPHILE_DIR": str(v5_dir)},
            capture_output=True,
            text=True,
            check=False,
        )
        if installed.returncode != 0 or not os.access(node, os.X_OK):
            raise BenchError(f"{script} install failed:\n{installed.stdout}\n{installed.stderr}")
    node_env = {
        **env,
        "PG_GRAPHILE_DIR": str(v5_dir),
        "NODE_ENV": "production",
        "GRAPHILE_ENV": "production",
        "JWT_SECRET": dev_secret(folder, "jwt_secret"),
    }
    return Server(
        f"v5 w{workers}", node_env, folder, [str(node), str(server)], workers=workers, cwd=v5_dir
    )


def wrk(
    url: str,
    body: dict[str, Any],
    token: str,
    *,
    connections: int,
    threads: int,
    duration: float,
    timeout: str,
    check: bool,
    method: str = "POST",
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(body),
        "BENCH_TOKEN": token,
        "BENCH_CHECK": "1" if check else "0",
        "BENCH_METHOD": method,
    }
    if method == "GET":
        url = get_url(url, body)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        timeout,
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return parsed
    raise BenchError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
