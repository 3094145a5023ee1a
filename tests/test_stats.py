"""Catalogue statistics: the figures the triggers of db/013_lab_stats.sql keep, checked against
a recount of public.labs after any sequence of writes, concurrent transactions of one user
included; and public.lab_stats(), the same figures for Supabase RPC."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg
import pytest

from scriptlabs.db.migrate import sql_dir
from tests.conftest import Api, Database, User, create_database, error_codes
from tests.test_isolation import refused, request_role

IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }"
# title, author, category, rating, readingStatus
Spec = tuple[str, str, str | None, int | None, str]
CATALOGUE: list[Spec] = [
    ("Dune", "Frank Herbert", "Fiction", 5, "READ"),
    ("Dune Messiah", "Frank Herbert", "Fiction", 4, "READING"),
    ("Emma", "Jane Austen", "Classics", 3, "READ"),
    ("Persuasion", "Jane Austen", "Classics", None, "TO_READ"),
    ("Cosmos", "Carl Sagan", "Science", 4, "TO_READ"),
    ("Contact", "Carl Sagan", None, None, "READING"),
    ("Pale Fire", "Vladimir Nabokov", "Fiction", 2, "READ"),
    ("Ways of Seeing", "John Berger", "Art", 1, "TO_READ"),
]


def lab_input(spec: Spec) -> dict[str, Any]:
    title, author, category, rating, status = spec
    return {
        "title": title,
        "author": author,
        "category": category,
        "rating": rating,
        "readingStatus": status,
    }


def figures(specs: list[Spec]) -> dict[str, Any]:
    """labStats of `specs`, worked out here (names sort alike in every collation)."""
    ratings = [s[3] for s in specs if s[3] is not None]
    average = None
    if ratings:
        exact = Decimal(sum(ratings)) / Decimal(len(ratings))
        average = float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    categories: dict[str, int] = {}
    for spec in specs:
        if spec[2] is not None:
            categories[spec[2]] = categories.get(spec[2], 0) + 1
    return {
        "totalLabs": len(specs),
        "labsRead": sum(s[4] == "READ" for s in specs),
        "labsReading": sum(s[4] == "READING" for s in specs),
        "labsToRead": sum(s[4] == "TO_READ" for s in specs),
        "averageRating": average,
        "totalAuthors": len({s[1] for s in specs}),
        "totalCategories": len(categories),
        "byCategory": [
            {"category": c, "count": n}
            for c, n in sorted(categories.items(), key=lambda item: (-item[1], item[0]))
        ],
        "ratingDistribution": [
            {"rating": k, "count": sum(r == k for r in ratings)} for k in range(1, 6)
        ],
    }


async def user_with(api: Api, specs: list[Spec]) -> User:
    user = await api.sign_up()
    if specs:
        await api.ok(IMPORT, {"labs": [lab_input(s) for s in specs]}, token=user.token)
    return user


@pytest.fixture
async def reader(api: Api) -> User:
    return await user_with(api, CATALOGUE)


# --- the database: RLS, the RPC function, deleted users, the recount ---------------------------


async def test_the_rpc_function_and_the_tables_show_only_the_callers_figures(
    api: Api, database: Database, reader: User
) -> None:
    lem: list[Spec] = [("Solaris", "Stanislaw Lem", "Fiction", 5, "READ")]
    other = await user_with(api, lem)
    theirs = uuid.UUID(reader.id)
    async with request_role(database, "authenticated", other.id) as conn:
        assert json.loads(await conn.fetchval("select public.lab_stats()")) == figures(lem)
        for table in ("lab_totals", "lab_author_counts", "lab_category_counts"):
            rows = await conn.fetch(f"select user_id from public.{table}")
            assert {r["user_id"] for r in rows} == {uuid.UUID(other.id)}, table
            named = f"select count(*) from public.{table} where user_id = $1"
            assert await conn.fetchval(named, theirs) == 0, table
        # no request role writes the figures, not even its own
        await refused(conn, "update public.lab_totals set labs = 0")
        await refused(conn, "insert into public.lab_totals (user_id) values ($1)", theirs)
        await refused(conn, "insert into public.lab_author_counts values ($1, 'x', 1)", theirs)
        await refused(conn, "delete from public.lab_category_counts")
    async with request_role(database, "authenticated", reader.id) as conn:
        assert json.loads(await conn.fetchval("select public.lab_stats()")) == figures(CATALOGUE)
    async with request_role(database, "anon") as conn:
        await refused(conn, "select public.lab_stats()")
        await refused(conn, "select count(*) from public.lab_totals")


async def test_the_rpc_function_runs_as_its_caller_and_takes_no_argument(
    admin: asyncpg.Connection,
) -> None:
    row = await admin.fetchrow(
        "select prosecdef, pronargs from pg_proc where oid = 'public.lab_stats()'::regprocedure"
    )
    assert row is not None and (row["prosecdef"], row["pronargs"]) == (False, 0)
    assert await admin.fetchval("select count(*) from pg_proc where proname = 'lab_stats'") == 1


async def test_deleting_a_user_takes_its_figures_along(api: Api, admin: asyncpg.Connection) -> None:
    user = await user_with(api, CATALOGUE)
    user_id = uuid.UUID(user.id)
    assert (
        await admin.fetchval("select labs from public.lab_totals where user_id = $1", user_id) == 8
    )
    await admin.execute("delete from auth.users where id = $1", user_id)
    for table in ("labs", "lab_totals", "lab_author_counts", "lab_category_counts"):
        count = f"select count(*) from public.{table} where user_id = $1"
        assert await admin.fetchval(count, user_id) == 0, table


RECOUNT_TOTALS = """
select user_id,
       count(*) as labs,
       count(*) filter (where reading_status = 'read') as labs_read,
       count(*) filter (where reading_status = 'reading') as labs_reading,
       count(*) filter (where reading_status = 'to_read') as labs_to_read,
       count(*) filter (where rating = 1) as rating_1,
       count(*) filter (where rating = 2) as rating_2,
       count(*) filter (where rating = 3) as rating_3,
       count(*) filter (where rating = 4) as rating_4,
       count(*) filter (where rating = 5) as rating_5,
       count(distinct author) as authors,
       count(distinct category) as categories
