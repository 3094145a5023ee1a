"""Reading and writing labs. Every statement runs under the request's role: RLS keeps only
the caller's rows, so no query here names a user."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from scriptlabs.db.operation import Operation
from scriptlabs.db.sql import Params, Placeholders
from scriptlabs.errors import AppError, Code
from scriptlabs.labs import rules
from scriptlabs.labs.columns import (
    ALL_COLUMNS,
    BY_ATTRIBUTE,
    WRITABLE,
    ReadingStatus,
    select_list,
)
from scriptlabs.labs.filters import LabWhere, compile_where
from scriptlabs.labs.pagination import (
    PageRequest,
    SortKey,
    after_condition,
    bind_values,
    cursor_sql,
    encode_cursor,
)

IMPORT_MAX = 1000


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[asyncpg.Record]
    has_next: bool
    has_previous: bool
    keys: tuple[SortKey, ...]

    def cursor(self, row: asyncpg.Record) -> str:
        return encode_cursor(self.keys, row)


@dataclass(frozen=True, slots=True)
class PageSlots:
    """The placeholders of a page's values: its cursors' (None for a NULL value) and its
    `limit + 1`. With the filter's SQL they are all a page's SQL depends on besides its order
    and its columns: two pages alike in them share their text (the planner keeps it)."""

    after: tuple[str | None, ...] | None
    before: tuple[str | None, ...] | None
    fetch: str


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page of labs, checked: the filter, the keyset order, first/after/last/before.

    The loader of `labs`: the resolver reads its rows (`list_labs`), the planned path wraps
    the same SQL (`rows_sql`, `cursor_sql`) in the statement that builds the JSON answer.
    """

    where: LabWhere | None
    keys: tuple[SortKey, ...]
    page: PageRequest

    @property
    def scan(self) -> tuple[SortKey, ...]:
        """The order rows are read in: the page's, reversed when paging backward."""
        return tuple(k.reversed() for k in self.keys) if self.page.backward else self.keys

    def where_sql(self, params: Placeholders) -> str:
        return compile_where(self.where, params)

    def bind(self, params: Placeholders) -> PageSlots:
        """The page's own values (its cursors, its limit + 1) added to `params`, once."""
        page = self.page
        return PageSlots(
            after=bind_values(page.after, params) if page.after is not None else None,
            before=bind_values(page.before, params) if page.before is not None else None,
            fetch=params.add(page.limit + 1),
        )

    def rows_sql(self, columns: list[str], slots: PageSlots, *, where: str) -> str:
        """The page's rows in scan order, `limit + 1` of them to know whether more follow.
        Its text depends on the page's values only through `where` and `slots`."""
        conditions = [where]
        if slots.after is not None:
            conditions.append(after_condition(self.keys, slots.after))
        if slots.before is not None:
            reverse = tuple(k.reversed() for k in self.keys)
            conditions.append(after_condition(reverse, slots.before))
        return (
            f"select {select_list(columns)}\n"
            f"from public.labs\n"
            f"where {' and '.join(conditions)}\n"
            f"order by {', '.join(k.sql() for k in self.scan)}\n"
            f"limit {slots.fetch}"
        )

    def cursor_sql(self, alias: str) -> str:
        return cursor_sql(self.keys, alias)


def columns_for(attributes: Iterable[str], keys: tuple[SortKey, ...] = ()) -> list[str]:
    """Columns for the given Lab attributes, plus what cursors need; in table order."""
    wanted = {BY_ATTRIBUTE[a].column for a in attributes} | {"id"}
    wanted |= {k.column for k in keys}
    return [c for c in ALL_COLUMNS if c in wanted]


async def list_labs(op: Operation, query: PageQuery, columns: list[str]) -> Page:
    """One page in keyset order: one statement, `limit + 1` rows to know if more follow."""
    page = query.page
    if page.limit == 0:
        return Page([], False, False, query.keys)
    params = Params()
    where = query.where_sql(params)
    sql = query.rows_sql(columns, query.bind(params), where=where)
    rows = await op.fetch(sql, *params.values)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    if page.backward:
        rows.reverse()
        return Page(rows, page.before is not None, more, query.keys)
    return Page(rows, more, page.after is not None, query.keys)


