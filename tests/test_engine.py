"""The operation runner under abuse: one deadline per operation, documents refused before they
cost anything, the parse cache bounded by bytes, requests waiting their turn at the pool."""

from __future__ import annotations

import ast
import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest

import scriptlabs
from scriptlabs.config import Settings
from scriptlabs.graphql.document import Documents, over_token_limit
from scriptlabs.graphql.schema import build_schema
from tests.conftest import Api, User, error_codes, serve

BUDGET_MS = 300
SLOW_FILTER = '{title: {ilike: "%q%u%x%z%"}}'


@pytest.fixture(scope="module")
async def tight(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a small database budget per operation (STATEMENT_TIMEOUT_MS)."""
    async with serve(replace(settings, statement_timeout_ms=BUDGET_MS)) as c:
        yield c


@pytest.fixture(scope="module")
async def tight_unplanned(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    tuned = replace(settings, statement_timeout_ms=BUDGET_MS, graphql_planner=False)
    async with serve(tuned) as c:
        yield c


@pytest.fixture(scope="module")
async def big_catalogue(client: httpx.AsyncClient, admin: asyncpg.Connection) -> User:
    """A user with 80,000 labs, so that one slow filter takes tens of milliseconds."""
    user = await Api(client).sign_up()
    await admin.execute(
        "insert into public.labs (user_id, title, author)"
        " select $1::uuid, 'a long enough title number ' || g, 'author ' || (g % 97)"
        " from generate_series(1, 80000) g",
        user.id,
    )
    await admin.execute("analyze public.labs")
    return user


def _many_slow_counts(n: int) -> str:
    fields = " ".join(f"c{i}: labs(filter: {SLOW_FILTER}) {{ totalCount }}" for i in range(n))
    return "{ " + fields + " }"


async def _timed(c: httpx.AsyncClient, body: dict[str, object], token: str) -> tuple[float, dict]:
    started = time.monotonic()
    response = await c.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return time.monotonic() - started, response.json()


async def test_one_slow_count_fits_the_budget(
    tight: httpx.AsyncClient, big_catalogue: User
) -> None:
    # the premise of the tests below: each field alone fits the budget (no TIMEOUT); its
    # wall-clock time is not asserted, as it includes whatever else the machine is doing
    _, result = await _timed(tight, {"query": _many_slow_counts(1)}, big_catalogue.token)
    assert "errors" not in result, result
    assert result["data"]["c0"]["totalCount"] == 0


@pytest.mark.parametrize("planned", [True, False])
async def test_many_aliased_slow_fields_share_one_budget(
    tight: httpx.AsyncClient,
    tight_unplanned: httpx.AsyncClient,
    big_catalogue: User,
    planned: bool,
) -> None:
    c = tight if planned else tight_unplanned
    elapsed, result = await _timed(c, {"query": _many_slow_counts(60)}, big_catalogue.token)
    assert error_codes(result) == ["TIMEOUT"]
    assert result["data"] is None  # labs is non-null: the whole answer goes
    # one budget, not one per field (60 fields of tens of milliseconds each would take seconds)
    assert elapsed < 4 * BUDGET_MS / 1000 + 0.5


@pytest.mark.parametrize("planned", [True, False])
async def test_many_heavy_searches_share_one_budget_and_others_are_served(
    tight: httpx.AsyncClient,
    tight_unplanned: httpx.AsyncClient,
    big_catalogue: User,
    planned: bool,
) -> None:
    """A hostile document of 25 searches for a word in every lab, each counting and faceting
    all 80,000 matches: one budget for all of them, and another caller is answered as usual,
    during and after."""
    c = tight if planned else tight_unplanned
    search = (
        'searchLabs(query: "long title", first: 10) { totalCount edges { snippet }'
        " facets { byCategory { count } byStatus { count } byRating { count } } }"
    )
    query = "{ " + " ".join(f"s{i}: {search}" for i in range(25)) + " }"
    other = await Api(c).sign_up()
    hostile = [_timed(c, {"query": query}, big_catalogue.token) for _ in range(3)]
    ordinary = _timed(c, {"query": "{ labs(first: 1) { nodes { id } } }"}, other.token)
    *answers, (_, served) = await asyncio.gather(*hostile, ordinary)
    for elapsed, result in answers:
        assert error_codes(result) == ["TIMEOUT"]
        assert elapsed < 4 * BUDGET_MS / 1000 + 1.0
    assert served == {"data": {"labs": {"nodes": []}}}


async def test_a_mutation_out_of_time_writes_nothing(
    tight: httpx.AsyncClient, admin: asyncpg.Connection
) -> None:
    user = await Api(tight).sign_up()
    labs = [{"title": f"Lab {i}", "author": "Someone", "notes": "x" * 200} for i in range(1000)]
    fields = " ".join(f"i{i}: importLabs(labs: $l) {{ inserted }}" for i in range(60))
    query = f"mutation($l: [CreateLabInput!]!) {{ {fields} }}"
    _, result = await _timed(tight, {"query": query, "variables": {"l": labs}}, user.token)
    assert "TIMEOUT" in error_codes(result)
    assert result["data"] is None
    assert await admin.fetchval("select count(*) from public.labs where user_id = $1", user.id) == 0


async def test_the_deadline_leaves_the_connection_usable(
    tight: httpx.AsyncClient, big_catalogue: User
) -> None:
    for _ in range(3):
        await _timed(tight, {"query": _many_slow_counts(60)}, big_catalogue.token)
    _, result = await _timed(
        tight, {"query": "{ labs(first: 1) { nodes { id } } }"}, big_catalogue.token
    )
    assert "errors" not in result
    assert len(result["data"]["labs"]["nodes"]) == 1


# -- documents


def _hostile(i: int, size: int = 1024 * 1024 - 200) -> str:
    """A distinct document of about `size` bytes: many aliased fields."""
    head = f"query Q{i} {{ "
    field = "a: me { id } "
    return head + field * ((size - len(head)) // len(field)) + "}"


async def test_a_1_mib_document_is_refused_before_parsing(api: Api) -> None:
    query = _hostile(0)
    started = time.monotonic()
    response = await api.post(query)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert error_codes(response.json()) == ["QUERY_TOO_COMPLEX"]
    assert "tokens" in response.json()["errors"][0]["message"]
    assert "data" not in response.json()
    assert elapsed < 0.5  # the token count stops at the limit; parsing it whole takes seconds


async def test_the_token_limit_is_a_setting_and_introspection_passes(settings: Settings) -> None:
    from graphql import get_introspection_query

    introspection = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    async with serve(replace(settings, max_tokens=2000)) as c:
        response = await c.post("/graphql", json={"query": introspection})
        assert response.status_code == 200
        assert "errors" not in response.json()
        fields = " ".join(f"f{i}: __typename" for i in range(700))  # 2,100 tokens
        refused = await c.post("/graphql", json={"query": "{ " + fields + " }"})
        assert error_codes(refused.json()) == ["QUERY_TOO_COMPLEX"]


async def test_memory_stays_flat_over_many_distinct_hostile_documents(
    settings: Settings,
) -> None:
    schema = build_schema(settings)
    documents = Documents(schema._schema, schema.validation_rules, max_tokens=15_000)
    # under the token limit, so each one is parsed in full (in a worker thread: over 16 KiB)
    hostile = [_hostile(i, size=20_000) for i in range(40)]
    assert not over_token_limit(hostile[0], 15_000)
    for query in hostile[:8]:  # warm up: the worker threads, graphql-core's method caches
        await documents.get(query)
    tracemalloc.start()
    try:
        sizes = []
        for batch in (hostile[8:20], hostile[20:40]):
            for query in batch:
                result = await documents.get(query)
                assert result.errors  # refused (too many aliases), after a full parse
            del result
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert len(documents) == 0  # refused documents are never cached
    grown = sizes[1] - sizes[0]  # twenty more documents, nothing more kept
    # each of these syntax trees takes about a megabyte while it lives: none is kept
    assert grown < 512 * 1024, grown


async def test_the_document_cache_is_bounded_by_bytes(settings: Settings) -> None:
    schema = build_schema(settings)
    documents = Documents(
        schema._schema, schema.validation_rules, max_tokens=15_000, max_bytes=1024 * 1024
    )
    for i in range(200):
        fields = " ".join(f"f{j}_{i}: __typename" for j in range(100))
        await documents.get("{ " + fields + " }")
    assert documents.cached_bytes <= 1024 * 1024
    assert 0 < len(documents) < 200


async def test_a_document_is_parsed_once_per_request(api: Api, settings: Settings) -> None:
    import graphql.language.parser as parser_module

    calls = 0
    original = parser_module.Parser.parse_document

    def counting(self: parser_module.Parser) -> object:
        nonlocal calls
        calls += 1
        return original(self)

    user = await api.sign_up()
    parser_module.Parser.parse_document = counting  # type: ignore[method-assign]
    try:
        query = "query Once { labs(first: 1) { nodes { id } } me { id } }"
        for _ in range(3):
            await api.ok(query, token=user.token)
    finally:
        parser_module.Parser.parse_document = original  # type: ignore[method-assign]
    assert calls == 1  # parsed by the first request, from the cache after


# -- the pool


async def test_requests_wait_their_turn_then_get_503_with_retry_after(
    settings: Settings, admin: asyncpg.Connection
) -> None:
    tuned = replace(settings, db_pool_min=1, db_pool_max=1, db_pool_wait_seconds=1)
    async with serve(tuned) as c:
        api = Api(c)
        user = await api.sign_up()
        # hold the one connection: a mutation blocked on a row lock the owner holds
        lab = (
            await api.ok(
                'mutation { createLab(input: {title: "T", author: "A"}) { id } }', token=user.token
            )
        )["createLab"]["id"]
        tx = admin.transaction()
        await tx.start()
        try:
            await admin.execute("select 1 from public.labs where id = $1 for update", lab)
            blocked = asyncio.create_task(
                api.post(
                    'mutation($id: UUID!) { updateLab(id: $id, input: {title: "U"}) { id } }',
                    {"id": lab},
                    token=user.token,
                )
            )
            await asyncio.sleep(0.3)
            started = time.monotonic()
            waited = await api.post("{ labs { nodes { id } } }", token=user.token)
            assert waited.status_code == 503
            assert waited.headers["retry-after"] == "1"
            assert error_codes(waited.json()) == ["INTERNAL_SERVER_ERROR"]
            assert 0.9 < time.monotonic() - started < 3
        finally:
            await tx.rollback()
        assert (await blocked).status_code == 200
        assert (await api.post("{ labs { nodes { id } } }", token=user.token)).status_code == 200


async def test_a_document_planned_before_still_checks_the_session(api: Api) -> None:
    user = await api.sign_up()
    query = "query Again { labs(first: 1) { nodes { id } } }"
    for _ in range(2):  # the second run reuses the statement kept with the document
        await api.ok(query, token=user.token)
    await api.ok("mutation { signOut }", token=user.token)
    response = await api.post(query, token=user.token)
    assert response.status_code == 401
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]


async def test_a_statement_kept_for_one_caller_answers_another_with_their_own_rows(
    settings: Settings,
) -> None:
    # one connection: every request reuses the statement prepared on it by the first
    async with serve(replace(settings, db_pool_min=1, db_pool_max=1)) as c:
        api = Api(c)
        users = [await api.sign_up() for _ in range(2)]
        for user in users:
            await api.ok(
                'mutation($t: String!) { createLab(input: {title: $t, author: "A"}) { id } }',
                {"t": f"of {user.email}"},
                token=user.token,
            )
        for _ in range(8):  # past PostgreSQL's five custom plans, into the generic one
            for user in users:
                data = await api.ok("{ labs { nodes { title } } }", token=user.token)
                assert [n["title"] for n in data["labs"]["nodes"]] == [f"of {user.email}"]


async def test_a_failure_at_commit_is_an_internal_error_with_a_request_id(
    api: Api, admin: asyncpg.Connection
) -> None:
    # a deferred check that fails only when the transaction commits: an error outside any
    # field, the client's fault in no way
    await admin.execute(
        """
        create or replace function public.test_refuse_at_commit() returns trigger
        language plpgsql as $$ begin raise exception 'refused at commit'; end $$;
        create constraint trigger test_refuse_at_commit after insert on public.labs
        deferrable initially deferred for each row
        when (new.title = 'refused at commit')
        execute function public.test_refuse_at_commit();
        """
    )
    try:
        user = await api.sign_up()
        result = await api.gql(
            'mutation { createLab(input: {title: "refused at commit", author: "A"}) { id } }',
            token=user.token,
        )
    finally:
        await admin.execute(
            "drop trigger test_refuse_at_commit on public.labs;"
            " drop function public.test_refuse_at_commit()"
        )
    assert result["data"] is None
    [error] = result["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert len(error["extensions"]["requestId"]) == 32
    assert "refused" not in error["message"]
    count = await admin.fetchval("select count(*) from public.labs where user_id = $1", user.id)
    assert count == 0


# the request path: everything an HTTP or WebSocket request runs through but the runner;
# db/ owns the transaction's mechanics, ops/ and the demo loader are command-line tools
REQUEST_PATH = ("http", "graphql", "auth", "labs", "realtime", "telemetry")
RUNNER = "scriptlabs/graphql/execution.py"
COMMANDS = ("scriptlabs/labs/demo.py",)
TRANSACTION_CALLS = frozenset({"begin", "commit", "rollback", "transaction"})


def _transaction_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        ends = name == "end" and any(k.arg == "commit" for k in node.keywords)
        if name in TRANSACTION_CALLS or ends:
            found.append(f"{path}:{node.lineno} .{name}(")
    return found


def test_only_the_runner_begins_or_ends_a_transaction_on_the_request_path() -> None:
    package = Path(scriptlabs.__file__).parent
    root = package.parent
    offenders = [
        call
        for folder in REQUEST_PATH
        for path in sorted((package / folder).rglob("*.py"))
        if str(path.relative_to(root)) not in (RUNNER, *COMMANDS)
        for call in _transaction_calls(path)
    ]
    assert offenders == []
    # and the runner does (the check sees what it looks for)
    assert _transaction_calls(root / RUNNER)


def test_db_imports_nothing_from_auth() -> None:
    package = Path(scriptlabs.__file__).parent
    imported = [
        f"{path.name}: {name}"
        for path in sorted((package / "db").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
        )
        if name.startswith("scriptlabs.auth")
    ]
    assert imported == []
