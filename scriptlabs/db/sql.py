"""Building dynamic SQL safely: values only as $n parameters, identifiers only from whitelists."""

from __future__ import annotations

from typing import Any


class Params:
    """Collects the values of one statement and hands out their placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"
