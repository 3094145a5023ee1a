"""GraphQL over HTTP: GET and POST, content negotiation, status codes, body limits, GraphiQL
served offline, health checks; and no request makes the server answer 5xx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import Api

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
ME = "{ me { id } }"
MIB = 1024 * 1024


async def post_raw(
    client: httpx.AsyncClient,
    content: bytes,
    *,
    accept: str | None = None,
    content_type: str = JSON,
) -> httpx.Response:
    headers = {"content-type": content_type}
    if accept:
        headers["accept"] = accept
    return await client.post("/graphql", content=content, headers=headers)


async def post_json(
    client: httpx.AsyncClient, body: Any, accept: str | None = None
) -> httpx.Response:
    return await post_raw(client, orjson.dumps(body), accept=accept)


def request_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """A refused request: `status`, errors each with a code, no `data`."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    assert body["errors"], body
    for error in body["errors"]:
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert isinstance(error["message"], str) and error["message"]
    return body


# --- GET -----------------------------------------------------------------------------------------


async def test_get_runs_a_query(api: Api) -> None:
    response = await api.client.get("/graphql", params={"query": ME})
    assert response.status_code == 200
    assert response.json() == {"data": {"me": None}}
    assert response.headers["content-type"].startswith(JSON)


async def test_get_takes_variables_and_an_operation_name(api: Api) -> None:
    user = await api.sign_up()
    response = await api.client.get(
        "/graphql",
        params={
            "query": "query A { me { id } } query B($id: UUID!) { lab(id: $id) { id } }",
            "variables": orjson.dumps({"id": "00000000-0000-0000-0000-000000000000"}).decode(),
            "operationName": "B",
        },
        headers={"authorization": f"Bearer {user.token}"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"lab": None}}


@pytest.mark.parametrize(
    "query",
    [
        'mutation { signUp(email: "get@example.com", password: "long enough") { tokenType } }',
        'query Q { me { id } } mutation M { signUp(email: "a@b.io", password: "12345678")'
        " { tokenType } }",
    ],
)
async def test_get_with_a_mutation_is_405(api: Api, query: str) -> None:
    params = {"query": query}
    if "query Q" in query:
        params["operationName"] = "M"
    response = await api.client.get("/graphql", params=params)
    request_error(response, 405)
    assert "POST" in response.headers.get("allow", "")


async def test_a_mutation_sent_with_get_writes_nothing(api: Api, admin: asyncpg.Connection) -> None:
    email = "get-never-signs-up@example.com"
    query = f'mutation {{ signUp(email: "{email}", password: "long enough") {{ tokenType }} }}'
    await api.client.get("/graphql", params={"query": query})
    assert await admin.fetchval("select count(*) from auth.users where email = $1", email) == 0


async def test_get_without_a_query_is_400(api: Api) -> None:
    request_error(await api.client.get("/graphql", headers={"accept": JSON}), 400)
    request_error(await api.client.get("/graphql", params={"query": "  "}), 400)


@pytest.mark.parametrize("variables", ["{not json", "[1, 2]", '"a string"', "5"])
async def test_get_with_bad_variables_is_400(api: Api, variables: str) -> None:
    response = await api.client.get("/graphql", params={"query": ME, "variables": variables})
    request_error(response, 400)


# --- POST: documents that fail to parse or validate --------------------------------------------

BROKEN_DOCUMENTS = {
    "syntax error": "{ me { id }",
    "unknown field": "{ nope }",
    "unknown argument": "{ me(x: 1) { id } }",
    "missing selection": "{ labs }",
    "unknown operation name": "query A { me { id } } query A { me { email } }",
}


@pytest.mark.parametrize("name", sorted(BROKEN_DOCUMENTS))
async def test_a_broken_document_is_400_with_graphql_response_json(api: Api, name: str) -> None:
    response = await post_json(api.client, {"query": BROKEN_DOCUMENTS[name]}, GRAPHQL_RESPONSE)
    request_error(response, 400)
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)


