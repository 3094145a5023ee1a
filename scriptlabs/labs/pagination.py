"""Ordering, opaque keyset cursors, and the keyset conditions that make page N cost page 1.

A cursor is base64url(JSON) of the order it belongs to and the row's sort values, the
lab id last: it is stable while rows are inserted or deleted, and refused with another order.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from scriptlabs.db.sql import Placeholders
from scriptlabs.errors import AppError, Code
from scriptlabs.labs.columns import LAB_FIELDS, NULLABLE_COLUMNS, OrderField

DEFAULT_PAGE = 20
MAX_PAGE = 100
TIME_COLUMNS = frozenset(f.column for f in LAB_FIELDS if f.sql_type == "timestamptz")
INT_COLUMNS = frozenset(f.column for f in LAB_FIELDS if f.sql_type == "int4")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class SortKey:
    column: str
    descending: bool
    nulls_last: bool = True

    def reversed(self) -> SortKey:
        return SortKey(self.column, not self.descending, not self.nulls_last)

    @property
    def nullable(self) -> bool:
        return self.column in NULLABLE_COLUMNS

    def sql(self) -> str:
        return self.sql_in("")

    def sql_in(self, alias: str) -> str:
        """`created_at desc`, on the columns of `alias` when given (`p.created_at desc`)."""
        column = f"{alias}.{self.column}" if alias else self.column
        direction = "desc" if self.descending else "asc"
        if not self.nullable:
            return f"{column} {direction}"
        return f"{column} {direction} nulls {'last' if self.nulls_last else 'first'}"

    def json_sql(self, alias: str) -> str:
        """The key's value in a cursor, as SQL that writes it exactly as encode_cursor does."""
        column = f"{alias}.{self.column}"
        if self.column in TIME_COLUMNS:
            return f"(extract(epoch from {column}) * 1000000)::int8::text"
        if self.column == "id":
            return f"('\"' || {column}::text || '\"')"
        if self.column in INT_COLUMNS:
            return f"coalesce({column}::text, 'null')"
        return f"coalesce(to_json({column})::text, 'null')"


DEFAULT_ORDER: tuple[tuple[OrderField, bool], ...] = ((OrderField.CREATED_AT, True),)


_KEYS: dict[tuple[tuple[OrderField, bool], ...], tuple[SortKey, ...]] = {}
_KEYS_MAX = 1024  # orders kept; a client sending others gets them made each time
_SIGNATURES: dict[tuple[SortKey, ...], str] = {}


def sort_keys(order: tuple[tuple[OrderField, bool], ...]) -> tuple[SortKey, ...]:
    """The keys for `order` ((field, descending) pairs), ending in `id`.

    `id` takes the direction of the last key so that one btree index (user_id, key, id),
    read forward or backward, serves the whole order. The same order gives the same tuple.
    """
    keys = _KEYS.get(order)
    if keys is None:
        keys = _sort_keys(order)
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[order] = keys
            _SIGNATURES[keys] = ",".join(f"{k.column}{'-' if k.descending else '+'}" for k in keys)
    return keys


def _sort_keys(order: tuple[tuple[OrderField, bool], ...]) -> tuple[SortKey, ...]:
    order = order or DEFAULT_ORDER
    keys: list[SortKey] = []
    seen: set[str] = set()
    for order_field, descending in order:
        if order_field.value in seen:
            continue
        seen.add(order_field.value)
        keys.append(SortKey(order_field.value, descending))
    keys.append(SortKey("id", keys[-1].descending))
    return tuple(keys)


_SIGNATURE = re.compile(r"^[a-z_]+[+-](,[a-z_]+[+-])*$")


def order_signature(keys: tuple[SortKey, ...]) -> str:
    kept = _SIGNATURES.get(keys)
    if kept is not None:
        return kept
    return ",".join(f"{k.column}{'-' if k.descending else '+'}" for k in keys)


def _encode_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // MICROSECOND  # exact, and what PostgreSQL writes alike
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def encode_cursor(keys: tuple[SortKey, ...], row: Any) -> str:
    payload = {"o": order_signature(keys), "v": [_encode_value(row[k.column]) for k in keys]}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def cursor_sql(keys: tuple[SortKey, ...], alias: str) -> str:
    """SQL that makes, for a row of `alias`, the cursor encode_cursor makes: the same JSON
    bytes (orjson's compact form), base64url without padding."""
    signature = order_signature(keys)
    if not _SIGNATURE.match(signature):
        raise ValueError(f"unexpected order signature {signature!r}")
    values = " || ',' || ".join(k.json_sql(alias) for k in keys)
    payload = f'\'{{"o":"{signature}","v":[\' || {values} || \']}}\''
    return f"rtrim(translate(encode(convert_to({payload}, 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')"


