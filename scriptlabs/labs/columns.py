"""The one map between Lab's GraphQL fields and the columns of public.labs."""

from __future__ import annotations

import enum

# GraphQL field name → column; `id` always first so every read can build a cursor
FIELD_COLUMNS: dict[str, str] = {
    "id": "id",
    "title": "title",
    "author": "author",
    "category": "category",
    "publicationYear": "publication_year",
    "isbn": "isbn",
    "rating": "rating",
    "readingStatus": "reading_status",
    "notes": "notes",
    "coverUrl": "cover_url",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
ALL_COLUMNS: tuple[str, ...] = tuple(FIELD_COLUMNS.values())
NULLABLE_COLUMNS = frozenset(
    {"category", "publication_year", "isbn", "rating", "notes", "cover_url"}
)


class ReadingStatus(enum.Enum):
    """The stored values of labs.reading_status; GraphQL shows the names."""

    TO_READ = "to_read"
    READING = "reading"
    READ = "read"


class OrderField(enum.Enum):
    """Sortable fields; the values are their columns (a whitelist: never client text)."""

    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    TITLE = "title"
    AUTHOR = "author"
    RATING = "rating"
    PUBLICATION_YEAR = "publication_year"


def select_list(columns: tuple[str, ...] | list[str]) -> str:
    """`id, title, ...` from whitelisted column names only."""
    for column in columns:
        if column not in NULLABLE_COLUMNS and column not in ALL_COLUMNS:
            raise ValueError(f"unknown column {column!r}")
    return ", ".join(columns)
