"""Persisted queries: Apollo's Automatic Persisted Queries (the default) and
PERSISTED_QUERIES=only with documents registered by `scriptlabs persisted add`, through
hand-made requests. tests/test_apollo.py runs a real Apollo Client against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from graphql import parse

from scriptlabs.config import Settings, SettingsError
from scriptlabs.db.operation import Pool
from scriptlabs.errors import Code
from scriptlabs.http.persisted import AutomaticPersistedQueries, PersistedError, RegisteredQueries
from scriptlabs.ops.persisted import apollo_client_text
from tests.conftest import Api, Database, code, serve

GRAPHQL_RESPONSE = "application/graphql-response+json"
LABS = "query Labs($first: Int) { labs(first: $first) { totalCount nodes { title } } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unique(query: str) -> str:
    """`query` with a comment of its own, so its hash is new to the API's store."""
    return f"# {uuid.uuid4().hex}\n{query}"


def ext(digest: str, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


async def post(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    token: str | None = None,
    accept: str | None = None,
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if accept:
        headers["accept"] = accept
    return await client.post("/graphql", json=body, headers=headers)


async def get(
    client: httpx.AsyncClient,
    digest: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    query: str | None = None,
) -> httpx.Response:
    params = {"extensions": orjson.dumps(ext(digest)).decode()}
    if variables is not None:
        params["variables"] = orjson.dumps(variables).decode()
    if query is not None:
        params["query"] = query
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.get("/graphql", params=params, headers=headers)


def not_found(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert response.headers["cache-control"] == "private, no-cache, must-revalidate"


# -- automatic persisted queries


async def test_post_hash_alone_is_not_found_until_the_document_came_with_it(api: Api) -> None:
    user = await api.sign_up()
    query = unique(LABS)
    digest = sha(query)
    not_found(await post(api.client, {"extensions": ext(digest)}, user.token))
    # Apollo Client's second try: the document and its hash
    registered = await post(
        api.client,
        {"query": query, "variables": {"first": 1}, "extensions": ext(digest)},
        user.token,
    )
    assert registered.json() == {"data": {"labs": {"totalCount": 0, "nodes": []}}}
    again = await post(
        api.client, {"extensions": ext(digest), "variables": {"first": 2}}, user.token
    )
    assert again.status_code == 200
    assert again.json() == {"data": {"labs": {"totalCount": 0, "nodes": []}}}


async def test_not_found_is_200_even_for_graphql_response_json(api: Api) -> None:
    response = await post(
        api.client, {"extensions": ext(sha(unique(LABS)))}, accept=GRAPHQL_RESPONSE
    )
    not_found(response)
    assert response.headers["content-type"] == GRAPHQL_RESPONSE


async def test_get_by_hash_with_variables_and_cache_headers(api: Api) -> None:
    user = await api.sign_up()
    await api.ok(
        'mutation { createLab(input: {title: "Dune", author: "Herbert"}) { id } }', token=user.token
    )
    query = unique(LABS)
    digest = sha(query)
    first = await get(api.client, digest, {"first": 5}, user.token)
    not_found(first)
    assert "query" not in str(first.request.url.params)
    await post(
        api.client,
        {"query": query, "variables": {"first": 5}, "extensions": ext(digest)},
        user.token,
    )
    response = await get(api.client, digest, {"first": 5}, user.token)
    assert response.json() == {"data": {"labs": {"totalCount": 1, "nodes": [{"title": "Dune"}]}}}
    # a signed-in caller's data: never in a shared cache, and keyed by the token anyway
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["vary"] == "Accept, Authorization"
    # the same hash without a token: an anonymous answer
    anonymous = await get(api.client, digest, {"first": 5})
    assert code(anonymous.json()) == "UNAUTHENTICATED"
    assert anonymous.headers["cache-control"] == "private, no-store"


async def test_anonymous_answer_without_errors_may_be_cached_publicly(api: Api) -> None:
    query = unique("{ me { id } }")
    await post(api.client, {"query": query, "extensions": ext(sha(query))})
    response = await get(api.client, sha(query))
    assert response.json() == {"data": {"me": None}}
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["vary"] == "Accept, Authorization"


async def test_post_answers_carry_no_cache_headers(api: Api) -> None:
    response = await post(api.client, {"query": "{ me { id } }"})
    assert "cache-control" not in response.headers


async def test_hash_that_does_not_match_the_document_is_bad_user_input(api: Api) -> None:
    query = unique(LABS)
    wrong = sha(query + " ")
    body = {"query": query, "extensions": ext(wrong)}
    response = await post(api.client, body)
    assert response.status_code == 200
    assert code(response.json()) == "BAD_USER_INPUT"
    assert "data" not in response.json()
    strict = await post(api.client, body, accept=GRAPHQL_RESPONSE)
    assert strict.status_code == 400
    assert code(strict.json()) == "BAD_USER_INPUT"
    not_found(await post(api.client, {"extensions": ext(wrong)}))  # nothing was kept


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 2, "sha256Hash": "a" * 64},
        {"version": "1", "sha256Hash": "a" * 64},
        {"version": True, "sha256Hash": "a" * 64},
        {"sha256Hash": "a" * 64},
        {"version": 1, "sha256Hash": "A" * 64},
        {"version": 1, "sha256Hash": "a" * 63},
        {"version": 1, "sha256Hash": "g" * 64},
        {"version": 1, "sha256Hash": 5},
        {"version": 1},
        "abc",
        [1],
    ],
)
async def test_malformed_persisted_query_is_bad_user_input(api: Api, persisted: Any) -> None:
    response = await post(api.client, {"extensions": {"persistedQuery": persisted}})
    assert response.status_code == 200, response.text
    assert code(response.json()) == "BAD_USER_INPUT"


