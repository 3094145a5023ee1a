"""Read throughput with and without a read replica, in the same run.

    PYTHONPATH=. .venv/bin/python bench/replica.py [--labs 20000] [--rounds 3] [--duration 10]

Makes a primary of its own (in a temporary folder), loads one demo user with `--labs` labs,
makes a streaming replica of it with pg_basebackup (a second postgres on the same machine),
and serves two APIs at once (`scriptlabs serve`, one worker each): one on the primary alone,
one with DATABASE_REPLICA_URL. Each round runs the first page of labs (bench/run's `first`
scenario, 20 nodes x 5 fields) with wrk against each API in turn (the order alternates), and
counts on each server's own statistics (pg_stat_statements) where the reads ran.

Both servers share the machine's cores here: the figures show what the replica path costs
(the read-your-writes probe on the primary, the choice), not the capacity a replica on a host
of its own adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from harness import free_port, wrk

from scriptlabs.db.embedded import EmbeddedPostgres
from scriptlabs.db.migrate import migrate

SECRET = "replica-bench-secret-that-is-long-enough-0123456789"
FIRST_PAGE = "{ labs(first: 20) { nodes { id title author rating createdAt } } }"
SIGN_IN = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }"
READS = (
    "select coalesce(sum(calls), 0)::int8 from pg_stat_statements "
    "where query like '%scriptlabs_private.read_statement(%'"
)
DEMO_USER = "demo-1@scriptlabs.test"
PROBES = (
    "select coalesce(sum(calls), 0)::int8 from pg_stat_statements "
    "where query like '%scriptlabs_private.wrote_within(%'"
)
WINDOW = 10  # s, REPLICA_READ_AFTER_WRITE (the default): a fresh token reads the primary


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scriptlabs",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(f"{url}/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not get ready")


async def reads(dsn: str, query: str = READS) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval(query)
        return value
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="scriptlabs-replica-") as tmp:
        primary = EmbeddedPostgres(Path(tmp) / "primary")
        replica = EmbeddedPostgres(Path(tmp) / "replica")
        try:
            await run(primary, replica, Path(tmp), args)
        finally:
            replica.stop()
            primary.stop()
            for cluster in (primary, replica):
                if cluster.server_dir != cluster.data_dir:  # as root: kept outside `tmp`
                    shutil.rmtree(cluster.server_dir, ignore_errors=True)


def make_replica(primary: EmbeddedPostgres, replica: EmbeddedPostgres) -> None:
    replica._make_dir(replica.server_dir, owned=False)
    replica.server_dir.chmod(0o755)
    replica._make_dir(replica.pgdata, owned=True)
    backup = primary._run_as_server(
        [
            str(primary.bindir / "pg_basebackup"),
            f"--pgdata={replica.pgdata}",
            f"--host={primary.socket_dir}",
            "--username=postgres",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
        ]
    )
    if backup.returncode != 0:
        raise RuntimeError(backup.stdout + backup.stderr)
    replica.start()


async def run(
    primary: EmbeddedPostgres, replica: EmbeddedPostgres, tmp: Path, args: argparse.Namespace
) -> None:
    with primary:
        await migrate(primary.admin_dsn())
        base = {
            **os.environ,
            "DATABASE_URL": primary.dsn(),
            "DATABASE_ADMIN_URL": primary.admin_dsn(),
            "JWT_SECRET": SECRET,
            "DB_POOL_MAX": "20",
            "ACCESS_LOG": "off",
        }
        loaded = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "scriptlabs", "demo-data", "--labs", str(args.labs)],
            env=base,
            capture_output=True,
            text=True,
            check=False,
        )
        if loaded.returncode != 0:
            raise RuntimeError(loaded.stderr)
        started = time.monotonic()
        make_replica(primary, replica)
        print(f"replica made and started in {time.monotonic() - started:.1f} s", flush=True)
        ports = {"primary only": free_port(), "with replica": free_port()}
        envs = {
            "primary only": base,
            "with replica": {**base, "DATABASE_REPLICA_URL": replica.dsn()},
        }
        servers = {
            name: serve(envs[name], port, tmp / f"{name.replace(' ', '-')}.log")
            for name, port in ports.items()
        }
        try:
            await measure(primary, replica, ports, args)
        finally:
            for server in servers.values():
                server.send_signal(signal.SIGTERM)
                server.wait(30)


async def measure(
    primary: EmbeddedPostgres,
    replica: EmbeddedPostgres,
    ports: dict[str, int],
    args: argparse.Namespace,
) -> None:
    for port in ports.values():
        await ready(f"http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{ports['primary only']}/graphql"
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            url,
            json={
                "query": SIGN_IN,
                "variables": {"e": "demo-1@scriptlabs.test", "p": "demo-password"},
            },
        )
    token = answer.json()["data"]["signIn"]["accessToken"]
    await asyncio.sleep(WINDOW + 1)  # past the fresh token's read-your-writes window
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
    body = {"query": FIRST_PAGE}
    for n in range(args.rounds):
        order = list(ports) if n % 2 == 0 else list(reversed(ports))
        for name in order:
            target = f"http://127.0.0.1:{ports[name]}/graphql"
            await asyncio.to_thread(
                wrk,
                target,
                body,
                token,
                connections=32,
                threads=2,
                duration=3,
                timeout="10s",
                check=False,
            )  # warm-up
            probes = await reads(primary.admin_dsn(), PROBES)
            before = (await reads(primary.admin_dsn()), await reads(replica.admin_dsn()))
            run = await asyncio.to_thread(
                wrk,
                target,
                body,
                token,
                connections=32,
                threads=2,
                duration=args.duration,
                timeout="10s",
                check=True,
            )
            after = (await reads(primary.admin_dsn()), await reads(replica.admin_dsn()))
            run["probes"] = await reads(primary.admin_dsn(), PROBES) - probes
            run["rps"] = run["requests"] / (run["duration_us"] / 1e6)
            run["on_primary"], run["on_replica"] = after[0] - before[0], after[1] - before[1]
            results[name].append(run)
            print(
                f"round {n + 1} {name}: {run['rps']:.0f} req/s, p50 {run['p50_us'] / 1000:.1f} ms,"
                f" p99 {run['p99_us'] / 1000:.1f} ms, errors {run['non2xx'] + run['gql_errors']},"
                f" reads on primary {run['on_primary']}, on replica {run['on_replica']},"
                f" probes {run['probes']}",
                flush=True,
            )
    print(f"\nmedians over {args.rounds} rounds ({args.duration:g} s runs, wrk -t2 -c32):")
    for name, runs in results.items():
        print(
            f"  {name}: {statistics.median(r['rps'] for r in runs):.0f} req/s,"
            f" p50 {statistics.median(r['p50_us'] for r in runs) / 1000:.1f} ms,"
            f" p99 {statistics.median(r['p99_us'] for r in runs) / 1000:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
