"""Lab filters against a fixed catalogue held twice: in the API and here, in Python.

Each case compares the ids the API returns with the ids a Python predicate picks. NULLs follow
SQL's three-valued logic (contract: `neq`, `not` and comparisons never match a NULL; only
`isNull` does), so the predicates spell out `is not None` where SQL would answer unknown.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Api, User, error_codes

LABS = """
query($filter: LabFilter, $first: Int, $after: String) {
  labs(filter: $filter, first: $first, after: $after) {
    totalCount
    nodes { id }
    pageInfo { hasNextPage endCursor }
  }
}"""

ALL_FIELDS = """
query {
  labs(first: 100) {
    totalCount
    nodes {
      id title author category publicationYear isbn rating readingStatus createdAt updatedAt
    }
  }
}"""

IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { inserted ids } }"
CREATE = "mutation($input: CreateLabInput!) { createLab(input: $input) { id } }"
UPDATE = (
    "mutation($id: UUID!, $input: UpdateLabInput!) { updateLab(id: $id, input: $input) { id } }"
)


def isbn13(prefix: str) -> str:
    """A hyphenated ISBN-13: `prefix` (12 digits and hyphens) and its check digit."""
    digits = prefix.replace("-", "")
    total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(digits))
    return f"{prefix}-{(10 - total % 10) % 10}"


def normalised(isbn: str) -> str:
    return re.sub(r"[\s-]", "", isbn).upper()


DUNE_ISBN = isbn13("978-0-441-17271")
CHILDREN_ISBN = isbn13("978-0-593-09823")
SNAKE_ISBN = isbn13("978-1-59327-599")
HOBBIT_ISBN10 = "0-8044-2957-x"  # a valid ISBN-10 whose check digit is X, typed in lower case
FERMI_ISBN = isbn13("978-0-486-60361")
GIBSON_ISBN = isbn13("978-0-441-56959")
ASIMOV_ISBN = isbn13("978-0-553-29335")
SAGAN_ISBN = isbn13("978-0-345-53943")

# title, author, category, publicationYear, isbn (as typed), rating, readingStatus
Spec = tuple[str, str, str | None, int | None, str | None, int | None, str]
FIRST_IMPORT: list[Spec] = [
    ("Dune", "Frank Herbert", "Science Fiction", 1965, DUNE_ISBN, 5, "READ"),
    ("dune messiah", "frank herbert", "science fiction", 1969, None, 4, "READING"),
    ("DUNE", "Frank Herbert", None, None, None, None, "TO_READ"),
    ("Children of Dune", "Frank Herbert", "Science Fiction", 1976, CHILDREN_ISBN, 3, "READ"),
    ("100% Pure", "Ann Leckie", "Sci%Fi", 2013, None, 2, "TO_READ"),
    ("100 Percent", "Ann Leckie", "SciXFi", 2014, None, None, "READING"),
    ("1000 Pure", "ann leckie", None, 2015, None, 1, "READ"),
    ("snake_case Guide", "Guido_van", "Programming", 1991, SNAKE_ISBN, 4, "READ"),
    ("snakeXcase Guide", "GuidoXvan", "programming", 1995, None, None, "TO_READ"),
    ("snake case Guide", "Guido van", "Programming", None, None, 2, "READING"),
    ("The_Hobbit", "J.R.R. Tolkien", "Fantasy", 1937, HOBBIT_ISBN10, 5, "READ"),
    ("The Hobbit", "J.R.R. Tolkien", "Fantasy", 1937, None, 4, "TO_READ"),
    ("the hobbit", "j.r.r. tolkien", "fantasy", None, None, None, "TO_READ"),
]
SECOND_IMPORT: list[Spec] = [
    ("Thermodynamics", "Enrico Fermi", "Physics", 1956, FERMI_ISBN, 3, "READING"),
    ("50%_off", "Max Sale", "Business", 2001, None, 1, "TO_READ"),
    ("50% off", "Max Sale", "Business", 2002, None, 1, "READ"),
    ("Neuromancer", "William Gibson", "Science Fiction", 1984, GIBSON_ISBN, 5, "READ"),
    ("neuromancer", "william gibson", "   ", 1984, None, None, "READING"),  # blank: null
    ("Foundation", "Isaac Asimov", "Science Fiction", 1951, ASIMOV_ISBN, 4, "READ"),
    ("Foundation and Empire", "Isaac Asimov", "Science Fiction", 1952, None, 3, "READING"),
    ("Second Foundation", "Isaac Asimov", "Science Fiction", 1953, None, None, "TO_READ"),
    ("Quasar Chronicles", "Vera Rubin", "Astronomy", 2020, None, 2, "TO_READ"),
    ("A_B", "Ab Ba", None, 1999, None, 3, "READ"),
    ("AxB", "Ab Ba", "Misc", 2000, None, None, "TO_READ"),
    ("a%b", "ab ba", "misc", None, None, 5, "READING"),
    ("abc", "Ab Ba", "Misc", 1000, None, 1, "READ"),
]
# created one by one, so each has its own createdAt
SINGLES: list[Spec] = [
    ("Zen", "Shunryu Suzuki", "Philosophy", 1970, None, 4, "TO_READ"),
    ("  zen\t", "shunryu suzuki", "Philosophy", 1970, None, None, "READ"),  # trimmed
    ("Year One", "Anon", None, 2020, None, 2, "READING"),
    ("Cosmos", "Carl Sagan", "Astronomy", 1980, SAGAN_ISBN, 5, "READING"),
]


def lab_input(spec: Spec) -> dict[str, Any]:
    title, author, category, year, isbn, rating, status = spec
    return {
        "title": title,
        "author": author,
        "category": category,
        "publicationYear": year,
        "isbn": isbn,
        "rating": rating,
        "readingStatus": status,
    }


@dataclass(frozen=True)
class Lab:
    """A lab as the API reads it back."""

    id: str
    title: str
    author: str
    category: str | None
    year: int | None
    isbn: str | None
    rating: int | None
    status: str
    created_at: str
    updated_at: str

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> Lab:
        return cls(
            id=node["id"],
            title=node["title"],
            author=node["author"],
            category=node["category"],
            year=node["publicationYear"],
            isbn=node["isbn"],
            rating=node["rating"],
            status=node["readingStatus"],
            created_at=node["createdAt"],
            updated_at=node["updatedAt"],
        )


@dataclass(frozen=True)
class Catalogue:
    user: User
    labs: list[Lab]
    first_import: list[str]  # ids, in input order
    second_import: list[str]
    singles: list[str]
    updated: str  # the lab updated after everything was created
    other: User
    other_labs: list[Lab]

    def by_id(self, lab_id: str) -> Lab:
        return next(lab for lab in self.labs if lab.id == lab_id)


async def fill(api: Api, user: User) -> tuple[list[str], list[str], list[str], str]:
    """The whole catalogue for `user`: two imports, then the singles one at a time."""
    ids: list[list[str]] = []
    for batch in (FIRST_IMPORT, SECOND_IMPORT):
        data = await api.ok(IMPORT, {"labs": [lab_input(s) for s in batch]}, token=user.token)
        assert data["importLabs"]["inserted"] == len(batch)
        ids.append(data["importLabs"]["ids"])
    singles = []
    for spec in SINGLES:
        data = await api.ok(CREATE, {"input": lab_input(spec)}, token=user.token)
        singles.append(data["createLab"]["id"])
    updated = ids[0][1]  # dune messiah: only its notes change, its filtered fields do not
    await api.ok(UPDATE, {"id": updated, "input": {"notes": "reread"}}, token=user.token)
    return ids[0], ids[1], singles, updated


async def read_all(api: Api, user: User) -> list[Lab]:
    data = await api.ok(ALL_FIELDS, token=user.token)
    return [Lab.from_node(n) for n in data["labs"]["nodes"]]


@pytest.fixture(scope="module")
async def catalogue(client: httpx.AsyncClient) -> Catalogue:
    api = Api(client)
    user, other = await api.sign_up(), await api.sign_up()
    first, second, singles, updated = await fill(api, user)
    await fill(api, other)  # the same titles, another owner
    return Catalogue(
        user=user,
        labs=await read_all(api, user),
        first_import=first,
        second_import=second,
        singles=singles,
        updated=updated,
        other=other,
        other_labs=await read_all(api, other),
    )


async def matching(api: Api, user: User, where: dict[str, Any]) -> set[str]:
    """The ids `where` selects, checking totalCount agrees and nothing is left over."""
    data = (await api.ok(LABS, {"filter": where, "first": 100}, token=user.token))["labs"]
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids))
    assert data["totalCount"] == len(ids)
    assert not data["pageInfo"]["hasNextPage"]
    return set(ids)


def like(value: str | None, pattern: str) -> bool:
    """SQL ILIKE on ASCII text: `%` any run, `_` any one character, case-insensitive."""
    if value is None:
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


Predicate = Callable[[Lab], bool]

# (filter, which labs it should select); see test_every_case_is_a_real_test for `trivial`
CASES: list[Any] = [
    # StringFilter
    pytest.param({"title": {"eq": "Dune"}}, lambda r: r.title == "Dune", id="eq"),
    pytest.param(
        {"title": {"eq": "neuromancer"}}, lambda r: r.title == "neuromancer", id="eq-is-exact"
    ),
    pytest.param({"title": {"neq": "Dune"}}, lambda r: r.title != "Dune", id="neq"),
    pytest.param(
        {"category": {"neq": "Science Fiction"}},
        lambda r: r.category is not None and r.category != "Science Fiction",
        id="neq-never-matches-null",
    ),
    pytest.param(
        {"title": {"in": ["Dune", "zen", "Missing"]}},
        lambda r: r.title in ("Dune", "zen"),
        id="in",
    ),
    pytest.param(
        {"category": {"in": ["Fantasy", "Physics"]}},
        lambda r: r.category in ("Fantasy", "Physics"),
        id="in-nullable",
    ),
    pytest.param({"category": {"in": []}}, lambda r: False, id="in-empty-matches-none"),
    pytest.param({"category": {"isNull": True}}, lambda r: r.category is None, id="is-null"),
    pytest.param(
        {"category": {"isNull": False}}, lambda r: r.category is not None, id="is-not-null"
    ),
    pytest.param(
        {"title": {"startsWith": "Dune"}}, lambda r: r.title == "Dune", id="starts-with-cased"
    ),
    pytest.param(
        {"title": {"startsWith": "100%"}},
        lambda r: r.title == "100% Pure",
        id="starts-with-percent-is-literal",
    ),
    pytest.param(
        {"title": {"startsWith": "snake_"}},
        lambda r: r.title == "snake_case Guide",
        id="starts-with-underscore-is-literal",
    ),
    pytest.param(
        {"title": {"startsWith": "50%_"}},
        lambda r: r.title == "50%_off",
        id="starts-with-both-literal",
    ),
    pytest.param(
        {"category": {"startsWith": "Sci"}},
        lambda r: r.category in ("Science Fiction", "Sci%Fi", "SciXFi"),
        id="starts-with-nullable",
    ),
    pytest.param({"title": {"startsWith": ""}}, lambda r: True, id="starts-with-empty"),
    pytest.param({"title": {"ilike": "dune"}}, lambda r: r.title.lower() == "dune", id="ilike"),
    pytest.param(
        {"title": {"ilike": "%dune%"}}, lambda r: "dune" in r.title.lower(), id="ilike-percent"
    ),
    pytest.param(
        {"title": {"ilike": "the_hobbit"}},
        lambda r: r.title.lower() in ("the_hobbit", "the hobbit"),
        id="ilike-underscore",
    ),
    pytest.param(
        {"title": {"ilike": "100%"}}, lambda r: r.title.startswith("100"), id="ilike-prefix"
    ),
    pytest.param(
        {"title": {"ilike": "a_b"}},
        lambda r: r.title in ("A_B", "AxB", "a%b"),
        id="ilike-one-character",
    ),
    pytest.param(
        {"category": {"ilike": "sci%"}},
        lambda r: r.category is not None and r.category.lower().startswith("sci"),
        id="ilike-nullable",
    ),
    pytest.param(
        {"author": {"ilike": "%LECKIE"}},
        lambda r: r.author.lower().endswith("leckie"),
        id="ilike-author",
    ),
    pytest.param(
        {"author": {"eq": "Frank Herbert"}}, lambda r: r.author == "Frank Herbert", id="eq-author"
    ),
    # IntFilter: rating
    pytest.param({"rating": {"eq": 5}}, lambda r: r.rating == 5, id="rating-eq"),
    pytest.param(
        {"rating": {"neq": 5}},
        lambda r: r.rating is not None and r.rating != 5,
        id="rating-neq-never-matches-null",
    ),
    pytest.param(
        {"rating": {"gt": 3}}, lambda r: r.rating is not None and r.rating > 3, id="rating-gt"
    ),
    pytest.param(
        {"rating": {"gte": 3}}, lambda r: r.rating is not None and r.rating >= 3, id="rating-gte"
    ),
    pytest.param(
        {"rating": {"lt": 3}}, lambda r: r.rating is not None and r.rating < 3, id="rating-lt"
    ),
    pytest.param(
        {"rating": {"lte": 3}}, lambda r: r.rating is not None and r.rating <= 3, id="rating-lte"
    ),
    pytest.param({"rating": {"in": [1, 5]}}, lambda r: r.rating in (1, 5), id="rating-in"),
    pytest.param({"rating": {"in": []}}, lambda r: False, id="rating-in-empty"),
    pytest.param({"rating": {"isNull": True}}, lambda r: r.rating is None, id="rating-is-null"),
    pytest.param(
        {"rating": {"isNull": False}}, lambda r: r.rating is not None, id="rating-is-not-null"
    ),
    # IntFilter: publicationYear
    pytest.param({"publicationYear": {"eq": 1937}}, lambda r: r.year == 1937, id="year-eq"),
    pytest.param(
        {"publicationYear": {"neq": 1984}},
        lambda r: r.year is not None and r.year != 1984,
        id="year-neq",
    ),
    pytest.param(
        {"publicationYear": {"gt": 2000}},
        lambda r: r.year is not None and r.year > 2000,
        id="year-gt",
    ),
    pytest.param(
        {"publicationYear": {"gte": 2000}},
        lambda r: r.year is not None and r.year >= 2000,
        id="year-gte",
    ),
    pytest.param(
        {"publicationYear": {"lt": 1952}},
        lambda r: r.year is not None and r.year < 1952,
        id="year-lt",
    ),
    pytest.param(
        {"publicationYear": {"lte": 1952}},
        lambda r: r.year is not None and r.year <= 1952,
        id="year-lte",
    ),
    pytest.param(
        {"publicationYear": {"in": [1937, 1970, 1]}},
        lambda r: r.year in (1937, 1970),
        id="year-in",
    ),
    pytest.param(
        {"publicationYear": {"isNull": True}}, lambda r: r.year is None, id="year-is-null"
    ),
    pytest.param(
        {"publicationYear": {"isNull": False}}, lambda r: r.year is not None, id="year-is-not-null"
    ),
    # ReadingStatusFilter
    pytest.param({"readingStatus": {"eq": "READ"}}, lambda r: r.status == "READ", id="status-eq"),
    pytest.param({"readingStatus": {"neq": "READ"}}, lambda r: r.status != "READ", id="status-neq"),
    pytest.param(
        {"readingStatus": {"in": ["READ", "READING"]}},
        lambda r: r.status in ("READ", "READING"),
        id="status-in",
    ),
    pytest.param({"readingStatus": {"in": []}}, lambda r: False, id="status-in-empty"),
    # isbn: values are normalised before they are compared with the stored, normalised ones
    pytest.param(
        {"isbn": {"eq": DUNE_ISBN}},
        lambda r: r.isbn == normalised(DUNE_ISBN),
        id="isbn-eq-hyphenated",
    ),
    pytest.param(
        {"isbn": {"eq": " ".join(normalised(FERMI_ISBN))}},
        lambda r: r.isbn == normalised(FERMI_ISBN),
        id="isbn-eq-spaced",
    ),
    pytest.param(
        {"isbn": {"eq": HOBBIT_ISBN10}},
        lambda r: r.isbn == "080442957X",
        id="isbn-eq-lower-case-x",
    ),
    pytest.param(
        {"isbn": {"neq": DUNE_ISBN}},
        lambda r: r.isbn is not None and r.isbn != normalised(DUNE_ISBN),
        id="isbn-neq",
    ),
    pytest.param(
        {"isbn": {"in": [GIBSON_ISBN, normalised(ASIMOV_ISBN), "0 8044 2957 X"]}},
        lambda r: r.isbn in (normalised(GIBSON_ISBN), normalised(ASIMOV_ISBN), "080442957X"),
        id="isbn-in",
    ),
    pytest.param({"isbn": {"isNull": True}}, lambda r: r.isbn is None, id="isbn-is-null"),
    pytest.param(
        {"isbn": {"startsWith": "978044"}},
        lambda r: r.isbn is not None and r.isbn.startswith("978044"),
        id="isbn-starts-with",
    ),
    # the operators of one field are ANDed
    pytest.param(
        {"rating": {"gte": 2, "lte": 4}},
        lambda r: r.rating is not None and 2 <= r.rating <= 4,
        id="one-field-range",
    ),
    pytest.param(
        {"rating": {"in": [1, 2, 3], "neq": 2}}, lambda r: r.rating in (1, 3), id="one-field-in-neq"
    ),
    pytest.param(
        {"rating": {"isNull": True, "neq": 3}}, lambda r: False, id="one-field-null-and-neq"
    ),
    pytest.param(
        {"title": {"startsWith": "Foundation", "neq": "Foundation"}},
        lambda r: r.title == "Foundation and Empire",
        id="one-field-strings",
    ),
    pytest.param(
        {"publicationYear": {"gt": 1950, "lt": 1960, "neq": 1952}},
        lambda r: r.year in (1951, 1953, 1956),
        id="one-field-three-operators",
    ),
    # the fields of one filter are ANDed
    pytest.param(
        {"rating": {"gte": 4}, "readingStatus": {"eq": "READ"}},
        lambda r: r.rating is not None and r.rating >= 4 and r.status == "READ",
        id="two-fields",
    ),
    pytest.param(
        {
            "category": {"eq": "Science Fiction"},
            "publicationYear": {"lt": 1960},
            "title": {"ilike": "%found%"},
        },
        lambda r: r.title in ("Foundation", "Foundation and Empire", "Second Foundation"),
        id="three-fields",
    ),
    # and / or / not
    pytest.param({"and": []}, lambda r: True, id="empty-and-matches-all"),
    pytest.param({"or": []}, lambda r: False, id="empty-or-matches-none"),
    pytest.param({"or": [{}]}, lambda r: True, id="or-of-an-empty-filter"),
    pytest.param({"not": {}}, lambda r: False, id="not-of-an-empty-filter"),
    pytest.param(
        {"and": [{"rating": {"gte": 2}}, {"not": {"readingStatus": {"eq": "READ"}}}]},
        lambda r: r.rating is not None and r.rating >= 2 and r.status != "READ",
        id="and-with-not",
    ),
    pytest.param(
        {"or": [{"rating": {"eq": 5}}, {"category": {"isNull": True}}]},
        lambda r: r.rating == 5 or r.category is None,
        id="or",
    ),
    pytest.param(
        {
            "or": [
                {"title": {"startsWith": "Dune"}},
                {"title": {"startsWith": "Found"}},
                {"publicationYear": {"lt": 1940}},
            ]
        },
        lambda r: (
            r.title in ("Dune", "Foundation", "Foundation and Empire")
            or (r.year is not None and r.year < 1940)
        ),
        id="or-of-three",
    ),
    pytest.param(
        {"not": {"rating": {"gte": 3}}},
        lambda r: r.rating is not None and r.rating < 3,
        id="not-never-matches-null",
    ),
    pytest.param(
        {"not": {"rating": {"isNull": True}}}, lambda r: r.rating is not None, id="not-is-null"
    ),
    pytest.param({"not": {"not": {"rating": {"eq": 3}}}}, lambda r: r.rating == 3, id="not-not"),
    pytest.param(
        {"not": {"rating": {"gte": 2, "lte": 4}}},
        lambda r: r.rating is not None and not 2 <= r.rating <= 4,
        id="not-of-a-range",
    ),
    pytest.param(
        {"not": {"or": [{"rating": {"eq": 5}}, {"publicationYear": {"lt": 1960}}]}},
        # NOT (a OR b) holds only where a and b are both known to be false
        lambda r: r.rating is not None and r.rating != 5 and r.year is not None and r.year >= 1960,
        id="not-of-or",
    ),
    pytest.param(
        {"not": {"and": [{"rating": {"gte": 3}}, {"category": {"eq": "Science Fiction"}}]}},
        # NOT (a AND b) holds where a or b is known to be false
        lambda r: (
            (r.rating is not None and r.rating < 3)
            or (r.category is not None and r.category != "Science Fiction")
        ),
        id="not-of-and",
    ),
    pytest.param(
        {"not": {"title": {"ilike": "%dune%"}}},
        lambda r: "dune" not in r.title.lower(),
        id="not-ilike",
    ),
    pytest.param(
        {
            "and": [
                {"or": [{"rating": {"eq": 1}}, {"rating": {"eq": 5}}]},
                {"not": {"publicationYear": {"lt": 1980}}},
            ]
        },
        lambda r: r.rating in (1, 5) and r.year is not None and r.year >= 1980,
        id="and-of-or-and-not",
    ),
    pytest.param(
        {
            "readingStatus": {"neq": "TO_READ"},
            "or": [{"category": {"ilike": "%fiction"}}, {"rating": {"eq": 1}}],
            "not": {"author": {"ilike": "%asimov"}},
        },
        lambda r: (
            r.status != "TO_READ"
            and ((r.category or "").lower().endswith("fiction") or r.rating == 1)
            and "asimov" not in r.author.lower()
        ),
        id="fields-and-or-and-not-together",
    ),
    pytest.param(
        {"and": [{}, {"rating": {"eq": 3}}], "or": [{"rating": {"eq": 3}}, {"or": []}]},
        lambda r: r.rating == 3,
        id="empty-parts-inside",
    ),
]

# cases that are meant to select nothing or everything
TRIVIAL = {
    "in-empty-matches-none",
    "starts-with-empty",
    "rating-in-empty",
    "status-in-empty",
    "one-field-null-and-neq",
    "empty-and-matches-all",
    "empty-or-matches-none",
    "or-of-an-empty-filter",
    "not-of-an-empty-filter",
}


def expected(catalogue: Catalogue, predicate: Predicate) -> set[str]:
    return {lab.id for lab in catalogue.labs if predicate(lab)}


@pytest.mark.parametrize(("where", "predicate"), CASES)
async def test_filter_selects_what_sql_would(
    api: Api, catalogue: Catalogue, where: dict[str, Any], predicate: Predicate
) -> None:
    assert await matching(api, catalogue.user, where) == expected(catalogue, predicate)


async def test_every_case_is_a_real_test(catalogue: Catalogue) -> None:
    """A case that selects nothing or everything proves little unless it means to."""
    everything = {lab.id for lab in catalogue.labs}
    for case in CASES:
        where, predicate = case.values
        if case.id in TRIVIAL:
            continue
        assert expected(catalogue, predicate) not in (set(), everything), (case.id, where)


# A second model: SQL's three-valued logic, to check random nestings of the leaves above.


def _leaf(value: Any, op: str, operand: Any) -> bool | None:
    if op == "isNull":
        return (value is None) == operand
    if value is None:
        return None
    if op == "eq":
        return bool(value == operand)
    if op == "neq":
        return bool(value != operand)
    if op == "in":
        return value in operand
    if op == "gt":
        return bool(value > operand)
    if op == "gte":
        return bool(value >= operand)
    if op == "lt":
        return bool(value < operand)
    if op == "lte":
        return bool(value <= operand)
    if op == "startsWith":
        return bool(value.startswith(operand))
    if op == "ilike":
        return like(value, operand)
    raise AssertionError(op)


def _all(values: list[bool | None]) -> bool | None:
    if False in values:
        return False
    return None if None in values else True


def _any(values: list[bool | None]) -> bool | None:
    if True in values:
        return True
    return None if None in values else False


FIELDS = {
    "title": "title",
    "author": "author",
    "category": "category",
    "isbn": "isbn",
    "rating": "rating",
    "publicationYear": "year",
    "readingStatus": "status",
}


def truth(where: dict[str, Any], lab: Lab) -> bool | None:
    """SQL's answer for `where` on `lab`: True, False or None (unknown)."""
    parts: list[bool | None] = []
    for name, operators in where.items():
        if name == "and":
            parts.append(_all([truth(w, lab) for w in operators]))
        elif name == "or":
            parts.append(_any([truth(w, lab) for w in operators]))
        elif name == "not":
            inner = truth(operators, lab)
            parts.append(None if inner is None else not inner)
        else:
            value = getattr(lab, FIELDS[name])
            for op, operand in operators.items():
                if name == "isbn" and op in ("eq", "neq"):
                    operand = normalised(operand)
                if name == "isbn" and op == "in":
                    operand = [normalised(i) for i in operand]
                parts.append(_leaf(value, op, operand))
    return _all(parts)


