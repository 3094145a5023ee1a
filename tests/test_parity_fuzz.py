"""A bounded property-based fuzz of parity: for generated queries over the plannable root
fields (`labs`, `lab`, `searchLabs`, `labStats`), the planned path answers byte for byte as the
Strawberry path does (tests/test_planner.py's `_both`, which also checks that the planned side
planned something and fell back nowhere).

Two sources of documents, both run against one fixed, varied catalogue of one user:

- hypothesis-graphql's documents for the four fields (values inline, ids of real labs);
- documents of our own: several root fields under aliases, random selections with aliases,
  `__typename`, inline and named fragments, @include/@skip with variables, and arguments in
  variables drawn to hit the catalogue (its words, categories and ratings in filters, cursors
  taken from real answers, real and unknown ids).

Bounded and reproducible: derandomized (a fixed seed), no example database, a fixed number of
examples per test."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes, queries

from tests.conftest import Api, User
from tests.test_fuzz import orders
from tests.test_planner import _both

SCHEMA = (Path(__file__).parents[1] / "schema.graphql").read_text()
ROOTS = ["labs", "lab", "searchLabs", "labStats"]

PARITY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows its document
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# -- the catalogue: one user, some sixty labs, every kind of value

WORDS = ["dune", "spice", "desert", "ocean", "river", "garden", "empire", "shadow", "night"]
TITLES = [
    'The "Quoted" Book',
    "Backslash \\ and tab\there",
    "Ünïcödé — ½ ✓ 🚀 漢字",
    "</script><b>html</b> & co",
    "O'Brien's River",
    "  spaced  out  ",
]
CATEGORIES = [None, "SF", "Fantasy", "History", "Poetry & Verse", "Ümlaut", "sf"]
NOTES = [
    None,
    "",
    "a dune of spice in the desert",
    "<b>bold</b> & <i>italic</i> <script>alert('x')</script> ocean",
    " ".join(WORDS * 40),  # long: the snippet is a fragment of it
    "garden\nriver\tnight",
]
ISBNS = [None, "9780441013593", "9780306406157", "0-306-40615-2"]


def catalogue_labs() -> list[dict[str, Any]]:
    labs = []
    for i in range(60):
        word, other = WORDS[i % len(WORDS)], WORDS[(i * 5 + 2) % len(WORDS)]
        title = TITLES[i % len(TITLES)] if i % 4 == 0 else f"{word.title()} of the {other} {i}"
        labs.append(
            {
                "title": title,
                "author": ["Frank Herbert", "Ursula K. Le Guin", "Zoë Ålund", "anon"][i % 4],
                "category": CATEGORIES[i % len(CATEGORIES)],
                "publicationYear": None if i % 7 == 0 else 1900 + (i * 13) % 120,
                "isbn": ISBNS[i % len(ISBNS)],
                "rating": [None, 1, 2, 3, 4, 5, None, 5][i % 8],
                "readingStatus": ["TO_READ", "READING", "READ"][i % 3],
                "notes": NOTES[i % len(NOTES)],
                "coverUrl": "https://covers.example.org/x.jpg" if i % 5 == 0 else None,
            }
        )
    return labs


@dataclass
class Catalogue:
    user: User = field(repr=False)
    ids: list[str] = field(repr=False)
    cursors: list[str] = field(default_factory=list, repr=False)
    search_cursors: list[str] = field(default_factory=list, repr=False)


ORDERS: list[list[dict[str, str]]] = [
    [],
    [{"field": "RATING", "direction": "DESC"}],
    [{"field": "TITLE"}, {"field": "PUBLICATION_YEAR", "direction": "DESC"}],
    [{"field": "AUTHOR"}, {"field": "RATING"}],
    [{"field": "UPDATED_AT", "direction": "DESC"}],
]


@pytest.fixture(scope="module")
async def catalogue(client: httpx.AsyncClient) -> Catalogue:
    api = Api(client)
    user = await api.sign_up()
    data = await api.ok(
        "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { ids } }",
        {"labs": catalogue_labs()},
        token=user.token,
    )
    found = Catalogue(user, data["importLabs"]["ids"])
    for order in ORDERS:
        after = None
        for _ in range(3):  # some pages forward, every cursor of them
            page = await api.ok(
                "query($o: [LabOrder!], $a: String) { labs(orderBy: $o, first: 7, after: $a)"
                " { edges { cursor } pageInfo { endCursor } } }",
                {"o": order, "a": after},
                token=user.token,
            )
            found.cursors += [e["cursor"] for e in page["labs"]["edges"]]
            after = page["labs"]["pageInfo"]["endCursor"]
    for text in ["", "dune", "river garden", "ocean"]:
        page = await api.ok(
            "query($q: String!) { searchLabs(query: $q, first: 5) { edges { cursor } } }",
            {"q": text},
            token=user.token,
        )
        found.search_cursors += [e["cursor"] for e in page["searchLabs"]["edges"]]
    return found


async def same(
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    catalogue: Catalogue,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: dict[str, Any] | None = None,
) -> None:
    """`_both`, with the document and both answers in the message when they differ."""
    body: dict[str, object] = {"query": query, "variables": variables}
    caplog.clear()  # the records of earlier examples are not this one's
    try:
        await _both(client, unplanned_client, body, catalogue.user.token, caplog)
    except AssertionError as exc:
        headers = {"authorization": f"Bearer {catalogue.user.token}"}
        planned = await client.post("/graphql", json=body, headers=headers)
        plain = await unplanned_client.post("/graphql", json=body, headers=headers)
        shown = json.dumps(body, ensure_ascii=False)
        raise AssertionError(
            f"{exc}\n{shown}\nplanned {planned.status_code}: {planned.text}\n"
            f"strawberry {plain.status_code}: {plain.text}"
        ) from None


# -- documents from the schema (hypothesis-graphql)

_generated: dict[tuple[str, ...], st.SearchStrategy[str]] = {}


def generated(ids: list[str]) -> st.SearchStrategy[str]:
    key = tuple(ids)
    if key not in _generated:
        known = st.one_of(st.sampled_from(ids), st.uuids().map(str))
        scalars = {
            "UUID": known.map(nodes.String),
            "DateTime": st.datetimes(
                min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)
            ).map(lambda d: nodes.String(d.isoformat() + "+00:00")),
        }
        _generated[key] = queries(SCHEMA, fields=ROOTS, custom_scalars=scalars, allow_x00=False)
    return _generated[key]


@PARITY
@given(data=st.data())
async def test_generated_documents_answer_alike(
    data: st.DataObject,
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    catalogue: Catalogue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = data.draw(generated(catalogue.ids))
    await same(client, unplanned_client, catalogue, caplog, document)


# -- documents of our own

OBJECTS: dict[str, dict[str, str | None]] = {
    # field → its object type (None: a leaf)
    "Lab": dict.fromkeys(
        [
            "id",
            "title",
            "author",
            "category",
            "publicationYear",
            "isbn",
            "rating",
            "readingStatus",
            "notes",
            "coverUrl",
            "createdAt",
            "updatedAt",
        ]
    ),
    "LabConnection": {
        "edges": "LabEdge",
        "nodes": "Lab",
        "pageInfo": "PageInfo",
        "totalCount": None,
    },
    "LabEdge": {"cursor": None, "node": "Lab"},
    "PageInfo": dict.fromkeys(["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"]),
    "LabSearchConnection": {
        "edges": "LabSearchEdge",
        "pageInfo": "PageInfo",
        "totalCount": None,
        "facets": "SearchFacets",
        "suggestion": None,
    },
    "LabSearchEdge": {"cursor": None, "rank": None, "snippet": None, "node": "Lab"},
    "SearchFacets": {
        "byCategory": "CategoryCount",
        "byStatus": "StatusCount",
        "byRating": "RatingCount",
    },
    "CategoryCount": dict.fromkeys(["category", "count"]),
    "StatusCount": dict.fromkeys(["status", "count"]),
    "RatingCount": dict.fromkeys(["rating", "count"]),
    "LabStats": {
        **dict.fromkeys(
            [
                "totalLabs",
                "labsRead",
                "labsReading",
                "labsToRead",
                "averageRating",
                "totalAuthors",
                "totalCategories",
            ]
        ),
        "byCategory": "CategoryCount",
        "ratingDistribution": "RatingCount",
    },
}
ROOT_TYPES = {
    "labs": "LabConnection",
    "lab": "Lab",
    "searchLabs": "LabSearchConnection",
    "labStats": "LabStats",
}
# the directives a selection may carry, and the variables they use
DIRECTIVES = [
    ("", set()),
    ("@include(if: $yes)", {"yes"}),
    ("@skip(if: $no)", {"no"}),
    ("@include(if: $no)", {"no"}),
    ("@skip(if: $yes)", {"yes"}),
    ("@skip(if: false) @include(if: true)", set()),
]


class Document:
    """A document being drawn: its fragments, variables and a counter for names."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.fragments: list[str] = []
        self.used: set[str] = set()
        self.declared: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def directive(self) -> str:
        text, used = self.draw(
            st.sampled_from(DIRECTIVES[:1] * 4 + DIRECTIVES)  # mostly none
        )
        self.used |= used
        return f" {text}" if text else ""

    def variable(self, graphql_type: str, value: Any) -> str:
        name = self.name("v")
        self.declared[name] = graphql_type
        self.values[name] = value
        return f"${name}"

    def selection(self, type_name: str, depth: int = 0) -> str:
        fields = OBJECTS[type_name]
        chosen = self.draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=5))
        parts = []
        for name in chosen:
            child = fields[name]
            alias = f"{self.name('k')}: " if self.draw(st.integers(0, 4)) == 0 else ""
            text = f"{alias}{name}{self.directive()}"
            if child is not None:
                text += f" {{ {self.selection(child, depth + 1)} }}"
            parts.append(text)
        if self.draw(st.integers(0, 3)) == 0:
            parts.append("__typename")
        if depth < 3 and self.draw(st.integers(0, 3)) == 0:  # some of it in a fragment
            inner = self.selection(type_name, depth + 1)
            if self.draw(st.booleans()):
                parts.append(f"... on {type_name}{self.directive()} {{ {inner} }}")
            else:
                fragment = self.name("F")
                self.fragments.append(f"fragment {fragment} on {type_name} {{ {inner} }}")
                parts.append(f"...{fragment}{self.directive()}")
        order = self.draw(st.permutations(parts))
        return " ".join(order)

    def text(self, roots: list[str]) -> tuple[str, dict[str, Any]]:
        variables = {"yes": "Boolean!", "no": "Boolean!"}
        declared = [f"${k}: {t}" for k, t in variables.items() if k in self.used]
        declared += [f"${k}: {t}" for k, t in self.declared.items()]
        values = {k: k == "yes" for k in variables if k in self.used} | self.values
        head = f"query({', '.join(declared)})" if declared else "query"
        return " ".join([f"{head} {{ {' '.join(roots)} }}", *self.fragments]), values