@pytest.mark.parametrize("name", sorted(BROKEN_DOCUMENTS))
async def test_a_broken_document_is_200_with_application_json(api: Api, name: str) -> None:
    response = await post_json(api.client, {"query": BROKEN_DOCUMENTS[name]}, JSON)
    request_error(response, 200)
    assert response.headers["content-type"].startswith(JSON)
    # no Accept header at all: application/json
    request_error(await post_json(api.client, {"query": BROKEN_DOCUMENTS[name]}), 200)


async def test_the_preferred_media_type_is_chosen_by_quality(api: Api) -> None:
    body = {"query": "{ nope }"}
    prefer_json = f"{GRAPHQL_RESPONSE};q=0.5, {JSON}"
    prefer_new = f"{JSON};q=0.9, {GRAPHQL_RESPONSE}"
    request_error(await post_json(api.client, body, prefer_json), 200)
    request_error(await post_json(api.client, body, prefer_new), 400)


async def test_an_execution_error_is_200_with_data_in_both_media_types(api: Api) -> None:
    for accept in (JSON, GRAPHQL_RESPONSE):
        response = await post_json(api.client, {"query": "{ labs { totalCount } }"}, accept)
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_a_successful_query_is_200_in_both_media_types(api: Api) -> None:
    for accept in (JSON, GRAPHQL_RESPONSE, "*/*", "application/*"):
        response = await post_json(api.client, {"query": ME}, accept)
        assert response.status_code == 200
        assert response.json() == {"data": {"me": None}}


@pytest.mark.parametrize(
    ("variables", "query"),
    [
        (
            {"e": 5, "p": "long enough"},
            "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { tokenType } }",
        ),
        ({"id": 5}, "query($id: UUID!) { lab(id: $id) { id } }"),
        ({"id": "not-a-uuid"}, "query($id: UUID!) { lab(id: $id) { id } }"),
        ({}, "query($id: UUID!) { lab(id: $id) { id } }"),
        (
            {"f": {"rating": {"eq": "high"}}},
            "query($f: LabFilter) { labs(filter: $f) { totalCount } }",
        ),
        ({"n": 1.5}, "query($n: Int) { labs(first: $n) { totalCount } }"),
    ],
)
async def test_a_variable_of_the_wrong_type_is_bad_user_input(
    api: Api, variables: dict[str, Any], query: str
) -> None:
    body = {"query": query, "variables": variables}
    request_error(await post_json(api.client, body, JSON), 200)
    request_error(await post_json(api.client, body, GRAPHQL_RESPONSE), 400)


# --- POST: bodies that are not a GraphQL request ------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"{",
        b"\xff\xfe\x00",
        b"query { me { id } }",
        b'{"query": "{ me { id } }"',
        b"\x00" * 10,
    ],
)
async def test_a_malformed_json_body_is_400(api: Api, content: bytes) -> None:
    for accept in (JSON, GRAPHQL_RESPONSE):
        request_error(await post_raw(api.client, content, accept=accept), 400)


@pytest.mark.parametrize(
    "body", [[{"query": ME}], [{"query": ME}, {"query": ME}], [], None, 5, "{ me { id } }", True]
)
async def test_a_body_that_is_not_one_object_is_400(api: Api, body: Any) -> None:
    request_error(await post_json(api.client, body), 400)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": None},
        {"query": 5},
        {"query": ["{ me { id } }"]},
        {"query": {"q": 1}},
        {"query": ""},
        {"query": " \n "},
        {"variables": {}},
        {"Query": ME},
    ],
)
async def test_a_missing_or_non_string_query_is_400(api: Api, body: dict[str, Any]) -> None:
    request_error(await post_json(api.client, body), 400)


@pytest.mark.parametrize("variables", [[], [1], "{}", '{"id": 1}', 5, True])
async def test_variables_that_are_not_an_object_are_400(api: Api, variables: Any) -> None:
    request_error(await post_json(api.client, {"query": ME, "variables": variables}), 400)