async def test_the_three_valued_model_agrees_with_the_table(catalogue: Catalogue) -> None:
    for case in CASES:
        where, predicate = case.values
        model = {lab.id for lab in catalogue.labs if truth(where, lab) is True}
        assert model == expected(catalogue, predicate), case.id


LEAVES = [case.values[0] for case in CASES if len(case.values[0]) == 1 and case.id not in TRIVIAL]


def random_filter(rng: random.Random, depth: int) -> dict[str, Any]:
    if depth == 0 or rng.random() < 0.3:
        return dict(rng.choice(LEAVES))
    kind = rng.choice(["and", "or", "not", "fields"])
    if kind == "not":
        return {"not": random_filter(rng, depth - 1)}
    if kind == "fields":  # a leaf and a nested part side by side in one LabFilter
        return {**rng.choice(LEAVES), "not": random_filter(rng, depth - 1)}
    return {kind: [random_filter(rng, depth - 1) for _ in range(rng.randint(1, 3))]}


async def test_random_nestings_follow_three_valued_logic(api: Api, catalogue: Catalogue) -> None:
    rng = random.Random(20240611)
    for _ in range(40):
        where = random_filter(rng, 3)
        want = {lab.id for lab in catalogue.labs if truth(where, lab) is True}
        assert await matching(api, catalogue.user, where) == want, where


