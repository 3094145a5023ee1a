"""ISBN digits are ASCII only, and importLabs names the item of a bad value (`labs[2].isbn`)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from scriptlabs.labs import isbn
from tests.conftest import Api, User
from tests.test_validation import lab_count, refusal

CREATE = "mutation($input: CreateLabInput!) { createLab(input: $input) { id isbn } }"
IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { inserted ids } }"

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

# valid ISBNs written with digits that str.isdigit() and int() accept but ISBNs do not have
NON_ASCII = [
    "0306406152".translate(ARABIC_INDIC),
    "9780306406157".translate(ARABIC_INDIC),
    "0306406152".translate(FULLWIDTH),
    "978-0-306-40615-7".translate(FULLWIDTH),
    "030640615" + "２",  # one fullwidth check digit
    "080442957" + "Ｘ".lower(),  # fullwidth x
    "03064" + "٠" + "6152",  # one Arabic-Indic zero in the middle
    "030640615\N{MATHEMATICAL BOLD DIGIT TWO}",
]


@pytest.mark.parametrize("raw", NON_ASCII)
def test_non_ascii_digits_are_not_an_isbn(raw: str) -> None:
    assert not isbn.is_valid(isbn.normalize(raw))


def test_the_same_isbns_in_ascii_are_valid() -> None:
    for raw in ("0306406152", "9780306406157", "978-0-306-40615-7", "080442957x"):
        assert isbn.is_valid(isbn.normalize(raw)), raw


@pytest.fixture
async def user(api: Api) -> User:
    return await api.sign_up()


@pytest.mark.parametrize("raw", NON_ASCII)
async def test_create_lab_refuses_non_ascii_isbn_digits(
    api: Api, admin: asyncpg.Connection, user: User, raw: str
) -> None:
    values = {"title": "A title", "author": "An author", "isbn": raw}
    error = refusal(await api.gql(CREATE, {"input": values}, token=user.token))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.isbn"}, error
    assert await lab_count(admin, user) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("isbn", "0306406153"),  # check digit should be 2
        ("isbn", "0306406152".translate(ARABIC_INDIC)),  # only the database refused it once
        ("isbn", "9780306406157".translate(FULLWIDTH)),
        ("rating", 6),
        ("rating", 0),
    ],
)
async def test_import_names_the_third_item_of_a_bad_value(
    api: Api, admin: asyncpg.Connection, user: User, field: str, value: Any
) -> None:
    labs: list[dict[str, Any]] = [
        {"title": f"Lab {i}", "author": f"Author {i}", "isbn": "978-0-306-40615-7"}
        for i in range(5)
    ]
    labs[2][field] = value
    error = refusal(await api.gql(IMPORT, {"labs": labs}, token=user.token))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"labs[2].{field}"}, error
    assert await lab_count(admin, user) == 0