def _bad_cursor(name: str) -> AppError:
    return AppError(Code.BAD_USER_INPUT, f"{name} is not a valid cursor for this query", field=name)


def _decode_value(column: str, value: Any) -> Any:
    if value is None:
        if column in NULLABLE_COLUMNS:
            return None
        raise ValueError("null for a non-null column")
    if column in TIME_COLUMNS:
        if type(value) is int:
            return EPOCH + value * MICROSECOND  # OverflowError out of range
        parsed = dt.datetime.fromisoformat(value)  # cursors made before 2026-12
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        parsed.astimezone(dt.UTC)  # OverflowError when it leaves datetime's range in UTC
        return parsed
    if column == "id":
        if not isinstance(value, str):  # uuid.UUID(123) raises AttributeError
            raise ValueError("not a uuid")
        return uuid.UUID(value)
    if column in INT_COLUMNS:
        if type(value) is not int or not INT4_MIN <= value <= INT4_MAX:
            raise ValueError("not an int4")
        return value
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("not a string PostgreSQL can hold")
    return value


def decode_cursor(cursor: str, keys: tuple[SortKey, ...], name: str) -> list[Any]:
    """The sort values in `cursor`; BAD_USER_INPUT naming `name` when it does not decode."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, dict) or payload.get("o") != order_signature(keys):
            raise ValueError("other order")
        values = payload.get("v")
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong length")
        return [_decode_value(k.column, v) for k, v in zip(keys, values, strict=True)]
    except (
        ValueError,
        TypeError,
        OverflowError,
        binascii.Error,
        UnicodeError,
        orjson.JSONDecodeError,
    ):
        raise _bad_cursor(name) from None


def bind_values(values: list[Any], params: Placeholders) -> tuple[str | None, ...]:
    """The placeholders of a cursor's values, in order; None for a NULL (no parameter)."""
    return tuple(None if v is None else params.add(v) for v in values)


def after_condition(keys: tuple[SortKey, ...], slots: tuple[str | None, ...]) -> str:
    """Rows strictly after the cursor whose values `slots` hold (bind_values), in the order
    `keys`: the SQL depends only on the order, and on which values are NULL.

    When every key is non-null and all run one way this is one row comparison,
    `(created_at, id) < ($1, $2)`, which PostgreSQL turns into an index range: deep pages
    cost what the first does. Otherwise it is the expanded form, NULLs sorting last.
    """
    if all(not k.nullable for k in keys) and len({k.descending for k in keys}) == 1:
        columns = ", ".join(k.column for k in keys)
        placeholders = ", ".join(str(slot) for slot in slots)
        op = "<" if keys[0].descending else ">"
        if len(keys) == 1:
            return f"{columns} {op} {placeholders}"
        return f"({columns}) {op} ({placeholders})"
    alternatives: list[str] = []
    equal_so_far: list[str] = []
    for key, slot in zip(keys, slots, strict=True):
        after = _strictly_after(key, slot)
        if after is not None:
            alternatives.append(" and ".join([*equal_so_far, after]))
        if slot is None:
            equal_so_far.append(f"{key.column} is null")
        else:
            equal_so_far.append(f"{key.column} = {slot}")
    if not alternatives:
        return "false"
    return "(" + " or ".join(f"({a})" for a in alternatives) + ")"


def _strictly_after(key: SortKey, slot: str | None) -> str | None:
    if slot is None:
        # NULLs sort together: after them come the values (nulls first) or nothing
        return None if key.nulls_last else f"{key.column} is not null"
    op = "<" if key.descending else ">"
    condition = f"{key.column} {op} {slot}"
    if key.nullable and key.nulls_last:
        return f"({condition} or {key.column} is null)"
    return condition


@dataclass(frozen=True, slots=True)
class PageRequest:
    """first/after/last/before, checked (contract: default 20, at most 100)."""

    limit: int
    backward: bool
    after: list[Any] | None
    before: list[Any] | None


def page_request(
    keys: tuple[SortKey, ...],
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> PageRequest:
    if first is not None and last is not None:
        raise AppError(Code.BAD_USER_INPUT, "Use first or last, not both", field="last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE:
            raise AppError(
                Code.BAD_USER_INPUT, f"{name} must be between 0 and {MAX_PAGE}", field=name
            )
    # `before` alone pages backward from it, as `last` would
    backward = last is not None or (first is None and before is not None)
    limit = (last if backward else first) if (first is not None or last is not None) else None
    return PageRequest(
        limit=DEFAULT_PAGE if limit is None else limit,
        backward=backward,
        after=decode_cursor(after, keys, "after") if after is not None else None,
        before=decode_cursor(before, keys, "before") if before is not None else None,
    )
