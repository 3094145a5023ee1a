"""What a lab may hold, checked before SQL so errors name the field (the database checks again)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from scriptlabs.errors import AppError, Code
from scriptlabs.labs import isbn as isbn_rules

WHITESPACE = " \t\r\n\f\v"
LIMITS = {"title": 500, "author": 300, "category": 100}
NOTES_MAX = 10_000


def _bad(field: str, message: str) -> AppError:
    return AppError(Code.BAD_USER_INPUT, message, field=field)


def clean(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Check and normalise the given fields (GraphQL names → stored values, same names).

    Absent keys stay absent (update: unchanged); an explicit None clears, except title
    and author, which cannot be cleared.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL text cannot hold NUL: refuse it here, where the field is known
            raise _bad(name, f"{name} must not contain NUL characters")
        if name in ("title", "author"):
            if value is None:
                raise _bad(name, f"{name} cannot be null")
            value = value.strip(WHITESPACE)
            if not value:
                raise _bad(name, f"{name} must not be blank")
            if len(value) > LIMITS[name]:
                raise _bad(name, f"{name} must be at most {LIMITS[name]} characters")
        elif name == "category" and value is not None:
            value = value.strip(WHITESPACE) or None  # contract: blank means null
            if value is not None and len(value) > LIMITS["category"]:
                raise _bad(name, f"category must be at most {LIMITS['category']} characters")
        elif name == "isbn" and value is not None:
            value = isbn_rules.normalize(value)
            if not isbn_rules.is_valid(value):
                raise _bad(name, "isbn is not a valid ISBN-10 or ISBN-13")
        elif name == "rating" and value is not None and not 1 <= value <= 5:
            raise _bad(name, "rating must be between 1 and 5")
        elif name == "publicationYear" and value is not None:
            latest = dt.datetime.now(dt.UTC).year + 10
            if not 1000 <= value <= latest:
                raise _bad(name, f"publicationYear must be between 1000 and {latest}")
        elif name == "notes" and value is not None and len(value) > NOTES_MAX:
            raise _bad(name, f"notes must be at most {NOTES_MAX} characters")
        elif name == "coverUrl" and value is not None:
            if not value.startswith(("http://", "https://")):
                raise _bad(name, "coverUrl must be an http or https URL")
        elif name == "readingStatus" and value is None:
            if creating:
                continue  # the column default
            raise _bad(name, "readingStatus cannot be null")
        out[name] = value
    return out
