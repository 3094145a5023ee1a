"""Export benchmark: GET /export/labs.csv|json of the 1,000,000-lab demo user, streamed by a
real HTTP client, with the server's RSS sampled every 10 ms; then `scriptlabs export`; then,
with --compare, the two ways to format rows (PostgreSQL or Python) read straight from a cursor.

    bench/export.py [--data-dir /tmp/scriptlabs-bench] [--rounds 3] [--formats csv,json]

It uses the embedded PostgreSQL of the data folder that `bench/run` loads (`--catalogues 1m`
loads the 1,000,000-lab user there; this script loads nothing and writes nothing), and starts
`scriptlabs serve` with default settings on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from harness import ROOT, BenchError, free_port
from meter import cluster_cpu, tree_cpu

from scriptlabs.db.embedded import EmbeddedPostgres, dev_secret
from scriptlabs.db.migrate import pending_migrations
from scriptlabs.graphql.scalars import serialize_datetime
from scriptlabs.labs.export import CURSOR, SELECT_CSV

BIGGEST_DEMO_USER = """
select u.email, count(*) as labs
from auth.users u join public.labs l on l.user_id = u.id
where lower(u.email) like 'demo-%@scriptlabs.test'
group by u.email order by count(*) desc limit 1
"""
PASSWORD = "demo-password"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The peak RSS of a process, sampled every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_kib(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scriptlabs", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the API exited; see {log}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the API did not get ready; see {log}")


def sign_in(url: str, email: str) -> str:
    body = {
        "query": "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) "
        "{ accessToken } }",
        "variables": {"e": email, "p": PASSWORD},
    }
    answer = httpx.post(f"{url}/graphql", json=body, timeout=30).json()
    token: str = answer["data"]["signIn"]["accessToken"]
    return token


def export_once(url: str, token: str, fmt: str, pid: int, pgdata: Path) -> dict[str, Any]:
    before_rss = rss_kib(pid)
    sampler = Sampler(pid)
    sampler.start()
    api_cpu, pg_cpu = tree_cpu(pid), cluster_cpu(pgdata)
    lines = size = 0
    began = time.monotonic()
    first_byte = None
    with (
        httpx.Client(timeout=600) as http,
        http.stream(
            "GET", f"{url}/export/labs.{fmt}", headers={"authorization": f"Bearer {token}"}
        ) as response,
    ):
        if response.status_code != 200:
            raise BenchError(f"export answered {response.status_code}: {response.read()!r}")
        for chunk in response.iter_raw(1 << 20):
            if first_byte is None:
                first_byte = time.monotonic() - began
            size += len(chunk)
            lines += chunk.count(b"\n")
    elapsed = time.monotonic() - began
    peak = sampler.stop()
    # CSV: the header and a line per lab; JSON: "[{...},\n{...}]\n", a line break per lab
    rows = lines - 1 if fmt == "csv" else lines
    return {
        "format": fmt,
        "rows": rows,
        "bytes": size,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "first_byte_ms": (first_byte or 0) * 1000,
        "rss_before_mb": before_rss / 1024,
        "rss_peak_mb": peak / 1024,
        "api_cpu_s": tree_cpu(pid) - api_cpu,
        "pg_cpu_s": cluster_cpu(pgdata) - pg_cpu,
    }


def command_once(env: dict[str, str], email: str, fmt: str) -> dict[str, Any]:
    began = time.monotonic()
    with open(os.devnull, "wb") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "scriptlabs", "export", "--user", email, "--format", fmt],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.PIPE,
            check=False,
        )
    if done.returncode != 0:
        raise BenchError(f"scriptlabs export failed: {done.stderr.decode()}")
    return {"format": fmt, "seconds": time.monotonic() - began}


# -- the two ways to format: PostgreSQL (the product) or Python from typed columns

TYPED = """
select id, title, author, category, publication_year, isbn, rating, reading_status, notes,
       cover_url, created_at, updated_at
