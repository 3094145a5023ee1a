"""A PostgreSQL crash and restart under load, against a real `scriptlabs serve`.

    PYTHONPATH=. .venv/bin/python bench/outage.py [--clients 8] [--outage 3] [--rounds 3]
    PYTHONPATH=. .venv/bin/python bench/outage.py --silent   # a database that stops answering

Makes a cluster of its own (durable, in a temporary folder), serves the API on it, and runs
`--clients` clients that each create a lab and count their labs, again and again, with no
pause but 50 ms after a refusal. Each round kills PostgreSQL (`pg_ctl stop -m immediate`),
leaves it down `--outage` seconds, starts it again, and measures:

- the answers while it is down: how many, their statuses, and how long each took;
- from the moment `pg_ctl start` returns (the server accepts connections): the first success,
  and the last failure;
- anything that is neither a success nor a 503 (a 500, a hang past 10 s), and whether every
  lab answered OK is in the database.

With `--silent` the API reaches PostgreSQL over TCP through a proxy in this script, and the
outage is a silent one instead, as a network partition or a hung host looks: the proxy
accepts connections but passes nothing either way (no refusal, no reset), then, at the end of
the outage, drops the connections it stalled (the server behind them is gone) and forwards
again. PostgreSQL itself keeps running.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate

SECRET = "outage-bench-secret-that-is-long-enough-0123456789"
CREATE = 'mutation($t: String!) { createLab(input: {title: $t, author: "Outage"}) { id } }'
COUNT = "{ labs { totalCount } }"
SIGN_UP = (
    "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) {"
    " accessToken user { id } } }"
)


@dataclass
class Answer:
    kind: str
    title: str | None
    status: int  # 0: no answer within 10 s
    ok: bool
    code: str  # the first error's code, "" when none
    started: float
    ended: float


class Cluster(EmbeddedPostgres):
    def kill(self) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        result = self._run_as_server(
            [pg_ctl, "stop", "--wait", "-m", "immediate", "-D", str(self.pgdata)]
        )
        if result.returncode != 0:
            raise RuntimeError(result.stdout + result.stderr)
        self._started = False


class Proxy:
    """TCP on 127.0.0.1 to the cluster's Unix socket; `silent` stalls everything."""

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
                await self.forwarding.wait()  # stalled: hold the bytes, pass nothing
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        self.forwarding.clear()

    def heal(self) -> None:
        """Drop every stalled connection (as a server that restarted would), then forward."""
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()
        self.forwarding.set()


