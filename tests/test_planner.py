"""The planned path answers exactly as the Strawberry path does, byte for byte.

Every operation below is sent to the API twice, with the planner on and off, and the
response bodies must be the same bytes with the same status. The planned side is checked to
have planned its plannable root fields and to have logged no fall-back, so the comparison is
not vacuous: a test fails if any operation of the corpus falls back."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from tests.conftest import Api, User

LAB_FIELDS = (
    "id title author category publicationYear isbn rating readingStatus notes coverUrl"
    " createdAt updatedAt"
)
# titles that JSON must escape, and non-ASCII text: built by PostgreSQL on one path, by
# orjson on the other, and carried in cursors when ordering by title
ODD_TITLES = [
    'Quote " and backslash \\ here',
    "Tab\tnew\nline\rcarriage",
    "Control \u0001\u001f chars",
    "Ünïcödé — ½ ✓ 🚀 漢字",
    "</script><b>html</b>",
    "  leading spaces kept inside",
]

PLANNED = [
    ("{ labs { nodes { id title } } }", None),
    (
        f"{{ labs(first: 5) {{ totalCount edges {{ cursor node {{ {LAB_FIELDS} }} }} "
        "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }",
        None,
    ),
    (
        "query($f: LabFilter, $o: [LabOrder!], $n: Int) {"
        " labs(filter: $f, orderBy: $o, first: $n) {"
        " nodes { title rating publicationYear } totalCount } }",
        {
            "f": {
                "rating": {"gte": 2},
                "or": [{"category": {"isNull": True}}, {"title": {"ilike": "%a%"}}],
            },
            "o": [{"field": "RATING", "direction": "DESC"}, {"field": "TITLE"}],
            "n": 7,
        },
    ),
    (
        "{ a: labs(last: 3) { p: pageInfo { s: startCursor e: endCursor n: hasNextPage"
        " v: hasPreviousPage } list: nodes { t: title __typename } __typename } b: labs(first: 0)"
        " { nodes { id } pageInfo { hasNextPage } } }",
        None,
    ),
    (
        "fragment F on Lab { title author } query Q { labs(orderBy: [{field: PUBLICATION_YEAR,"
        " direction: ASC}]) { edges { node { ...F ... on Lab { rating } } } } }",
        None,
    ),
    (
        "{ labs(filter: {not: {readingStatus: {eq: READ}}}, orderBy: [{field: UPDATED_AT,"
        " direction: DESC}]) { totalCount } }",
        None,
    ),
    # fragments on the connection, the edge and page info; a fragment spread at the root
    (
        "query { ...Root } fragment Root on Query { labs(first: 4) { ...Conn } }"
        " fragment Conn on LabConnection { edges { ...E } pageInfo { ...P } }"
        " fragment E on LabEdge { cursor node { id __typename } __typename }"
        " fragment P on PageInfo { endCursor hasNextPage __typename }",
        None,
    ),
    # @include and @skip, with variables, at the root and below
    (
        "query($yes: Boolean!, $no: Boolean!) {"
        " labs(first: 3) @include(if: $yes) { nodes { id title @skip(if: $yes)"
        " author @include(if: $yes) } totalCount @include(if: $no) }"
        " skipped: labs @skip(if: $yes) { nodes { id } } }",
        {"yes": True, "no": False},
    ),
    # an edge's node twice under aliases: each with its own fields
    (
        "{ labs(first: 3) { edges { node { a: title } n: node { b: author id } } } searchLabs("
        'query: "") { edges { node { a: author } k: node { b: title } } } }',
        None,
    ),
    # the same response key twice: the selections merge
    ("{ labs(first: 2) { nodes { id } } labs(first: 2) { totalCount nodes { title } } }", None),
    # ordered by title, so the cursors carry the titles that need escaping
    (
        "query($a: String) { labs(first: 50, after: $a, orderBy: [{field: TITLE,"
        " direction: DESC}]) { edges { cursor node { title notes } } pageInfo { startCursor"
        " endCursor } } }",
        {"a": None},
    ),
    (
        "{ labs(orderBy: [{field: RATING, direction: ASC}, {field: AUTHOR, direction: DESC}],"
        " first: 30) { edges { cursor node { rating author } } } }",
        None,
    ),
    # ISBN and enum filters, lists
    (
        '{ labs(filter: {isbn: {in: ["978-0-306-40615-7", "0"]}, readingStatus: {in: [READ,'
        " TO_READ]}, rating: {in: []}}) { totalCount } }",
        None,
    ),
    (
        'query($t: DateTime) { labs(filter: {createdAt: {lte: $t}, title: {startsWith: "Al"}})'
        " { nodes { title createdAt } } }",
        {"t": "2999-01-01T00:00:00+00:00"},
    ),
    # labStats: every field, from the kept figures
    (
        "{ labStats { totalLabs labsRead labsReading labsToRead averageRating totalAuthors"
        " totalCategories byCategory { category count } ratingDistribution { rating count } } }",
        None,
    ),
    # aliases and __typename at each level, fields in an order of the client's choosing
    (
        "{ s: labStats { t: totalLabs __typename avg: averageRating c: byCategory { n: count"
        " name: category __typename } r: ratingDistribution { __typename count rating } } }",
        None,
    ),
    # fragments, and a filter: aggregated from the labs
    (
        "query { ...Q } fragment Q on Query { labStats(filter: {rating: {gte: 3}}) { ...S } }"
        " fragment S on LabStats { totalAuthors averageRating byCategory { ...C } ... on LabStats"
        " { labsRead } } fragment C on CategoryCount { category count }",
        None,
    ),
    # a filter and directives in variables
    (
        "query($f: LabFilter, $yes: Boolean!) { labStats(filter: $f) {"
        " averageRating @include(if: $yes) totalCategories ratingDistribution @skip(if: $yes)"
        " { count } byCategory { category } labsToRead } }",
        {
            "f": {"or": [{"category": {"isNull": False}}, {"readingStatus": {"eq": "READ"}}]},
            "yes": True,
        },
    ),
    # several at once: the whole catalogue, a part of it, nothing (no rating: null average)
    (
        "query($none: String) { all: labStats { totalLabs averageRating } read: labStats(filter:"
        " {readingStatus: {eq: READ}, rating: {isNull: false}}) { totalLabs averageRating"
        " ratingDistribution { rating count } } none: labStats(filter: {title: {eq: $none}})"
        " { averageRating byCategory { count } ratingDistribution { count } } }",
        {"none": "no such title"},
    ),
    # statistics and a page in one statement
    ("{ labStats { totalLabs } labs { totalCount } }", None),
    (
        "{ labs(first: 2) { nodes { title } } labStats(filter: {}) { byCategory { category } } }",
        None,
    ),
]

# documents that mix plannable and other root fields: the plannable ones are still planned
MIXED = [
    "{ labs(first: 2) { totalCount } me { email } }",
    "{ me { id } a: labs(first: 1) { nodes { title } } sessions { current } }",
    "query { __typename labs(first: 1) { nodes { id } } }",
    "{ labStats { totalLabs averageRating } me { email } }",
    "{ sessions { current } s: labStats(filter: {rating: {lte: 2}}) { byCategory { count } } }",
    # values collected for a search whose statement needs none of them
    '{ searchLabs(query: "") { suggestion } me { id } }',
    '{ searchLabs(query: "") { suggestion } resetTokenStatus(token: "x") { valid } }',
]


@pytest.fixture
async def owner(api: Api) -> User:
    user = await api.sign_up()
    labs = [
        {
            "title": f"{word} {i}",
            "author": f"Author {i % 4}",
            "category": None if i % 3 == 0 else f"Cat {i % 2}",
            "publicationYear": None if i % 5 == 0 else 1950 + i,
            "isbn": "9780306406157" if i % 4 == 0 else None,
            "rating": None if i % 2 else (i % 5) + 1,
            "readingStatus": ["TO_READ", "READING", "READ"][i % 3],
            "notes": "some notes" if i % 2 else None,
            "coverUrl": "https://covers.example.org/x.jpg" if i % 6 == 0 else None,
        }
        for i, word in enumerate(["Alpha", "beta", "Gamma", "delta", "Epsilon"] * 5)
    ]
    await api.ok(
        "mutation($l: [CreateLabInput!]!) { importLabs(labs: $l) { inserted } }",
        {"l": labs},
        token=user.token,
    )
    await api.ok(
        'mutation { createLab(input: {title: "Later", author: "Z"}) { id } }', token=user.token
    )
    for title in ODD_TITLES:
        await api.ok(
            "mutation($t: String!) { createLab(input: {title: $t, author: $t, notes: $t,"
            " category: $t}) { id } }",
            {"t": title},
            token=user.token,
        )
    return user


async def _both(
    client: httpx.AsyncClient,
    unplanned: httpx.AsyncClient,
    body: dict[str, object],
    token: str | None,
    caplog: pytest.LogCaptureFixture,
) -> tuple[httpx.Response, httpx.Response]:
    """Both answers, checked to be the same bytes; the planned one checked to have planned."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    runner = client._transport.app.state.runner  # type: ignore[attr-defined]
    before = runner.planned_fields
    with caplog.at_level(logging.WARNING, logger="scriptlabs"):
        planned = await client.post("/graphql", json=body, headers=headers)
    fall_backs = [r for r in caplog.records if "runs through Strawberry" in r.getMessage()]
    assert not fall_backs, fall_backs
    assert runner.planned_fields > before, "nothing was planned"
    plain = await unplanned.post("/graphql", json=body, headers=headers)
    assert planned.status_code == plain.status_code
    assert planned.content == plain.content
    return planned, plain