async def test_the_catalogue_reads_back_normalised(catalogue: Catalogue) -> None:
    by_title = {lab.title: lab for lab in catalogue.labs}
    assert len(catalogue.labs) == len(FIRST_IMPORT) + len(SECOND_IMPORT) + len(SINGLES)
    assert by_title["zen"].status == "READ"  # "  zen\t" was trimmed
    assert by_title["neuromancer"].category is None  # blank category is null
    assert by_title["Dune"].isbn == normalised(DUNE_ISBN)
    assert by_title["The_Hobbit"].isbn == "080442957X"


# DateTimeFilter: values read back from the API, so microseconds must round-trip.


def created(catalogue: Catalogue, ids: list[str]) -> str:
    (value,) = {catalogue.by_id(i).created_at for i in ids}  # one import, one createdAt
    return value


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def test_created_at_keeps_microseconds_and_an_offset(catalogue: Catalogue) -> None:
    for lab in catalogue.labs:
        parsed = instant(lab.created_at)
        assert parsed.utcoffset() is not None
        assert re.search(r"T\d\d:\d\d:\d\d\.\d{6}", lab.created_at), lab.created_at
    moments = [
        created(catalogue, catalogue.first_import),
        created(catalogue, catalogue.second_import),
    ]
    moments += [catalogue.by_id(i).created_at for i in catalogue.singles]
    assert [instant(m) for m in moments] == sorted({instant(m) for m in moments})


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("which", ["second-import", "second-single"])
async def test_created_at_comparisons_at_a_read_back_value(
    api: Api, catalogue: Catalogue, op: str, which: str
) -> None:
    value = (
        created(catalogue, catalogue.second_import)
        if which == "second-import"
        else catalogue.by_id(catalogue.singles[1]).created_at
    )
    at = instant(value)
    compare: dict[str, Callable[[dt.datetime], bool]] = {
        "gt": lambda t: t > at,
        "gte": lambda t: t >= at,
        "lt": lambda t: t < at,
        "lte": lambda t: t <= at,
    }
    want = {lab.id for lab in catalogue.labs if compare[op](instant(lab.created_at))}
    assert 0 < len(want) < len(catalogue.labs)
    assert await matching(api, catalogue.user, {"createdAt": {op: value}}) == want


