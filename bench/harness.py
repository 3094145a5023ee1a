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
import urllib.request
from pathlib import Path
from typing import Any

from scriptlabs.db.embedded import dev_secret

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LUA = BENCH_DIR / "graphql.lua"
SCRIPTLABS = ROOT / ".venv" / "bin" / "scriptlabs"
POSTGRAPHILE_PACKAGE = "postgraphile@4"


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
    """A GraphQL server on a free port against the bench's database: `scriptlabs serve`, or
    with `command`, another one (PostGraphile), probed with a `{ __typename }` query."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        command: list[str] | None = None,
    ) -> None:
        self.name = name
        self.env = env
        self.command = command
        self.scriptlabs = command is None
        self.log_path = log_dir / f"serve-{name}.log"
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
        ]
        self.starts += 1
        with self.log_path.open("a" if self.starts > 1 else "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command,
                env={**self.env, "PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


def start_postgraphile(env: dict[str, str], folder: Path) -> Server:
    """PostGraphile v4 (bench/postgraphile.js), installed with npm into the data folder."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise BenchError("the postgraphile scenario needs node and npm (apt-get install npm)")
    prefix = folder / "postgraphile"
    if not (prefix / "node_modules" / "postgraphile").is_dir():
        print(f"==> npm install {POSTGRAPHILE_PACKAGE} into {prefix}", flush=True)
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
    return Server("postgraphile", node_env, folder, [node, str(BENCH_DIR / "postgraphile.js")])


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
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(body),
        "BENCH_TOKEN": token,
        "BENCH_CHECK": "1" if check else "0",
    }
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
