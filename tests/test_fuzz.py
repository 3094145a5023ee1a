"""A bounded property-based fuzz of the GraphQL surface: nothing a request contains makes the
API answer HTTP 5xx or INTERNAL_SERVER_ERROR (CONTRACT.md section 4, Errors).

Documents come from hypothesis-graphql (schema-valid, every Query and Mutation field, values
inline); variables come from our own strategies that stay at the edges (huge ints, long and
odd strings, NUL characters, lone surrogates, forged cursors, empty lists). Every case runs on
both paths (planned and Strawberry), with a token and without.

Bounded and reproducible: derandomized (a fixed seed), no example database, a fixed number of
examples per case; the whole file takes some seconds."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries

from scriptlabs.graphql.types import LabOrderField
from tests.conftest import Api, User

SCHEMA = (Path(__file__).parents[1] / "schema.graphql").read_text()

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# -- values at the edges

EDGE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\t\n ",
            "\u0000",
            "a\u0000b",
            "%",
            "_",
            "\\",
            "'",
            "';--",
            '"',
            "\ufeff",
            "\u202e",
            "\U0001f600" * 5,
            "null",
            "-",
            "-x",
            '"',
            "a | b",
            "!",
            "<mark>",
            "ÅÄÖ" * 3,
            "\ud800",
            "x\udfffy",
        ]
    ),
    # over the limits: notes 10,000 characters; titles and others less
    st.sampled_from([257, 1025, 10_001, 100_000]).flatmap(
        lambda n: st.sampled_from(["x", "é", "\U0001f600", "a\u0000"]).map(lambda c: c * n)
    ),
)
EDGE_INT = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0, 1, -1, 5, 6, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**63, 10**30]),
)
JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


def or_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `strategy`, one time in ten a value of another type (refused before execution)."""
    return st.integers(0, 9).flatmap(lambda n: JUNK if n == 0 else strategy)


EDGE_DATETIME = st.one_of(
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59.999999-14:00",
            "9999-12-31T23:59:59.999999+00:00",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01",
            "yesterday",
            "",
        ]
    ),
)
BAD_UUID = st.sampled_from(["", "0", "not-a-uuid", "\u0000", "{}", "1" * 33])
EDGE_UUID = st.integers(0, 9).flatmap(
    lambda n: BAD_UUID if n == 0 else st.one_of(st.uuids().map(str), st.just(str(uuid.UUID(int=0))))
)


