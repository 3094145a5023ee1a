"""The planned path answers exactly as the Strawberry path does.

Every operation below is sent to the API twice, with the planner on and off, and the
JSON bodies must be equal byte for byte once parsed. The plannable ones are checked to
be planned, so the comparison is not vacuous."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scriptlabs.config import Settings
from tests.conftest import Api, User

LAB_FIELDS = (
    "id title author category publicationYear isbn rating readingStatus notes coverUrl"
    " createdAt updatedAt"
)

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
    return user


async def _both(
    client: httpx.AsyncClient, unplanned: httpx.AsyncClient, body: dict[str, object], token: str
) -> tuple[Any, Any]:
    headers = {"authorization": f"Bearer {token}"}
    planned = await client.post("/graphql", json=body, headers=headers)
    plain = await unplanned.post("/graphql", json=body, headers=headers)
    assert planned.status_code == plain.status_code
    result: tuple[Any, Any] = (planned.json(), plain.json())
    return result


@pytest.mark.parametrize(("query", "variables"), PLANNED)
async def test_planned_answers_equal_strawberry_answers(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    settings: Settings,
    owner: User,
    query: str,
    variables: dict[str, object] | None,
) -> None:
    runner = client._transport.app.state.runner  # type: ignore[attr-defined]
    before = runner.planned_fields
    body = {"query": query, "variables": variables}
    planned, plain = await _both(client, unplanned_client, body, owner.token)
    assert runner.planned_fields > before
    assert "errors" not in planned
    assert planned == plain


async def test_pages_reached_by_cursor_are_equal_on_both_paths(
    client: httpx.AsyncClient, unplanned_client: httpx.AsyncClient, owner: User
) -> None:
    query = (
        "query($a: String) { labs(first: 4, after: $a, orderBy: [{field: RATING}]) {"
        " edges { cursor node { title rating } } pageInfo { endCursor hasNextPage } } }"
    )
    after = None
    pages = 0
    while True:
        planned, plain = await _both(
            client, unplanned_client, {"query": query, "variables": {"a": after}}, owner.token
        )
        assert planned == plain
        info = planned["data"]["labs"]["pageInfo"]
        pages += 1
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert pages == 7  # 26 labs, 4 a page


@pytest.mark.parametrize(
    ("query", "variables", "token"),
    [
        ("{ labs(first: 101) { nodes { id } } }", None, True),
        ('{ labs(after: "nope") { nodes { id } } }', None, True),
        ("{ labs { nodes { id } } }", None, False),
        ("query($n: Int) { labs(first: $n) { nodes { id } } }", {"n": "x"}, True),
        ('{ lab(id: "00000000-0000-4000-8000-000000000000") { id } }', None, True),
    ],
)
async def test_errors_and_nulls_look_the_same_on_both_paths(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    owner: User,
    query: str,
    variables: dict[str, object] | None,
    token: bool,
) -> None:
    headers = {"authorization": f"Bearer {owner.token}"} if token else {}
    body = {"query": query, "variables": variables}
    planned = await client.post("/graphql", json=body, headers=headers)
    plain = await unplanned_client.post("/graphql", json=body, headers=headers)
    assert (planned.status_code, planned.json()) == (plain.status_code, plain.json())
