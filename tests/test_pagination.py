"""Ordering and keyset pagination of `labs`, checked against the same rows sorted in Python.

Contract: default order createdAt DESC, ties broken by id; several orderBy keys, ties always
ending in id; NULLs last in both directions; first/last default 20, at most 100; opaque cursors
that stay valid while rows are inserted and deleted.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Api, User, error_codes

PAGE = """
query($orderBy: [LabOrder!], $filter: LabFilter,
      $first: Int, $after: String, $last: Int, $before: String) {
  labs(orderBy: $orderBy, filter: $filter,
       first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""

ALL = """
query {
  labs(first: 100) {
    nodes { id title author rating publicationYear createdAt updatedAt }
  }
}"""

IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }"
CREATE = "mutation($input: CreateLabInput!) { createLab(input: $input) { id } }"
UPDATE = (
    "mutation($id: UUID!, $input: UpdateLabInput!) { updateLab(id: $id, input: $input) { id } }"
)
DELETE = "mutation($id: UUID!) { deleteLab(id: $id) }"

# Titles and authors of lower-case letters only: C and natural-language collations agree on them.
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]
AUTHORS = ["ames", "bell", "cole"]


def random_labs(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Labs with many equal titles, ratings and years (ties) and NULL ratings and years."""
    return [
        {
            "title": rng.choice(WORDS),
            "author": rng.choice(AUTHORS),
            "rating": rng.choice([None, 1, 2, 3, 4, 5]),
            "publicationYear": rng.choice([None, 1950, 1960, 1970]),
        }
        for _ in range(n)
    ]


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    author: str
    rating: int | None
    year: int | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> Row:
        return cls(
            id=node["id"],
            title=node["title"],
            author=node["author"],
            rating=node["rating"],
            year=node["publicationYear"],
            created_at=dt.datetime.fromisoformat(node["createdAt"]),
            updated_at=dt.datetime.fromisoformat(node["updatedAt"]),
        )

    def value(self, field: str) -> Any:
        return {
            "CREATED_AT": self.created_at,
            "UPDATED_AT": self.updated_at,
            "TITLE": self.title,
            "AUTHOR": self.author,
            "RATING": self.rating,
            "PUBLICATION_YEAR": self.year,
        }[field]


Order = list[dict[str, str]] | None
DEFAULT_ORDER = [{"field": "CREATED_AT", "direction": "DESC"}]


def order(*keys: str) -> list[dict[str, str]]:
    """`order("RATING DESC", "TITLE")` → orderBy; no direction means ASC (the schema's default)."""
    out = []
    for key in keys:
        field, _, direction = key.partition(" ")
        out.append({"field": field, "direction": direction} if direction else {"field": field})
    return out


def compare(a: Row, b: Row, by: Order) -> int:
    """The contract's order: the keys with NULLs last in both directions, then id.

    The id runs in the direction of the last key (one index, read forwards or backwards).
    """
    keys = by or DEFAULT_ORDER
    for key in keys:
        descending = key.get("direction", "ASC") == "DESC"
        va, vb = a.value(key["field"]), b.value(key["field"])
        if va == vb:
            continue
        if va is None:
            return 1
        if vb is None:
            return -1
        sign = -1 if va < vb else 1
        return -sign if descending else sign
    ia, ib = uuid.UUID(a.id), uuid.UUID(b.id)  # PostgreSQL orders uuids by their bytes
    sign = (ia > ib) - (ia < ib)
    return -sign if keys[-1].get("direction", "ASC") == "DESC" else sign


def python_sorted(rows: Sequence[Row], by: Order) -> list[str]:
    return [r.id for r in sorted(rows, key=functools.cmp_to_key(lambda a, b: compare(a, b, by)))]


@dataclass(frozen=True)
class Catalogue:
    user: User
    rows: list[Row]


async def read_rows(api: Api, user: User) -> list[Row]:
    data = await api.ok(ALL, token=user.token)
    return [Row.from_node(n) for n in data["labs"]["nodes"]]


@pytest.fixture(scope="module")
async def catalogue(client: httpx.AsyncClient) -> Catalogue:
    """57 labs: an import of 30 (one createdAt), 4 made one by one, an import of 23."""
    api = Api(client)
    user = await api.sign_up()
    rng = random.Random(7)
    first = await api.ok(IMPORT, {"labs": random_labs(rng, 30)}, token=user.token)
    for lab in random_labs(rng, 4):
        await api.ok(CREATE, {"input": lab}, token=user.token)
    await api.ok(IMPORT, {"labs": random_labs(rng, 23)}, token=user.token)
    for lab_id in first["importLabs"]["ids"][:3]:  # three updatedAt of their own
        await api.ok(UPDATE, {"id": lab_id, "input": {"notes": "again"}}, token=user.token)
    rows = await read_rows(api, user)
    assert len(rows) == 57
    return Catalogue(user, rows)


async def page(api: Api, user: User, **arguments: Any) -> dict[str, Any]:
    """One page; checks that edges, nodes and the cursors of pageInfo agree."""
    data: dict[str, Any] = (await api.ok(PAGE, arguments, token=user.token))["labs"]
    edges, info = data["edges"], data["pageInfo"]
    assert [e["node"]["id"] for e in edges] == [n["id"] for n in data["nodes"]]
    assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
    assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
    return data


def ids(data: dict[str, Any]) -> list[str]:
    return [n["id"] for n in data["nodes"]]


async def walk_forward(api: Api, user: User, size: int, by: Order) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        data = await page(api, user, orderBy=by, first=size, after=after)
        info = data["pageInfo"]
        assert info["hasPreviousPage"] == bool(pages)
        pages.append(ids(data))
        if not info["hasNextPage"]:
            return pages
        assert len(pages[-1]) == size
        after = info["endCursor"]
        assert len(pages) < 100


async def walk_backward(api: Api, user: User, size: int, by: Order) -> list[list[str]]:
    pages: list[list[str]] = []
    before = None
    while True:
        data = await page(api, user, orderBy=by, last=size, before=before)
        info = data["pageInfo"]
        assert info["hasNextPage"] == bool(pages)
        pages.insert(0, ids(data))
        if not info["hasPreviousPage"]:
            return pages
        assert len(pages[0]) == size
        before = info["startCursor"]
        assert len(pages) < 100


ORDERS = [
    pytest.param(None, id="default"),
    pytest.param(order("CREATED_AT DESC"), id="created-desc"),
    pytest.param(order("CREATED_AT ASC"), id="created-asc"),
    pytest.param(order("UPDATED_AT DESC"), id="updated-desc"),
    pytest.param(order("TITLE"), id="title-asc-by-default"),
    pytest.param(order("TITLE DESC"), id="title-desc"),
    pytest.param(order("AUTHOR ASC", "TITLE DESC"), id="author-asc-title-desc"),
    pytest.param(order("RATING ASC"), id="rating-asc"),
    pytest.param(order("RATING DESC"), id="rating-desc"),
    pytest.param(order("RATING DESC", "TITLE ASC"), id="rating-desc-title-asc"),
    pytest.param(order("PUBLICATION_YEAR ASC"), id="year-asc"),
    pytest.param(order("PUBLICATION_YEAR DESC", "RATING ASC"), id="year-desc-rating-asc"),
    pytest.param(order("RATING ASC", "PUBLICATION_YEAR DESC", "TITLE"), id="three-keys"),
    pytest.param(order("TITLE ASC", "RATING DESC"), id="title-asc-rating-desc"),
    pytest.param(order("AUTHOR DESC", "PUBLICATION_YEAR ASC"), id="author-desc-year-asc"),
]


@pytest.mark.parametrize("by", ORDERS)
async def test_one_page_of_everything_is_in_the_contract_order(
    api: Api, catalogue: Catalogue, by: Order
) -> None:
    data = await page(api, catalogue.user, orderBy=by, first=100)
    assert ids(data) == python_sorted(catalogue.rows, by)
    assert not data["pageInfo"]["hasNextPage"]
    assert not data["pageInfo"]["hasPreviousPage"]


@pytest.mark.parametrize("size", [7, 19])  # 57 = 8 * 7 + 1 = 3 * 19
@pytest.mark.parametrize("by", ORDERS)
async def test_walking_forward_and_backward_gives_every_lab_once(
    api: Api, catalogue: Catalogue, by: Order, size: int
) -> None:
    want = python_sorted(catalogue.rows, by)
    forward = await walk_forward(api, catalogue.user, size, by)
    backward = await walk_backward(api, catalogue.user, size, by)
    assert [i for p in forward for i in p] == want
    assert [i for p in backward for i in p] == want
    assert len(forward) == len(backward) == -(-len(want) // size)  # no empty page at the end
    assert all(forward)


async def test_nulls_sort_last_in_both_directions(api: Api, catalogue: Catalogue) -> None:
    for direction in ("ASC", "DESC"):
        for field, attribute in (("RATING", "rating"), ("PUBLICATION_YEAR", "year")):
            data = await page(
                api, catalogue.user, orderBy=[{"field": field, "direction": direction}], first=100
            )
            by_id = {r.id: r for r in catalogue.rows}
            values = [getattr(by_id[i], attribute) for i in ids(data)]
            known = [v for v in values if v is not None]
            assert values == known + [None] * (len(values) - len(known))
            assert known == sorted(known, reverse=direction == "DESC")
            assert 0 < len(known) < len(values)


async def test_default_page_is_twenty(api: Api, catalogue: Catalogue) -> None:
    want = python_sorted(catalogue.rows, None)
    data = await page(api, catalogue.user)
    assert ids(data) == want[:20]
    assert data["pageInfo"]["hasNextPage"]
    assert not data["pageInfo"]["hasPreviousPage"]
    # `before` alone pages backward with the same default size
    before = await page(api, catalogue.user, before=data["pageInfo"]["endCursor"])
    assert ids(before) == want[:19]


async def test_last_alone_is_the_final_page(api: Api, catalogue: Catalogue) -> None:
    want = python_sorted(catalogue.rows, None)
    data = await page(api, catalogue.user, last=5)
    assert ids(data) == want[-5:]
    assert not data["pageInfo"]["hasNextPage"]
    assert data["pageInfo"]["hasPreviousPage"]


async def test_first_zero_is_an_empty_page(api: Api, catalogue: Catalogue) -> None:
    data = await page(api, catalogue.user, first=0)
    assert data["edges"] == [] and data["nodes"] == []
    assert data["pageInfo"]["startCursor"] is None and data["pageInfo"]["endCursor"] is None
    count = await api.ok("{ labs(first: 0) { totalCount } }", token=catalogue.user.token)
    assert count["labs"]["totalCount"] == len(catalogue.rows)


async def test_an_empty_result_has_no_cursors_and_no_more_pages(
    api: Api, catalogue: Catalogue
) -> None:
    empty_user = await api.sign_up()
    for user, where in ((catalogue.user, {"or": []}), (empty_user, None)):
        for arguments in ({"first": 10}, {"last": 10}, {}):
            data = await page(api, user, filter=where, **arguments)
            assert data["edges"] == []
            assert data["pageInfo"] == {
                "hasNextPage": False,
                "hasPreviousPage": False,
                "startCursor": None,
                "endCursor": None,
            }


async def test_a_page_between_two_cursors(api: Api, catalogue: Catalogue) -> None:
    by = order("RATING DESC", "TITLE ASC")
    edges = (await page(api, catalogue.user, orderBy=by, first=100))["edges"]
    after, before = edges[10]["cursor"], edges[30]["cursor"]
    want = [e["node"]["id"] for e in edges[11:30]]
    assert ids(await page(api, catalogue.user, orderBy=by, after=after, before=before)) == want
    data = await page(api, catalogue.user, orderBy=by, after=after, before=before, last=5)
    assert ids(data) == want[-5:]


# Ties broken by id, over one import of 1000 labs that all share one createdAt.


@pytest.fixture(scope="module")
async def thousand(client: httpx.AsyncClient) -> Catalogue:
    api = Api(client)
    user = await api.sign_up()
    labs = [{"title": "same", "author": "same"} for _ in range(1000)]
    created = await api.ok(IMPORT, {"labs": labs}, token=user.token)
    assert len(created["importLabs"]["ids"]) == 1000
    stamp = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # equal everywhere: only ids differ
    rows = [Row(i, "same", "same", None, None, stamp, stamp) for i in created["importLabs"]["ids"]]
    return Catalogue(user, rows)


@pytest.mark.parametrize(
    "by", [pytest.param(None, id="default"), pytest.param(order("TITLE ASC"), id="title-asc")]
)
async def test_a_thousand_ties_page_by_id(api: Api, thousand: Catalogue, by: Order) -> None:
    want = python_sorted(thousand.rows, by)
    forward = await walk_forward(api, thousand.user, 100, by)
    assert [i for p in forward for i in p] == want
    assert len(forward) == 10  # first: 100 is allowed, and 1000 is an exact multiple
    backward = await walk_backward(api, thousand.user, 100, by)
    assert [i for p in backward for i in p] == want


# first/last limits and cursors that do not decode.


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        pytest.param({"first": 101}, "first", id="first-101"),
        pytest.param({"first": -1}, "first", id="first-negative"),
        pytest.param({"last": 101}, "last", id="last-101"),
        pytest.param({"last": -1}, "last", id="last-negative"),
    ],
)
async def test_page_sizes_out_of_range_are_bad_user_input(
    api: Api, catalogue: Catalogue, arguments: dict[str, int], field: str
) -> None:
    result = await api.gql(PAGE, arguments, token=catalogue.user.token)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["field"] == field


async def test_first_one_hundred_is_allowed(api: Api, thousand: Catalogue) -> None:
    data = await page(api, thousand.user, first=100)
    assert len(data["edges"]) == 100 and data["pageInfo"]["hasNextPage"]
    data = await page(api, thousand.user, last=100)
    assert len(data["edges"]) == 100 and data["pageInfo"]["hasPreviousPage"]


def encoded(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


SOME_ID = "00000000-0000-4000-8000-000000000000"
NOW = "2024-06-01T12:00:00.000000+00:00"
TITLE = order("TITLE ASC")
RATING = order("RATING DESC")

# (cursor, orderBy): none of them decodes for that order
BAD_CURSORS = [
    pytest.param("not a cursor!", None, id="garbage"),
    pytest.param("", None, id="empty"),
    pytest.param("é", None, id="not-ascii"),
    pytest.param(base64.urlsafe_b64encode(b"hello").decode(), None, id="base64-not-json"),
    pytest.param(base64.urlsafe_b64encode(b"\xff\xfe").decode(), None, id="base64-not-utf8"),
    pytest.param(encoded([]), None, id="json-list"),
    pytest.param(encoded(None), None, id="json-null"),
    pytest.param(encoded({}), None, id="json-empty-object"),
    pytest.param(encoded({"o": "created_at-,id-"}), None, id="no-values"),
    pytest.param(encoded({"o": "created_at-,id-", "v": [NOW]}), None, id="too-few-values"),
    pytest.param(encoded({"o": "created_at-,id-", "v": [1, 2]}), None, id="numbers"),
    pytest.param(
        encoded({"o": "created_at-,id-", "v": ["2024-06-01T12:00:00", SOME_ID]}),
        None,
        id="time-without-offset",
    ),
    pytest.param(
        encoded({"o": "created_at-,id-", "v": ["0001-01-01T00:00:00+05:00", SOME_ID]}),
        None,
        id="time-before-year-one",
    ),
    pytest.param(encoded({"o": "created_at-,id-", "v": [NOW, 123]}), None, id="id-a-number"),
    pytest.param(encoded({"o": "created_at-,id-", "v": [NOW, "x"]}), None, id="id-not-a-uuid"),
    pytest.param(encoded({"o": "created_at-,id-", "v": [None, SOME_ID]}), None, id="null-time"),
    pytest.param(encoded({"o": "rating-,id-", "v": [2**40, SOME_ID]}), RATING, id="int-too-big"),
    pytest.param(encoded({"o": "rating-,id-", "v": [True, SOME_ID]}), RATING, id="bool-rating"),
    pytest.param(encoded({"o": "rating-,id-", "v": [2.5, SOME_ID]}), RATING, id="float-rating"),
    pytest.param(encoded({"o": "title+,id+", "v": ["a\u0000b", SOME_ID]}), TITLE, id="nul-title"),
    pytest.param(encoded({"o": "title+,id+", "v": [None, SOME_ID]}), TITLE, id="null-title"),
    pytest.param(encoded({"o": "title+,id+", "v": [7, SOME_ID]}), TITLE, id="number-title"),
]


@pytest.mark.parametrize("name", ["after", "before"])
@pytest.mark.parametrize(("cursor", "by"), BAD_CURSORS)
async def test_a_cursor_that_does_not_decode_is_bad_user_input(
    api: Api, catalogue: Catalogue, cursor: str, by: Order, name: str
) -> None:
    result = await api.gql(PAGE, {name: cursor, "orderBy": by}, token=catalogue.user.token)
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    assert result["errors"][0]["extensions"]["field"] == name


@pytest.mark.parametrize("name", ["after", "before"])
@pytest.mark.parametrize(
    ("made_with", "used_with"),
    [
        pytest.param(order("TITLE ASC"), None, id="title-cursor-default-order"),
        pytest.param(order("TITLE DESC"), order("TITLE ASC"), id="other-direction"),
        pytest.param(None, order("CREATED_AT DESC", "TITLE ASC"), id="one-key-more"),
        pytest.param(order("RATING DESC", "TITLE ASC"), order("RATING DESC"), id="one-key-less"),
        pytest.param(order("RATING DESC"), order("PUBLICATION_YEAR DESC"), id="other-field"),
    ],
)
async def test_a_cursor_of_another_order_is_bad_user_input(
    api: Api, catalogue: Catalogue, made_with: Order, used_with: Order, name: str
) -> None:
    cursor = (await page(api, catalogue.user, orderBy=made_with, first=3))["edges"][1]["cursor"]
    result = await api.gql(PAGE, {name: cursor, "orderBy": used_with}, token=catalogue.user.token)
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    assert result["errors"][0]["extensions"]["field"] == name


async def test_the_explicit_default_order_takes_default_cursors(
    api: Api, catalogue: Catalogue
) -> None:
    cursor = (await page(api, catalogue.user, first=3))["pageInfo"]["endCursor"]
    same = await page(api, catalogue.user, orderBy=order("CREATED_AT DESC"), after=cursor)
    assert ids(same) == python_sorted(catalogue.rows, None)[3:23]


# Cursor stability: keyset cursors survive inserts and deletes.


@pytest.mark.parametrize(
    "by",
    [
        pytest.param(None, id="default"),
        pytest.param(order("TITLE ASC"), id="title-asc"),
        pytest.param(order("RATING DESC", "TITLE ASC"), id="rating-desc-title-asc"),
    ],
)
async def test_page_two_from_an_old_cursor_after_inserts_and_deletes(api: Api, by: Order) -> None:
    user = await api.sign_up()
    labs = [
        {"title": f"m{letter}", "author": "ames", "rating": [None, 2, 3, 4][i % 4]}
        for i, letter in enumerate("abcdefghijklmnop")
    ]
    await api.ok(IMPORT, {"labs": labs}, token=user.token)
    for lab in labs[:4]:  # a few with a createdAt of their own
        await api.ok(CREATE, {"input": {**lab, "title": lab["title"] + "x"}}, token=user.token)
    first = await page(api, user, orderBy=by, first=5)
    page_one = ids(first)
    cursor_row = next(r for r in await read_rows(api, user) if r.id == page_one[-1])

    # new labs before the first page, after the cursor, and level with it
    news = [
        {"title": "aa", "author": "ames", "rating": 5},
        {"title": "zz", "author": "ames"},
        {"title": cursor_row.title, "author": "ames", "rating": cursor_row.rating},
        {"title": "mz", "author": "ames", "rating": 1},
    ]
    await api.ok(IMPORT, {"labs": news}, token=user.token)
    rows = await read_rows(api, user)
    rest = [r for r in rows if compare(r, cursor_row, by) > 0 and r.id not in page_one]
    gone = [page_one[0], page_one[-1], python_sorted(rest, by)[1]]  # the cursor's row too
    for lab_id in gone:
        await api.ok(DELETE, {"id": lab_id}, token=user.token)
    rows = [r for r in rows if r.id not in gone]

    want = [i for i in python_sorted(rows, by) if i in {r.id for r in rest}]
    second = await page(api, user, orderBy=by, first=5, after=first["pageInfo"]["endCursor"])
    assert ids(second) == want[:5]
    assert not set(ids(second)) & set(page_one)
    # and the whole remainder, in order, with nothing of page one
    remainder = await page(api, user, orderBy=by, first=100, after=first["pageInfo"]["endCursor"])
    assert ids(remainder) == want


# totalCount is counted only when it is selected.

COUNTS = (
    "select coalesce(sum(calls), 0)::int from pg_stat_statements"
    " where query ilike '%count(*) from public.labs%'"
)


async def test_total_count_is_counted_only_when_selected(
    api: Api, admin: asyncpg.Connection, catalogue: Catalogue
) -> None:
    # a planned read runs inside scriptlabs_private.read_statement: count nested statements
    await admin.execute("alter system set pg_stat_statements.track = 'all'")
    await admin.execute("select pg_reload_conf()")
    try:
        await asyncio.sleep(0.2)  # the backends read the new setting at their next command
        before = await admin.fetchval(COUNTS)
        data = await api.ok(
            "{ labs(first: 2) { totalCount nodes { id } } }", token=catalogue.user.token
        )
        assert data["labs"]["totalCount"] == len(catalogue.rows)
        counted = await admin.fetchval(COUNTS)
        assert counted > before
        await api.ok(
            "{ labs(first: 2) { nodes { id } pageInfo { hasNextPage } } }",
            token=catalogue.user.token,
        )
        await api.ok("{ labs(first: 2) { edges { cursor } } }", token=catalogue.user.token)
        assert await admin.fetchval(COUNTS) == counted
    finally:
        await admin.execute("alter system reset pg_stat_statements.track")
        await admin.execute("select pg_reload_conf()")