@pytest.mark.parametrize(("query", "variables"), PLANNED)
async def test_planned_answers_equal_strawberry_answers(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: dict[str, object] | None,
) -> None:
    body = {"query": query, "variables": variables}
    planned, _ = await _both(client, unplanned_client, body, owner.token, caplog)
    assert "errors" not in planned.json()


@pytest.mark.parametrize("query", MIXED)
async def test_mixed_documents_plan_what_they_can(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
    query: str,
) -> None:
    planned, _ = await _both(client, unplanned_client, {"query": query}, owner.token, caplog)
    assert "errors" not in planned.json()


async def test_a_lab_by_id_and_a_missing_one(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = await Api(client).ok("{ labs(first: 1) { nodes { id } } }", token=owner.token)
    found = data["labs"]["nodes"][0]["id"]
    query = (
        f"query($id: UUID!, $gone: UUID!) {{ here: lab(id: $id) {{ {LAB_FIELDS} __typename }}"
        " gone: lab(id: $gone) { id } }"
    )
    body = {"query": query, "variables": {"id": found, "gone": str(uuid.uuid4())}}
    planned, _ = await _both(client, unplanned_client, body, owner.token, caplog)
    assert planned.json()["data"]["here"]["id"] == found
    assert planned.json()["data"]["gone"] is None


async def test_pages_reached_by_cursor_are_equal_on_both_paths(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for order in ("RATING", "TITLE"):
        query = (
            f"query($a: String) {{ labs(first: 4, after: $a, orderBy: [{{field: {order}}}]) {{"
            " edges { cursor node { title rating } } pageInfo { endCursor hasNextPage } } }"
        )
        after = None
        pages = 0
        while True:
            body = {"query": query, "variables": {"a": after}}
            planned, _ = await _both(client, unplanned_client, body, owner.token, caplog)
            info = planned.json()["data"]["labs"]["pageInfo"]
            pages += 1
            if not info["hasNextPage"]:
                break
            after = info["endCursor"]
        assert pages == 8  # 32 labs, 4 a page


async def test_pages_backward_by_cursor_are_equal_on_both_paths(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    query = (
        "query($b: String) { labs(last: 5, before: $b, orderBy: [{field: TITLE}]) {"
        " nodes { title } pageInfo { startCursor hasPreviousPage hasNextPage } } }"
    )
    before = None
    seen = 0
    while True:
        body = {"query": query, "variables": {"b": before}}
        planned, _ = await _both(client, unplanned_client, body, owner.token, caplog)
        labs = planned.json()["data"]["labs"]
        seen += len(labs["nodes"])
        if not labs["pageInfo"]["hasPreviousPage"]:
            break
        before = labs["pageInfo"]["startCursor"]
    assert seen == 32


ERRORS = [
    ("{ labs(first: 101) { nodes { id } } }", None, True),
    ("{ labs(first: -1) { totalCount } }", None, True),
    ("{ labs(first: 1, last: 1) { totalCount } }", None, True),
    ('{ labs(after: "nope") { nodes { id } } }', None, True),
    ('{ labs(before: "bm9wZQ") { nodes { id } } }', None, True),
    ("{ labs { nodes { id } } }", None, False),
    ('{ lab(id: "00000000-0000-4000-8000-000000000000") { id } }', None, False),
    ("query($n: Int) { labs(first: $n) { nodes { id } } }", {"n": "x"}, True),
    (
        "query($t: DateTime) { labs(filter: {createdAt: {gt: $t}}) { totalCount } }",
        {"t": "x"},
        True,
    ),
    (
        "query($s: String) { labs(filter: {title: {eq: $s}}) { totalCount } }",
        {"s": "a\u0000b"},
        True,
    ),
    (
        'query($s: String) { labs(filter: {or: [{title: {eq: "x"}}, {author: {ilike: $s}}]})'
        " { totalCount } }",
        {"s": "\u0000"},
        True,
    ),
    # an error in the planned part of a mixed document: labs is non-null, so data is null
    ("{ me { id } labs(first: 500) { totalCount } }", None, True),
    # lab is nullable: its error leaves the other fields' answers
    ('{ lab(id: "not-a-uuid") { id } }', None, True),
    ("{ labs { nodes { id } } }", None, True),  # no error: the control
    ("{ labs { nodes { nope } } }", None, True),  # validation
    ("{ labs { nodes { id } ", None, True),  # syntax
    ("query A { labs { totalCount } } query B { me { id } }", None, True),  # no operationName
    ("{ labStats { totalLabs } }", None, False),
    ("{ labStats { totalLabs } me { id } }", None, False),
    (
        "query($s: String) { labStats(filter: {author: {startsWith: $s}}) { totalLabs } }",
        {"s": "\u0000"},
        True,
    ),
    ("{ labStats { byCategory } }", None, True),  # validation
    # two non-null fields refused: graphql-core reports the first only, a nullable one's too
    (
        '{ labs(first: 101) { totalCount } searchLabs(query: "", after: "x") { suggestion } }',
        None,
        True,
    ),
    (
        '{ labs(first: 101) { totalCount } lab(id: "00000000-0000-4000-8000-000000000000")'
        " { id } s: labs(first: -1) { totalCount } }",
        None,
        False,
    ),
]


@pytest.mark.parametrize(("query", "variables", "with_token"), ERRORS)
async def test_errors_and_nulls_look_the_same_on_both_paths(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    query: str,
    variables: dict[str, object] | None,
    with_token: bool,
) -> None:
    headers = {"authorization": f"Bearer {owner.token}"} if with_token else {}
    body = {"query": query, "variables": variables}
    for accept in ("application/json", "application/graphql-response+json"):
        planned = await client.post("/graphql", json=body, headers={**headers, "accept": accept})
        plain = await unplanned_client.post(
            "/graphql", json=body, headers={**headers, "accept": accept}
        )
        assert (planned.status_code, planned.content) == (plain.status_code, plain.content)


async def test_a_planned_field_that_fails_is_not_run_again(
    client: httpx.AsyncClient, owner: User, caplog: pytest.LogCaptureFixture
) -> None:
    runner = client._transport.app.state.runner  # type: ignore[attr-defined]
    before = runner.planned_fields
    with caplog.at_level(logging.DEBUG, logger="scriptlabs"):
        response = await client.post(
            "/graphql",
            json={"query": "{ labs(first: 101) { totalCount } }"},
            headers={"authorization": f"Bearer {owner.token}"},
        )
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert runner.planned_fields == before + 1
    assert not [r for r in caplog.records if "Strawberry" in r.getMessage()]


async def test_a_document_with_variables_answers_each_request_with_its_own(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    api: Api,
    owner: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its roots and shapes are kept after the first request; what each request sends (its
    caller, its cursor, its page size, a bad value) still decides its answer."""
    other = await api.sign_up()
    await api.ok(
        'mutation { createLab(input: {title: "Theirs", author: "O"}) { id } }', token=other.token
    )
    query = (
        "query Page($n: Int, $a: String) { labs(first: $n, after: $a) {"
        " nodes { title } pageInfo { endCursor hasNextPage } } }"
    )
    anonymous = await client.post("/graphql", json={"query": query, "variables": {"n": 2}})
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    first, _ = await _both(
        client, unplanned_client, {"query": query, "variables": {"n": 2}}, owner.token, caplog
    )
    page = first.json()["data"]["labs"]
    assert len(page["nodes"]) == 2
    cursor = page["pageInfo"]["endCursor"]
    bodies: list[dict[str, object]] = [
        {"query": query, "variables": {"n": 3, "a": cursor}},
        {"query": query, "variables": {"n": 1, "a": "bm9wZQ"}},
        {"query": query, "variables": {"n": 0}},
        {"query": query, "variables": {"n": 101}},
        {"query": query, "variables": {"n": 2, "a": None}},
    ]
    answers = [
        (await _both(client, unplanned_client, body, owner.token, caplog))[0].json()
        for body in bodies
    ]
    assert [n["title"] for n in answers[0]["data"]["labs"]["nodes"]] != [
        n["title"] for n in page["nodes"]
    ]
    assert len(answers[0]["data"]["labs"]["nodes"]) == 3
    assert answers[1]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert answers[2]["data"]["labs"]["nodes"] == []
    assert answers[3]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert answers[4] == first.json()
    theirs, _ = await _both(
        client, unplanned_client, {"query": query, "variables": {"n": 5}}, other.token, caplog
    )
    assert [n["title"] for n in theirs.json()["data"]["labs"]["nodes"]] == ["Theirs"]
    anonymous_again = await client.post("/graphql", json={"query": query, "variables": {"n": 2}})
    assert anonymous_again.json() == anonymous.json()


async def test_one_document_with_many_filters_orders_and_cursors_matches_strawberry(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The planner keeps a page's SQL by what its text depends on (the filter's SQL, the
    cursor's NULLs, the order): filters alike but for their values share it, filters of
    another form get their own, and past the bound on kept texts the answers stay right."""
    query = (
        "query Q($f: LabFilter, $o: [LabOrder!], $n: Int, $a: String, $l: Int, $b: String) {"
        " labs(filter: $f, orderBy: $o, first: $n, after: $a, last: $l, before: $b) {"
        " totalCount nodes { title rating } edges { cursor }"
        " pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }"
    )
    filters: list[dict[str, object] | None] = [
        None,
        {"rating": {"gte": 2}},
        {"rating": {"gte": 4}},
        {"rating": {"isNull": True}},
        {"rating": {"isNull": False}},
        {"rating": {"in": []}},
        {"rating": {"in": [1, 3]}},
        {"title": {"startsWith": "Al"}},
        {"title": {"ilike": "%a%"}, "readingStatus": {"eq": "READ"}},
        {"or": [{"rating": {"eq": 1}}, {"category": {"isNull": True}}]},
        {"not": {"author": {"eq": "Author 1"}}},
        {"and": [{"publicationYear": {"gt": 1960}}, {"publicationYear": {"lte": 1970}}]},
    ]
    orders = [None, [{"field": "RATING", "direction": "DESC"}, {"field": "TITLE"}]]
    sent = 0
    for order in orders:
        for filter_ in filters:
            variables: dict[str, object] = {"f": filter_, "o": order, "n": 3}
            planned, _ = await _both(
                client,
                unplanned_client,
                {"query": query, "variables": variables},
                owner.token,
                caplog,
            )
            info = planned.json()["data"]["labs"]["pageInfo"]
            sent += 1
            if info["endCursor"] is None:
                continue
            for more in (
                {"n": 2, "a": info["endCursor"]},
                {"l": 2, "b": info["endCursor"]},
                {"n": 0, "a": info["startCursor"]},
            ):
                body = {"query": query, "variables": {"f": filter_, "o": order, **more}}
                await _both(client, unplanned_client, body, owner.token, caplog)
                sent += 1
    assert sent > 2 * 32  # more texts than one root keeps


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # a variable inside a literal, and one with a default
        (
            "query($r: Int, $n: Int = 3) { labs(first: $n, filter: {rating: {gte: $r}}) {"
            " nodes { title rating } } }",
            [{"r": 2}, {"r": 4, "n": 1}, {}, {"n": None}],
        ),
        # literals beside variables, a variable not sent, one sent as null
        (
            "query($a: String, $o: [LabOrder!]) { labs(first: 2, after: $a, orderBy: $o) {"
            " totalCount nodes { title } } }",
            [{}, {"o": [{"field": "TITLE", "direction": "DESC"}]}, {"a": None, "o": None}],
        ),
        # a non-null argument from a variable
        (
            "query($id: UUID!) { lab(id: $id) { title } }",
            [{"id": "00000000-0000-4000-8000-000000000000"}, {"id": "nope"}],
        ),
    ],
)
async def test_arguments_from_variables_match_strawberry_request_after_request(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: list[dict[str, object]],
) -> None:
    for values in [*variables, *variables]:  # the second time from what the first kept
        body = {"query": query, "variables": values}
        if values.get("id") == "nope":  # refused before planning: nothing to compare
            response = await client.post(
                "/graphql", json=body, headers={"authorization": f"Bearer {owner.token}"}
            )
            assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
            continue
        await _both(client, unplanned_client, body, owner.token, caplog)


def test_the_texts_kept_for_one_root_are_bounded() -> None:
    """A client that sends one document with ever new filters cannot grow what is kept."""
    from graphql import get_variable_values, parse

    from scriptlabs.db.sql import JsonParams
    from scriptlabs.graphql.planner import MEMO_MAX, Planner, collect
    from scriptlabs.graphql.schema import build_schema

    schema = build_schema()
    planner = Planner(schema._schema, schema)
    operation = parse("query($f: LabFilter) { labs(filter: $f) { nodes { id } } }").definitions[0]
    memo: dict[object, object] = {}
    texts = set()
    for n in range(1, 200):
        # a filter of n conditions: each a new text
        variables = {"f": {"and": [{"rating": {"gte": 1}}] * n}}
        coerced = get_variable_values(
            schema._schema,
            operation.variable_definitions,  # type: ignore[attr-defined]
            variables,
        )
        roots = list(collect(operation.selection_set, "Query", {}, coerced))  # type: ignore[attr-defined]
        shape = planner.shape(roots, {}, coerced)
        texts.add(planner.compile(shape, roots[0], coerced, JsonParams(), lambda: "$2", memo))
    assert len(texts) == 199  # every request got its own text, right for it
    assert len(memo) <= MEMO_MAX + 1  # the kept texts, and the arguments' plan