async def test_document_that_does_not_validate_is_not_kept(api: Api) -> None:
    query = unique("{ labs { nope } }")
    response = await post(api.client, {"query": query, "extensions": ext(sha(query))})
    assert response.json()["errors"] and "data" not in response.json()
    not_found(await post(api.client, {"extensions": ext(sha(query))}))
    garbage = unique("{ labs {")
    await post(api.client, {"query": garbage, "extensions": ext(sha(garbage))})
    not_found(await post(api.client, {"extensions": ext(sha(garbage))}))


async def test_mutation_by_hash_over_get_is_refused(api: Api) -> None:
    user = await api.sign_up()
    mutation = unique('mutation { createLab(input: {title: "T", author: "A"}) { id } }')
    stored = await post(
        api.client, {"query": mutation, "extensions": ext(sha(mutation))}, user.token
    )
    assert "errors" not in stored.json(), stored.text
    response = await get(api.client, sha(mutation), token=user.token)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    count = await api.ok("{ labs { totalCount } }", token=user.token)
    assert count["labs"]["totalCount"] == 1  # the GET created nothing


async def test_get_with_document_and_hash_registers_it(api: Api) -> None:
    query = unique("{ me { email } }")
    response = await get(api.client, sha(query), query=query)
    assert response.json() == {"data": {"me": None}}
    assert (await get(api.client, sha(query))).json() == {"data": {"me": None}}


def test_store_is_bounded_by_count_and_by_size() -> None:
    store = AutomaticPersistedQueries(max_entries=3, max_bytes=100)
    for i in range(5):
        store.keep(f"{i:064x}", f"{{ me {{ id }} }} # {i}")
    assert len(store) == 3
    assert store.stored_bytes <= 100
    store.keep("f" * 64, "x" * 90)  # pushes out the others by size
    assert len(store) == 1
    assert store.stored_bytes == 90
    store.keep("e" * 64, "x" * 101)  # larger than the whole store: not kept
    assert len(store) == 1


async def test_many_hostile_registrations_evict_old_ones_and_others_are_served(
    settings: Settings,
) -> None:
    small = replace(settings, apq_max_entries=20, apq_max_bytes=64 * 1024)
    async with serve(small) as client:
        api = Api(client)
        queries = [unique("{ me { id } }") for _ in range(200)]

        async def register(query: str) -> int:
            response = await post(client, {"query": query, "extensions": ext(sha(query))})
            return response.status_code

        statuses = await asyncio.gather(*(register(q) for q in queries), api.sign_up())
        assert statuses[:-1] == [200] * 200
        user = statuses[-1]
        # the store kept the 20 most recent, whichever finished last
        answers = [(await post(client, {"extensions": ext(sha(q))})).json() for q in queries]
        assert sum(a == {"data": {"me": None}} for a in answers) == 20
        assert sum(code(a) == "PERSISTED_QUERY_NOT_FOUND" for a in answers) == 180
        assert (await api.ok("{ me { email } }", token=user.token))["me"]["email"] == user.email  # type: ignore[union-attr]


# -- PERSISTED_QUERIES=only


