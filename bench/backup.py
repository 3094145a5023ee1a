"""Backup and restore benchmark: `scriptlabs backup` of the bench database (the 1,000,000-lab
catalogue), then `scriptlabs restore` of that file into a new empty database of the same
cluster, timed round by round; the scratch database and the file are removed after each round.

    bench/backup.py [--data-dir /tmp/scriptlabs-bench] [--rounds 3] [--scratch DIR]
                    [--restore-cluster DIR]

It uses the embedded PostgreSQL of the data folder that `bench/run` loads and writes nothing
to its database. The restore needs about the database's size again in free disk space (and
the WAL of that much). With --restore-cluster, the restore goes instead into the database of
a new embedded cluster made in DIR (the case of a new server; removed after each round), so
the bench cluster's disk gets nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from harness import ROOT, BenchError
from meter import cluster_cpu, tree_cpu

from scriptlabs.db.embedded import EmbeddedPostgres

FACTS = """
select
  (select count(*) from public.labs) as labs,
  (select count(*) from auth.users) as users,
  pg_database_size(current_database()) as size
"""


def other_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def facts(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return dict(await conn.fetchrow(FACTS))  # type: ignore[arg-type]
    finally:
        await conn.close()


async def admin_sql(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(other_database(dsn, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# A bench database migrated by an earlier version of a db/ file: the restore is complete when
# its last step (migrate) says so, which takes milliseconds.
STALE_RECORD = "was changed after it was applied"


def run(dsn: str, admin: str, *args: str) -> tuple[float, float, float]:
    """Run a command; its wall time, its own CPU seconds and the cluster's."""
    env = {**os.environ, "DATABASE_URL": dsn, "DATABASE_ADMIN_URL": admin}
    env["PYTHONPATH"] = str(ROOT)
    pg_before = cluster_cpu(PGDATA)
    began = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scriptlabs", *args], env=env, cwd=ROOT, stderr=err
        )
        own = 0.0
        while proc.poll() is None:
            own = max(own, tree_cpu(proc.pid))
            time.sleep(0.2)
        wall = time.monotonic() - began
        err.seek(0)
        said = err.read().decode("utf-8", "replace")
    sys.stderr.write(said)
    if proc.returncode != 0 and not (args[0] == "restore" and STALE_RECORD in said):
        raise BenchError(f"scriptlabs {' '.join(args)} exited with {proc.returncode}")
    return wall, own, cluster_cpu(PGDATA) - pg_before


def restore_scratch(dsn: str, admin: str, file: Path) -> tuple[float, float, float, dict[str, Any]]:
    name = f"scriptlabs_restore_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(admin, f'create database "{name}"'))
    try:
        timed = run(other_database(dsn, name), other_database(admin, name), "restore", str(file))
        return (*timed, asyncio.run(facts(other_database(admin, name))))
    finally:
        asyncio.run(admin_sql(admin, f'drop database if exists "{name}"'))


def restore_new_cluster(folder: Path, file: Path) -> tuple[float, float, float, dict[str, Any]]:
    global PGDATA
    data_dir = folder / f"restore-{uuid.uuid4().hex[:8]}"
    cluster = EmbeddedPostgres(data_dir)
    source, PGDATA = PGDATA, cluster.pgdata
    try:
        with cluster:
            timed = run(cluster.dsn(), cluster.admin_dsn(), "restore", str(file))
            return (*timed, asyncio.run(facts(cluster.admin_dsn())))
    finally:
        PGDATA = source
        shutil.rmtree(cluster.server_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> int:
    global PGDATA
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="/tmp/scriptlabs-bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", default=None, help="folder of the backup file")
    parser.add_argument("--restore-cluster", default=None, help="restore into a new cluster here")
    args = parser.parse_args()
    cluster = EmbeddedPostgres(Path(args.data_dir))
    PGDATA = cluster.pgdata
    with cluster:
        dsn, admin = cluster.dsn(), cluster.admin_dsn()
        found = asyncio.run(facts(admin))
        print(
            f"database: {found['labs']:,} labs, {found['users']:,} users, "
            f"{found['size'] / 1e9:.2f} GB",
            flush=True,
        )
        rows: list[dict[str, float]] = []
        with tempfile.TemporaryDirectory(dir=args.scratch) as folder:
            file = Path(folder) / "bench.backup"
            for n in range(args.rounds):
                wall_b, cpu_b, pg_b = run(dsn, admin, "backup", str(file))
                size = file.stat().st_size
                if args.restore_cluster:
                    wall_r, cpu_r, pg_r, restored = restore_new_cluster(
                        Path(args.restore_cluster), file
                    )
                else:
                    wall_r, cpu_r, pg_r, restored = restore_scratch(dsn, admin, file)
                file.unlink()
                if (restored["labs"], restored["users"]) != (found["labs"], found["users"]):
                    raise BenchError(f"the restored copy differs: {restored} vs {found}")
                row = {
                    "backup_s": wall_b,
                    "backup_cpu": cpu_b,
                    "backup_pg_cpu": pg_b,
                    "file_mb": size / 1e6,
                    "restore_s": wall_r,
                    "restore_cpu": cpu_r,
                    "restore_pg_cpu": pg_r,
                    "restored_gb": restored["size"] / 1e9,
                }
                rows.append(row)
                print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
        print("| what | median | p99 (max of rounds) |")
        print("| --- | --- | --- |")
        for key in rows[0]:
            values = [r[key] for r in rows]
            print(f"| {key} | {statistics.median(values):.2f} | {p99(values):.2f} |")
    return 0


PGDATA = Path()

if __name__ == "__main__":
    raise SystemExit(main())