async def test_gte_includes_the_lab_and_gt_excludes_it(api: Api, catalogue: Catalogue) -> None:
    lab = catalogue.by_id(catalogue.singles[2])
    assert lab.id in await matching(api, catalogue.user, {"createdAt": {"gte": lab.created_at}})
    assert lab.id not in await matching(api, catalogue.user, {"createdAt": {"gt": lab.created_at}})
    assert lab.id in await matching(api, catalogue.user, {"createdAt": {"lte": lab.created_at}})
    assert lab.id not in await matching(api, catalogue.user, {"createdAt": {"lt": lab.created_at}})
    exactly = {"createdAt": {"gte": lab.created_at, "lte": lab.created_at}}
    assert await matching(api, catalogue.user, exactly) == {lab.id}


async def test_the_same_instant_in_another_offset_compares_equal(
    api: Api, catalogue: Catalogue
) -> None:
    lab = catalogue.by_id(catalogue.singles[0])
    at = instant(lab.created_at)
    for zone in (
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(-dt.timedelta(hours=8)),
    ):
        shifted = at.astimezone(zone).isoformat()
        both = {"createdAt": {"gte": shifted, "lte": shifted}}
        assert await matching(api, catalogue.user, both) == {lab.id}, shifted
    zulu = at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    assert await matching(api, catalogue.user, {"createdAt": {"gte": zulu, "lte": zulu}}) == {
        lab.id
    }


