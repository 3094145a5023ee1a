"""The field table (labs/columns.py) against what it describes: the GraphQL types, the domain's
enums and records, and public.labs. A field added in one place and not the others fails here."""

from __future__ import annotations

import datetime as dt
import typing
import uuid

import asyncpg
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLNonNull,
    GraphQLObjectType,
    get_named_type,
)

from scriptlabs.graphql.fields import FIELD_COLUMNS, graphql_name
from scriptlabs.graphql.schema import build_schema
from scriptlabs.labs import demo
from scriptlabs.labs.columns import (
    FILTERABLE,
    LAB_FIELDS,
    WRITABLE,
    FilterKind,
    OrderField,
)

SCHEMA = build_schema()._schema

# columns of public.labs that are no field of Lab
NOT_FIELDS = {"user_id", "search_vector"}

FILTER_TYPES = {
    FilterKind.STRING: "StringFilter",
    FilterKind.INT: "IntFilter",
    FilterKind.DATETIME: "DateTimeFilter",
    FilterKind.STATUS: "ReadingStatusFilter",
}


def object_type(name: str) -> GraphQLObjectType:
    found = SCHEMA.get_type(name)
    assert isinstance(found, GraphQLObjectType)
    return found


def input_type(name: str) -> GraphQLInputObjectType:
    found = SCHEMA.get_type(name)
    assert isinstance(found, GraphQLInputObjectType)
    return found


def test_the_table_starts_with_id_and_names_each_field_once() -> None:
    assert LAB_FIELDS[0].attribute == "id"
    assert len({f.attribute for f in LAB_FIELDS}) == len(LAB_FIELDS)
    assert len({f.column for f in LAB_FIELDS}) == len(LAB_FIELDS)


def test_graphql_names_are_the_attributes_in_camel_case() -> None:
    assert [graphql_name(f.attribute) for f in LAB_FIELDS] == [
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
    assert FIELD_COLUMNS["publicationYear"] == "publication_year"


def test_the_lab_type_has_the_tables_fields_in_order_and_nullability() -> None:
    lab = object_type("Lab")
    assert list(lab.fields) == [graphql_name(f.attribute) for f in LAB_FIELDS]
    for f in LAB_FIELDS:
        required = isinstance(lab.fields[graphql_name(f.attribute)].type, GraphQLNonNull)
        assert required is not f.nullable, f.attribute


def test_create_lab_input_takes_the_writable_fields_requiring_those_without_null_or_default() -> (
    None
):
    create = input_type("CreateLabInput")
    assert list(create.fields) == [graphql_name(f.attribute) for f in WRITABLE]
    for f in WRITABLE:
        required = isinstance(create.fields[graphql_name(f.attribute)].type, GraphQLNonNull)
        assert required is (not f.nullable and f.default is None), f.attribute


def test_update_lab_input_takes_the_writable_fields_all_optional() -> None:
    update = input_type("UpdateLabInput")
    assert list(update.fields) == [graphql_name(f.attribute) for f in WRITABLE]
    assert not any(isinstance(field.type, GraphQLNonNull) for field in update.fields.values())


def test_lab_filter_takes_the_filterable_fields_with_their_kinds_operators() -> None:
    lab_filter = input_type("LabFilter")
    fields = {name: get_named_type(f.type).name for name, f in lab_filter.fields.items()}
    assert fields == {
        **{graphql_name(f.attribute): FILTER_TYPES[f.filter] for f in FILTERABLE if f.filter},
        "and": "LabFilter",
        "or": "LabFilter",
        "not": "LabFilter",
    }


def test_lab_order_field_and_order_field_are_the_sortable_fields() -> None:
    sortable = {f.attribute.upper(): f.column for f in LAB_FIELDS if f.sortable}
    order_field = SCHEMA.get_type("LabOrderField")
    assert isinstance(order_field, GraphQLEnumType)
    assert set(order_field.values) == set(sortable)
    assert {m.name: m.value for m in OrderField} == sortable


def test_demo_records_have_a_value_for_every_column() -> None:
    assert len(typing.get_args(demo.LabRecord)) == len(demo.LAB_COLUMNS)
    anchor = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    record = next(demo.generate_labs([(1, uuid.uuid4(), 1)], anchor=anchor))
    assert len(record) == len(demo.LAB_COLUMNS)


LABS_COLUMNS = """
select column_name, is_nullable = 'YES' as nullable, udt_name, character_maximum_length,
       column_default
from information_schema.columns
where table_schema = 'public' and table_name = 'labs'
order by ordinal_position
"""

LABS_CHECKS = """
select conname, pg_get_constraintdef(oid) as definition
from pg_constraint
where conrelid = 'public.labs'::regclass and contype = 'c'
"""


async def test_public_labs_has_the_tables_columns_types_and_defaults(
    admin: asyncpg.Connection,
) -> None:
    rows = [r for r in await admin.fetch(LABS_COLUMNS) if r["column_name"] not in NOT_FIELDS]
    assert [r["column_name"] for r in rows] == [f.column for f in LAB_FIELDS]
    for f, row in zip(LAB_FIELDS, rows, strict=True):
        assert row["nullable"] is f.nullable, f.column
        assert row["udt_name"] == f.sql_type, f.column
        assert row["column_default"] == f.default, f.column
        if f.sql_type == "varchar":
            assert row["character_maximum_length"] == f.max_length, f.column


async def test_public_labs_has_a_named_check_for_each_checked_field(
    admin: asyncpg.Connection,
) -> None:
    checks = {r["conname"]: r["definition"] for r in await admin.fetch(LABS_CHECKS)}
    assert set(checks) == {f"labs_{f.column}_check" for f in LAB_FIELDS if f.check}
    for f in LAB_FIELDS:
        if f.sql_type == "text" and f.max_length is not None:
            # a text column's limit is its check's
            assert f"<= {f.max_length}" in checks[f"labs_{f.column}_check"], f.column