def scalar_nodes(ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """The custom scalars for hypothesis-graphql: mostly valid values, some edge ones."""
    known = [st.sampled_from(ids)] if ids else []
    return {
        "UUID": st.one_of(*known, EDGE_UUID).map(nodes.String),
        "DateTime": EDGE_DATETIME.map(nodes.String),
    }


# -- what every answer must be


@dataclass
class Target:
    """One way of calling the API: a path (planned or Strawberry) and a token (or none)."""

    name: str
    client: httpx.AsyncClient
    token: str | None


async def send(target: Target, query: str, variables: dict[str, Any] | None = None) -> None:
    """Post `query` and assert that the answer is no server fault."""
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    shown = f"{target.name}\n{query}\nvariables: {json.dumps(variables)[:2000]}\n"
    check(await post(target, body), shown)


async def post(target: Target, body: Any) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if target.token:
        headers["authorization"] = f"Bearer {target.token}"
    # json.dumps escapes lone surrogates; a client library may send them
    return await target.client.post("/graphql", content=json.dumps(body), headers=headers)


def check(response: httpx.Response, shown: str) -> None:
    """No HTTP 5xx, a JSON answer, and every error with a code other than
    INTERNAL_SERVER_ERROR; `shown` (the request) in the message otherwise."""
    assert response.status_code < 500, shown + response.text[:2000]
    try:
        result = response.json()
    except ValueError:
        raise AssertionError(shown + f"not JSON: {response.text[:2000]}") from None
    for error in result.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code is not None, shown + json.dumps(error)
        assert code != "INTERNAL_SERVER_ERROR", shown + json.dumps(error)


# -- the caller: a user with some labs, and tokens for the paths


@dataclass
class Catalogue:
    user: User
    ids: list[str]
    cursors: list[str]


LAB_SEED = [
    {
        "title": "Dune",
        "author": "Frank Herbert",
        "category": "SF",
        "rating": 5,
        "publicationYear": 1965,
        "isbn": "9780441013593",
        "readingStatus": "READ",
        "notes": "Spice <b>and</b> sand",
    },
    {"title": "Emma", "author": "Jane Austen", "readingStatus": "READING"},
    {"title": "Ubik", "author": "Philip K. Dick", "category": "SF", "rating": 3},
    {"title": "Ülysses", "author": "James Joyce", "publicationYear": 1922, "notes": "long"},
]


@pytest.fixture(scope="module")
async def catalogue(client: httpx.AsyncClient) -> Catalogue:
    api = Api(client)
    user = await api.sign_up()
    data = await api.ok(
        "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }",
        {"labs": LAB_SEED},
        token=user.token,
    )
    ids: list[str] = data["importLabs"]["ids"]
    cursors: list[str] = []
    for order in (
        [],
        [{"field": f, "direction": d} for f, d in [("RATING", "DESC")]],
        [{"field": "TITLE"}, {"field": "PUBLICATION_YEAR", "direction": "DESC"}],
    ):
        page = await api.ok(
            "query($o: [LabOrder!]) { labs(orderBy: $o, first: 2) { edges { cursor } } }",
            {"o": order},
            token=user.token,
        )
        cursors += [e["cursor"] for e in page["labs"]["edges"]]
    found = await api.ok(
        'query { searchLabs(query: "sand", first: 1) { edges { cursor } } }', token=user.token
    )
    cursors += [e["cursor"] for e in found["searchLabs"]["edges"]]
    return Catalogue(user, ids, cursors)


@pytest.fixture(params=["planned", "unplanned"])
def path(
    request: pytest.FixtureRequest,
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
) -> tuple[str, httpx.AsyncClient]:
    return request.param, client if request.param == "planned" else unplanned_client


@pytest.fixture(params=["user", "anonymous"])
def target(
    request: pytest.FixtureRequest, path: tuple[str, httpx.AsyncClient], catalogue: Catalogue
) -> Target:
    name, http = path
    token = catalogue.user.token if request.param == "user" else None
    return Target(f"{name}, {request.param}", http, token)


def forged_cursor(cursors: list[str]) -> st.SearchStrategy[str]:
    """Cursors that decode, with some of their values swapped for odd JSON."""
    values = st.one_of(
        JUNK,
        EDGE_INT,
        st.integers(),
        st.floats(),
        EDGE_TEXT.filter(lambda s: "\ud800" not in s and "\udfff" not in s),
        st.uuids().map(str),
        st.lists(st.integers(), max_size=3),
    )

    def decoded(cursor: str) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * 4))
        return loaded

    @st.composite
    def forge(draw: st.DrawFn) -> str:
        payload = draw(st.sampled_from(cursors).map(decoded))
        key = "v" if "v" in payload else "s"
        sort_values = list(payload[key])
        if draw(st.booleans()):  # the right length, some values replaced
            for i in draw(st.lists(st.integers(0, len(sort_values) - 1), min_size=1)):
                sort_values[i] = draw(values)
        else:
            sort_values = draw(st.lists(values, max_size=4))
        if draw(st.integers(0, 9)) == 0:
            payload["o"] = draw(EDGE_TEXT.filter(lambda s: "\ud800" not in s and "\udfff" not in s))
        payload[key] = sort_values
        text = json.dumps(payload, separators=(",", ":"))  # ints of any size, unlike orjson
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    return forge() if cursors else st.nothing()