async def test_a_whole_import_shares_one_created_at(api: Api, catalogue: Catalogue) -> None:
    value = created(catalogue, catalogue.first_import)
    both = {"createdAt": {"gte": value, "lte": value}}
    assert await matching(api, catalogue.user, both) == set(catalogue.first_import)
    between = {"createdAt": {"gt": value, "lt": catalogue.by_id(catalogue.singles[0]).created_at}}
    assert await matching(api, catalogue.user, between) == set(catalogue.second_import)


async def test_updated_at_filter_sees_the_update(api: Api, catalogue: Catalogue) -> None:
    latest_creation = max((lab.created_at for lab in catalogue.labs), key=instant)
    later = {"updatedAt": {"gt": latest_creation}}
    assert await matching(api, catalogue.user, later) == {catalogue.updated}
    updated = catalogue.by_id(catalogue.updated)
    assert await matching(api, catalogue.user, {"updatedAt": {"gte": updated.updated_at}}) == {
        catalogue.updated
    }
    assert updated.id in await matching(
        api,
        catalogue.user,
        {"createdAt": {"lt": latest_creation}, "updatedAt": {"gt": updated.created_at}},
    )


async def test_datetime_without_an_offset_is_bad_user_input(api: Api, catalogue: Catalogue) -> None:
    result = await api.gql(
        LABS, {"filter": {"createdAt": {"gt": "2024-01-01T00:00:00"}}}, token=catalogue.user.token
    )
    assert error_codes(result) == ["BAD_USER_INPUT"]


