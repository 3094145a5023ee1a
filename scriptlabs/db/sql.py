"""Building dynamic SQL safely: values only as $n parameters, identifiers only from whitelists."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Protocol

import orjson


class Placeholders(Protocol):
    """Anything that takes a value and gives the SQL that reads it back."""

    def add(self, value: Any) -> str: ...


class Params:
    """Collects the values of one statement and hands out their placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class JsonParams:
    """The values of a statement whose one parameter, `$1`, is a JSON array of them.

    For the planned path's statements, which run through `read_statement` (one parameter
    whatever their number of values). Each placeholder reads its element back with the type
    of the value (`($1->>2)::timestamptz`); text is read as text, lists as arrays.
    """

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        index = len(self.values)
        if isinstance(value, list):
            self.values.append([_plain(v) for v in value])
            kind = _sql_type(value[0]) if value else "text"
            element = "e" if kind == "text" else f"e::{kind}"
            return f"array(select {element} from jsonb_array_elements_text($1::jsonb->{index}) e)"
        known = _KINDS.get(type(value))  # the common types by one lookup, the rest below
        kind = known if known is not None else _sql_type(value)
        self.values.append(value if kind in _AS_IS else _plain(value))
        return f"($1::jsonb->>{index})" if kind == "text" else f"($1::jsonb->>{index})::{kind}"

    def json(self) -> str:
        return orjson.dumps(self.values).decode()


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


_KINDS: dict[type, str] = {
    bool: "boolean",
    int: "int8",
    float: "float8",
    dt.datetime: "timestamptz",
    uuid.UUID: "uuid",
    str: "text",
}


_AS_IS = frozenset({"boolean", "int8", "float8", "text"})  # orjson writes them as they are


def _sql_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int8"
    if isinstance(value, float):
        return "float8"
    if isinstance(value, dt.datetime):
        return "timestamptz"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, str):
        return "text"
    raise TypeError(f"no SQL type for {type(value).__name__}")