def cursor_values(cursors: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(cursors) if cursors else st.nothing(),
        forged_cursor(cursors),
        EDGE_TEXT,
        st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        JUNK,
    )


# -- documents from the schema (hypothesis-graphql)

QUERY_FIELDS = ["me", "lab", "labs", "searchLabs", "labStats", "sessions", "resetTokenStatus"]
# mutations that leave the caller's session alive
KEEPING_MUTATIONS = [
    "createLab",
    "updateLab",
    "deleteLab",
    "importLabs",
    "signUp",
    "signIn",
    "refreshSession",
    "requestPasswordReset",
    "resetPassword",
]
ENDING_MUTATIONS = ["signOut", "revokeSession", "changePassword"]

_strategies: dict[tuple[str, Mode, tuple[str, ...]], st.SearchStrategy[str]] = {}


def documents(
    kind: str, fields: list[str], ids: list[str], mode: Mode = Mode.POSITIVE
) -> st.SearchStrategy[str]:
    """hypothesis-graphql's documents for `fields`, built once per catalogue; with
    Mode.NEGATIVE, each breaks the schema in one place."""
    key = (kind, mode, (*fields, *ids))
    if key not in _strategies:
        make: Callable[..., st.SearchStrategy[str]] = queries if kind == "query" else mutations
        _strategies[key] = make(SCHEMA, fields=fields, custom_scalars=scalar_nodes(ids), mode=mode)
    return _strategies[key]


@FUZZ
@given(data=st.data())
async def test_generated_queries_are_no_server_fault(
    data: st.DataObject, target: Target, catalogue: Catalogue
) -> None:
    document = data.draw(documents("query", QUERY_FIELDS, catalogue.ids))
    await send(target, document)


@FUZZ
@given(data=st.data())
async def test_generated_mutations_are_no_server_fault(
    data: st.DataObject, target: Target, catalogue: Catalogue
) -> None:
    document = data.draw(documents("mutation", KEEPING_MUTATIONS, catalogue.ids))
    await send(target, document)


@settings(FUZZ, max_examples=20)
@given(data=st.data())
async def test_generated_invalid_documents_are_no_server_fault(
    data: st.DataObject, target: Target, catalogue: Catalogue
) -> None:
    kind, fields = data.draw(
        st.sampled_from([("query", QUERY_FIELDS), ("mutation", KEEPING_MUTATIONS)])
    )
    document = data.draw(documents(kind, fields, catalogue.ids, Mode.NEGATIVE))
    await send(target, document)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
async def test_generated_session_ending_mutations_are_no_server_fault(
    data: st.DataObject, path: tuple[str, httpx.AsyncClient]
) -> None:
    # a fresh user each time: these may end the session whose token they carry
    name, http = path
    user = await Api(http).sign_up()
    document = data.draw(documents("mutation", ENDING_MUTATIONS, []))
    await send(Target(f"{name}, fresh user", http, user.token), document)
    await send(Target(f"{name}, anonymous", http, None), document)


# -- documents of our own, with edge values in the variables

LAB_FIELDS = "id title author category publicationYear isbn rating readingStatus notes coverUrl"
LAB_INPUT_KEYS = [
    "title",
    "author",
    "category",
    "publicationYear",
    "isbn",
    "rating",
    "readingStatus",
    "notes",
    "coverUrl",
]
INT_INPUT_KEYS = {"publicationYear", "rating"}


def lab_input(required: bool) -> st.SearchStrategy[dict[str, Any]]:
    def value(key: str) -> st.SearchStrategy[Any]:
        if key in INT_INPUT_KEYS:
            return or_junk(EDGE_INT)
        if key == "readingStatus":
            return st.sampled_from(["TO_READ", "READING", "READ", "read", "", None])
        if key == "coverUrl":
            return st.one_of(
                EDGE_TEXT,
                st.sampled_from(["http://x", "https://a.b/c?d=\u0000", "javascript:x", "ftp:"]),
            )
        if key == "isbn":
            return st.one_of(
                EDGE_TEXT, st.sampled_from(["978-0-441-01359-3", "0-306-40615-2", "123456789x"])
            )
        return or_junk(EDGE_TEXT)

    fixed = {"title": value("title"), "author": value("author")} if required else {}
    optional = {k: value(k) for k in LAB_INPUT_KEYS if k not in fixed}
    return st.fixed_dictionaries(fixed, optional=optional)


