"""`scriptlabs report`, `scriptlabs db health` and `db maintain`: their figures against counts
made here, on a database of this module's own (so every row in it is known)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from scriptlabs.app import create_app
from scriptlabs.config import Settings
from scriptlabs.db.operation import Pool
from scriptlabs.ops import dbhealth
from scriptlabs.ops.report import Day, report
from scriptlabs.ops.usage import SearchCounts, UsageFlusher, found_nothing
from tests.conftest import Api, Database, create_database

ROOT = Path(__file__).resolve().parent.parent
SEARCH = "query($q: String!, $first: Int, $after: String) { searchLabs(query: $q, first: $first, after: $after) { totalCount edges { cursor node { title } } } }"  # noqa: E501


@pytest.fixture(scope="module")
async def report_db(database: Database) -> Database:
    return await create_database(database, f"scriptlabs_report_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def report_settings(settings: Settings, report_db: Database) -> Settings:
    return replace(settings, database_url=report_db.dsn, database_admin_url=report_db.admin_dsn)


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[tuple[Starlette, Api]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield app, Api(c)


async def owner(db: Database) -> asyncpg.Connection:
    return await asyncpg.connect(db.admin_dsn)


def cli(db: Database, *args: str) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": db.dsn,
        "DATABASE_ADMIN_URL": db.admin_dsn,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "scriptlabs", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def usage_today(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "select searches, empty_searches from scriptlabs_private.search_usage "
        "where day = (now() at time zone 'UTC')::date"
    )
    return (row["searches"], row["empty_searches"]) if row else (0, 0)


async def searches_made(api: Api, token: str) -> tuple[int, int]:
    """Searches of every kind; the number counted and the number that found nothing."""
    found = await api.ok(SEARCH, {"q": "zebra", "first": 1}, token=token)
    assert found["searchLabs"]["totalCount"] == 2
    cursor = found["searchLabs"]["edges"][0]["cursor"]
    # later pages and blank queries are not searches
    await api.ok(SEARCH, {"q": "zebra", "first": 1, "after": cursor}, token=token)
    await api.ok(SEARCH, {"q": "  "}, token=token)
    empty = await api.ok(SEARCH, {"q": "unicorn"}, token=token)
    assert empty["searchLabs"]["totalCount"] == 0
    # only a count; only edges; no variables (the kept statement, twice); an alias
    await api.ok('{ searchLabs(query: "unicorn") { totalCount } }', token=token)
    await api.ok('{ searchLabs(query: "unicorn") { edges { cursor } } }', token=token)
    for _ in range(2):
        await api.ok('{ s: searchLabs(query: "zebra") { n: totalCount } }', token=token)
    # first: 0 asks for no page: found or not, by its count
    await api.ok(SEARCH, {"q": "zebra", "first": 0}, token=token)
    # two searches in one document
    await api.ok(
        '{ a: searchLabs(query: "zebra") { totalCount } b: searchLabs(query: "yeti") '
        "{ edges { cursor } } }",
        token=token,
    )
    return 9, 4


async def make_labs(api: Api, token: str) -> None:
    for title in ("Zebra crossing", "The zebra", "Plain"):
        await api.ok(
            'mutation($t: String!) { createLab(input: {title: $t, author: "A"}) { id } }',
            {"t": title},
            token=token,
        )


async def test_searches_are_counted_in_the_process_and_flushed_in_batches(
    report_settings: Settings, report_db: Database
) -> None:
    conn = await owner(report_db)
    try:
        for planned in (True, False):  # the planned path and Strawberry count alike
            settings = replace(report_settings, graphql_planner=planned)
            async with started(settings) as (app, api):
                user = await api.sign_up()
                await make_labs(api, user.token)
                before = await usage_today(conn)
                searches, empty = await searches_made(api, user.token)
                counts: SearchCounts = app.state.services.searches
                today = dt.datetime.now(dt.UTC).date()
                assert counts.take() == {today: [searches, empty]}, planned
                counts.give_back({today: [searches, empty]})
                # nothing written yet: the searches made no statement of their own
                assert await usage_today(conn) == before
                await app.state.usage.flush()
                after = await usage_today(conn)
                assert (after[0] - before[0], after[1] - before[1]) == (searches, empty)
                await api.ok(SEARCH, {"q": "unicorn"}, token=user.token)
            # the shut-down wrote the last one
            final = await usage_today(conn)
            assert (final[0] - after[0], final[1] - after[1]) == (1, 1)
    finally:
        await conn.close()


async def test_a_crowd_of_searches_costs_one_statement_per_flush(
    report_settings: Settings, report_db: Database
) -> None:
    # a hostile client: 150 searches at once, some long, some too long (refused: not
    # searches); each search counted once
    conn = await owner(report_db)
    try:
        async with started(report_settings) as (app, api):
            user = await api.sign_up()
            before = await usage_today(conn)
            queries = ["unicorn"] * 100 + ["x" * 480 + " word"] * 30 + ["x" * 5000] * 20
            results = await asyncio.gather(
                *(api.gql(SEARCH, {"q": q}, token=user.token) for q in queries)
            )
            refused = [r for r in results if "errors" in r]
            assert len(refused) == 20
            assert {r["errors"][0]["extensions"]["code"] for r in refused} == {"BAD_USER_INPUT"}
            counts = app.state.services.searches
            assert sum(c[0] for c in counts._days.values()) == 130
            written = await counts.flush(app.state.services.pool)
            assert written == 130
            after = await usage_today(conn)
            assert (after[0] - before[0], after[1] - before[1]) == (130, 130)
            assert await counts.flush(app.state.services.pool) == 0  # nothing new
            # and the API answers others meanwhile
            assert (await api.ok("{ me { id } }", token=user.token))["me"]["id"] == user.id
    finally:
        await conn.close()


def test_found_nothing_reads_the_count_or_the_edges() -> None:
    assert found_nothing(b'{"n":0,"e":[{"x":1}]}', "n", "e")
    assert found_nothing(b'{"n":3,"e":[]}', "n", "e")
    assert not found_nothing(b'{"n":3,"e":[{"x":1}]}', "n", "e")
    assert not found_nothing(b'{"e":[{"notes":"\\"e\\":[]"}]}', None, "e")
    assert not found_nothing(b'{"suggestion":null}', None, None)
    assert not found_nothing(b"null", "n", None)


async def test_report_gives_each_day_of_the_period_with_true_figures(
    report_settings: Settings, report_db: Database
) -> None:
    conn = await owner(report_db)
    today = dt.datetime.now(dt.UTC).date()
    try:
        async with started(report_settings) as (_app, api):
            a = await api.sign_up()
            await api.sign_up()
            await make_labs(api, a.token)
            await searches_made(api, a.token)
        # known rows on earlier days: labs of a at noon UTC two and five days ago (one of the
        # latter deleted), an active day, searches three days ago, and one outside the period
        for days_ago, n in ((2, 3), (5, 2), (9, 4)):
            await conn.executemany(
                "insert into public.labs (user_id, title, author, created_at) "
                "values ($1, $2, 'A', $3)",
                [
                    (
                        uuid.UUID(a.id),
                        f"old {days_ago} {i}",
                        dt.datetime.combine(today - dt.timedelta(days_ago), dt.time(12), dt.UTC),
                    )
                    for i in range(n)
                ],
            )
        await conn.execute("delete from public.labs where title = 'old 5 0'")
        await conn.execute(
            "insert into scriptlabs_private.active_days values ($1, $2), ($3, $2)",
            today - dt.timedelta(2),
            uuid.UUID(a.id),
            today - dt.timedelta(9),
        )
        await conn.execute(
            "select scriptlabs_private.add_search_usage($1, $2, $3)",
            [today - dt.timedelta(3)],
            [10],
            [4],
        )
        # the counts, made here
        expected = []
        for back in range(6, -1, -1):
            day = today - dt.timedelta(back)
            start = dt.datetime.combine(day, dt.time(0), dt.UTC)
            labs = await conn.fetchval(
                "select count(*) from public.labs where created_at >= $1 and created_at < $2",
                start,
                start + dt.timedelta(days=1),
            )
            active = await conn.fetchval(
                "select count(distinct user_id) from scriptlabs_private.active_days where day = $1",
                day,
            )
            usage = await conn.fetchrow(
                "select searches, empty_searches from scriptlabs_private.search_usage "
                "where day = $1",
                day,
            )
            searches, empty = (usage["searches"], usage["empty_searches"]) if usage else (0, 0)
            expected.append(Day(day, active, labs, searches, empty))
        # and what they must be on the days before today (today has the other tests' too)
        assert [(d.active_users, d.labs_created) for d in expected[:6]] == [
            (0, 0),
            (0, 1),
            (0, 0),
            (0, 0),
            (1, 3),
            (0, 0),
        ]
        assert [(d.searches, d.empty_searches) for d in expected[:6]] == [(0, 0)] * 3 + [
            (10, 4)
        ] + [(0, 0)] * 2
        assert expected[6].active_users >= 2 and expected[6].labs_created >= 3
        assert expected[6].searches >= 9 and expected[6].empty_searches >= 4
        assert await report(conn, 7) == expected

        out = json.loads(cli(report_db, "report", "--json"))
        assert out == [d.as_json() for d in expected]
        assert out[3]["emptyShare"] == 0.4 and out[0]["emptyShare"] is None
        assert len(json.loads(cli(report_db, "report", "--days", "30", "--json"))) == 30
        text = cli(report_db, "report").splitlines()
        assert len(text) == 8 and text[0].split()[0] == "day"
        assert text[4].split() == [
            (today - dt.timedelta(3)).isoformat(),
            "0",
            "0",
            "10",
            "4",
            "(40.0%)",
        ]
    finally:
        await conn.close()


async def test_db_health_reports_true_figures(
    report_settings: Settings, report_db: Database
) -> None:
    conn = await owner(report_db)
    other = await owner(report_db)
    try:
        async with started(report_settings) as (_app, api):
            user = await api.sign_up()
        uid = uuid.UUID(user.id)
        await conn.executemany(
            "insert into public.labs (user_id, title, author) values ($1, $2, 'A')",
            [(uid, f"health {i}") for i in range(40)],
        )
        await conn.execute(
            "delete from public.labs where user_id = $1 and title like 'health 1%'", uid
        )
        await conn.execute("select pg_stat_force_next_flush()")
        await conn.execute("select 1")  # the flush happens at the end of a transaction
        live = await conn.fetchval("select count(*) from public.labs")
        figures = await dbhealth.health(other)
        tables = {t["name"]: t for t in figures["tables"]}
        labs = tables["public.labs"]
        stats = await conn.fetchrow(
            "select n_live_tup, n_dead_tup from pg_stat_user_tables "
            "where relid = 'public.labs'::regclass"
        )
        assert stats["n_dead_tup"] >= 11  # the deleted "health 1", "health 10".."health 19"
        assert (labs["live_rows"], labs["dead_rows"]) == (stats["n_live_tup"], stats["n_dead_tup"])
        assert labs["live_rows"] == live
        assert labs["dead_share"] == pytest.approx(
            stats["n_dead_tup"] / (stats["n_live_tup"] + stats["n_dead_tup"])
        )
        assert labs["total_bytes"] >= labs["table_bytes"] + labs["index_bytes"] > 0
        assert {"auth.users", "public.user_sessions", "scriptlabs_private.search_usage"} <= set(
            tables
        )
        assert figures["database"]["size_bytes"] == await conn.fetchval(
            "select pg_database_size(current_database())"
        )
        for ratio in figures["cache"].values():
            assert ratio is not None and 0 <= ratio <= 1
        conns = figures["connections"]
        assert conns["max"] == int(await conn.fetchval("show max_connections"))
        assert 2 <= conns["used"] <= conns["max"]  # these two at least
        assert conns["active"] >= 1  # the one asking
        statements = figures["statements"]
        if await conn.fetchval(
            "select count(*) from pg_extension where extname = 'pg_stat_statements'"
        ):
            assert statements, "pg_stat_statements is loaded in the test cluster"
            means = [s["mean_ms"] for s in statements]
            assert means == sorted(means, reverse=True) and len(means) <= dbhealth.SLOWEST
            assert all(len(s["query"]) <= dbhealth.STATEMENT_CHARS for s in statements)

        out = json.loads(cli(report_db, "db", "health", "--json"))
        assert set(out) == set(figures)
        assert {t["name"] for t in out["tables"]} == set(tables)
        text = cli(report_db, "db", "health")
        assert "public.labs" in text and "cache hit ratio" in text and "connections:" in text
    finally:
        await conn.close()
        await other.close()


async def test_db_maintain_analyzes_and_cleans_up(report_db: Database) -> None:
    conn = await owner(report_db)
    try:
        uid = await conn.fetchval("select id from auth.users limit 1")
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
        await conn.execute(
            "insert into public.user_sessions (user_id, created_at, last_activity, expires_at, "
            "revoked_at) values ($1, $2, $2, $2, $2)",
            uid,
            long_ago,
        )
        lines = cli(report_db, "db", "maintain").splitlines()
        analyzed = {line.split()[1] for line in lines if line.startswith("analyzed ")}
        assert {"public.labs", "public.user_sessions", "auth.users"} <= analyzed
        assert lines[-1].startswith("deleted ") and int(lines[-1].split()[1]) >= 1
        assert not await conn.fetchval(
            "select count(*) from public.user_sessions where expires_at = $1", long_ago
        )
        last = await conn.fetchval(
            "select last_analyze from pg_stat_user_tables where relid = 'public.labs'::regclass"
        )
        assert last is not None
    finally:
        await conn.close()


async def test_labs_are_vacuumed_after_a_thousand_dead_rows_plus_one_percent(
    admin: asyncpg.Connection,
) -> None:
    options = await admin.fetchval(
        "select reloptions from pg_class where oid = 'public.labs'::regclass"
    )
    assert {
        "autovacuum_vacuum_threshold=1000",
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_analyze_threshold=1000",
        "autovacuum_analyze_scale_factor=0.02",
    } <= set(options)


async def test_counts_a_flush_cannot_write_are_kept_for_the_next(
    report_settings: Settings, report_db: Database
) -> None:
    # the database goes away between two flushes: nothing is lost, nothing counted twice
    conn = await owner(report_db)
    try:
        gone = await asyncpg.create_pool(report_db.dsn, min_size=1, max_size=1)
        await gone.close()
        counts = SearchCounts()
        for empty in (True, False, False):
            counts.record(empty)
        flusher = UsageFlusher(counts, Pool(gone, 1, 1.0, 1000))
        await flusher.flush()  # logged, not raised
        today = dt.datetime.now(dt.UTC).date()
        assert counts.take() == {today: [3, 1]}
        counts.give_back({today: [3, 1]})
        counts.record(True)
        before = await usage_today(conn)
        live = Pool(await asyncpg.create_pool(report_db.dsn, min_size=1, max_size=1), 1, 1.0, 1000)
        try:
            await UsageFlusher(counts, live).flush()
        finally:
            await live.close()
        after = await usage_today(conn)
        assert (after[0] - before[0], after[1] - before[1]) == (4, 2)
        assert counts.take() == {}
    finally:
        await conn.close()