def catalogue_text(words: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(words),
        st.sampled_from(words).map(lambda w: w[: max(1, len(w) // 2)]),
        st.sampled_from(words).map(str.upper),
        st.text(max_size=6).filter(lambda s: "\x00" not in s),
    )


STRINGS = catalogue_text(
    WORDS + [t for t in TITLES] + [c for c in CATEGORIES if c] + ["Frank Herbert", "anon", "%", "_"]
)
INTS = st.one_of(st.integers(-1, 6), st.integers(1890, 2030))


def string_filter() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "eq": STRINGS,
            "neq": STRINGS,
            "in": st.lists(STRINGS, max_size=3),
            "isNull": st.booleans(),
            "startsWith": STRINGS,
            "ilike": STRINGS.map(lambda s: f"%{s}%"),
        },
    )


def int_filter() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={k: INTS for k in ["eq", "neq", "gt", "gte", "lt", "lte"]}
        | {"in": st.lists(INTS, max_size=3), "isNull": st.booleans()},
    )


TIMES = st.sampled_from(["2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"])
STATUS = st.sampled_from(["TO_READ", "READING", "READ"])
LEAF_FILTER = st.fixed_dictionaries(
    {},
    optional={
        "title": string_filter(),
        "author": string_filter(),
        "category": string_filter(),
        "isbn": string_filter(),
        "rating": int_filter(),
        "publicationYear": int_filter(),
        "readingStatus": st.fixed_dictionaries(
            {}, optional={"eq": STATUS, "neq": STATUS, "in": st.lists(STATUS, max_size=3)}
        ),
        "createdAt": st.fixed_dictionaries({}, optional={"gt": TIMES, "lte": TIMES}),
        "updatedAt": st.fixed_dictionaries({}, optional={"gte": TIMES, "lt": TIMES}),
    },
)
FILTERS = st.recursive(
    LEAF_FILTER,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"and": st.lists(inner, max_size=2)}),
        st.fixed_dictionaries({"or": st.lists(inner, max_size=2)}),
        st.fixed_dictionaries({"not": inner}),
    ),
    max_leaves=3,
)
ORDER = orders(["ASC", "DESC"], max_size=3)
COUNTS = st.one_of(st.integers(0, 12), st.sampled_from([60, 100, 101, -1]))
SEARCH_TEXT = st.lists(
    st.one_of(
        st.sampled_from(WORDS),
        st.sampled_from(WORDS).map(lambda w: w[:3]),
        st.sampled_from(WORDS).map(lambda w: f"-{w}"),
        st.sampled_from(["or", '"dune of"', "Herbert", "Ümlaut", "🚀", "'", "&"]),
    ),
    max_size=3,
).map(" ".join)