@pytest.mark.parametrize("extensions", [[], [1], "{}", 5, True])
async def test_extensions_that_are_not_an_object_are_400(api: Api, extensions: Any) -> None:
    request_error(await post_json(api.client, {"query": ME, "extensions": extensions}), 400)


@pytest.mark.parametrize("extensions", ["{not json", "[1]", '"x"'])
async def test_get_with_extensions_that_are_not_an_object_is_400(api: Api, extensions: str) -> None:
    response = await api.client.get("/graphql", params={"query": ME, "extensions": extensions})
    request_error(response, 400)


async def test_null_variables_and_extensions_are_accepted(api: Api) -> None:
    body = {"query": ME, "variables": None, "operationName": None, "extensions": {}}
    response = await post_json(api.client, body)
    assert response.status_code == 200
    assert response.json() == {"data": {"me": None}}


@pytest.mark.parametrize("name", [5, ["A"], {"a": 1}])
async def test_an_operation_name_that_is_not_a_string_is_400(api: Api, name: Any) -> None:
    request_error(await post_json(api.client, {"query": ME, "operationName": name}), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"query": "query A { me { id } } query B { me { email } }"},
        {"query": "query A { me { id } }", "operationName": "B"},
        {"query": "subscription { labEvents { id } }"},
        {"query": "fragment F on User { id }"},
    ],
)
async def test_an_operation_that_cannot_be_chosen_is_400(api: Api, body: dict[str, Any]) -> None:
    request_error(await post_json(api.client, body, GRAPHQL_RESPONSE), 400)
    response = await post_json(api.client, body, JSON)
    assert response.status_code in (200, 400)
    request_error(response, response.status_code)
    response = await api.client.get("/graphql", params=body, headers={"accept": GRAPHQL_RESPONSE})
    request_error(response, 400)


async def test_a_body_that_is_not_json_content_is_415(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/graphql"):
        response = await post_raw(
            api.client, orjson.dumps({"query": ME}), content_type=content_type
        )
        request_error(response, 415)


async def test_json_with_a_charset_parameter_is_accepted(api: Api) -> None:
    response = await post_raw(
        api.client, orjson.dumps({"query": ME}), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"me": None}}


# --- body size ------------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid request body of exactly `size` bytes (the query padded with a comment)."""
    body = orjson.dumps({"query": ME + "\n#"})
    filler = size - len(body)
    assert filler >= 0
    return orjson.dumps({"query": ME + "\n#" + "x" * filler})


async def test_a_body_over_one_mib_is_413(api: Api) -> None:
    body = padded(MIB + 1)
    assert len(body) == MIB + 1
    response = await post_raw(api.client, body)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"]


async def test_a_streamed_body_over_one_mib_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        body = padded(2 * MIB)
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await api.client.post("/graphql", content=chunks(), headers={"content-type": JSON})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_a_lying_content_length_over_one_mib_is_413(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        content=orjson.dumps({"query": ME}),
        headers={"content-type": JSON, "content-length": str(2 * MIB)},
    )
    assert response.status_code == 413


async def test_a_body_just_under_one_mib_is_accepted(api: Api) -> None:
    body = padded(MIB - 16)
    response = await post_raw(api.client, body)
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"data": {"me": None}}


# --- GraphiQL, health, methods ------------------------------------------------------------------


async def test_get_with_accept_html_serves_graphiql_without_a_cdn(api: Api) -> None:
    response = await api.client.get(
        "/graphql", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "graphiql" in page.lower()
    urls = re.findall(
        r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)""", page, re.IGNORECASE
    )
    assert urls, page
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""import\s*\(?\s*["'](?:https?:)?//""", page)
    for url in urls:
        asset = await api.client.get(url)
        # the files are fetched at set-up time (scripts/fetch_graphiql.py)
        assert asset.status_code == 200, f"GraphiQL file missing: {url}"
        assert len(asset.content) > 1000, url


