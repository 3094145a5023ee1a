"""Lab's fields: one table, from which every list of them derives.

Each field is named by its attribute, the domain's and Python's snake_case name
(`publication_year`); Strawberry shows it in camelCase (`publicationYear`), a name only the
GraphQL layer uses. tests/test_field_table.py checks the table against the GraphQL types and
against public.labs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from scriptlabs.errors import DbFields


class FilterKind(enum.Enum):
    """Which operators a field takes in LabFilter (StringFilter, IntFilter, ...)."""

    STRING = "string"
    INT = "int"
    DATETIME = "datetime"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class LabField:
    """One field of a lab and its column in public.labs."""

    attribute: str
    column: str
    sql_type: str  # as information_schema's udt_name: uuid, varchar, int4, text, timestamptz
    nullable: bool
    sortable: bool = False
    filter: FilterKind | None = None
    writable: bool = False  # given in createLab, updateLab and importLabs
    max_length: int | None = None  # characters: varchar(n), or the column's check
    default: str | None = None  # the column's SQL default, as information_schema shows it
    check: str | None = None  # the message of labs_<column>_check, a template on {field}


# in the order of the table's columns, `id` first so every read can build a cursor
LAB_FIELDS: tuple[LabField, ...] = (
    LabField("id", "id", "uuid", nullable=False, default="gen_random_uuid()"),
    LabField(
        "title",
        "title",
        "varchar",
        nullable=False,
        sortable=True,
        filter=FilterKind.STRING,
        writable=True,
        max_length=500,
        check="{field} must not be blank",
    ),
    LabField(
        "author",
        "author",
        "varchar",
        nullable=False,
        sortable=True,
        filter=FilterKind.STRING,
        writable=True,
        max_length=300,
        check="{field} must not be blank",
    ),
    LabField(
        "category",
        "category",
        "varchar",
        nullable=True,
        filter=FilterKind.STRING,
        writable=True,
        max_length=100,
        check="{field} must not be blank",
    ),
    LabField(
        "publication_year",
        "publication_year",
        "int4",
        nullable=True,
        sortable=True,
        filter=FilterKind.INT,
        writable=True,
        check="{field} must be between 1000 and ten years from now",
    ),
    LabField(
        "isbn",
        "isbn",
        "varchar",
        nullable=True,
        filter=FilterKind.STRING,
        writable=True,
        max_length=13,
        check="{field} is not a valid ISBN-10 or ISBN-13",
    ),
    LabField(
        "rating",
        "rating",
        "int4",
        nullable=True,
        sortable=True,
        filter=FilterKind.INT,
        writable=True,
        check="{field} must be between 1 and 5",
    ),
    LabField(
        "reading_status",
        "reading_status",
        "text",
        nullable=False,
        filter=FilterKind.STATUS,
        writable=True,
        default="'to_read'::text",
        check="{field} is not valid",
    ),
    LabField(
        "notes",
        "notes",
        "text",
        nullable=True,
        writable=True,
        max_length=10_000,
        check="{field} must be at most 10000 characters",
    ),
    LabField(
        "cover_url",
        "cover_url",
        "text",
        nullable=True,
        writable=True,
        check="{field} must be an http or https URL",
    ),
    LabField(
        "created_at",
        "created_at",
        "timestamptz",
        nullable=False,
        sortable=True,
        filter=FilterKind.DATETIME,
        default="now()",
    ),
    LabField(
        "updated_at",
        "updated_at",
        "timestamptz",
        nullable=False,
        sortable=True,
        filter=FilterKind.DATETIME,
        default="now()",
    ),
)

BY_ATTRIBUTE: dict[str, LabField] = {f.attribute: f for f in LAB_FIELDS}
BY_COLUMN: dict[str, LabField] = {f.column: f for f in LAB_FIELDS}
WRITABLE: tuple[LabField, ...] = tuple(f for f in LAB_FIELDS if f.writable)
FILTERABLE: tuple[LabField, ...] = tuple(f for f in LAB_FIELDS if f.filter is not None)

ALL_COLUMNS: tuple[str, ...] = tuple(f.column for f in LAB_FIELDS)
NULLABLE_COLUMNS = frozenset(f.column for f in LAB_FIELDS if f.nullable)
FILTER_COLUMNS = frozenset(f.column for f in FILTERABLE)


class ReadingStatus(enum.Enum):
    """The stored values of labs.reading_status; GraphQL shows the names."""

    TO_READ = "to_read"
    READING = "reading"
    READ = "read"


class OrderField(enum.Enum):
    """Sortable fields, named by attribute in capitals; the values are their columns (a
    whitelist: never client text). Written out for mypy; tests/test_field_table.py checks
    them against the table's sortable fields."""

    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    TITLE = "title"
    AUTHOR = "author"
    RATING = "rating"
    PUBLICATION_YEAR = "publication_year"


def select_list(columns: tuple[str, ...] | list[str]) -> str:
    """`id, title, ...` from whitelisted column names only."""
    for column in columns:
        if column not in BY_COLUMN:
            raise ValueError(f"unknown column {column!r}")
    return ", ".join(columns)


# what from_db_error needs to name the field of a labs constraint or column
DB_FIELDS = DbFields(
    checks={f"labs_{f.column}_check": (f.attribute, f.check) for f in LAB_FIELDS if f.check},
    columns={f.column: f.attribute for f in LAB_FIELDS if f.writable},
)
