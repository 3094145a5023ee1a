"""labStats: exact figures on both paths (planned and Strawberry), filters, isolation and
errors; the figures the triggers of db/013_lab_stats.sql keep, checked against a recount of
public.labs after any sequence of writes, concurrent transactions of one user included; and
public.lab_stats(), the same figures for Supabase RPC."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from scriptlabs.db.migrate import sql_dir
from scriptlabs.db.sql import Params
from scriptlabs.graphql.planner import _SCALAR_SQL
from scriptlabs.labs.filters import Condition, LabWhere
from scriptlabs.labs.stats import PARTS, StatsQuery, lab_stats_sql
from tests.conftest import Api, Database, User, create_database, error_codes
from tests.test_isolation import refused, request_role

STATS = """
query($filter: LabFilter) {
  labStats(filter: $filter) {
    totalLabs labsRead labsReading labsToRead averageRating totalAuthors totalCategories
    byCategory { category count }
    ratingDistribution { rating count }
  }
}"""
IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }"
EVERY_LAB = {"title": {"isNull": False}}  # a filter every lab matches: the filtered path

ZERO = {
    "totalLabs": 0,
    "labsRead": 0,
    "labsReading": 0,
    "labsToRead": 0,
    "averageRating": None,
    "totalAuthors": 0,
    "totalCategories": 0,
    "byCategory": [],
    "ratingDistribution": [{"rating": k, "count": 0} for k in range(1, 6)],
}

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


@dataclass
class Both:
    """The API twice: planned, and through Strawberry only; every answer must be the same
    bytes on both, and the planned one must have been planned."""

    planned: httpx.AsyncClient
    plain: httpx.AsyncClient

    async def post(
        self, query: str, variables: dict[str, Any] | None, token: str | None
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = {"query": query, "variables": variables}
        runner = self.planned._transport.app.state.runner  # type: ignore[attr-defined]
        before = runner.planned_fields
        planned = await self.planned.post("/graphql", json=body, headers=headers)
        assert runner.planned_fields > before, "labStats was not planned"
        plain = await self.plain.post("/graphql", json=body, headers=headers)
        assert (planned.status_code, planned.content) == (plain.status_code, plain.content)
        return planned

    async def stats(self, user: User, filter: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.post(STATS, {"filter": filter}, user.token)
        result = response.json()
        assert "errors" not in result, result
        stats: dict[str, Any] = result["data"]["labStats"]
        return stats


@pytest.fixture
def both(client: httpx.AsyncClient, unplanned_client: httpx.AsyncClient) -> Both:
    return Both(client, unplanned_client)


async def user_with(api: Api, specs: list[Spec]) -> User:
    user = await api.sign_up()
    if specs:
        await api.ok(IMPORT, {"labs": [lab_input(s) for s in specs]}, token=user.token)
    return user


@pytest.fixture
async def reader(api: Api) -> User:
    return await user_with(api, CATALOGUE)


# --- exact figures ---------------------------------------------------------------------------


async def test_the_figures_of_a_catalogue_are_exact(both: Both, reader: User) -> None:
    want = {
        "totalLabs": 8,
        "labsRead": 3,
        "labsReading": 2,
        "labsToRead": 3,
        "averageRating": 3.17,  # 19 / 6
        "totalAuthors": 5,
        "totalCategories": 4,
        "byCategory": [
            {"category": "Fiction", "count": 3},
            {"category": "Classics", "count": 2},
            {"category": "Art", "count": 1},
            {"category": "Science", "count": 1},
        ],
        "ratingDistribution": [
            {"rating": 1, "count": 1},
            {"rating": 2, "count": 1},
            {"rating": 3, "count": 1},
            {"rating": 4, "count": 2},
            {"rating": 5, "count": 1},
        ],
    }
    assert figures(CATALOGUE) == want
    assert await both.stats(reader) == want  # the kept figures
    assert await both.stats(reader, EVERY_LAB) == want  # aggregated from public.labs


def ratings(*counts: tuple[int, int]) -> list[Spec]:
    """Labs with these (rating, how many), and one unrated lab, which no average counts."""
    specs: list[Spec] = [("Unrated", "Nobody", None, None, "TO_READ")]
    for rating, count in counts:
        specs += [
            (f"Rated {rating} #{i}", f"Author {i % 3}", None, rating, "READ") for i in range(count)
        ]
    return specs


@pytest.mark.parametrize(
    ("specs", "text"),
    [
        pytest.param(ratings((5, 1), (4, 1)), "4.5", id="4.5"),
        pytest.param(ratings((4, 2)), "4.0", id="whole"),
        pytest.param(ratings((1, 2), (2, 1)), "1.33", id="third"),
        pytest.param(ratings((2, 2), (1, 1)), "1.67", id="two-thirds"),
        # halves round up (numeric), not to even: 17/8 = 2.125
        pytest.param(ratings((1, 2), (2, 3), (3, 3)), "2.13", id="2.125"),
        # 469/200 = 2.345
        pytest.param(ratings((2, 131), (3, 69)), "2.35", id="2.345"),
        # 107/40 = 2.675, just below 2.675 as a double: rounding a float would give 2.67
        pytest.param(ratings((2, 13), (3, 27)), "2.68", id="2.675"),
    ],
)
async def test_the_average_is_rounded_to_two_places_halves_up(
    api: Api, both: Both, specs: list[Spec], text: str
) -> None:
    user = await user_with(api, specs)
    for filter in (None, EVERY_LAB):
        response = await both.post(STATS, {"filter": filter}, user.token)
        assert f'"averageRating":{text},' in response.text
        assert response.json()["data"]["labStats"] == figures(specs)


async def test_an_empty_catalogue_has_zero_figures(api: Api, both: Both) -> None:
    user = await api.sign_up()
    assert await both.stats(user) == ZERO
    assert await both.stats(user, EVERY_LAB) == ZERO


async def test_a_catalogue_emptied_again_has_zero_figures(api: Api, both: Both) -> None:
    user = await user_with(api, CATALOGUE[:3])
    labs = await api.ok("{ labs { nodes { id } } }", token=user.token)
    for node in labs["labs"]["nodes"]:
        await api.ok(
            "mutation($id: UUID!) { deleteLab(id: $id) }", {"id": node["id"]}, token=user.token
        )
    assert await both.stats(user) == ZERO
    assert await both.stats(user, EVERY_LAB) == ZERO


async def test_a_filter_matching_nothing_has_zero_figures(both: Both, reader: User) -> None:
    assert await both.stats(reader, {"title": {"eq": "No such lab"}}) == ZERO
    assert await both.stats(reader, {"or": []}) == ZERO


async def test_an_empty_filter_is_the_whole_catalogue(both: Both, reader: User) -> None:
    assert await both.stats(reader, {}) == figures(CATALOGUE)
    assert await both.stats(reader, {"and": []}) == figures(CATALOGUE)


Predicate = Callable[[Spec], bool]
FILTERS: list[tuple[dict[str, Any], Predicate]] = [
    ({"readingStatus": {"eq": "READ"}}, lambda s: s[4] == "READ"),
    ({"rating": {"gte": 4}}, lambda s: s[3] is not None and s[3] >= 4),
    ({"category": {"isNull": True}}, lambda s: s[2] is None),
    # contract: not and neq never match a NULL
    ({"not": {"category": {"eq": "Fiction"}}}, lambda s: s[2] is not None and s[2] != "Fiction"),
    (
        {"or": [{"author": {"eq": "Carl Sagan"}}, {"rating": {"lte": 2}}]},
        lambda s: s[1] == "Carl Sagan" or (s[3] is not None and s[3] <= 2),
    ),
    (
        {"rating": {"isNull": False}, "readingStatus": {"in": ["READ", "READING"]}},
        lambda s: s[3] is not None and s[4] in ("READ", "READING"),
    ),
    ({"title": {"ilike": "%dune%"}}, lambda s: "dune" in s[0].lower()),
    (
        {"and": [{"category": {"in": ["Fiction", "Art"]}}, {"not": {"rating": {"eq": 5}}}]},
        lambda s: s[2] in ("Fiction", "Art") and s[3] is not None and s[3] != 5,
    ),
]


@pytest.mark.parametrize(("where", "predicate"), FILTERS)
async def test_a_filter_narrows_every_figure(
    both: Both, reader: User, where: dict[str, Any], predicate: Predicate
) -> None:
    assert await both.stats(reader, where) == figures([s for s in CATALOGUE if predicate(s)])


async def test_only_the_selected_fields_are_answered(both: Both, reader: User) -> None:
    query = (
        "query($f: LabFilter) { labStats(filter: $f) { n: totalLabs __typename"
        " byCategory { count } } }"
    )
    for filter in (None, {"rating": {"isNull": False}}):
        response = await both.post(query, {"f": filter}, reader.token)
        stats = response.json()["data"]["labStats"]
        assert list(stats) == ["n", "__typename", "byCategory"]


@pytest.mark.parametrize(
    "fields", ["totalAuthors", "totalCategories", "totalAuthors totalCategories"]
)
@pytest.mark.parametrize("filter", [{"and": []}, {"rating": {"gte": 4}}, {"or": []}])
async def test_distinct_counts_alone_are_one_answer_however_many_labs_match(
    both: Both, reader: User, fields: str, filter: dict[str, Any]
) -> None:
    # they are no aggregate of the matching rows: alone, once a row per match (or none)
    query = f"query($f: LabFilter) {{ labStats(filter: $f) {{ {fields} }} }}"
    want = await both.stats(reader, filter)
    response = await both.post(query, {"f": filter}, reader.token)
    assert response.json() == {"data": {"labStats": {name: want[name] for name in fields.split()}}}


# --- isolation and errors --------------------------------------------------------------------


async def test_another_users_labs_are_never_counted(api: Api, both: Both, reader: User) -> None:
    other = await user_with(api, [("Solaris", "Stanislaw Lem", "Fiction", 5, "READ")])
    assert await both.stats(reader) == figures(CATALOGUE)
    assert await both.stats(other) == figures([("Solaris", "Stanislaw Lem", "Fiction", 5, "READ")])
    assert await both.stats(reader, {"author": {"eq": "Stanislaw Lem"}}) == ZERO
    assert await both.stats(other, {"author": {"eq": "Frank Herbert"}}) == ZERO


async def test_without_a_token_stats_are_unauthenticated(both: Both) -> None:
    for query, variables in (
        (STATS, None),
        (STATS, {"filter": EVERY_LAB}),
        ("{ labStats { totalLabs } me { id } }", None),
    ):
        result = (await both.post(query, variables, None)).json()
        assert error_codes(result) == ["UNAUTHENTICATED"]
        assert result["data"] is None


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"title": {"eq": "nul\u0000byte"}}, "filter.title"),
        (
            {
                "or": [
                    {"rating": {"eq": 1}},
                    {"not": {"createdAt": {"gt": "0001-01-01T00:00:00+05:00"}}},
                ]
            },
            "filter.or[1].not.createdAt",
        ),
        ({"and": [{"category": {"in": ["ok", "\u0000"]}}]}, "filter.and[0].category"),
    ],
)
async def test_a_filter_value_that_cannot_be_stored_is_bad_user_input(
    both: Both, reader: User, where: dict[str, Any], field: str
) -> None:
    result = (await both.post(STATS, {"filter": where}, reader.token)).json()
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["field"] == field
    assert result["errors"][0]["path"] == ["labStats"]
    assert result["data"] is None


# --- what is read ----------------------------------------------------------------------------


def test_only_the_selected_parts_are_read() -> None:
    def sql(parts: set[str], where: LabWhere | None = None) -> str:
        return lab_stats_sql(StatsQuery(where, frozenset(parts)), Params())

    assert sql({"total_labs", "average_rating"}) == (
        "select f.*\n"
        "from (select coalesce(t.labs, 0) as total_labs, case when t.rating_1 + t.rating_2"
        " + t.rating_3 + t.rating_4 + t.rating_5 > 0 then round((1 * t.rating_1 + 2 * t.rating_2"
        " + 3 * t.rating_3 + 4 * t.rating_4 + 5 * t.rating_5)::numeric / (t.rating_1"
        " + t.rating_2 + t.rating_3 + t.rating_4 + t.rating_5), 2) end as average_rating\n"
        "from (values (1)) as caller (one)\n"
        "left join public.lab_totals t on t.user_id = (select auth.uid())) f"
    )
    only_categories = sql({"by_category"})
    assert "lab_category_counts" in only_categories
    assert "lab_totals" not in only_categories and "public.labs" not in only_categories
    rated = LabWhere((Condition("rating", "gte", 4),))
    counts = sql({"total_labs", "labs_read"}, rated)
    assert (
        "public.labs" in counts and "where user_id = (select auth.uid()) and rating >= $1" in counts
    )
    assert "distinct" not in counts and "avg" not in counts
    assert "group by author" not in counts and "group by category" not in counts
    assert "group by author" in sql({"total_authors"}, rated)
    assert "group by category" in sql({"by_category"}, rated)
    assert "rating_5" in sql({"rating_distribution"}) and "rating_5" not in sql({"total_labs"})
    # an empty filter is no filter: the kept figures
    assert "public.labs" not in sql({"total_labs"}, LabWhere())


async def test_the_whole_catalogues_figures_do_not_read_its_labs(
    database: Database, reader: User
) -> None:
    every_part = StatsQuery(None, frozenset(PARTS))
    statement = lab_stats_sql(every_part, Params())
    async with request_role(database, "authenticated", reader.id) as conn:
        plan = "\n".join(r[0] for r in await conn.fetch(f"explain {statement}"))
    assert not re.search(r"\bon labs\b", plan), plan
    assert re.search(r"\bon lab_totals\b", plan) and re.search(r"\bon lab_category_counts\b", plan)


async def test_a_planned_float_is_written_as_orjson_writes_it(admin: asyncpg.Connection) -> None:
    write = _SCALAR_SQL["Float"]("v.x")
    rows = await admin.fetch(
        f"select v.x::text as value, {write}::text as written"
        " from (select round(k / 100.0, 2) as x from generate_series(0, 100000) k) v"
    )
    assert len(rows) == 100001
    for row in rows:
        assert row["written"] == orjson.dumps(float(Decimal(row["value"]))).decode(), row
    assert await admin.fetchval(f"select {_SCALAR_SQL['Float']('null::numeric')}") is None


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

# the words of titles, authors and categories that search suggests from (db/014_search.sql)
RECOUNT_WORDS = """
select l.user_id, w.w as name, count(*) as n
from public.labs l cross join lateral public.lab_words_of(l.title, l.author, l.category) w(w)
where l.user_id = any($1::uuid[]) group by l.user_id, w.w
"""
KEPT_WORDS = """
select user_id, word as name, labs as n from public.lab_words where user_id = any($1::uuid[])
"""


async def assert_kept_figures_are_a_recount(
    conn: asyncpg.Connection, users: list[uuid.UUID]
) -> None:
    """The three tables of 013_lab_stats, and the words of 014_search, equal a recount of
    public.labs for `users` (a row of zeros, or a count at 0, stands for no row)."""
    recount = {r["user_id"]: tuple(r)[1:] for r in await conn.fetch(RECOUNT_TOTALS, users)}
    kept = {r["user_id"]: tuple(r)[1:] for r in await conn.fetch(KEPT_TOTALS, users)}
    assert {u: v for u, v in kept.items() if any(v)} == recount
    for recount_sql, kept_sql in (
        (RECOUNT_AUTHORS, KEPT_AUTHORS),
        (RECOUNT_CATEGORIES, KEPT_CATEGORIES),
        (RECOUNT_WORDS, KEPT_WORDS),
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
        migrations = [
            (sql_dir() / name).read_text(encoding="utf-8")
            for name in ("013_lab_stats.sql", "014_search.sql")
        ]
        for _ in range(2):  # they recount, and running them again changes nothing
            for migration in migrations:
                async with conn.transaction():
                    await conn.execute(migration)
            await assert_kept_figures_are_a_recount(conn, users)
        assert await conn.fetchval("select count(*) from public.lab_totals") == 2
        await conn.execute("truncate public.labs")
        for table in ("lab_totals", "lab_author_counts", "lab_category_counts", "lab_words"):
            assert await conn.fetchval(f"select count(*) from public.{table}") == 0, table
    finally:
        await conn.close()
        await admin.execute(f'drop database "{name}" with (force)')


# --- the kept figures stay a recount, whatever is written ---------------------------------------

AUTHORS = ["Ann Leckie", "ann leckie", "Iain M. Banks", "Ursula K. Le Guin", "Ted Chiang"]
CATEGORIES = [None, "Science Fiction", "science fiction", "Fantasy", "Essays"]
RATINGS = [None, 1, 2, 3, 4, 5]
STATUSES = ["TO_READ", "READING", "READ"]

RECOUNT_STATS = """
with mine as (select * from public.labs where user_id = $1)
select json_build_object(
  'totalLabs', count(*),
  'labsRead', count(*) filter (where reading_status = 'read'),
  'labsReading', count(*) filter (where reading_status = 'reading'),
  'labsToRead', count(*) filter (where reading_status = 'to_read'),
  'averageRating', round(avg(rating), 2),
  'totalAuthors', count(distinct author),
  'totalCategories', count(distinct category),
  'byCategory', coalesce(
    (select json_agg(json_build_object('category', c.category, 'count', c.n)
                     order by c.n desc, c.category)
     from (select category, count(*) as n from mine where category is not null
           group by category) c),
    '[]'),
  'ratingDistribution',
    (select json_agg(json_build_object('rating', k,
                                       'count', (select count(*) from mine where rating = k))
                     order by k)
     from generate_series(1, 5) k)
)::text
from mine
"""


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


async def assert_stats_are_a_recount(both: Both, admin: asyncpg.Connection, user: User) -> None:
    text = await admin.fetchval(RECOUNT_STATS, uuid.UUID(user.id))
    want = json.loads(text)
    assert await both.stats(user) == want
    assert await both.stats(user, EVERY_LAB) == want


async def test_the_kept_figures_are_a_recount_after_any_writes(
    api: Api, both: Both, admin: asyncpg.Connection, database: Database
) -> None:
    main, second = await api.sign_up(), await api.sign_up()
    users = [uuid.UUID(main.id), uuid.UUID(second.id)]
    # one operation at a time, through the API
    writers = [Writer(api, admin, main, 20240801), Writer(api, admin, second, 20240802)]
    for step in range(80):
        await writers[step % 5 == 0].step()
        if step % 10 == 9:
            await assert_kept_figures_are_a_recount(admin, users)
            await assert_stats_are_a_recount(both, admin, main)
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
    await assert_stats_are_a_recount(both, admin, main)
    await assert_stats_are_a_recount(both, admin, second)
