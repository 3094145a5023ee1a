"""Scalars: DateTime is ISO 8601 with an offset and always six fractional digits."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry.exceptions import StrawberryInputCoercionError


def serialize_datetime(value: dt.datetime) -> str:
    # microseconds kept: a value read back and sent in a filter compares equal
    return value.isoformat(timespec="microseconds")


def parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise StrawberryInputCoercionError("DateTime must be an ISO 8601 string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise StrawberryInputCoercionError(f"Not an ISO 8601 date and time: {value!r}") from None
    if parsed.tzinfo is None:
        raise StrawberryInputCoercionError("DateTime needs an offset, such as Z or +02:00")
    return parsed


DateTime = strawberry.scalar(
    name="DateTime",
    description="ISO 8601 date and time with offset; microseconds kept.",
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)
