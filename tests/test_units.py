"""Pure pieces with golden output: ISBN check digits, cursors, filter and keyset SQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from scriptlabs.db.sql import Params
from scriptlabs.errors import AppError
from scriptlabs.labs import isbn
from scriptlabs.labs.columns import OrderField
from scriptlabs.labs.filters import Condition, LabWhere, compile_where
from scriptlabs.labs.pagination import (
    after_condition,
    bind_values,
    decode_cursor,
    encode_cursor,
    page_request,
    sort_keys,
)


@pytest.mark.parametrize(
    ("raw", "normalised", "valid"),
    [
        ("0-306-40615-2", "0306406152", True),
        ("978 0 306 40615 7", "9780306406157", True),
        ("080442957x", "080442957X", True),
        ("0306406153", "0306406153", False),
        ("9780306406158", "9780306406158", False),
        ("12345", "12345", False),
        ("X306406152", "X306406152", False),
    ],
)
def test_isbn_normalisation_and_check_digits(raw: str, normalised: str, valid: bool) -> None:
    assert isbn.normalize(raw) == normalised
    assert isbn.is_valid(normalised) is valid


def test_filter_compiles_to_parameterised_sql() -> None:
    where = LabWhere(
        conditions=(Condition("rating", "gte", 3), Condition("title", "startsWith", "Du%")),
        any_of=(
            LabWhere(conditions=(Condition("category", "isNull", True),)),
            LabWhere(conditions=(Condition("author", "in", ["A", "B"]),)),
        ),
        negated=LabWhere(conditions=(Condition("reading_status", "eq", "read"),)),
    )
    params = Params()
    assert compile_where(where, params) == (
        "(rating >= $1 and starts_with(title, $2) and (category is null or author = any($3))"
        " and not (reading_status = $4))"
    )
    assert params.values == [3, "Du%", ["A", "B"], "read"]


def test_empty_or_matches_nothing_and_empty_and_everything() -> None:
    assert compile_where(LabWhere(any_of=()), Params()) == "false"
    assert compile_where(LabWhere(all_of=()), Params()) == "true"
    assert compile_where(None, Params()) == "true"


def test_a_condition_on_an_unknown_column_is_refused() -> None:
    with pytest.raises(ValueError, match="bad condition"):
        Condition("user_id; drop table labs", "eq", 1)


def test_default_order_uses_one_row_comparison() -> None:
    keys = sort_keys(())
    params = Params()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    lab_id = uuid.UUID(int=7)
    assert (
        after_condition(keys, bind_values([when, lab_id], params)) == "(created_at, id) < ($1, $2)"
    )
    assert params.values == [when, lab_id]


def test_nullable_keys_expand_with_nulls_last() -> None:
    keys = sort_keys(((OrderField.RATING, True), (OrderField.TITLE, False)))
    params = Params()
    sql = after_condition(keys, bind_values([3, "Dune", uuid.UUID(int=1)], params))
    assert sql == (
        "(((rating < $1 or rating is null)) or (rating = $1 and title > $2)"
        " or (rating = $1 and title = $2 and id > $3))"
    )
    assert params.values == [3, "Dune", uuid.UUID(int=1)]  # each value once
    params = Params()
    # after a NULL rating only NULL ratings follow; a NULL is no parameter
    sql = after_condition(keys, bind_values([None, "Dune", uuid.UUID(int=1)], params))
    assert sql == "((rating is null and title > $1) or (rating is null and title = $1 and id > $2))"
    assert params.values == ["Dune", uuid.UUID(int=1)]


def test_cursor_round_trip_keeps_microseconds() -> None:
    keys = sort_keys(((OrderField.UPDATED_AT, False),))
    row = {"updated_at": dt.datetime(2026, 5, 6, 7, 8, 9, 1, tzinfo=dt.UTC), "id": uuid.UUID(int=5)}
    cursor = encode_cursor(keys, row)
    assert "=" not in cursor
    assert decode_cursor(cursor, keys, "after") == [row["updated_at"], row["id"]]


def test_cursor_of_another_order_is_refused() -> None:
    row = {
        "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "title": "x",
        "id": uuid.UUID(int=1),
    }
    cursor = encode_cursor(sort_keys(()), row)
    with pytest.raises(AppError) as caught:
        decode_cursor(cursor, sort_keys(((OrderField.TITLE, False),)), "after")
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "field": "after"}


@pytest.mark.parametrize("first", [-1, 101])
def test_page_size_out_of_range_is_refused(first: int) -> None:
    with pytest.raises(AppError) as caught:
        page_request(sort_keys(()), first=first, after=None, last=None, before=None)
    assert caught.value.extensions["field"] == "first"
