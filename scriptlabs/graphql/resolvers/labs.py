"""Lab queries and mutations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import strawberry
from strawberry.types import Info
from strawberry.types.unset import UNSET

from scriptlabs.db.operation import Operation
from scriptlabs.errors import AppError, from_db_error
from scriptlabs.graphql.context import Context
from scriptlabs.graphql.fields import columns_for
from scriptlabs.graphql.inputs import (
    CreateLabInput,
    LabFilter,
    LabOrder,
    UpdateLabInput,
    given,
    lab_values,
    to_order,
    to_where,
)
from scriptlabs.graphql.selection import children
from scriptlabs.graphql.types import ImportResult, Lab, LabEdge, PageInfo
from scriptlabs.labs import store
from scriptlabs.labs.columns import DB_FIELDS
from scriptlabs.labs.filters import LabWhere
from scriptlabs.labs.pagination import page_request, sort_keys


@strawberry.type
class LabConnection:
    edges: list[LabEdge]
    nodes: list[Lab]
    page_info: PageInfo
    _op: strawberry.Private[Operation]
    _where: strawberry.Private[LabWhere | None]

    @strawberry.field
    async def total_count(self) -> int:
        # counted only when selected (contract)
        return await store.count_labs(self._op, self._where)


def _under_input(exc: AppError | asyncpg.PostgresError) -> AppError:
    """The error with its field as a path into the `input` argument (`input.rating`)."""
    error = exc if isinstance(exc, AppError) else from_db_error(exc, DB_FIELDS)
    return error.at("input") if error.field else error


@dataclass(frozen=True, slots=True)
class LabPage:
    """A `labs` page as plain data."""

    op: Operation
    where: LabWhere | None
    rows: list[asyncpg.Record]
    cursors: list[str]
    has_next: bool
    has_previous: bool


def lab_page_query(
    *,
    filter: LabFilter | None,
    order_by: list[LabOrder] | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> store.PageQuery:
    """The loader of `labs`, shared by its resolver and the planner: the arguments checked
    and turned into the page's description (BAD_USER_INPUT naming the argument)."""
    where = to_where(filter)
    keys = sort_keys(to_order(order_by or None))
    page = page_request(
        keys,
        first=first if given(first) else None,
        after=after if given(after) else None,
        last=last if given(last) else None,
        before=before if given(before) else None,
    )
    return store.PageQuery(where, keys, page)


async def load_lab_page(
    op: Operation, query: store.PageQuery, *, top: set[str], fields: set[str]
) -> LabPage:
    """Read one page: only the selected columns, rows only when edges, nodes or pageInfo
    are selected, cursors only when edges or pageInfo are."""
    if not top & {"edges", "nodes", "pageInfo"}:
        return LabPage(op, query.where, [], [], False, False)
    page = await store.list_labs(op, query, columns_for(fields, query.keys))
    cursors = [page.cursor(r) for r in page.rows] if top & {"edges", "pageInfo"} else []
    return LabPage(op, query.where, page.rows, cursors, page.has_next, page.has_previous)


def lab_fields(info: Info[Context, None]) -> tuple[set[str], set[str]]:
    """The connection's selected fields, and the Lab fields under edges.node and nodes."""
    return children(info), children(info, ("edges", "node")) | children(info, ("nodes",))


async def labs(
    info: Info[Context, None],
    filter: LabFilter | None = UNSET,
    order_by: list[LabOrder] | None = UNSET,
    first: int | None = UNSET,
    after: str | None = UNSET,
    last: int | None = UNSET,
    before: str | None = UNSET,
) -> LabConnection:
    top, fields = lab_fields(info)
    op = info.context.user_operation()
    query = lab_page_query(
        filter=filter, order_by=order_by, first=first, after=after, last=last, before=before
    )
    page = await load_lab_page(op, query, top=top, fields=fields)
    nodes = [Lab.from_row(r) for r in page.rows]
    edges = (
        [LabEdge(cursor=c, node=n) for c, n in zip(page.cursors, nodes, strict=True)]
        if "edges" in top
        else []
    )
    page_info = PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=page.cursors[0] if page.cursors else None,
        end_cursor=page.cursors[-1] if page.cursors else None,
    )
    return LabConnection(
        edges=edges, nodes=nodes, page_info=page_info, _op=page.op, _where=page.where
    )


async def lab(info: Info[Context, None], id: uuid.UUID) -> Lab | None:
    op = info.context.user_operation()
    row = await store.get_lab(op, id, columns_for(children(info)))
    return Lab.from_row(row) if row is not None else None


async def create_lab(info: Info[Context, None], input: CreateLabInput) -> Lab:
    op = info.context.user_operation()
    try:
        row = await store.create_lab(op, lab_values(input), columns_for(children(info)))
    except (AppError, asyncpg.PostgresError) as exc:
        raise _under_input(exc) from None
    return Lab.from_row(row)


async def update_lab(info: Info[Context, None], id: uuid.UUID, input: UpdateLabInput) -> Lab:
    op = info.context.user_operation()
    try:
        row = await store.update_lab(op, id, lab_values(input), columns_for(children(info)))
    except (AppError, asyncpg.PostgresError) as exc:
        raise _under_input(exc) from None
    return Lab.from_row(row)


async def delete_lab(info: Info[Context, None], id: uuid.UUID) -> uuid.UUID:
    return await store.delete_lab(info.context.user_operation(), id)


async def import_labs(info: Info[Context, None], labs: list[CreateLabInput]) -> ImportResult:
    op = info.context.user_operation()
    ids = await store.import_labs(op, [lab_values(item) for item in labs])
    return ImportResult(inserted=len(ids), ids=ids)