from public.labs
where user_id = any($1::uuid[])
group by user_id
"""
KEPT_TOTALS = """
select user_id, labs, labs_read, labs_reading, labs_to_read,
       rating_1, rating_2, rating_3, rating_4, rating_5, authors, categories
from public.lab_totals
where user_id = any($1::uuid[])
"""
RECOUNT_AUTHORS = """
select user_id, author as name, count(*) as n from public.labs
where user_id = any($1::uuid[]) group by user_id, author
"""
KEPT_AUTHORS = """
select user_id, author as name, n from public.lab_author_counts where user_id = any($1::uuid[])
"""
RECOUNT_CATEGORIES = """
select user_id, category as name, count(*) as n from public.labs
where user_id = any($1::uuid[]) and category is not null group by user_id, category
"""
KEPT_CATEGORIES = """
select user_id, category as name, n from public.lab_category_counts
where user_id = any($1::uuid[])
"""


async def assert_kept_figures_are_a_recount(
    conn: asyncpg.Connection, users: list[uuid.UUID]
) -> None:
    """The three tables of 013_lab_stats equal a recount of public.labs for `users` (a row of
    zeros, or a count at 0, stands for no row)."""
    recount = {r["user_id"]: tuple(r)[1:] for r in await conn.fetch(RECOUNT_TOTALS, users)}
    kept = {r["user_id"]: tuple(r)[1:] for r in await conn.fetch(KEPT_TOTALS, users)}
    assert {u: v for u, v in kept.items() if any(v)} == recount
    for recount_sql, kept_sql in (
        (RECOUNT_AUTHORS, KEPT_AUTHORS),
        (RECOUNT_CATEGORIES, KEPT_CATEGORIES),
    ):
        rows = await conn.fetch(kept_sql, users)
        assert all(r["n"] >= 0 for r in rows), [tuple(r) for r in rows if r["n"] < 0]
        kept_counts = {(r["user_id"], r["name"]): r["n"] for r in rows if r["n"] > 0}
        recounted = {
            (r["user_id"], r["name"]): r["n"] for r in await conn.fetch(recount_sql, users)
        }
        assert kept_counts == recounted


async def test_the_migration_recounts_the_figures_and_truncate_clears_them(
    database: Database, admin: asyncpg.Connection
) -> None:
    name = f"scriptlabs_stats_{uuid.uuid4().hex[:8]}"
    fresh = await create_database(database, name)
    conn = await asyncpg.connect(fresh.admin_dsn)
    try:
        users = [uuid.uuid4(), uuid.uuid4()]
        await conn.execute(
            "insert into auth.users (id, email) select u, u::text || '@example.com'"
            " from unnest($1::uuid[]) u",
            users,
        )
        rows = [
            (users[i % 2], f"Lab {i}", s[1], s[2], s[3], s[4].lower())
            for i, s in enumerate(CATALOGUE)
        ]
        # labs written while the counting triggers were away: the figures lag behind
        await conn.execute("alter table public.labs disable trigger user")
        await conn.copy_records_to_table(
            "labs",
            schema_name="public",
            records=rows,
            columns=["user_id", "title", "author", "category", "rating", "reading_status"],
        )
        await conn.execute("alter table public.labs enable trigger user")
        await conn.execute(
            "insert into public.lab_category_counts values ($1, 'Ghost', 3)", users[0]
        )
        with pytest.raises(AssertionError):
            await assert_kept_figures_are_a_recount(conn, users)
        migration = (sql_dir() / "013_lab_stats.sql").read_text(encoding="utf-8")
        for _ in range(2):  # it recounts, and running it again changes nothing
            async with conn.transaction():
                await conn.execute(migration)
            await assert_kept_figures_are_a_recount(conn, users)
        assert await conn.fetchval("select count(*) from public.lab_totals") == 2
        await conn.execute("truncate public.labs")
        for table in ("lab_totals", "lab_author_counts", "lab_category_counts"):
            assert await conn.fetchval(f"select count(*) from public.{table}") == 0, table
    finally:
        await conn.close()
        await admin.execute(f'drop database "{name}" with (force)')


# --- the kept figures stay a recount, whatever is written ---------------------------------------

AUTHORS = ["Ann Leckie", "ann leckie", "Iain M. Banks", "Ursula K. Le Guin", "Ted Chiang"]
CATEGORIES = [None, "Science Fiction", "science fiction", "Fantasy", "Essays"]
RATINGS = [None, 1, 2, 3, 4, 5]
STATUSES = ["TO_READ", "READING", "READ"]


def random_lab(rng: random.Random) -> dict[str, Any]:
    return {
        "title": f"Lab {rng.randrange(10**6)}",
        "author": rng.choice(AUTHORS),
        "category": rng.choice(CATEGORIES),
        "rating": rng.choice(RATINGS),
        "readingStatus": rng.choice(STATUSES),
    }


def random_change(rng: random.Random) -> dict[str, Any]:
    """Some fields of a lab, counted or not, nulls included (a category to and from null)."""
    every = random_lab(rng) | {"notes": rng.choice([None, "a note"])}
    return {k: every[k] for k in rng.sample(sorted(every), rng.randint(1, 3))}


class Writer:
    """Random writes of one user through the API: creates, updates, deletes, imports, and
    operations that fail and write nothing."""

    def __init__(self, api: Api, admin: asyncpg.Connection, user: User, seed: int) -> None:
        self.api, self.admin, self.user = api, admin, user
        self.rng = random.Random(seed)

    async def ids(self) -> list[str]:
        rows = await self.admin.fetch(
            "select id from public.labs where user_id = $1 order by id", uuid.UUID(self.user.id)
        )
        return [str(r["id"]) for r in rows]

    async def step(self) -> None:
        rng, ids = self.rng, await self.ids()
        kind = rng.choice(["create", "import", "update", "update", "delete", "bad import", "mixed"])
        if not ids and kind in ("update", "delete"):
            kind = "import"
        gql = self.api.gql
        token = self.user.token
        if kind == "create":
            await gql(
                "mutation($i: CreateLabInput!) { createLab(input: $i) { id } }",
                {"i": random_lab(rng)},
                token=token,
            )
        elif kind == "import":
            labs = [random_lab(rng) for _ in range(rng.randint(1, 12))]
            await gql(IMPORT, {"labs": labs}, token=token)
        elif kind == "bad import":  # all or nothing: one bad rating, nothing imported
            labs = [random_lab(rng) for _ in range(3)] + [random_lab(rng) | {"rating": 7}]
            assert error_codes(await gql(IMPORT, {"labs": labs}, token=token)) == ["BAD_USER_INPUT"]
        elif kind == "update":
            await gql(
                "mutation($id: UUID!, $c: UpdateLabInput!) {"
                " updateLab(id: $id, input: $c) { id } }",
                {"id": rng.choice(ids), "c": random_change(rng)},
                token=token,
            )
        elif kind == "delete":
            await gql(
                "mutation($id: UUID!) { deleteLab(id: $id) }", {"id": rng.choice(ids)}, token=token
            )
        else:  # several writes in one operation; a missing lab at the end undoes them all
            gone = (
                str(uuid.uuid4()) if rng.random() < 0.5 else rng.choice(ids or [str(uuid.uuid4())])
            )
            await gql(
                "mutation($a: UUID!, $c: UpdateLabInput!, $i: CreateLabInput!, $gone: UUID!) {"
                " a: updateLab(id: $a, input: $c) { id } b: createLab(input: $i) { id }"
                " c: deleteLab(id: $gone) }",
                {
                    "a": rng.choice(ids or [str(uuid.uuid4())]),
                    "c": random_change(rng),
                    "i": random_lab(rng),
                    "gone": gone,
                },
                token=token,
            )


SET_CALLER = """
select set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', $1, true),
       set_config('lock_timeout', '10s', true)