@st.composite
def own_documents(draw: st.DrawFn, catalogue: Catalogue) -> tuple[str, dict[str, Any]]:
    doc = Document(draw)
    roots = draw(st.lists(st.sampled_from(ROOTS), min_size=1, max_size=3))
    texts = []
    for i, root in enumerate(roots):
        arguments: dict[str, tuple[str, Any]] = {}
        if root == "labs":
            cursors = st.sampled_from(catalogue.cursors)
            drawn = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "filter": FILTERS,
                        "orderBy": ORDER,
                        "first": COUNTS,
                        "after": cursors,
                        "last": COUNTS,
                        "before": cursors,
                    },
                )
            )
            types = {"filter": "LabFilter", "orderBy": "[LabOrder!]", "after": "String"}
            types |= {"before": "String", "first": "Int", "last": "Int"}
            arguments = {k: (types[k], v) for k, v in drawn.items()}
        elif root == "lab":
            lab_id = draw(st.one_of(st.sampled_from(catalogue.ids), st.uuids().map(str)))
            arguments = {"id": ("UUID!", lab_id)}
        elif root == "searchLabs":
            drawn = draw(
                st.fixed_dictionaries(
                    {"query": SEARCH_TEXT},
                    optional={
                        "filter": FILTERS,
                        "first": COUNTS,
                        "after": st.sampled_from(catalogue.search_cursors),
                        "prefix": st.booleans(),
                    },
                )
            )
            types = {"query": "String!", "filter": "LabFilter", "first": "Int"}
            types |= {"after": "String", "prefix": "Boolean"}
            arguments = {k: (types[k], v) for k, v in drawn.items()}
        else:
            if draw(st.booleans()):
                arguments = {"filter": ("LabFilter", draw(FILTERS))}
        args = ", ".join(f"{k}: {doc.variable(t, v)}" for k, (t, v) in arguments.items())
        head = f"r{i}: {root}" if i or draw(st.booleans()) else root
        head += f"({args})" if args else ""
        texts.append(f"{head} {{ {doc.selection(ROOT_TYPES[root])} }}")
    return doc.text(texts)


@settings(PARITY, max_examples=60)
@given(data=st.data())
async def test_composed_documents_answer_alike(
    data: st.DataObject,
    client: httpx.AsyncClient,
    unplanned_client: httpx.AsyncClient,
    catalogue: Catalogue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    query, variables = data.draw(own_documents(catalogue))
    await same(client, unplanned_client, catalogue, caplog, query, variables)


def test_the_catalogue_is_varied() -> None:
    labs = catalogue_labs()
    assert {lab["rating"] for lab in labs} == {None, 1, 2, 3, 4, 5}
    assert {lab["notes"] for lab in labs} == set(NOTES)
    assert {lab["readingStatus"] for lab in labs} == {"TO_READ", "READING", "READ"}
