"""Input types, and their translation into the domain's descriptions (no Strawberry below)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.types.unset import UNSET

from scriptlabs.errors import AppError, Code
from scriptlabs.graphql.fields import graphql_name
from scriptlabs.graphql.types import LabOrderField, OrderDirection, ReadingStatus
from scriptlabs.labs import isbn as isbn_rules
from scriptlabs.labs.columns import FILTERABLE, WRITABLE, OrderField
from scriptlabs.labs.columns import ReadingStatus as StoredStatus
from scriptlabs.labs.filters import Condition, LabWhere


@strawberry.input
class StringFilter:
    eq: str | None = UNSET
    neq: str | None = UNSET
    in_: list[str] | None = strawberry.field(name="in", default=UNSET)
    is_null: bool | None = UNSET
    starts_with: str | None = UNSET
    ilike: str | None = UNSET


@strawberry.input
class IntFilter:
    eq: int | None = UNSET
    neq: int | None = UNSET
    gt: int | None = UNSET
    gte: int | None = UNSET
    lt: int | None = UNSET
    lte: int | None = UNSET
    in_: list[int] | None = strawberry.field(name="in", default=UNSET)
    is_null: bool | None = UNSET


@strawberry.input
class DateTimeFilter:
    gt: dt.datetime | None = UNSET
    gte: dt.datetime | None = UNSET
    lt: dt.datetime | None = UNSET
    lte: dt.datetime | None = UNSET


@strawberry.input
class ReadingStatusFilter:
    eq: ReadingStatus | None = UNSET
    neq: ReadingStatus | None = UNSET
    in_: list[ReadingStatus] | None = strawberry.field(name="in", default=UNSET)


@strawberry.input
class LabFilter:
    title: StringFilter | None = UNSET
    author: StringFilter | None = UNSET
    category: StringFilter | None = UNSET
    isbn: StringFilter | None = UNSET
    rating: IntFilter | None = UNSET
    publication_year: IntFilter | None = UNSET
    reading_status: ReadingStatusFilter | None = UNSET
    created_at: DateTimeFilter | None = UNSET
    updated_at: DateTimeFilter | None = UNSET
    and_: list[LabFilter] | None = strawberry.field(name="and", default=UNSET)
    or_: list[LabFilter] | None = strawberry.field(name="or", default=UNSET)
    not_: LabFilter | None = strawberry.field(name="not", default=UNSET)


@strawberry.input
class LabOrder:
    field: LabOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class CreateLabInput:
    title: str
    author: str
    category: str | None = UNSET
    publication_year: int | None = UNSET
    isbn: str | None = UNSET
    rating: int | None = UNSET
    reading_status: ReadingStatus | None = StoredStatus.TO_READ
    notes: str | None = UNSET
    cover_url: str | None = UNSET


@strawberry.input(description="Omitted fields stay unchanged; an explicit null clears one.")
class UpdateLabInput:
    title: str | None = UNSET
    author: str | None = UNSET
    category: str | None = UNSET
    publication_year: int | None = UNSET
    isbn: str | None = UNSET
    rating: int | None = UNSET
    reading_status: ReadingStatus | None = UNSET
    notes: str | None = UNSET
    cover_url: str | None = UNSET


_OPERATORS: tuple[tuple[str, str], ...] = (
    ("eq", "eq"),
    ("neq", "neq"),
    ("gt", "gt"),
    ("gte", "gte"),
    ("lt", "lt"),
    ("lte", "lte"),
    ("in_", "in"),
    ("is_null", "isNull"),
    ("starts_with", "startsWith"),
    ("ilike", "ilike"),
)


def given(value: Any) -> bool:
    """Neither omitted nor null."""
    return value is not None and value is not UNSET


def _value(column: str, op: str, value: Any) -> Any:
    if isinstance(value, StoredStatus):
        return value.value
    if isinstance(value, list):
        return [_value(column, op, v) for v in value]
    if column == "isbn" and op in ("eq", "neq", "in") and isinstance(value, str):
        return isbn_rules.normalize(value)  # stored ISBNs are normalised: compare alike
    return value


def _storable(value: Any) -> bool:
    """Whether PostgreSQL can hold `value` (no NUL in text, times within range in UTC)."""
    if isinstance(value, list):
        return all(map(_storable, value))
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dt.datetime):
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            return False
    return True


def to_where(f: LabFilter | None, path: str = "filter") -> LabWhere | None:
    """LabFilter → LabWhere. Null operators are ignored, as if they were not given.

    A value the database could not hold is BAD_USER_INPUT naming its place (`filter.title`,
    `filter.or[1].createdAt`).
    """
    if not given(f):
        return None
    assert f is not None
    conditions: list[Condition] = []
    for lab_field in FILTERABLE:  # LabFilter's attributes are the table's
        operators = getattr(f, lab_field.attribute)
        if not given(operators):
            continue
        column = lab_field.column
        for op_attr, op in _OPERATORS:
            value = getattr(operators, op_attr, None)
            if not given(value):
                continue
            if not _storable(value):
                field = f"{path}.{graphql_name(lab_field.attribute)}"
                raise AppError(Code.BAD_USER_INPUT, f"{field}.{op} cannot be stored", field=field)
            conditions.append(Condition(column, op, _value(column, op, value)))
    return LabWhere(
        conditions=tuple(conditions),
        all_of=_each(f.and_, f"{path}.and"),
        any_of=_each(f.or_, f"{path}.or"),
        negated=to_where(f.not_, f"{path}.not"),
    )


def _each(filters: list[LabFilter] | None, path: str) -> tuple[LabWhere, ...] | None:
    if not given(filters):
        return None
    nested = (to_where(item, f"{path}[{i}]") for i, item in enumerate(filters or ()))
    return tuple(w for w in nested if w is not None)


def to_order(order: list[LabOrder] | None) -> tuple[tuple[OrderField, bool], ...]:
    if not order:
        return ()
    return tuple((OrderField[o.field.value], o.direction is OrderDirection.DESC) for o in order)


def lab_values(data: CreateLabInput | UpdateLabInput) -> dict[str, Any]:
    """The given fields by attribute (the inputs' attributes are the table's); UNSET ones
    (update: unchanged) are left out."""
    values: dict[str, Any] = {}
    for lab_field in WRITABLE:
        value = getattr(data, lab_field.attribute)
        if value is UNSET:
            continue
        values[lab_field.attribute] = value
    return values