"""
STORED = {"TO_READ": "to_read", "READING": "reading", "READ": "read"}


async def sample_ids(conn: asyncpg.Connection, rng: random.Random) -> list[uuid.UUID]:
    rows = await conn.fetch("select id from public.labs order by id")
    return [r["id"] for r in rng.sample(rows, min(len(rows), rng.randint(1, 6)))]


async def raw_insert(conn: asyncpg.Connection, rng: random.Random) -> None:
    labs = [random_lab(rng) for _ in range(rng.randint(1, 15))]
    await conn.execute(
        "insert into public.labs (title, author, category, rating, reading_status)"
        " select * from unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])",
        [lab["title"] for lab in labs],
        [lab["author"] for lab in labs],
        [lab["category"] for lab in labs],
        [lab["rating"] for lab in labs],
        [STORED[lab["readingStatus"]] for lab in labs],
    )


async def raw_update(conn: asyncpg.Connection, rng: random.Random) -> None:
    lab = random_lab(rng)
    column, value, kind = rng.choice(
        [
            ("author", lab["author"], "text"),
            ("category", lab["category"], "text"),
            ("rating", lab["rating"], "int"),
            ("reading_status", STORED[lab["readingStatus"]], "text"),
            ("notes", "edited", "text"),
        ]
    )
    ids = await sample_ids(conn, rng)
    await conn.execute(
        f"update public.labs set {column} = $1::{kind} where id = any($2::uuid[])", value, ids
    )


async def raw_bulk_update(conn: asyncpg.Connection, rng: random.Random) -> None:
    await conn.execute(
        "update public.labs set rating = $1, category = $2 where rating is not distinct from $3",
        rng.choice(RATINGS),
        rng.choice(CATEGORIES),
        rng.choice(RATINGS),
    )


async def raw_delete(conn: asyncpg.Connection, rng: random.Random) -> None:
    await conn.execute(
        "delete from public.labs where id = any($1::uuid[])", await sample_ids(conn, rng)
    )


RAW_WRITES = [raw_insert, raw_insert, raw_update, raw_update, raw_bulk_update, raw_delete]


async def transactions(
    database: Database, user: User, seed: int, until: float, outcomes: dict[str, int]
) -> None:
    """Transactions of `user` as the API opens them (authenticator, role and claims set),
    each of a few random writes with pauses between them, a third of them rolled back."""
    rng = random.Random(seed)
    claims = json.dumps({"sub": user.id, "role": "authenticated", "aud": "authenticated"})
    conn = await asyncpg.connect(database.dsn)
    try:
        while time.monotonic() < until:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute(SET_CALLER, claims)
                for _ in range(rng.randint(1, 4)):
                    await rng.choice(RAW_WRITES)(conn, rng)
                    await asyncio.sleep(rng.random() * 0.003)
            except asyncpg.PostgresError as exc:
                outcomes[f"failed {exc.sqlstate}"] = outcomes.get(f"failed {exc.sqlstate}", 0) + 1
                await transaction.rollback()
                continue
            if rng.random() < 0.3:
                await transaction.rollback()
                outcomes["rolled back"] = outcomes.get("rolled back", 0) + 1
            else:
                await transaction.commit()
                outcomes["committed"] = outcomes.get("committed", 0) + 1
    finally:
        await conn.close()


async def api_writes(writer: Writer, until: float) -> None:
    while time.monotonic() < until:
        await writer.step()


async def test_the_kept_figures_are_a_recount_after_any_writes(
    api: Api, admin: asyncpg.Connection, database: Database
) -> None:
    main, second = await api.sign_up(), await api.sign_up()
    users = [uuid.UUID(main.id), uuid.UUID(second.id)]
    # one operation at a time, through the API
    writers = [Writer(api, admin, main, 20240801), Writer(api, admin, second, 20240802)]
    for step in range(80):
        await writers[step % 5 == 0].step()
        if step % 10 == 9:
            await assert_kept_figures_are_a_recount(admin, users)
    # concurrent transactions of one user (and of another): raw ones and the API's
    outcomes: dict[str, int] = {}
    until = time.monotonic() + 1.5
    await asyncio.gather(
        *(transactions(database, main, 7 + i, until, outcomes) for i in range(3)),
        transactions(database, second, 11, until, outcomes),
        api_writes(writers[0], until),
    )
    assert set(outcomes) == {"committed", "rolled back"}, outcomes  # no deadlock, no timeout
    assert outcomes["committed"] >= 10, outcomes
    await assert_kept_figures_are_a_recount(admin, users)
