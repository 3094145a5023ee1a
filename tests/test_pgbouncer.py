"""The API behind a real PgBouncer in transaction mode, with fewer server connections than the
API's pool has: every flow works when its statements land on whatever server connection is
free, and nothing one operation leaves on a server connection troubles the next.

The API runs as README ("Behind PgBouncer") says: DATABASE_URL through PgBouncer,
DB_STATEMENT_CACHE_SIZE=0. Migrations go straight to PostgreSQL (the owner's URL), as in
docker-compose.yml.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest

from scriptlabs.config import Settings
from tests.conftest import Api, Database, User, code, serve
from tests.pgbouncer import PgBouncer, PgBouncerMissing, Upstream, find_pgbouncer

POOL_SIZE = 3  # PgBouncer's server connections; the API's pool has 10 client connections

LAB_FIELDS = "id title author category publicationYear isbn rating readingStatus notes"
PAGE = f"""
query($first: Int, $after: String, $last: Int, $before: String) {{
  labs(first: $first, after: $after, last: $last, before: $before,
       orderBy: [{{field: TITLE, direction: ASC}}]) {{
    totalCount
    nodes {{ {LAB_FIELDS} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}"""
IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { inserted ids } }"
COUNT = "{ labs { totalCount } }"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pgbouncer(database: Database) -> Iterator[PgBouncer]:
    """PgBouncer (transaction mode, POOL_SIZE server connections) before the test database."""
    try:
        find_pgbouncer()
    except PgBouncerMissing as exc:
        if in_ci():  # dev.sh installs it: CI must not pass by skipping
            pytest.fail(f"{exc}; CI runs these tests")
        pytest.skip(str(exc))
    upstream = Upstream.from_dsn(database.dsn)
    with PgBouncer(upstream, pool_size=POOL_SIZE, users=[upstream.user]) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def bounced_settings(settings: Settings, pgbouncer: PgBouncer) -> Settings:
    return replace(
        settings,
        database_url=pgbouncer.dsn(pgbouncer.upstream.user),
        db_statement_cache_size=0,
        db_pool_min=1,
        db_pool_max=10,
    )


@pytest.fixture(scope="session")
async def bounced_client(bounced_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(bounced_settings) as c:
        yield c


@pytest.fixture(scope="session")
async def bounced_unplanned_client(
    bounced_settings: Settings,
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(replace(bounced_settings, graphql_planner=False)) as c:
        yield c


@pytest.fixture
def api(bounced_client: httpx.AsyncClient) -> Api:
    return Api(bounced_client)


@pytest.fixture
def unplanned(bounced_unplanned_client: httpx.AsyncClient) -> Api:
    return Api(bounced_unplanned_client)


def lab(n: int) -> dict[str, Any]:
    return {
        "title": f"Title {n:02d}",
        "author": f"Author {n % 3}",
        "category": ["Physics", "Chemistry", None][n % 3],
        "rating": n % 5 + 1,
        "readingStatus": ["TO_READ", "READING", "READ"][n % 3],
        "notes": f"notes about nebula {n}" if n % 2 else None,
    }


async def add_labs(api: Api, user: User, count: int) -> list[str]:
    data = await api.ok(IMPORT, {"labs": [lab(n) for n in range(count)]}, token=user.token)
    assert data["importLabs"]["inserted"] == count
    ids: list[str] = data["importLabs"]["ids"]
    return ids


async def walk(api: Api, user: User, size: int, *, backwards: bool = False) -> list[str]:
    """Every title, page by page through the cursors (from the end when `backwards`)."""
    titles: list[str] = []
    cursor: str | None = None
    while True:
        if backwards:
            variables = {"last": size, "before": cursor}
        else:
            variables = {"first": size, "after": cursor}
        page = (await api.ok(PAGE, variables, token=user.token))["labs"]
        got = [node["title"] for node in page["nodes"]]
        titles = got + titles if backwards else titles + got
        info = page["pageInfo"]
        if not (info["hasPreviousPage"] if backwards else info["hasNextPage"]):
            return titles
        cursor = info["startCursor"] if backwards else info["endCursor"]


async def test_sign_up_sign_in_refresh_and_sign_out(api: Api) -> None:
    user = await api.sign_up()
    signed_in = await api.ok(
        "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) {"
        " accessToken refreshToken user { email } } }",
        {"e": user.email, "p": user.password},
    )
    assert signed_in["signIn"]["user"] == {"email": user.email}
    refreshed = await api.ok(
        "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
        {"t": signed_in["signIn"]["refreshToken"]},
    )
    token = refreshed["refreshSession"]["accessToken"]
    assert (await api.ok("{ me { email } }", token=token))["me"] == {"email": user.email}
    sessions = (await api.ok("{ sessions { current } }", token=token))["sessions"]
    assert sorted(s["current"] for s in sessions) == [False, True]

    assert (await api.ok("mutation { signOut }", token=token))["signOut"] is True
    # at once, on whatever server connection the next request gets: planned and not
    assert (await api.post(COUNT, token=token)).status_code == 401
    assert (await api.post("{ me { email } }", token=token)).status_code == 401
    assert (await api.post(COUNT, token=user.token)).status_code == 200  # the other session


@pytest.mark.parametrize("path", ["planned", "unplanned"])
async def test_lab_writes_and_reads(api: Api, unplanned: Api, path: str) -> None:
    client = api if path == "planned" else unplanned
    user = await client.sign_up()
    created = await client.ok(
        'mutation { createLab(input: {title: " Dune ", author: "Frank Herbert",'
        ' isbn: "978-0-441-17271-9", rating: 4}) { id title isbn } }',
        token=user.token,
    )
    lab_id = created["createLab"]["id"]
    assert created["createLab"] == {"id": lab_id, "title": "Dune", "isbn": "9780441172719"}
    updated = await client.ok(
        "mutation($id: UUID!) { updateLab(id: $id, input: {rating: 5, readingStatus: READ})"
        " { rating readingStatus } }",
        {"id": lab_id},
        token=user.token,
    )
    assert updated["updateLab"] == {"rating": 5, "readingStatus": "READ"}
    one = await client.ok(
        "query($id: UUID!) { lab(id: $id) { title rating } }", {"id": lab_id}, token=user.token
    )
    assert one["lab"] == {"title": "Dune", "rating": 5}

    ids = await add_labs(client, user, 11)
    expected = sorted(["Dune", *(lab(n)["title"] for n in range(11))])
    assert await walk(client, user, 3) == expected
    assert await walk(client, user, 4, backwards=True) == expected

    deleted = await client.ok(
        "mutation($id: UUID!) { deleteLab(id: $id) }", {"id": ids[0]}, token=user.token
    )
    assert deleted["deleteLab"] == ids[0]
    assert (await client.ok(COUNT, token=user.token))["labs"]["totalCount"] == 11
    gone = await client.ok(
        "query($id: UUID!) { lab(id: $id) { id } }", {"id": ids[0]}, token=user.token
    )
    assert gone["lab"] is None


async def test_search_with_facets_and_stats_on_both_paths(api: Api, unplanned: Api) -> None:
    user = await api.sign_up()
    await add_labs(api, user, 12)
    search = """
    query($q: String!, $after: String) {
      searchLabs(query: $q, first: 2, after: $after) {
        totalCount
        edges { cursor snippet node { title } }
        pageInfo { hasNextPage endCursor }
        facets { byCategory { category count } byStatus { status count }
                 byRating { rating count } }
      }
    }"""
    stats = (
        "{ labStats { totalLabs labsRead labsReading labsToRead averageRating totalAuthors"
        " totalCategories byCategory { category count } ratingDistribution { rating count } } }"
    )
    for client in (api, unplanned):
        titles: list[str] = []
        after = None
        while True:
            found = (await client.ok(search, {"q": "nebula", "after": after}, token=user.token))[
                "searchLabs"
            ]
            assert found["totalCount"] == 6
            assert found["facets"]["byCategory"] == [
                {"category": "Chemistry", "count": 2},
                {"category": "Physics", "count": 2},
            ]
            assert sum(s["count"] for s in found["facets"]["byStatus"]) == 6
            assert all("<mark>nebula</mark>" in e["snippet"] for e in found["edges"])
            titles += [e["node"]["title"] for e in found["edges"]]
            if not found["pageInfo"]["hasNextPage"]:
                break
            after = found["pageInfo"]["endCursor"]
        assert sorted(titles) == [f"Title {n:02d}" for n in range(1, 12, 2)]

        figures = (await client.ok(stats, token=user.token))["labStats"]
        assert figures["totalLabs"] == 12
        assert (figures["labsRead"], figures["labsReading"], figures["labsToRead"]) == (4, 4, 4)
        assert figures["totalAuthors"] == 3
        assert figures["byCategory"] == [
            {"category": "Chemistry", "count": 4},
            {"category": "Physics", "count": 4},
        ]
        assert sum(r["count"] for r in figures["ratingDistribution"]) == 12


async def test_a_failing_mutation_writes_nothing(api: Api) -> None:
    user = await api.sign_up()
    await add_labs(api, user, 2)
    both = await api.gql(
        'mutation { a: createLab(input: {title: "Kept?", author: "A"}) { id }'
        ' b: createLab(input: {title: "Bad", author: "B", rating: 7}) { id } }',
        token=user.token,
    )
    assert code(both) == "BAD_USER_INPUT"
    imported = await api.gql(
        IMPORT, {"labs": [lab(20), lab(21), {"title": "", "author": "x"}]}, token=user.token
    )
    assert code(imported) == "BAD_USER_INPUT"
    assert (await api.ok(COUNT, token=user.token))["labs"]["totalCount"] == 2


async def test_fifty_concurrent_reads_share_three_server_connections(
    api: Api, unplanned: Api, pgbouncer: PgBouncer
) -> None:
    users = [await api.sign_up() for _ in range(3)]
    ids = {user.id: await add_labs(api, user, 5 + i) for i, user in enumerate(users)}

    async def read(k: int) -> None:
        user = users[k % len(users)]
        client = api if k % 2 else unplanned
        count = len(ids[user.id])
        match k % 5:
            case 0:
                page = (await client.ok(PAGE, {"first": 2}, token=user.token))["labs"]
                assert page["totalCount"] == count
                assert [n["title"] for n in page["nodes"]] == ["Title 00", "Title 01"]
            case 1:
                one = await client.ok(
                    "query($id: UUID!) { lab(id: $id) { id } }",
                    {"id": ids[user.id][-1]},
                    token=user.token,
                )
                assert one["lab"] == {"id": ids[user.id][-1]}
            case 2:
                found = await client.ok(
                    '{ searchLabs(query: "title") { totalCount } }', token=user.token
                )
                assert found["searchLabs"]["totalCount"] == count
            case 3:
                figures = await client.ok("{ labStats { totalLabs } }", token=user.token)
                assert figures["labStats"]["totalLabs"] == count
            case _:
                assert (await client.ok("{ me { id } }", token=user.token))["me"] == {"id": user.id}

    await asyncio.gather(*(read(k) for k in range(50)))

    dbname = pgbouncer.upstream.dbname
    servers = [s for s in pgbouncer.show("servers") if s["database"] == dbname]
    pooled = [
        c
        for c in pgbouncer.show("clients")
        if c["database"] == dbname and c["application_name"] == "scriptlabs"
    ]
    assert len(servers) == POOL_SIZE, servers
    # the two APIs' pools (up to DB_POOL_MAX each), on fewer server connections
    assert len(pooled) > POOL_SIZE, pooled


async def test_the_api_leaves_no_driver_statements_on_server_connections(
    bounced_settings: Settings, pgbouncer: PgBouncer
) -> None:
    # Every client of `_single` shares one server connection: a named protocol-level
    # statement left on it by one would collide with another process's of the same name.
    single = replace(bounced_settings, database_url=pgbouncer.single_dsn(pgbouncer.upstream.user))
    async with serve(single) as client:
        api = Api(client)
        user = await api.sign_up()
        await add_labs(api, user, 3)
        assert (await api.ok(COUNT, token=user.token))["labs"]["totalCount"] == 3
    conn = await asyncpg.connect(single.database_url, statement_cache_size=0)
    try:
        left = await conn.fetch("select name from pg_prepared_statements where not from_sql")
    finally:
        await conn.close()
    assert [row["name"] for row in left] == []


def test_several_processes_start_behind_one_server_connection(
    bounced_settings: Settings, pgbouncer: PgBouncer
) -> None:
    # as `scriptlabs serve --workers 2` does: each process checks for pending migrations
    check = (
        "import asyncio, sys\n"
        "from scriptlabs.db.migrate import pending_migrations\n"
        "assert asyncio.run(pending_migrations(sys.argv[1])) == []\n"
    )
    dsn = pgbouncer.single_dsn(pgbouncer.upstream.user)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", check, dsn], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr


async def test_lab_events_arrive_behind_pgbouncer_with_a_direct_listen_url(
    bounced_settings: Settings, settings: Settings
) -> None:
    # requests through the pooler, LISTEN straight to PostgreSQL (DATABASE_LISTEN_URL)
    from tests.test_subscriptions import event, running, socket, subscribe

    direct = replace(bounced_settings, database_listen_url=settings.database_url)
    async with running(direct) as s, httpx.AsyncClient(base_url=s.http) as c:
        api = Api(c)
        user = await api.sign_up()
        async with socket(s.ws, user.token) as ws:
            await subscribe(ws)
            data = await api.ok(
                'mutation { createLab(input: {title: "Pooled", author: "A"}) { id } }',
                token=user.token,
            )
            got = await event(ws)
            assert (got["type"], got["id"]) == ("CREATED", data["createLab"]["id"])
            assert got["lab"]["title"] == "Pooled"  # read through the pooler, under RLS