# A filter together with pagination; another user's labs.


async def test_filter_with_pagination_counts_the_filtered_labs(
    api: Api, catalogue: Catalogue
) -> None:
    where = {"or": [{"category": {"ilike": "%fiction%"}}, {"rating": {"isNull": True}}]}
    want = [lab for lab in catalogue.labs if truth(where, lab) is True]
    # the default order: createdAt DESC, then id (the direction of the last key)
    want.sort(key=lambda lab: (instant(lab.created_at), lab.id), reverse=True)
    assert len(want) > 3 * 4
    seen: list[str] = []
    after = None
    while True:
        variables = {"filter": where, "first": 4, "after": after}
        data = (await api.ok(LABS, variables, token=catalogue.user.token))["labs"]
        assert data["totalCount"] == len(want)
        seen += [n["id"] for n in data["nodes"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == [lab.id for lab in want]


async def test_another_users_labs_never_appear(api: Api, catalogue: Catalogue) -> None:
    mine = {lab.id for lab in catalogue.labs}
    theirs = {lab.id for lab in catalogue.other_labs}
    assert len(theirs) == len(mine) and not mine & theirs
    for case in CASES:
        where = case.values[0]
        for user, own in ((catalogue.user, mine), (catalogue.other, theirs)):
            assert await matching(api, user, where) <= own, case.id
    # the same catalogue, so the same filters select as many labs for each
    for where in ({"title": {"eq": "Dune"}}, {"not": {"rating": {"isNull": True}}}, {"and": []}):
        assert len(await matching(api, catalogue.other, where)) == len(
            await matching(api, catalogue.user, where)
        )


# Values PostgreSQL cannot hold are the client's fault.


@pytest.mark.parametrize(
    "where",
    [
        pytest.param({"title": {"eq": "nul\u0000byte"}}, id="nul-in-text"),
        pytest.param({"createdAt": {"gt": "0001-01-01T00:00:00+05:00"}}, id="before-year-one"),
        pytest.param({"createdAt": {"lt": "9999-12-31T23:59:59-05:00"}}, id="after-year-9999"),
        pytest.param({"rating": {"eq": 2**31}}, id="int-out-of-range"),
    ],
)
async def test_unstorable_filter_values_are_bad_user_input(
    api: Api, catalogue: Catalogue, where: dict[str, Any]
) -> None:
    result = await api.gql(LABS, {"filter": where}, token=catalogue.user.token)
    assert error_codes(result) == ["BAD_USER_INPUT"]


async def test_unstorable_filter_values_name_the_field(api: Api, catalogue: Catalogue) -> None:
    result = await api.gql(
        LABS, {"filter": {"title": {"eq": "nul\u0000byte"}}}, token=catalogue.user.token
    )
    assert result["errors"][0]["extensions"].get("field") == "filter.title"
    nested = {
        "or": [{"rating": {"eq": 1}}, {"not": {"createdAt": {"gt": "0001-01-01T00:00:00+05:00"}}}]
    }
    result = await api.gql(LABS, {"filter": nested}, token=catalogue.user.token)
    assert result["errors"][0]["extensions"].get("field") == "filter.or[1].not.createdAt"
