"""Operations too deep, too wide or too costly are refused with QUERY_TOO_COMPLEX before
they run; the introspection query that GraphiQL and code generators send always works."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import asyncpg
import httpx
import orjson
from graphql import get_introspection_query

from tests.conftest import Api, User

GRAPHQL_RESPONSE = "application/graphql-response+json"


def too_complex(result: dict[str, Any]) -> None:
    """Refused before execution: no data, and every error is QUERY_TOO_COMPLEX."""
    assert "data" not in result, result
    codes = {e["extensions"]["code"] for e in result["errors"]}
    assert codes == {"QUERY_TOO_COMPLEX"}, result


def type_ref(depth: int) -> str:
    """`__schema { types { fields { type { ofType { ... { name } } } } } }`, `depth` levels."""
    assert depth >= 5
    inner = "name"
    for _ in range(depth - 5):
        inner = f"ofType {{ {inner} }}"
    return f"__schema {{ types {{ fields {{ type {{ {inner} }} }} }} }}"


async def labs_count(admin: asyncpg.Connection, user: User) -> int:
    count = await admin.fetchval(
        "select count(*) from public.labs where user_id = $1", uuid.UUID(user.id)
    )
    return int(count)


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging when blocking work (such as validation) runs away."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- depth ---------------------------------------------------------------------------------


async def test_an_operation_11_levels_deep_is_refused(api: Api) -> None:
    too_complex(await api.gql(f"{{ me {{ id }} {type_ref(11)} }}"))


async def test_an_operation_10_levels_deep_runs(api: Api) -> None:
    data = await api.ok(f"{{ me {{ id }} {type_ref(10)} }}")
    assert data["me"] is None
    assert data["__schema"]["types"]


async def test_depth_through_fragments_counts(api: Api) -> None:
    query = (
        "{ me { id } ...Deep }"
        " fragment Deep on Query { __schema { types { ...Fields } } }"
        " fragment Fields on __Type { fields { type { ...Ref } } }"
        " fragment Ref on __Type { ofType { ofType { ofType { ... on __Type {"
        " ofType { ofType { ofType { name } } } } } } } }"
    )
    too_complex(await api.gql(query))


async def test_introspection_counts_beyond_the_standard_query(api: Api) -> None:
    too_complex(await api.gql(f"{{ {type_ref(40)} }}"))
    too_complex(await api.gql(f"{{ __typename {type_ref(40)} }}"))


async def test_the_standard_introspection_query_works(api: Api) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    for accept in ("application/json", GRAPHQL_RESPONSE):
        response = await api.post(query, headers={"accept": accept})
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert "errors" not in body, body["errors"]
        names = {t["name"] for t in body["data"]["__schema"]["types"]}
        assert {"Lab", "LabConnection", "CreateLabInput", "Query", "Mutation"} <= names
    # and the plain one, as older clients send it
    plain = await api.ok(get_introspection_query())
    assert plain["__schema"]["queryType"]["name"] == "Query"


# --- aliases and fields ------------------------------------------------------------------------


async def test_101_aliases_are_refused(api: Api) -> None:
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(101)) + " }"
    too_complex(await api.gql(query))


async def test_100_aliases_run(api: Api) -> None:
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(100)) + " }"
    data = await api.ok(query)
    assert len(data) == 100 and set(data.values()) == {None}


async def test_aliases_inside_fragments_count(api: Api) -> None:
    fields = " ".join(f"i{i}: id" for i in range(60))
    query = f"{{ a: me {{ ...F }} b: me {{ ...F }} }} fragment F on User {{ {fields} }}"
    too_complex(await api.gql(query))


async def test_too_many_fields_are_refused(api: Api) -> None:
    too_complex(await api.gql("{ me { " + "id " * 501 + "} }"))


async def test_a_fragment_bomb_is_refused_quickly(api: Api) -> None:
    # each fragment spreads the one before twice: 2^40 fields once expanded
    fragments = ["fragment F0 on User { id email }"] + [
        f"fragment F{i} on User {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 41)
    ]
    query = "{ me { ...F40 } } " + " ".join(fragments)
    with deadline(10):
        too_complex(await api.gql(query))
    # spreads of a fragment that does not exist, doubled the same way: nothing to count but
    # the spreads themselves
    fragments = ["fragment G0 on User { ...Missing }"] + [
        f"fragment G{i} on User {{ ...G{i - 1} ...G{i - 1} }}" for i in range(1, 41)
    ]
    query = "{ me { ...G40 } } " + " ".join(fragments)
    with deadline(10):
        result = await api.gql(query)
    assert "data" not in result
    assert {e["extensions"]["code"] for e in result["errors"]} <= {
        "QUERY_TOO_COMPLEX",
        "BAD_USER_INPUT",
    }


# --- cost ----------------------------------------------------------------------------------------


async def test_an_operation_over_the_cost_limit_is_refused(api: Api) -> None:
    user = await api.sign_up()
    page = "labs(first: 100) { nodes { id title author } }"
    query = "{ " + " ".join(f"l{i}: {page}" for i in range(60)) + " }"
    too_complex(await api.gql(query, token=user.token))


async def test_a_variable_page_size_is_costed_at_the_maximum(api: Api) -> None:
    user = await api.sign_up()
    page = "labs(first: $n) { nodes { id title author } }"
    query = "query($n: Int) { " + " ".join(f"l{i}: {page}" for i in range(60)) + " }"
    too_complex(await api.gql(query, {"n": 1}, token=user.token))


async def test_a_full_page_of_every_field_runs(api: Api) -> None:
    user = await api.sign_up()
    lab = (
        "id title author category publicationYear isbn rating readingStatus notes coverUrl"
        " createdAt updatedAt"
    )
    query = (
        f"{{ labs(first: 100) {{ totalCount edges {{ cursor node {{ {lab} }} }} nodes {{ {lab} }}"
        " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }"
        f" last: labs(last: 100) {{ nodes {{ {lab} }} }} me {{ id email }} }}"
    )
    data = await api.ok(query, token=user.token)
    assert data["labs"]["totalCount"] == 0


# --- refused means not run ------------------------------------------------------------------


async def test_a_refused_mutation_writes_nothing(api: Api, admin: asyncpg.Connection) -> None:
    user = await api.sign_up()
    creates = " ".join(
        f'c{i}: createLab(input: {{title: "t{i}", author: "a"}}) {{ id }}' for i in range(101)
    )
    too_complex(await api.gql(f"mutation {{ {creates} }}", token=user.token))
    assert await labs_count(admin, user) == 0


async def test_a_refusal_is_400_with_graphql_response_json(api: Api) -> None:
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(101)) + " }"
    response = await api.client.post(
        "/graphql",
        content=orjson.dumps({"query": query}),
        headers={"content-type": "application/json", "accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    too_complex(response.json())


async def test_a_refused_get_is_never_a_server_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": f"{{ {type_ref(40)} }}"})
    assert response.status_code == 200
    too_complex(response.json())