def scriptlabs(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database.dsn,
        "DATABASE_ADMIN_URL": database.admin_dsn,
        "JWT_SECRET": "x" * 32,
    }
    return subprocess.run(
        [sys.executable, "-m", "scriptlabs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def only_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(
        replace(
            settings,
            persisted_queries="only",
            persisted_reload_seconds=0,
            persisted_refresh_seconds=0,
        )
    ) as c:
        yield c


def test_persisted_queries_setting() -> None:
    assert Settings.from_env({}).persisted_queries == "apq"
    assert Settings.from_env({"PERSISTED_QUERIES": "only"}).persisted_queries == "only"
    with pytest.raises(SettingsError, match="PERSISTED_QUERIES"):
        Settings.from_env({"PERSISTED_QUERIES": "some"})


async def test_only_mode_runs_registered_documents_and_refuses_others(
    database: Database, only_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    text = (
        f"# {marker}\nquery Me {{ me {{ id email }} }}\n"
        'query Count { labs(filter: {title: {eq: "x"}}) { totalCount } }\n'
    )
    path = tmp_path / "app.graphql"
    path.write_text(text)
    added = scriptlabs(database, "persisted", "add", str(path))
    assert added.returncode == 0, added.stderr
    apollo = apollo_client_text(parse(text))
    assert added.stdout.splitlines() == [
        f"{sha(text)}\t{path}\tas written",
        f"{sha(apollo)}\t{path}\tas Apollo Client sends it",
    ]
    listed = scriptlabs(database, "persisted", "list")
    assert sha(text) in listed.stdout and sha(apollo) in listed.stdout

    api = Api(only_client)
    user_response = await post(only_client, {"query": text, "operationName": "Me"})
    assert user_response.json() == {"data": {"me": None}}
    by_hash = await post(only_client, {"extensions": ext(sha(apollo)), "operationName": "Me"})
    assert by_hash.json() == {"data": {"me": None}}
    with_both = await post(
        only_client, {"query": text, "extensions": ext(sha(text)), "operationName": "Me"}
    )
    assert with_both.json() == {"data": {"me": None}}

    # anything else, even sign-up, with or without a correct hash: FORBIDDEN
    other = "{ me { id } }"
    for body in (
        {"query": other},
        {"query": other, "extensions": ext(sha(other))},
        {"extensions": ext(sha(other))},
    ):
        response = await post(only_client, body)
        assert response.status_code == 200
        assert code(response.json()) == "FORBIDDEN", body
        strict = await post(only_client, body, accept=GRAPHQL_RESPONSE)
        assert strict.status_code == 403
    introspection = await post(only_client, {"query": "{ __schema { queryType { name } } }"})
    assert code(introspection.json()) == "FORBIDDEN"
    mismatch = await post(only_client, {"query": text, "extensions": ext(sha(other))})
    assert code(mismatch.json()) == "BAD_USER_INPUT"
    with pytest.raises(AssertionError):
        await api.sign_up()

    removed = scriptlabs(database, "persisted", "remove", sha(text), sha(apollo))
    assert removed.stdout.strip() == "removed 2 of 2"
    gone = await post(only_client, {"query": text, "operationName": "Me"})
    assert code(gone.json()) == "FORBIDDEN"


def test_persisted_add_refuses_a_document_that_does_not_validate(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "bad.graphql"
    path.write_text("{ labs { nope } }")
    result = scriptlabs(database, "persisted", "add", str(path))
    assert result.returncode == 2
    assert "does not validate" in result.stderr


def test_apollo_form_matches_graphql_js_print() -> None:
    # graphql-js 16.15 `print(addTypenameToDocument(gql(text)))`, as Apollo Client 4 sends it
    text = (
        "# labs\nquery Labs($first: Int = 5, $f: LabFilter) {\n"
        "  labs(first: $first, filter: $f, orderBy: [{field: TITLE, direction: DESC}]) {\n"
        "    totalCount nodes { ...LabParts title @include(if: true) } pageInfo { endCursor }\n"
        '  }\n  searchLabs(query: "dune \\"x\\"") { edges { node { id } } }\n}\n'
        "fragment LabParts on Lab { id author }\n"
    )
    expected = (
        "query Labs($first: Int = 5, $f: LabFilter) {\n"
        "  labs(first: $first, filter: $f, orderBy: [{field: TITLE, direction: DESC}]) {\n"
        "    totalCount\n    nodes {\n      ...LabParts\n      title @include(if: true)\n"
        "      __typename\n    }\n    pageInfo {\n      endCursor\n      __typename\n    }\n"
        "    __typename\n  }\n"
        '  searchLabs(query: "dune \\"x\\"") {\n    edges {\n      node {\n        id\n'
        "        __typename\n      }\n      __typename\n    }\n    __typename\n  }\n}\n\n"
        "fragment LabParts on Lab {\n  id\n  author\n  __typename\n}"
    )
    assert apollo_client_text(parse(text)) == expected


async def test_random_hashes_in_only_mode_read_the_table_at_most_once_per_interval(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "one.graphql"
    text = f"# {uuid.uuid4().hex}\n{{ me {{ id }} }}"
    path.write_text(text)
    assert scriptlabs(database, "persisted", "add", str(path)).returncode == 0
    pool = Pool(await asyncpg.create_pool(database.dsn, min_size=1, max_size=2), 2, 5.0, 5000)
    try:
        registry = RegisteredQueries(pool, reload_seconds=60, refresh_seconds=60)

        async def hostile(i: int) -> Code:
            try:
                await registry.resolve(None, ext(sha(f"{i} {uuid.uuid4()}")))
            except PersistedError as exc:
                return exc.code
            raise AssertionError("an unregistered hash ran")

        codes = await asyncio.gather(*(hostile(i) for i in range(500)))
        assert set(codes) == {Code.FORBIDDEN}
        assert registry.loads == 1  # the first request's load; every miss after it waits
        resolved = await registry.resolve(None, ext(sha(text)))
        assert resolved.query == text
        assert (await registry.resolve(text, None)).query == text
        assert registry.loads == 1
    finally:
        await pool.close()


async def test_document_over_the_token_limit_is_refused_and_not_kept(api: Api) -> None:
    query = unique("{ " + " ".join(f"a{i}: me {{ id }}" for i in range(4000)) + " }")
    response = await post(api.client, {"query": query, "extensions": ext(sha(query))})
    assert code(response.json()) == "QUERY_TOO_COMPLEX"
    not_found(await post(api.client, {"extensions": ext(sha(query))}))
    huge = {"query": "#" + "x" * (1024 * 1024), "extensions": ext("a" * 64)}
    assert (await post(api.client, huge)).status_code == 413


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role"])
async def test_request_roles_can_neither_read_nor_list_registered_documents(
    admin: asyncpg.Connection, role: str
) -> None:
    for statement in (
        "select count(*) from scriptlabs_private.persisted_queries",
        "select * from scriptlabs_private.persisted_documents()",
        "insert into scriptlabs_private.persisted_queries (hash, document) values ('a', 'b')",
    ):
        async with admin.transaction():
            await admin.execute("select set_config('role', $1, true)", role)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await admin.execute(statement)


async def test_the_login_role_reads_registered_documents_only_through_the_function(
    settings: Settings,
) -> None:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("select * from scriptlabs_private.persisted_queries")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("delete from scriptlabs_private.persisted_queries")
        rows = await conn.fetch("select * from scriptlabs_private.persisted_documents()")
        assert all(r["hash"] == sha(r["document"]) for r in rows)
    finally:
        await conn.close()


async def test_a_row_whose_hash_is_not_its_documents_cannot_be_stored(
    admin: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await admin.execute(
            "insert into scriptlabs_private.persisted_queries (hash, document) values ($1, $2)",
            sha("{ me { id } }"),
            "{ me { email } }",
        )


async def test_only_mode_serves_the_operations_of_an_apollo_manifest(
    database: Database, only_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = f"query Mine{uuid.uuid4().hex[:8]} {{ me {{ id __typename }} }}"
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{"id": sha(body), "name": "Mine", "type": "query", "body": body}],
    }
    path = tmp_path / "manifest.json"
    path.write_text(orjson.dumps(manifest).decode())
    added = scriptlabs(database, "persisted", "add", str(path))
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines() == [f"{sha(body)}\t{path}\tmanifest operation Mine"]
    response = await post(only_client, {"extensions": ext(sha(body))})
    assert response.json() == {"data": {"me": None}}

    manifest["operations"][0]["id"] = "custom-id"  # type: ignore[index]
    path.write_text(orjson.dumps(manifest).decode())
    refused = scriptlabs(database, "persisted", "add", str(path))
    assert refused.returncode == 2
    assert "is not the SHA-256 of its body" in refused.stderr


async def test_get_refusals_are_never_kept_by_a_cache(api: Api) -> None:
    bad_json = await api.client.get("/graphql", params={"query": "{ me { id } }", "variables": "{"})
    assert bad_json.status_code == 400
    bad_token = await api.client.get(
        "/graphql", params={"query": "{ me { id } }"}, headers={"authorization": "Bearer nope"}
    )
    assert bad_token.status_code == 401
    mutation = await api.client.get("/graphql", params={"query": "mutation { signOut }"})
    assert mutation.status_code == 405
    for response in (bad_json, bad_token, mutation):
        assert response.headers["cache-control"] == "private, no-store"
        assert response.headers["vary"] == "Accept, Authorization"
