"""The error vocabulary of the API and the one map from database errors to it."""

from __future__ import annotations

import enum
from typing import Any

import asyncpg


class Code(enum.StrEnum):
    """`extensions.code` values (CONTRACT.md section 4, Errors)."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    TIMEOUT = "TIMEOUT"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


class AppError(Exception):
    """An error a client may see: a public code and message, optionally the input field."""

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.extensions: dict[str, Any] = {"code": code.value}
        if field:
            self.extensions["field"] = field
        if extra:
            self.extensions.update(extra)

    def at(self, prefix: str) -> AppError:
        """The same error with its field placed under `prefix` (`input` → `input.rating`)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return AppError(self.code, self.message, field=field)


def unauthenticated(message: str = "Authentication required") -> AppError:
    return AppError(Code.UNAUTHENTICATED, message)


def bad_input(message: str, field: str | None = None) -> AppError:
    return AppError(Code.BAD_USER_INPUT, message, field=field)


INTERNAL_MESSAGE = "Internal server error"

# constraint name → (field, message). Field names are the GraphQL ones.
CONSTRAINTS: dict[str, tuple[str | None, str]] = {
    "labs_title_check": ("title", "title must not be blank"),
    "labs_author_check": ("author", "author must not be blank"),
    "labs_category_check": ("category", "category must not be blank"),
    "labs_publication_year_check": (
        "publicationYear",
        "publicationYear must be between 1000 and ten years from now",
    ),
    "labs_isbn_check": ("isbn", "isbn is not a valid ISBN-10 or ISBN-13"),
    "labs_rating_check": ("rating", "rating must be between 1 and 5"),
    "labs_reading_status_check": ("readingStatus", "readingStatus is not valid"),
    "labs_notes_check": ("notes", "notes must be at most 10000 characters"),
    "labs_cover_url_check": ("coverUrl", "coverUrl must be an http or https URL"),
    "users_email_key": ("email", "An account with this email already exists"),
}

# column name → GraphQL field, for errors that name a column (not-null, too long)
COLUMNS = {
    "title": "title",
    "author": "author",
    "category": "category",
    "publication_year": "publicationYear",
    "isbn": "isbn",
    "rating": "rating",
    "reading_status": "readingStatus",
    "notes": "notes",
    "cover_url": "coverUrl",
}


def from_db_error(exc: BaseException) -> AppError:
    """Map a database error to a public one; anything unknown is INTERNAL_SERVER_ERROR."""
    if not isinstance(exc, asyncpg.PostgresError):
        return AppError(Code.INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    sqlstate = exc.sqlstate or ""
    constraint = getattr(exc, "constraint_name", None)
    if constraint in CONSTRAINTS:
        field, message = CONSTRAINTS[constraint]
        code = Code.CONFLICT if sqlstate == "23505" else Code.BAD_USER_INPUT
        return AppError(code, message, field=field)
    if sqlstate == "57014":
        return AppError(Code.TIMEOUT, "The operation took too long and was cancelled")
    if sqlstate == "42501":
        return AppError(Code.FORBIDDEN, "Not allowed")
    if sqlstate.startswith("23") or sqlstate.startswith("22"):
        column = getattr(exc, "column_name", None)
        return AppError(
            Code.BAD_USER_INPUT,
            "A value is not valid for this field",
            field=COLUMNS.get(column or ""),
        )
    return AppError(Code.INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