def string_filter() -> st.SearchStrategy[dict[str, Any]]:
    text = or_junk(EDGE_TEXT)
    return st.fixed_dictionaries(
        {},
        optional={
            "eq": text,
            "neq": text,
            "in": or_junk(st.lists(EDGE_TEXT, max_size=4)),
            "isNull": st.one_of(st.booleans(), st.none()),
            "startsWith": text,
            "ilike": text,
        },
    )


def int_filter() -> st.SearchStrategy[dict[str, Any]]:
    number = or_junk(EDGE_INT)
    keys = ["eq", "neq", "gt", "gte", "lt", "lte"]
    return st.fixed_dictionaries(
        {},
        optional={k: number for k in keys}
        | {"in": or_junk(st.lists(EDGE_INT, max_size=4)), "isNull": st.booleans()},
    )


def time_filter() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={k: EDGE_DATETIME for k in ["gt", "gte", "lt", "lte"]}
    )


def lab_filters() -> st.SearchStrategy[Any]:
    status = st.sampled_from(["TO_READ", "READING", "READ", "NONE"])
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "title": string_filter(),
            "author": string_filter(),
            "category": string_filter(),
            "isbn": string_filter(),
            "rating": int_filter(),
            "publicationYear": int_filter(),
            "readingStatus": st.fixed_dictionaries(
                {}, optional={"eq": status, "neq": status, "in": st.lists(status, max_size=3)}
            ),
            "createdAt": time_filter(),
            "updatedAt": time_filter(),
        },
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.fixed_dictionaries({}, optional={"and": st.lists(inner, max_size=3)}),
            st.fixed_dictionaries({}, optional={"or": st.lists(inner, max_size=3)}),
            st.fixed_dictionaries({"not": inner}),
        ),
        max_leaves=6,
    )


def orders(directions: list[str | None], max_size: int) -> st.SearchStrategy[list[Any]]:
    """Lists of LabOrder values: the schema's order fields, in `directions`."""
    return st.lists(
        st.fixed_dictionaries(
            {"field": st.sampled_from([f.name for f in LabOrderField])},
            optional={"direction": st.sampled_from(directions)},
        ),
        max_size=max_size,
    )


ORDER = orders(["ASC", "DESC", None], max_size=7)

LABS = (
    "query($f: LabFilter, $o: [LabOrder!], $first: Int, $after: String, $last: Int,"
    " $before: String) { labs(filter: $f, orderBy: $o, first: $first, after: $after,"
    f" last: $last, before: $before) {{ totalCount edges {{ cursor node {{ {LAB_FIELDS} }} }}"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"
)
SEARCH = (
    "query($q: String!, $f: LabFilter, $first: Int, $after: String, $prefix: Boolean) {"
    " searchLabs(query: $q, filter: $f, first: $first, after: $after, prefix: $prefix) {"
    f" totalCount suggestion edges {{ cursor rank snippet node {{ {LAB_FIELDS} }} }}"
    " facets { byCategory { category count } byStatus { status count }"
    " byRating { rating count } } pageInfo { hasNextPage endCursor } } }"
)
STATS = (
    "query($f: LabFilter) { labStats(filter: $f) { totalLabs labsRead averageRating"
    " totalAuthors totalCategories byCategory { category count }"
    " ratingDistribution { rating count } } }"
)
LAB = f"query($id: UUID!) {{ lab(id: $id) {{ {LAB_FIELDS} }} }}"
RESET_STATUS = "query($t: String!) { resetTokenStatus(token: $t) { valid expiresAt email } }"


