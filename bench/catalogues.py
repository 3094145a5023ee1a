"""The demo catalogues a bench run measures, and what it reads from them as the owner."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from harness import ROOT, SCRIPTLABS, BenchError

from scriptlabs.labs.pagination import encode_cursor, sort_keys

PASSWORD = "demo-password"  # scriptlabs demo-data's default
BENCH_TITLE = "wrk bench lab"  # the title of labs createLab adds; deleted again after each run
DEEP_POSITION = 100_000  # the deep page starts after this row (5,000 pages of 20)

CATALOGUES = {"200": 200, "1k": 1_000, "1m": 1_000_000}  # name: labs of the catalogue's user
# what `scriptlabs demo-data` loads when no user of that size is there: --labs, --users,
# --others, --others-labs. The 1m user comes with a thousand ordinary users of 200 labs, all
# their rows interleaved as a live service writes them (the database of the design document:
# one user with 1,000,000 labs, 1,000 with 200); that load makes the 200 catalogue too, whose
# user is the lowest-numbered of them (demo-<k>). The 200 load is for a run without 1m.
LOADS = {
    "1m": (1_000_000, 1, 1_000, 200),
    "1k": (1_000, 1, 0, 0),
    "200": (200_000, 1_000, 0, 0),
}

DEMO_USERS = """
select u.id, u.email, count(l.id) as labs
from auth.users u left join public.labs l on l.user_id = u.id
where lower(u.email) like 'demo-%@scriptlabs.test'
group by u.id, u.email
order by length(u.email), u.email
"""
ROW_AT = """
select id, created_at from public.labs where user_id = $1
order by created_at desc, id desc offset $2 limit 1
"""
DELETE_BENCH_LABS = "delete from public.labs where user_id = any($1::uuid[]) and title = $2"
VACUUM_LABS = "vacuum (analyze) public.labs"
DELETE_ALL_BENCH_LABS = """
delete from public.labs l using auth.users u
where l.user_id = u.id and lower(u.email) like 'demo-%@scriptlabs.test' and l.title = $1
"""


@dataclass
class Catalogue:
    """A demo user and what the scenarios send on its behalf."""

    name: str
    size: int
    user_id: uuid.UUID
    email: str
    token: str = ""
    lab_id: str = ""
    deep_cursor: str = ""
    deep_position: int = 0
    deep_id: str = ""  # the lab the deep cursor points at (the row before the deep page)
    peer_cursors: dict[str, str] = field(default_factory=dict)  # a peer's own deep cursor


async def demo_users(admin_dsn: str) -> list[asyncpg.Record]:
    """The demo users and their number of labs, once labs left by an earlier run are gone."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        status = await conn.execute(DELETE_ALL_BENCH_LABS, BENCH_TITLE)
        if int(status.split()[-1]):
            await conn.execute(VACUUM_LABS)
        return list(await conn.fetch(DEMO_USERS))
    finally:
        await conn.close()


async def delete_bench_labs(admin_dsn: str, user_ids: list[uuid.UUID]) -> int:
    """Delete the labs createLab added, and vacuum them away: they are the newest rows, so
    until vacuum runs, every first page would step over their dead index entries (measured:
    700 buffers and 1.3 ms instead of 5 buffers and 0.3 ms after 200,000 of them)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        status = await conn.execute(DELETE_BENCH_LABS, user_ids, BENCH_TITLE)
        deleted = int(status.split()[-1])
        if deleted:
            await conn.execute(VACUUM_LABS)
        return deleted
    finally:
        await conn.close()


async def fill_in(admin_dsn: str, catalogue: Catalogue) -> None:
    """The lab id (the middle row) and the deep cursor of one catalogue, read as the owner."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        middle = await conn.fetchrow(ROW_AT, catalogue.user_id, catalogue.size // 2)
        catalogue.deep_position = min(DEEP_POSITION, catalogue.size - 20)
        deep = await conn.fetchrow(ROW_AT, catalogue.user_id, catalogue.deep_position - 1)
    finally:
        await conn.close()
    if middle is None or deep is None:
        raise BenchError(f"catalogue {catalogue.name} has fewer labs than expected")
    catalogue.lab_id = str(middle["id"])
    catalogue.deep_id = str(deep["id"])
    catalogue.deep_cursor = encode_cursor(sort_keys(()), deep)


def load_demo_users(
    labs: int, users: int, others: int, others_labs: int, env: dict[str, str]
) -> None:
    args = ["--labs", str(labs), "--users", str(users)]
    if others:
        args += ["--others", str(others), "--others-labs", str(others_labs)]
    also = f" and {others:,} with {others_labs:,} each, interleaved" if others else ""
    print(
        f"==> loading {users:,} demo user(s) with {labs // users:,} labs each{also} "
        f"(scriptlabs demo-data {' '.join(args)})",
        flush=True,
    )
    started = time.monotonic()
    out = subprocess.run(
        [str(SCRIPTLABS), "demo-data", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"scriptlabs demo-data failed:\n{out.stderr}")
    print(
        f"    {labs + others * others_labs:,} labs in {time.monotonic() - started:.0f} s",
        flush=True,
    )


def load_catalogues(names: list[str], env: dict[str, str], admin_dsn: str) -> list[Catalogue]:
    """One demo user per catalogue size (the lowest-numbered of that size), loaded with
    `scriptlabs demo-data` when missing."""
    users = asyncio.run(demo_users(admin_dsn))
    sizes = {u["labs"] for u in users}
    missing = {CATALOGUES[name] for name in names} - sizes
    loaded = False
    for name, (labs, count, others, others_labs) in LOADS.items():
        if CATALOGUES[name] in missing:
            load_demo_users(labs, count, others, others_labs, env)
            missing -= {labs // count, others_labs}
            loaded = True
    if loaded:
        users = asyncio.run(demo_users(admin_dsn))
    taken: set[uuid.UUID] = set()
    found: list[Catalogue] = []
    for name in names:
        size = CATALOGUES[name]
        match = next((u for u in users if u["labs"] == size and u["id"] not in taken), None)
        if match is None:
            raise BenchError(f"no demo user with {size:,} labs after loading them")
        catalogue = Catalogue(name, size, match["id"], match["email"])
        taken.add(catalogue.user_id)
        found.append(catalogue)
    for catalogue in found:
        asyncio.run(fill_in(admin_dsn, catalogue))
    return found
