"""Lab filters: a small typed description, compiled to one SQL condition.

Semantics follow SQL, as PostgREST, PostGraphile and Hasura do (contract: `neq`, `not` and
comparisons never match a NULL value; only `isNull` does). The operators of one field are
ANDed, as are the fields of one filter; `and`/`or`/`not` nest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scriptlabs.db.sql import Placeholders
from scriptlabs.labs.columns import FILTER_COLUMNS

# operator → SQL template on (column, placeholder)
_BINARY = {
    "eq": "{c} = {p}",
    "neq": "{c} <> {p}",
    "gt": "{c} > {p}",
    "gte": "{c} >= {p}",
    "lt": "{c} < {p}",
    "lte": "{c} <= {p}",
    "in": "{c} = any({p})",
    "ilike": "{c} ilike {p}",
    "startsWith": "starts_with({c}, {p})",  # literal and case-sensitive: no wildcards
}
OPERATORS = frozenset(_BINARY) | {"isNull"}


@dataclass(frozen=True, slots=True)
class Condition:
    """`column <op> value`; `column` is a filterable one of the table in columns.py."""

    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.column not in FILTER_COLUMNS or self.op not in OPERATORS:
            raise ValueError(f"bad condition {self.column} {self.op}")


@dataclass(frozen=True, slots=True)
class LabWhere:
    """One LabFilter: its conditions ANDed, then `and`, `or`, `not`."""

    conditions: tuple[Condition, ...] = ()
    all_of: tuple[LabWhere, ...] | None = None
    any_of: tuple[LabWhere, ...] | None = None
    negated: LabWhere | None = None

    @property
    def is_empty(self) -> bool:
        return (
            not self.conditions
            and self.all_of is None
            and self.any_of is None
            and self.negated is None
        )


@dataclass(slots=True)
class _Compiler:
    params: Placeholders
    parts: list[str] = field(default_factory=list)

    def condition(self, cond: Condition) -> str:
        if cond.op == "isNull":
            return f"{cond.column} is {'' if cond.value else 'not '}null"
        if cond.op == "in" and not cond.value:
            return "false"  # in: [] matches nothing (and an empty list has no element type)
        return _BINARY[cond.op].format(c=cond.column, p=self.params.add(cond.value))

    def where(self, where: LabWhere) -> str:
        parts = [self.condition(c) for c in where.conditions]
        if where.all_of is not None:
            parts.extend(self.where(w) for w in where.all_of)
        if where.any_of is not None:
            alternatives = [self.where(w) for w in where.any_of]
            parts.append("(" + " or ".join(alternatives) + ")" if alternatives else "false")
        if where.negated is not None:
            parts.append(f"not ({self.where(where.negated)})")
        if not parts:
            return "true"
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"


def compile_where(where: LabWhere | None, params: Placeholders) -> str:
    """The SQL condition for `where`, its values added to `params`; `true` when empty."""
    if where is None or where.is_empty:
        return "true"
    return _Compiler(params).where(where)