@FUZZ
@given(data=st.data())
async def test_edge_variables_of_queries_are_no_server_fault(
    data: st.DataObject, target: Target, catalogue: Catalogue
) -> None:
    cursor = cursor_values(catalogue.cursors)
    count = or_junk(EDGE_INT)
    case = data.draw(st.sampled_from(["labs", "search", "stats", "lab", "reset"]))
    if case == "labs":
        variables = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "f": lab_filters(),
                    "o": or_junk(ORDER),
                    "first": count,
                    "after": cursor,
                    "last": count,
                    "before": cursor,
                },
            )
        )
        await send(target, LABS, variables)
    elif case == "search":
        variables = data.draw(
            st.fixed_dictionaries(
                {"q": or_junk(EDGE_TEXT)},
                optional={
                    "f": lab_filters(),
                    "first": count,
                    "after": cursor,
                    "prefix": or_junk(st.booleans()),
                },
            )
        )
        await send(target, SEARCH, variables)
    elif case == "stats":
        await send(target, STATS, {"f": data.draw(or_junk(lab_filters()))})
    elif case == "lab":
        ids = or_junk(st.one_of(st.sampled_from(catalogue.ids), EDGE_UUID))
        await send(target, LAB, {"id": data.draw(ids)})
    else:
        await send(target, RESET_STATUS, {"t": data.draw(or_junk(EDGE_TEXT))})


CREATE = f"mutation($input: CreateLabInput!) {{ createLab(input: $input) {{ {LAB_FIELDS} }} }}"
UPDATE = (
    "mutation($id: UUID!, $input: UpdateLabInput!) {"
    f" updateLab(id: $id, input: $input) {{ {LAB_FIELDS} }} }}"
)
DELETE = "mutation($id: UUID!) { deleteLab(id: $id) }"
IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { inserted ids } }"
AUTH_MUTATIONS = {
    "signUp": (
        "mutation($a: String!, $b: String!) { signUp(email: $a, password: $b) { tokenType } }"
    ),
    "signIn": (
        "mutation($a: String!, $b: String!) { signIn(email: $a, password: $b) { tokenType } }"
    ),
    "refreshSession": "mutation($a: String!) { refreshSession(refreshToken: $a) { tokenType } }",
    "requestPasswordReset": "mutation($a: String!) { requestPasswordReset(email: $a) }",
    "resetPassword": (
        "mutation($a: String!, $b: String!) { resetPassword(token: $a, newPassword: $b) {"
        " tokenType } }"
    ),
}
EMAILS = st.one_of(
    EDGE_TEXT,
    EDGE_TEXT.map(lambda s: f"{s}@example.com"),
    st.sampled_from(["a@b", "a@b.c\u0000", "@example.com", "x" * 300 + "@example.com"]),
)


@FUZZ
@given(data=st.data())
async def test_edge_variables_of_mutations_are_no_server_fault(
    data: st.DataObject, target: Target, catalogue: Catalogue
) -> None:
    ids = or_junk(st.one_of(st.sampled_from(catalogue.ids), EDGE_UUID))
    case = data.draw(st.sampled_from(["create", "update", "delete", "import", "auth"]))
    if case == "create":
        await send(target, CREATE, {"input": data.draw(or_junk(lab_input(True)))})
    elif case == "update":
        variables = {"id": data.draw(ids), "input": data.draw(lab_input(False))}
        await send(target, UPDATE, variables)
    elif case == "delete":
        # only the labs it makes itself: the others stay for the other cases
        await send(target, DELETE, {"id": data.draw(or_junk(EDGE_UUID))})
    elif case == "import":
        labs = data.draw(or_junk(st.lists(lab_input(True), max_size=4)))
        await send(target, IMPORT, {"labs": labs})
    else:
        name = data.draw(st.sampled_from(sorted(AUTH_MUTATIONS)))
        first = EMAILS if name in {"signUp", "signIn", "requestPasswordReset"} else EDGE_TEXT
        variables = {"a": data.draw(or_junk(first)), "b": data.draw(EDGE_TEXT)}
        await send(target, AUTH_MUTATIONS[name], variables)