async def count_labs(op: Operation, where: LabWhere | None) -> int:
    params = Params()
    sql = f"select count(*) from public.labs where {compile_where(where, params)}"
    return int(await op.fetchval(sql, *params.values))


def get_sql(columns: list[str], id_placeholder: str) -> str:
    # RLS adds user_id = auth.uid(): with the id this is a primary-key lookup
    return f"select {select_list(columns)} from public.labs where id = {id_placeholder}"


async def get_lab(op: Operation, lab_id: uuid.UUID, columns: list[str]) -> asyncpg.Record | None:
    return await op.fetchrow(get_sql(columns, "$1"), lab_id)


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """Attributes → column names, enums → stored text."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, ReadingStatus):
            value = value.value
        out[BY_ATTRIBUTE[name].column] = value
    return out


async def create_lab(op: Operation, values: dict[str, Any], columns: list[str]) -> asyncpg.Record:
    data = _stored(rules.clean(values, creating=True))
    params = Params()
    placeholders = [params.add(v) for v in data.values()]
    sql = (
        f"insert into public.labs ({', '.join(data)}) values ({', '.join(placeholders)})\n"
        f"returning {select_list(columns)}"
    )
    row = await op.fetchrow(sql, *params.values)
    assert row is not None
    return row


async def update_lab(
    op: Operation, lab_id: uuid.UUID, values: dict[str, Any], columns: list[str]
) -> asyncpg.Record:
    data = _stored(rules.clean(values, creating=False))
    params = Params()
    id_ph = params.add(lab_id)
    if data:
        assignments = ", ".join(f"{column} = {params.add(v)}" for column, v in data.items())
        sql = (
            f"update public.labs set {assignments} where id = {id_ph}\n"
            f"returning {select_list(columns)}"
        )
    else:  # nothing to change: still answer NOT_FOUND for a lab that is not the caller's
        sql = f"select {select_list(columns)} from public.labs where id = {id_ph}"
    row = await op.fetchrow(sql, *params.values)
    if row is None:
        raise AppError(Code.NOT_FOUND, "Lab not found")
    return row


async def delete_lab(op: Operation, lab_id: uuid.UUID) -> uuid.UUID:
    deleted = await op.fetchval("delete from public.labs where id = $1 returning id", lab_id)
    if deleted is None:
        raise AppError(Code.NOT_FOUND, "Lab not found")
    return uuid.UUID(str(deleted))


# the id (made here) and the writable fields, a null taking the column's default if it has one
_IMPORTED = (BY_ATTRIBUTE["id"], *WRITABLE)
IMPORT_COLUMNS = [f.column for f in _IMPORTED]
# the arrays' element types: varchar(n) travels as text (rules have checked its length)
_IMPORT_TYPES = {f.column: "text" if f.sql_type == "varchar" else f.sql_type for f in _IMPORTED}
_IMPORT_VALUES = [
    f"coalesce(t.{f.column}, {f.default})" if f.writable and f.default else f"t.{f.column}"
    for f in _IMPORTED
]
IMPORT_LABS = f"""
insert into public.labs ({", ".join(IMPORT_COLUMNS)})
select {", ".join(_IMPORT_VALUES)}
from unnest({", ".join(f"${i}::{_IMPORT_TYPES[c]}[]" for i, c in enumerate(IMPORT_COLUMNS, 1))})
     as t({", ".join(IMPORT_COLUMNS)})
"""


async def import_labs(op: Operation, labs: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert all of `labs` or none, in one statement; ids in input order."""
    if len(labs) > IMPORT_MAX:
        raise AppError(Code.BAD_USER_INPUT, f"At most {IMPORT_MAX} labs per import", field="labs")
    cleaned: list[dict[str, Any]] = []
    for index, values in enumerate(labs):
        try:
            cleaned.append(_stored(rules.clean(values, creating=True)))
        except AppError as exc:
            raise exc.at(f"labs[{index}]") from None
    if not cleaned:
        return []
    # ids made here, so the answer's order is the input's by construction
    ids = [uuid.uuid4() for _ in cleaned]
    for lab_id, row in zip(ids, cleaned, strict=True):
        row["id"] = lab_id
    arrays = [[row.get(c) for row in cleaned] for c in IMPORT_COLUMNS]
    await op.execute(IMPORT_LABS, *arrays)
    return ids
