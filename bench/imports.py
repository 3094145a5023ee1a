"""Import benchmark: `scriptlabs import` of a generated catalogue in the export's CSV format,
rows per second and the command's peak memory (its maximum resident set size).

    bench/imports.py [--rows 1000000,100000] [--rounds 3] [--work-dir DIR]

It makes a scratch embedded PostgreSQL in --work-dir (default: a new temporary folder, deleted
at the end; durable settings, as `scriptlabs serve` runs; a 1,000,000-row run needs about 3 GB
there: `--work-dir /dev/shm/...` puts it in memory), applies the migrations, adds one demo
user, writes each file once (demo-data's realistic text and dates, generated deterministically)
and imports it into that user's empty catalogue, deleting the labs again between rounds. The
import runs as a child process, so its peak RSS is its own (`getrusage(RUSAGE_CHILDREN)` of a
fresh child each time). Run it under the bench lock, as the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scriptlabs.db.embedded import EmbeddedPostgres  # noqa: E402
from scriptlabs.db.migrate import migrate  # noqa: E402
from scriptlabs.graphql.scalars import serialize_datetime  # noqa: E402
from scriptlabs.labs.demo import generate_labs  # noqa: E402
from scriptlabs.labs.export import CSV_HEADER  # noqa: E402

EMAIL = "demo-1@scriptlabs.test"
ANCHOR = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def write_csv(path: Path, rows: int) -> int:
    """The export's format, as `scriptlabs export` would write a catalogue of `rows` labs."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        out.write(CSV_HEADER + "\r\n")
        for lab in generate_labs([(1, uuid.uuid4(), rows)], anchor=ANCHOR):
            _, lab_id, title, author, category, year, isbn, rating, status, notes, cover, c, u = lab
            writer.writerow(
                [
                    lab_id,
                    title,
                    author,
                    category or "",
                    "" if year is None else year,
                    isbn or "",
                    "" if rating is None else rating,
                    status.upper(),
                    notes or "",
                    cover or "",
                    serialize_datetime(c),
                    serialize_datetime(u),
                ]
            )
    return path.stat().st_size


def run_import(env: dict[str, str], path: Path) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and summary of one `scriptlabs import` in a fresh child."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "took = time.monotonic() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(took, rss, p.returncode, repr(p.stdout.strip() + p.stderr[-300:]))\n"
    )
    command = [sys.executable, "-m", "scriptlabs", "import", "--user", EMAIL, str(path)]
    done = subprocess.run(
        [sys.executable, "-c", code, *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    took, rss, status, summary = done.stdout.split(" ", 3)
    if status != "0":
        raise SystemExit(f"import failed: {summary}")
    return float(took), int(rss), summary.strip()


async def prepare(admin_dsn: str) -> None:
    await migrate(admin_dsn)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            "insert into auth.users (id, email) values ($1, $2) on conflict do nothing",
            uuid.uuid4(),
            EMAIL,
        )
    finally:
        await conn.close()


async def clear(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            "delete from public.labs where user_id = (select id from auth.users where email = $1)",
            EMAIL,
        )
        await conn.execute("vacuum analyze public.labs")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="scriptlabs-import-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # reachable by the server's account: the cluster lives here, not elsewhere
    try:
        cluster = EmbeddedPostgres(work / "pg")
        with cluster:
            asyncio.run(prepare(cluster.admin_dsn()))
            env = {
                **os.environ,
                "DATABASE_URL": cluster.dsn(),
                "DATABASE_ADMIN_URL": cluster.admin_dsn(),
                "PYTHONPATH": str(ROOT),
            }
            for rows in (int(r) for r in args.rows.split(",")):
                path = work / f"labs-{rows}.csv"
                started = time.monotonic()
                size = write_csv(path, rows)
                print(
                    f"{rows:,} rows: {size / 1e6:,.0f} MB of CSV, "
                    f"written in {time.monotonic() - started:.0f} s",
                    flush=True,
                )
                rates, peaks = [], []
                for round_ in range(args.rounds):
                    asyncio.run(clear(cluster.admin_dsn()))
                    took, rss, summary = run_import(env, path)
                    rates.append(rows / took)
                    peaks.append(rss)
                    print(
                        f"  round {round_ + 1}: {took:.1f} s, {rows / took:,.0f} rows/s, "
                        f"peak RSS {rss / 1024:.1f} MB ({summary})",
                        flush=True,
                    )
                print(
                    f"  median {statistics.median(rates):,.0f} rows/s, "
                    f"peak RSS median {statistics.median(peaks) / 1024:.1f} MB, "
                    f"max {max(peaks) / 1024:.1f} MB",
                    flush=True,
                )
                path.unlink()
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
