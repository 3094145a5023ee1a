"""The error vocabulary of the API and the one map from database errors to it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from scriptlabs.telemetry import metrics


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
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"


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

    def named(self, name: Callable[[str], str]) -> AppError:
        """The same error with a lab field named as `name` names it (see FieldError)."""
        return self


class FieldError(AppError):
    """An error on one field of a lab, named by its attribute (`publication_year`), under
    `path` (`labs[2]`). Its message is a template on `{field}`, so that the GraphQL layer can
    name the field as clients know it (`publicationYear`) with `named()`."""

    def __init__(
        self,
        attribute: str,
        template: str,
        *,
        path: str | None = None,
        code: Code = Code.BAD_USER_INPUT,
    ) -> None:
        super().__init__(code, template.format(field=attribute), field=_under(path, attribute))
        self.attribute = attribute
        self.template = template
        self.path = path

    def at(self, prefix: str) -> FieldError:
        path = _under(prefix, self.path)
        return FieldError(self.attribute, self.template, path=path, code=self.code)

    def named(self, name: Callable[[str], str]) -> AppError:
        shown = name(self.attribute)
        return AppError(
            self.code, self.template.format(field=shown), field=_under(self.path, shown)
        )


def _under(path: str | None, name: str | None) -> str:
    parts = [p for p in (path, name) if p]
    return ".".join(parts)


def unauthenticated(message: str = "Authentication required") -> AppError:
    return AppError(Code.UNAUTHENTICATED, message)


def bad_input(message: str, field: str | None = None) -> AppError:
    return AppError(Code.BAD_USER_INPUT, message, field=field)


INTERNAL_MESSAGE = "Internal server error"

# constraint name → (field, message), besides the labs_<column>_check of the field table
CONSTRAINTS: dict[str, tuple[str | None, str]] = {
    "users_email_key": ("email", "An account with this email already exists"),
}


@dataclass(frozen=True, slots=True)
class DbFields:
    """Which field a database error is about: a check constraint's name → (attribute,
    message template on `{field}`), and a writable column → attribute. The domain that owns
    the table gives them (labs.columns.DB_FIELDS), so this module stays a leaf."""

    checks: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)


NO_FIELDS = DbFields()


def from_db_error(exc: BaseException, fields: DbFields = NO_FIELDS) -> AppError:
    """Map a database error to a public one; anything unknown is INTERNAL_SERVER_ERROR."""
    if not isinstance(exc, asyncpg.PostgresError):
        return AppError(Code.INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    sqlstate = exc.sqlstate or ""
    metrics.count_db_error(sqlstate)
    constraint: str = getattr(exc, "constraint_name", None) or ""
    code = Code.CONFLICT if sqlstate == "23505" else Code.BAD_USER_INPUT
    if constraint in fields.checks:
        attribute, template = fields.checks[constraint]
        return FieldError(attribute, template, code=code)
    if constraint in CONSTRAINTS:
        field, message = CONSTRAINTS[constraint]
        return AppError(code, message, field=field)
    if sqlstate == "57014":
        return AppError(Code.TIMEOUT, "The operation took too long and was cancelled")
    if sqlstate == "42501":
        return AppError(Code.FORBIDDEN, "Not allowed")
    if sqlstate.startswith("23") or sqlstate.startswith("22"):
        # a column named by the error (not null, too long): its field, if a lab's writable one
        written = fields.columns.get(getattr(exc, "column_name", None) or "")
        if written is not None:
            return FieldError(written, "A value is not valid for this field")
        return AppError(Code.BAD_USER_INPUT, "A value is not valid for this field")
    return AppError(Code.INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