@settings(FUZZ, max_examples=15)
@given(
    scope=st.sampled_from(["LOCAL", "GLOBAL", "OTHERS", "NONE", None]),
    session=or_junk(EDGE_UUID),
    current=or_junk(st.one_of(st.none(), EDGE_TEXT)),
    new=or_junk(EDGE_TEXT),
)
async def test_edge_variables_of_session_ending_mutations_are_no_server_fault(
    path: tuple[str, httpx.AsyncClient], scope: Any, session: Any, current: Any, new: Any
) -> None:
    # a fresh user for each: any of them may end the session whose token it carries
    name, http = path
    for anonymous in [False, True]:
        for document, variables in [
            ("mutation($s: SignOutScope) { signOut(scope: $s) }", {"s": scope}),
            ("mutation($id: UUID!) { revokeSession(id: $id) }", {"id": session}),
            (
                "mutation($a: String!, $b: String!) { changePassword(currentPassword: $a,"
                " newPassword: $b) }",
                {"a": current, "b": new},
            ),
        ]:
            user = await Api(http).sign_up()
            if current is None:  # the right password, so that the change goes through
                variables = dict(variables, a=user.password)
            token = None if anonymous else user.token
            target = Target(f"{name}, {'anonymous' if anonymous else 'fresh user'}", http, token)
            await send(target, document, variables)


# -- the request around the document

SOME_DOCUMENTS = [
    "query { me { id } }",
    "query Q { labs(first: 1) { totalCount } } query R { me { id } }",
    "mutation M { signOut }",
    "query($n: Int) { labs(first: $n) { totalCount } }",
    "subscription { labEvents { type } }",
    "{ __schema { types { name } } }",
    "query {",
]
PERSISTED = st.fixed_dictionaries(
    {},
    optional={
        "version": or_junk(st.sampled_from([1, 2, 0])),
        "sha256Hash": or_junk(
            st.one_of(EDGE_TEXT, st.binary(min_size=32, max_size=32).map(bytes.hex))
        ),
    },
)
ANY_JSON = st.recursive(
    st.one_of(JUNK, st.integers(), EDGE_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
REQUEST_BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "query": st.one_of(st.sampled_from(SOME_DOCUMENTS), EDGE_TEXT, ANY_JSON),
            "variables": st.one_of(
                st.dictionaries(st.sampled_from(["n", "x"]), ANY_JSON), ANY_JSON
            ),
            "operationName": st.one_of(st.sampled_from(["Q", "R", "M", "Z"]), EDGE_TEXT, ANY_JSON),
            "extensions": st.one_of(
                st.fixed_dictionaries({"persistedQuery": st.one_of(PERSISTED, ANY_JSON)}), ANY_JSON
            ),
        },
    ),
    ANY_JSON,
)


@FUZZ
@given(body=REQUEST_BODIES, get=st.booleans())
async def test_odd_requests_are_no_server_fault(target: Target, body: Any, get: bool) -> None:
    shown = f"{target.name}\n{'GET' if get else 'POST'} {json.dumps(body)[:2000]}\n"
    if not get or len(json.dumps(body)) > 8000:  # URLs that long are refused by clients
        check(await post(target, body), shown)
        return
    params = {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in (body.items() if isinstance(body, dict) else [])
        if not (isinstance(v, str) and ("\ud800" in v or "\udfff" in v))  # not in a URL
    }
    headers = {"authorization": f"Bearer {target.token}"} if target.token else {}
    check(await target.client.get("/graphql", params=params, headers=headers), shown)
