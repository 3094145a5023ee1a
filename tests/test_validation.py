"""What a lab may hold: each refusal names its field, values are normalised, and a mutation
that fails anywhere writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from tests.conftest import Api, User, error_codes

LAB = (
    "id title author category publicationYear isbn rating readingStatus notes coverUrl"
    " createdAt updatedAt"
)
CREATE = f"mutation($input: CreateLabInput!) {{ createLab(input: $input) {{ {LAB} }} }}"
UPDATE = (
    "mutation($id: UUID!, $input: UpdateLabInput!) {"
    f" updateLab(id: $id, input: $input) {{ {LAB} }} }}"
)
IMPORT = "mutation($labs: [CreateLabInput!]!) { importLabs(labs: $labs) { inserted ids } }"
GET = f"query($id: UUID!) {{ lab(id: $id) {{ {LAB} }} }}"

# what no error message may contain: SQL, driver or Python internals
LEAKS = (
    "traceback",
    "select ",
    "insert ",
    "update public",
    "delete from",
    "violates",
    "constraint",
    "asyncpg",
    "postgres",
    "sqlstate",
    'file "',
    "exception",
    "labs_",
)

NEXT_DECADE = dt.datetime.now(dt.UTC).year + 10


def assert_clean(result: dict[str, Any]) -> None:
    """No error leaks internals or is an INTERNAL_SERVER_ERROR."""
    for error in result.get("errors", []):
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
        text = json.dumps(error).lower()
        for leak in LEAKS:
            assert leak not in text, (leak, error)


def refusal(result: dict[str, Any]) -> dict[str, Any]:
    """The one error of a failed operation (data null)."""
    assert_clean(result)
    assert result.get("data") is None, result
    assert len(result.get("errors", [])) == 1, result
    error: dict[str, Any] = result["errors"][0]
    return error


async def lab_count(admin: asyncpg.Connection, user: User) -> int:
    count = await admin.fetchval(
        "select count(*) from public.labs where user_id = $1", uuid.UUID(user.id)
    )
    return int(count)


async def create(api: Api, user: User, **values: Any) -> dict[str, Any]:
    values = {"title": "A title", "author": "An author", **values}
    data = await api.ok(CREATE, {"input": values}, token=user.token)
    lab: dict[str, Any] = data["createLab"]
    return lab


@pytest.fixture
async def user(api: Api) -> User:
    return await api.sign_up()


# --- createLab: refusals ------------------------------------------------------------------

BAD_VALUES: list[tuple[str, Any]] = [
    ("rating", 0),
    ("rating", 7),
    ("rating", -1),
    ("isbn", "0306406153"),  # ISBN-10, check digit should be 2
    ("isbn", "9780306406158"),  # ISBN-13, check digit should be 7
    ("isbn", "030640615"),
    ("isbn", "97803064061577"),
    ("isbn", "X306406152"),
    ("isbn", "abc"),
    ("isbn", ""),
    ("publicationYear", 999),
    ("publicationYear", 3000),
    ("publicationYear", NEXT_DECADE + 1),
    ("publicationYear", -5),
    ("coverUrl", "ftp://x"),
    ("coverUrl", "javascript:alert(1)"),
    ("coverUrl", "example.com/cover.png"),
    ("coverUrl", ""),
    ("notes", "n" * 10_001),
    ("title", ""),
    ("title", "  \t\n"),
    ("title", "t" * 501),
    ("author", ""),
    ("author", " \t\r\n "),
    ("author", "a" * 301),
    ("category", "c" * 101),
    ("notes", "before\x00after"),
    ("title", "nul\x00title"),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
async def test_create_lab_refuses_a_bad_value_naming_its_field(
    api: Api, admin: asyncpg.Connection, user: User, field: str, value: Any
) -> None:
    values = {"title": "A title", "author": "An author", field: value}
    error = refusal(await api.gql(CREATE, {"input": values}, token=user.token))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"input.{field}"}, error
    assert error["path"] == ["createLab"]
    assert await lab_count(admin, user) == 0


@pytest.mark.parametrize(
    "literal",
    [
        "rating: 2147483648",
        'rating: "5"',
        "rating: 4.5",
        "publicationYear: 1e3",
        "readingStatus: DONE",
        'readingStatus: "READ"',
        "title: null",
        "title: 5",
    ],
)
async def test_a_literal_of_the_wrong_type_is_bad_user_input(
    api: Api, admin: asyncpg.Connection, user: User, literal: str
) -> None:
    result = await api.gql(
        f'mutation {{ createLab(input: {{title: "t", author: "a", {literal}}}) {{ id }} }}',
        token=user.token,
    )
    assert_clean(result)
    assert "data" not in result, result  # refused before execution
    assert set(error_codes(result)) == {"BAD_USER_INPUT"}, result
    assert await lab_count(admin, user) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rating", 2**31),
        ("rating", "5"),
        ("rating", 4.5),
        ("publicationYear", "1999"),
        ("readingStatus", "DONE"),
        ("readingStatus", "read"),
        ("title", None),
        ("author", 5),
    ],
)
async def test_a_variable_of_the_wrong_type_is_bad_user_input_naming_the_path(
    api: Api, admin: asyncpg.Connection, user: User, field: str, value: Any
) -> None:
    values = {"title": "t", "author": "a", field: value}
    result = await api.gql(CREATE, {"input": values}, token=user.token)
    assert_clean(result)
    assert "data" not in result, result
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    message = result["errors"][0]["message"]
    assert "$input" in message and f".{field}" in message, message
    assert await lab_count(admin, user) == 0


async def test_a_malformed_uuid_is_bad_user_input(api: Api, user: User) -> None:
    for result in (
        await api.gql('{ lab(id: "not-a-uuid") { id } }', token=user.token),
        await api.gql(GET, {"id": "not-a-uuid"}, token=user.token),
        await api.gql('mutation { deleteLab(id: "1; drop table labs") }', token=user.token),
    ):
        assert_clean(result)
        assert error_codes(result) == ["BAD_USER_INPUT"], result


# --- createLab: accepted values and normalisation ------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0-306-40615-2", "0306406152"),
        ("0 306 40615 2", "0306406152"),
        ("080442957x", "080442957X"),
        ("0-8044-2957-x", "080442957X"),
        ("978-0-306-40615-7", "9780306406157"),
        (" 978 0306406157 ", "9780306406157"),
    ],
)
async def test_isbn_is_normalised(api: Api, user: User, given: str, stored: str) -> None:
    lab = await create(api, user, isbn=given)
    assert lab["isbn"] == stored
    again = await api.ok(GET, {"id": lab["id"]}, token=user.token)
    assert again["lab"]["isbn"] == stored


async def test_limits_are_inclusive(api: Api, user: User) -> None:
    lab = await create(
        api,
        user,
        title="t" * 500,
        author="a" * 300,
        category="c" * 100,
        notes="n" * 10_000,
        rating=5,
        publicationYear=1000,
        coverUrl="https://example.com/cover.png",
    )
    assert (len(lab["title"]), len(lab["author"]), len(lab["category"])) == (500, 300, 100)
    assert len(lab["notes"]) == 10_000
    assert (lab["rating"], lab["publicationYear"]) == (5, 1000)
    lab = await create(api, user, rating=1, publicationYear=NEXT_DECADE, coverUrl="http://x.io/c")
    assert (lab["rating"], lab["publicationYear"], lab["coverUrl"]) == (
        1,
        NEXT_DECADE,
        "http://x.io/c",
    )


async def test_title_author_and_category_are_trimmed(api: Api, user: User) -> None:
    padded = f"  {'t' * 500}\t\n"  # over the limit only before trimming
    lab = await create(
        api, user, title=padded, author="\n Frank Herbert \r\n", category="  Science Fiction\t"
    )
    assert (lab["title"], lab["author"], lab["category"]) == (
        "t" * 500,
        "Frank Herbert",
        "Science Fiction",
    )
    assert lab["readingStatus"] == "TO_READ"


@pytest.mark.parametrize("blank", ["", "   ", " \t\n\r "])
async def test_a_blank_category_is_stored_as_null(
    api: Api, admin: asyncpg.Connection, user: User, blank: str
) -> None:
    lab = await create(api, user, category=blank)
    assert lab["category"] is None
    stored = await admin.fetchval(
        "select category from public.labs where id = $1", uuid.UUID(lab["id"])
    )
    assert stored is None


# --- updateLab -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["title", "author", "readingStatus"])
async def test_update_with_an_explicit_null_title_or_author_is_bad_user_input(
    api: Api, user: User, field: str
) -> None:
    lab = await create(api, user)
    error = refusal(
        await api.gql(UPDATE, {"id": lab["id"], "input": {field: None}}, token=user.token)
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"input.{field}"}
    assert (await api.ok(GET, {"id": lab["id"]}, token=user.token))["lab"] == lab


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
async def test_update_refuses_a_bad_value_naming_its_field(
    api: Api, user: User, field: str, value: Any
) -> None:
    lab = await create(api, user)
    error = refusal(
        await api.gql(UPDATE, {"id": lab["id"], "input": {field: value}}, token=user.token)
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"input.{field}"}, error
    assert (await api.ok(GET, {"id": lab["id"]}, token=user.token))["lab"] == lab


async def test_update_leaves_omitted_fields_and_clears_explicit_nulls(api: Api, user: User) -> None:
    lab = await create(
        api,
        user,
        category="SF",
        rating=4,
        notes="good",
        isbn="0306406152",
        publicationYear=1965,
        coverUrl="https://example.com/c.png",
        readingStatus="READING",
    )
    updated = (
        await api.ok(
            UPDATE, {"id": lab["id"], "input": {"category": None, "rating": None}}, token=user.token
        )
    )["updateLab"]
    expected = {**lab, "category": None, "rating": None, "updatedAt": updated["updatedAt"]}
    assert updated == expected
    assert (await api.ok(GET, {"id": lab["id"]}, token=user.token))["lab"] == updated

    cleared = {"notes": None, "isbn": None, "publicationYear": None, "coverUrl": None}
    updated = (await api.ok(UPDATE, {"id": lab["id"], "input": cleared}, token=user.token))[
        "updateLab"
    ]
    assert updated == {**expected, **cleared, "updatedAt": updated["updatedAt"]}

    renamed = (
        await api.ok(UPDATE, {"id": lab["id"], "input": {"title": "  New  "}}, token=user.token)
    )["updateLab"]
    assert renamed["title"] == "New"
    assert renamed["author"] == lab["author"]
    assert renamed["readingStatus"] == "READING"


async def test_update_moves_updated_at_and_keeps_created_at(api: Api, user: User) -> None:
    lab = await create(api, user)
    updated = (await api.ok(UPDATE, {"id": lab["id"], "input": {"rating": 3}}, token=user.token))[
        "updateLab"
    ]
    assert dt.datetime.fromisoformat(updated["updatedAt"]) > dt.datetime.fromisoformat(
        lab["updatedAt"]
    )
    assert updated["createdAt"] == lab["createdAt"]


async def test_update_with_an_empty_input_changes_nothing(api: Api, user: User) -> None:
    lab = await create(api, user)
    updated = (await api.ok(UPDATE, {"id": lab["id"], "input": {}}, token=user.token))["updateLab"]
    assert updated == lab


async def test_update_of_a_missing_lab_is_not_found(api: Api, user: User) -> None:
    error = refusal(
        await api.gql(UPDATE, {"id": str(uuid.uuid4()), "input": {"rating": 2}}, token=user.token)
    )
    assert error["extensions"]["code"] == "NOT_FOUND"


# --- deleteLab ------------------------------------------------------------------------------


async def test_delete_returns_the_id_and_the_lab_is_gone(api: Api, user: User) -> None:
    lab = await create(api, user)
    data = await api.ok(
        "mutation($id: UUID!) { deleteLab(id: $id) }", {"id": lab["id"]}, token=user.token
    )
    assert data == {"deleteLab": lab["id"]}
    assert (await api.ok(GET, {"id": lab["id"]}, token=user.token)) == {"lab": None}
    again = await api.gql(
        "mutation($id: UUID!) { deleteLab(id: $id) }", {"id": lab["id"]}, token=user.token
    )
    assert refusal(again)["extensions"]["code"] == "NOT_FOUND"


# --- importLabs -------------------------------------------------------------------------------


def items(n: int, prefix: str = "Lab") -> list[dict[str, Any]]:
    return [{"title": f"{prefix} {i}", "author": f"Author {i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("isbn", "0306406153"),
        ("rating", 9),
        ("title", " \t"),
        ("coverUrl", "ftp://x"),
        ("notes", "n" * 10_001),
        ("publicationYear", 999),
    ],
)
async def test_import_with_a_bad_fourth_item_names_it_and_inserts_nothing(
    api: Api, admin: asyncpg.Connection, user: User, field: str, value: Any
) -> None:
    labs = items(6)
    labs[3][field] = value
    error = refusal(await api.gql(IMPORT, {"labs": labs}, token=user.token))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"labs[3].{field}"}, error
    assert await lab_count(admin, user) == 0


async def test_import_of_1001_labs_is_bad_user_input(
    api: Api, admin: asyncpg.Connection, user: User
) -> None:
    error = refusal(await api.gql(IMPORT, {"labs": items(1001)}, token=user.token))
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "1000" in error["message"]
    assert await lab_count(admin, user) == 0


async def test_import_of_1000_labs_inserts_them_all(
    api: Api, admin: asyncpg.Connection, user: User
) -> None:
    data = await api.ok(IMPORT, {"labs": items(1000)}, token=user.token)
    assert data["importLabs"]["inserted"] == 1000
    assert len(set(data["importLabs"]["ids"])) == 1000
    assert await lab_count(admin, user) == 1000


async def test_import_returns_ids_in_input_order(api: Api, user: User) -> None:
    titles = ["Zeta", "Alpha", "Mu", "Beta", "Omega", "Alpha"]
    labs = [{"title": t, "author": "A"} for t in titles]
    data = await api.ok(IMPORT, {"labs": labs}, token=user.token)
    ids = data["importLabs"]["ids"]
    assert data["importLabs"]["inserted"] == len(titles) == len(ids)
    query = (
        "{ "
        + " ".join(f'l{i}: lab(id: "{lab_id}") {{ title }}' for i, lab_id in enumerate(ids))
        + " }"
    )
    found = await api.ok(query, token=user.token)
    assert [found[f"l{i}"]["title"] for i in range(len(ids))] == titles


async def test_import_normalises_like_create(api: Api, user: User) -> None:
    labs = [
        {
            "title": "  Dune\n",
            "author": " Frank Herbert ",
            "category": "  ",
            "isbn": "0-8044-2957-x",
            "readingStatus": "READ",
        },
        {"title": "Solaris", "author": "Lem", "category": " SF "},
    ]
    ids = (await api.ok(IMPORT, {"labs": labs}, token=user.token))["importLabs"]["ids"]
    first = (await api.ok(GET, {"id": ids[0]}, token=user.token))["lab"]
    second = (await api.ok(GET, {"id": ids[1]}, token=user.token))["lab"]
    assert (first["title"], first["author"], first["category"], first["isbn"]) == (
        "Dune",
        "Frank Herbert",
        None,
        "080442957X",
    )
    assert first["readingStatus"] == "READ"
    assert (second["category"], second["readingStatus"]) == ("SF", "TO_READ")


async def test_an_empty_import_inserts_nothing(api: Api, user: User) -> None:
    data = await api.ok(IMPORT, {"labs": []}, token=user.token)
    assert data == {"importLabs": {"inserted": 0, "ids": []}}


# --- rollback: one failing field undoes the whole mutation -------------------------------------


async def test_a_failing_second_create_rolls_back_the_first(
    api: Api, admin: asyncpg.Connection, user: User
) -> None:
    result = await api.gql(
        'mutation { a: createLab(input: {title: "kept?", author: "x"}) { id }'
        ' b: createLab(input: {title: "bad", author: "x", rating: 9}) { id } }',
        token=user.token,
    )
    error = refusal(result)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.rating"}
    assert error["path"] == ["b"]
    assert await lab_count(admin, user) == 0


async def test_a_not_found_update_rolls_back_an_earlier_create(
    api: Api, admin: asyncpg.Connection, user: User
) -> None:
    result = await api.gql(
        'mutation($id: UUID!) { a: createLab(input: {title: "kept?", author: "x"}) { id }'
        ' b: updateLab(id: $id, input: {title: "y"}) { id } }',
        {"id": str(uuid.uuid4())},
        token=user.token,
    )
    error = refusal(result)
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["path"] == ["b"]
    assert await lab_count(admin, user) == 0


async def test_a_failing_mutation_undoes_deletes_updates_and_imports(
    api: Api, admin: asyncpg.Connection, user: User
) -> None:
    kept = await create(api, user, title="Keep me", rating=2)
    other = await create(api, user, title="Other")
    result = await api.gql(
        "mutation($k: UUID!, $o: UUID!) {"
        ' u: updateLab(id: $k, input: {title: "Changed", rating: 5}) { id }'
        " d: deleteLab(id: $o)"
        ' i: importLabs(labs: [{title: "i", author: "x"}]) { ids }'
        ' bad: deleteLab(id: "00000000-0000-0000-0000-000000000000") }',
        {"k": kept["id"], "o": other["id"]},
        token=user.token,
    )
    assert refusal(result)["extensions"]["code"] == "NOT_FOUND"
    assert await lab_count(admin, user) == 2
    assert (await api.ok(GET, {"id": kept["id"]}, token=user.token))["lab"] == kept
    assert (await api.ok(GET, {"id": other["id"]}, token=user.token))["lab"] == other


async def test_a_mutation_that_succeeds_entirely_writes_everything(
    api: Api, admin: asyncpg.Connection, user: User
) -> None:
    data = await api.ok(
        'mutation { a: createLab(input: {title: "one", author: "x"}) { id }'
        ' b: createLab(input: {title: "two", author: "x"}) { id }'
        ' c: importLabs(labs: [{title: "three", author: "x"}]) { inserted } }',
        token=user.token,
    )
    assert data["c"] == {"inserted": 1}
    assert await lab_count(admin, user) == 3