async def test_health_endpoints_answer_200(api: Api) -> None:
    live = await api.client.get("/health/live")
    assert live.status_code == 200
    ready = await api.client.get("/health/ready")
    assert ready.status_code == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(api: Api, method: str) -> None:
    response = await api.client.request(method, "/graphql", json={"query": ME})
    request_error(response, 405)
    assert response.headers["allow"] == "GET, POST"


# --- nothing a request holds causes 5xx ----------------------------------------------------------

FRAGMENT_CHAIN = "{ me { ...F2999 } } fragment F0 on User { id } " + " ".join(
    f"fragment F{i} on User {{ ...F{i - 1} }}" for i in range(1, 3000)
)
NESTED_INLINE = "{ " + "... on Query { " * 3000 + "me { id }" + " }" * 3000 + " }"
NESTED_VARIABLE = (
    b'{"query": "query($f: LabFilter) { labs(filter: $f) { totalCount } }", "variables": {"f": '
    + b'{"not": ' * 400
    + b"{}"
    + b"}" * 400
    + b"}}"
)

ODD_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("POST", {"json": {"query": FRAGMENT_CHAIN}}),
    ("POST", {"json": {"query": NESTED_INLINE}}),
    ("POST", {"content": NESTED_VARIABLE}),
    (
        "POST",
        {
            "content": b'{"query": "{ me { id } }", "variables": {"a": '
            + b"[" * 3000
            + b"]" * 3000
            + b"}}"
        },
    ),
    ("POST", {"content": b'{"query": "{ me { id } }", "variables": {"a": [[[[[[[[[[1]]]]]]]]]]}}'}),
    ("POST", {"json": {"query": "{ __typename }"}}),
    ("POST", {"json": {"query": "{ me { id } }", "variables": {"x": 10**30}}}),
    (
        "POST",
        {
            "json": {
                "query": "query($n: Int) { labs(first: $n) { totalCount } }",
                "variables": {"n": 10**30},
            }
        },
    ),
    ("POST", {"json": {"query": "{ me { id } }", "operationName": ""}}),
    ("POST", {"json": {"query": "\u0000"}}),
    ("POST", {"json": {"query": '{ lab(id: "\u0000") { id } }'}}),
    ("POST", {"json": {"query": "{ me { id } }" * 1000}}),
    ("POST", {"json": {"query": "{" * 5000 + "}" * 5000}}),
    ("POST", {"json": {"query": "{ me { ...F } } fragment F on User { ...F }"}}),
    (
        "POST",
        {"json": {"query": "{ me { id } }"}, "headers": {"authorization": "Bearer " + "a" * 9000}},
    ),
    ("POST", {"json": {"query": "{ me { id } }"}, "headers": {"x-forwarded-for": "not an ip"}}),
    ("POST", {"json": {"query": "{ me { id } }"}, "headers": {"accept": "q=;;,,;q=abc"}}),
    ("POST", {"json": {"query": "{ me { id } }"}, "headers": {"content-length": "abc"}}),
    ("GET", {"params": {"query": "{" * 5000}}),
    ("GET", {"params": {"query": ME, "operationName": "nope"}}),
    ("GET", {"params": {"query": "subscription { x }"}}),
    ("HEAD", {}),
    ("OPTIONS", {}),
]


@pytest.mark.parametrize(("method", "kwargs"), ODD_REQUESTS)
async def test_an_odd_request_never_gets_a_5xx(
    api: Api, method: str, kwargs: dict[str, Any]
) -> None:
    response = await api.client.request(method, "/graphql", **kwargs)
    assert response.status_code < 500, response.text[:500]
    json_types = (JSON, GRAPHQL_RESPONSE)
    if response.content and response.headers.get("content-type", "").startswith(json_types):
        for error in response.json().get("errors", []):
            assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