from public.labs order by created_at, id
"""


async def compare_formatting(admin_dsn: str, email: str, batch: int = 2000) -> dict[str, Any]:
    """Read the user's whole catalogue through a cursor as the user (RLS), both ways."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        user_id = await conn.fetchval("select id from auth.users where email = $1", email)
        claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
        results: dict[str, Any] = {}
        for name, query in (("postgresql", SELECT_CSV), ("python", TYPED)):
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                await conn.execute(
                    "select set_config('role', 'authenticated', true),"
                    " set_config('request.jwt.claims', $1, true)",
                    claims,
                )
                # a cursor name of its own: asyncpg caches `fetch` with the shape of its rows
                cursor = f"{CURSOR}_{name}"
                await conn.execute(f"declare {cursor} no scroll cursor for {query}")
                began, cpu = time.monotonic(), time.process_time()
                rows = size = 0
                while batch_rows := await conn.fetch(f"fetch {batch} from {cursor}"):
                    if name == "postgresql":
                        text = "\r\n".join(r[0] for r in batch_rows) + "\r\n"
                    else:
                        out = io.StringIO()
                        writer = csv.writer(out)
                        writer.writerows(
                            (
                                str(r[0]),
                                *r[1:7],
                                r[7].upper(),
                                r[8],
                                r[9],
                                serialize_datetime(r[10]),
                                serialize_datetime(r[11]),
                            )
                            for r in batch_rows
                        )
                        text = out.getvalue()
                    size += len(text.encode())
                    rows += len(batch_rows)
                results[name] = {
                    "rows": rows,
                    "seconds": time.monotonic() - began,
                    "python_cpu_s": time.process_time() - cpu,
                    "bytes": size,
                }
        return results
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/scriptlabs-bench"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--formats", default="csv,json")
    p.add_argument("--compare", action="store_true", help="PostgreSQL or Python formatting")
    p.add_argument("--out", type=Path, help="write every run as JSON")
    args = p.parse_args(argv)
    formats = args.formats.split(",")
    cluster = EmbeddedPostgres(args.data_dir)
    report: dict[str, Any] = {"http": [], "command": []}
    with cluster:
        admin = cluster.admin_dsn()
        pending = asyncio.run(pending_migrations(admin))
        if pending:
            raise BenchError(f"pending migrations {pending}: run bench/run once first")

        async def biggest() -> asyncpg.Record:
            conn = await asyncpg.connect(admin)
            try:
                row = await conn.fetchrow(BIGGEST_DEMO_USER)
            finally:
                await conn.close()
            if row is None:
                raise BenchError("no demo user: run bench/run --catalogues 1m first")
            return row

        user = asyncio.run(biggest())
        print(f"==> {user['email']}: {user['labs']:,} labs", flush=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "EXPORT_"))},
            "DATABASE_URL": cluster.dsn(),
            "DATABASE_ADMIN_URL": admin,
            "JWT_SECRET": dev_secret(args.data_dir, "jwt_secret"),
            "PYTHONPATH": str(ROOT),
        }
        proc, url = start_server(env, args.data_dir / "serve-export.log")
        try:
            token = sign_in(url, user["email"])
            for round_no in range(1, args.rounds + 1):
                for fmt in formats:
                    run = export_once(url, token, fmt, proc.pid, cluster.pgdata)
                    run["round"] = round_no
                    report["http"].append(run)
                    print(
                        f"    round {round_no} {fmt}: {run['rows']:,} rows, "
                        f"{run['bytes'] / 1e6:.0f} MB in {run['seconds']:.2f} s = "
                        f"{run['rows_per_s']:,.0f} rows/s; first byte {run['first_byte_ms']:.0f}"
                        f" ms; RSS {run['rss_before_mb']:.1f} -> peak {run['rss_peak_mb']:.1f}"
                        f" MB; CPU API {run['api_cpu_s']:.2f} s, PG {run['pg_cpu_s']:.2f} s",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(30)
        for fmt in formats:
            run = command_once(env, user["email"], fmt)
            run["rows_per_s"] = user["labs"] / run["seconds"]
            report["command"].append(run)
            print(
                f"    scriptlabs export --format {fmt}: {run['seconds']:.2f} s = "
                f"{run['rows_per_s']:,.0f} rows/s (start-up included)",
                flush=True,
            )
        if args.compare:
            report["compare"] = asyncio.run(compare_formatting(admin, user["email"]))
            for name, r in report["compare"].items():
                print(
                    f"    cursor read, {name} formats CSV: {r['rows']:,} rows in "
                    f"{r['seconds']:.2f} s = {r['rows'] / r['seconds']:,.0f} rows/s, "
                    f"Python CPU {r['python_cpu_s']:.2f} s",
                    flush=True,
                )
    print("==> medians over the rounds")
    for fmt in formats:
        runs = [r for r in report["http"] if r["format"] == fmt]
        print(
            f"    {fmt}: {statistics.median(r['rows_per_s'] for r in runs):,.0f} rows/s, "
            f"peak RSS {max(r['rss_peak_mb'] for r in runs):.1f} MB (max), "
            f"{statistics.median(r['seconds'] for r in runs):.2f} s"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench/export.py: {exc}", file=sys.stderr)
        sys.exit(2)
