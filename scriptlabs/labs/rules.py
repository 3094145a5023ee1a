"""What a lab may hold, checked before SQL so errors name the field (the database checks again)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from scriptlabs.errors import FieldError
from scriptlabs.labs import isbn as isbn_rules
from scriptlabs.labs.columns import BY_ATTRIBUTE

WHITESPACE = " \t\r\n\f\v"


def clean(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Check and normalise the given fields (attribute → stored value, same attributes).

    Absent keys stay absent (update: unchanged); an explicit None clears, except for a
    field that is not nullable: on create it takes the column's default if it has one,
    otherwise (title, author; readingStatus on update) it is refused.
    Errors are FieldErrors naming the attribute.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        field = BY_ATTRIBUTE[name]
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL text cannot hold NUL: refuse it here, where the field is known
            raise FieldError(name, "{field} must not contain NUL characters")
        if value is None:
            if not field.nullable:
                if creating and field.default is not None:
                    continue  # the column default
                raise FieldError(name, "{field} cannot be null")
            out[name] = None
            continue
        if name in ("title", "author"):
            value = value.strip(WHITESPACE)
            if not value:
                raise FieldError(name, "{field} must not be blank")
        elif name == "category":
            value = value.strip(WHITESPACE) or None  # contract: blank means null
        elif name == "isbn":
            value = isbn_rules.normalize(value)
            if not isbn_rules.is_valid(value):
                raise FieldError(name, "{field} is not a valid ISBN-10 or ISBN-13")
        elif name == "rating" and not 1 <= value <= 5:
            raise FieldError(name, "{field} must be between 1 and 5")
        elif name == "publication_year":
            latest = dt.datetime.now(dt.UTC).year + 10
            if not 1000 <= value <= latest:
                raise FieldError(name, f"{{field}} must be between 1000 and {latest}")
        elif name == "cover_url" and not value.startswith(("http://", "https://")):
            raise FieldError(name, "{field} must be an http or https URL")
        limit = field.max_length
        if limit is not None and value is not None and len(value) > limit:
            raise FieldError(name, f"{{field}} must be at most {limit} characters")
        out[name] = value
    return out