async def ask(client: httpx.AsyncClient, kind: str, token: str, title: str | None) -> Answer:
    body = {"query": CREATE, "variables": {"t": title}} if kind == "create" else {"query": COUNT}
    started = time.monotonic()
    try:
        response = await client.post(
            "/graphql", json=body, headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        body = response.json()
        status, ok = response.status_code, "errors" not in body
        code = "" if ok else body["errors"][0]["extensions"]["code"]
    except httpx.TimeoutException:
        status, ok, code = 0, False, "hang"
    return Answer(kind, title, status, ok and status == 200, code, started, time.monotonic())


async def load(
    client: httpx.AsyncClient, token: str, name: str, stop: asyncio.Event, out: list[Answer]
) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        for kind in ("create", "count"):
            answer = await ask(client, kind, token, f"outage-{name}-{i}")
            out.append(answer)
            if not answer.ok:
                await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def one_round(
    cluster: Cluster,
    proxy: Proxy | None,
    url: str,
    token: str,
    user_id: str,
    clients: int,
    outage: float,
    n: int,
) -> dict[str, float]:
    answers: list[Answer] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        tasks = [
            asyncio.create_task(load(client, token, f"{n}-{c}", stop, answers))
            for c in range(clients)
        ]
        await asyncio.sleep(2)
        if proxy is not None:
            proxy.cut()
        else:
            await asyncio.to_thread(cluster.kill)
        killed = time.monotonic()
        await asyncio.sleep(outage)
        if proxy is not None:
            proxy.heal()
        else:
            await asyncio.to_thread(cluster.start)
        up = time.monotonic()
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*tasks)
    # asked while it was down (some answered only after it was back)
    down = [a for a in answers if killed < a.started < up]
    after = [a for a in answers if a.started >= up]
    first_ok = min((a.ended for a in after if a.ok), default=float("nan"))
    last_bad = max((a.ended for a in answers if not a.ok), default=up)
    odd = [a for a in answers if not a.ok and a.status not in (503, 200)]
    errors_200 = [a for a in answers if a.status == 200 and not a.ok]
    conn = await asyncpg.connect(cluster.admin_dsn())
    try:
        rows = await conn.fetch(
            "select title from public.labs where user_id = $1", uuid.UUID(user_id)
        )
    finally:
        await conn.close()
    kept = {r["title"] for r in rows}
    created = {a.title for a in answers if a.kind == "create" and a.ok}
    refused = {a.title for a in answers if a.kind == "create" and a.status == 503}
    before = [a for a in answers if a.ended < killed]
    outcomes = collections.Counter(f"{a.kind} {a.status} {a.code or 'ok'}" for a in down)
    print(f"asked while down: {dict(outcomes)}")
    return {
        "answers before (2 s)": len(before),
        "ms per answer before, median": 1000
        * statistics.median(a.ended - a.started for a in before),
        "asked while down": len(down),
        "of which 503": sum(a.status == 503 for a in down),
        "of which 200 with TIMEOUT": sum(a.code == "TIMEOUT" for a in down),
        "ms per answer asked while down, median": 1000
        * statistics.median([a.ended - a.started for a in down] or [float("nan")]),
        "ms, p99": 1000 * pct([a.ended - a.started for a in down], 0.99),
        "ms, max": 1000 * max((a.ended - a.started for a in down), default=float("nan")),
        "s from start to first success": first_ok - up,
        "s from start to last failure": max(0.0, last_bad - up),
        "500s or hangs": len(odd),
        "200 with INTERNAL_SERVER_ERROR (commit cut off)": sum(
            a.code == "INTERNAL_SERVER_ERROR" for a in errors_200
        ),
        "labs answered OK but lost": len(created - kept),
        "labs refused but written": len(refused & kept),
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="scriptlabs-outage-") as tmp:
        cluster = Cluster(Path(tmp) / "pg")
        try:
            await run(cluster, args)
        finally:
            cluster.stop()
            if cluster.server_dir != cluster.data_dir:  # as root: kept outside `tmp`
                shutil.rmtree(cluster.server_dir, ignore_errors=True)


async def run(cluster: Cluster, args: argparse.Namespace) -> None:
    with cluster:
        await migrate(cluster.admin_dsn())
        port = 18000 + os.getpid() % 1000
        proxy = None
        dsn = cluster.dsn()
        if args.silent:
            proxy = Proxy(str(cluster.socket_dir / ".s.PGSQL.5432"))
            dsn = f"postgresql://authenticator@127.0.0.1:{await proxy.start()}/scriptlabs"
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "DATABASE_ADMIN_URL": cluster.admin_dsn(),
            "JWT_SECRET": SECRET,
            "RATE_LIMIT_SIGNUP_IP": "0",
        }
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for at the end
            [sys.executable, "-m", "scriptlabs", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(300):
                    try:
                        if (await client.get("/health/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                email = f"outage-{uuid.uuid4().hex[:8]}@example.com"
                response = await client.post(
                    "/graphql",
                    json={"query": SIGN_UP, "variables": {"e": email, "p": "outage-pw-1"}},
                )
                signed = response.json()["data"]["signUp"]
            rounds = []
            for n in range(args.rounds):
                figures = await one_round(
                    cluster,
                    proxy,
                    url,
                    signed["accessToken"],
                    signed["user"]["id"],
                    args.clients,
                    args.outage,
                    n,
                )
                rounds.append(figures)
                print(f"round {n + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
            print(
                f"\nmedians over {args.rounds} rounds, {args.clients} clients, "
                f"{args.outage:g} s outage:"
            )
            for key in rounds[0]:
                print(f"  {key}: {statistics.median(r[key] for r in rounds):.1f}")
        finally:
            server.send_signal(signal.SIGTERM)
            try:  # in a thread: the proxy, on this loop, must keep forwarding meanwhile
                await asyncio.to_thread(server.wait, 30)
            except subprocess.TimeoutExpired:
                server.kill()
                raise


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--outage", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--silent", action="store_true", help="a silent outage (see above)")
    asyncio.run(main(parser.parse_args()))
