"""Dead index entries at the head of a user's labs, and how soon autovacuum clears them.

    PYTHONPATH=. .venv/bin/python bench/dead_head.py DATA_DIR [--delete N]

DATA_DIR: an embedded cluster loaded with demo-data (a scratch copy: this deletes labs), e.g.
`SCRIPTLABS_DATA_DIR=DATA_DIR scriptlabs demo-data --labs 200000 --users 1 --others 100
--others-labs 1000` (300,000 labs, demo-1's 200,000 interleaved with 100 users' 1,000).

1. VACUUM ANALYZE public.labs (a freshly loaded table would otherwise get its first,
   insert-driven autovacuum during the measurement), autovacuum settings of labs reset to the
   server's defaults.
2. Deletes demo-1's newest N labs. Autovacuum's threshold is 50 + 20% of pg_class.reltuples by
   default, and the auto-analyze that the delete brings first (10%) lowers reltuples to the
   rows left: a delete of more than about a sixth of the table is vacuumed anyway (59,000 of
   300,000 was, within 150 s), a smaller one waits for more. The default, 30,000, stays under
   it on the 241,000-lab table left by a first run with --delete 59000.
3. The first page (21 rows, newest first: the keyset read of `labs`) of demo-1 and of demo-2,
   EXPLAIN (ANALYZE, BUFFERS): shared buffers touched, three reads each.
4. Waits `--wait-defaults` seconds: does autovacuum come with the defaults?
5. Sets db/018_usage.sql's settings on labs; waits until autovacuum has vacuumed labs; the
   seconds it took, and the first pages' buffers again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import asyncpg

from scriptlabs.db.embedded import EmbeddedPostgres

FIRST_PAGE = """
explain (analyze, buffers, format json)
select id, title, created_at from public.labs
where user_id = $1
order by created_at desc, id desc
limit 21
"""
SETTINGS = (
    "autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.02"
)
RESET = (
    "autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor, "
    "autovacuum_analyze_threshold, autovacuum_analyze_scale_factor"
)


async def buffers(conn: asyncpg.Connection, user: object) -> tuple[int, float]:
    plan = json.loads(await conn.fetchval(FIRST_PAGE, user))[0]
    top = plan["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"], plan["Execution Time"]


async def pages(conn: asyncpg.Connection, users: dict[str, object], label: str) -> None:
    for name, user in users.items():
        reads = [await buffers(conn, user) for _ in range(3)]
        figures = ", ".join(f"{b} buffers {ms:.2f} ms" for b, ms in reads)
        print(f"{label}: {name} first page: {figures}", flush=True)


async def vacuumed(conn: asyncpg.Connection) -> tuple[object, int, int]:
    row = await conn.fetchrow(
        "select last_autovacuum, n_dead_tup, autovacuum_count from pg_stat_user_tables "
        "where relid = 'public.labs'::regclass"
    )
    assert row is not None
    return row["last_autovacuum"], row["n_dead_tup"], row["autovacuum_count"]


async def main(dsn: str, delete: int, wait_defaults: float, wait_new: float) -> None:
    conn = await asyncpg.connect(dsn)
    users = {
        r["email"]: r["id"]
        for r in await conn.fetch(
            "select id, email from auth.users where email in "
            "('demo-1@scriptlabs.test', 'demo-2@scriptlabs.test')"
        )
    }
    await conn.execute(f"alter table public.labs reset ({RESET})")
    await conn.execute("vacuum analyze public.labs")
    total = await conn.fetchval("select count(*) from public.labs")
    print(f"labs: {total}; autovacuum settings of labs: the server's defaults", flush=True)
    await pages(conn, users, "before the delete")
    started = time.monotonic()
    deleted = await conn.execute(
        "delete from public.labs where (user_id, id) in (select user_id, id from public.labs "
        "where user_id = $1 order by created_at desc, id desc limit $2)",
        users["demo-1@scriptlabs.test"],
        delete,
    )
    print(f"{deleted} of demo-1 ({time.monotonic() - started:.1f} s)", flush=True)
    await conn.execute("select pg_stat_force_next_flush()")
    await pages(conn, users, "after the delete")
    _, _, count_before = await vacuumed(conn)
    await asyncio.sleep(wait_defaults)
    last, dead, count = await vacuumed(conn)
    came = "yes" if count > count_before else "no"
    reltuples = await conn.fetchval(
        "select reltuples from pg_class where oid = 'public.labs'::regclass"
    )
    print(
        f"defaults, {wait_defaults:.0f} s later: autovacuum of labs: {came} "
        f"(n_dead_tup {dead}, reltuples {reltuples:.0f}: default threshold "
        f"{50 + 0.2 * reltuples:.0f}, 018's {1000 + 0.01 * reltuples:.0f})",
        flush=True,
    )
    await pages(conn, users, f"defaults, {wait_defaults:.0f} s later")
    await conn.execute(f"alter table public.labs set ({SETTINGS})")
    started = time.monotonic()
    print(f"set: {SETTINGS}", flush=True)
    while time.monotonic() - started < wait_new:
        last, dead, now_count = await vacuumed(conn)
        if now_count > count:
            break
        await asyncio.sleep(1)
    took = time.monotonic() - started
    print(f"autovacuum of labs done {took:.0f} s after the settings (at {last})", flush=True)
    await pages(conn, users, "after autovacuum")
    await conn.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--delete", type=int, default=30_000)
    p.add_argument("--wait-defaults", type=float, default=150.0)
    p.add_argument("--wait-new", type=float, default=300.0)
    args = p.parse_args()
    with EmbeddedPostgres(args.data_dir) as cluster:
        asyncio.run(main(cluster.admin_dsn(), args.delete, args.wait_defaults, args.wait_new))
