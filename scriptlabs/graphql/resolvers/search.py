"""searchLabs: full-text search of the caller's labs, through the loader in labs/search.py."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types import Info
from strawberry.types.unset import UNSET

from scriptlabs.db.operation import Operation
from scriptlabs.db.sql import Params
from scriptlabs.graphql.context import Context
from scriptlabs.graphql.fields import columns_for
from scriptlabs.graphql.inputs import LabFilter, given, to_where
from scriptlabs.graphql.selection import children
from scriptlabs.graphql.types import (
    CategoryCount,
    Lab,
    PageInfo,
    RatingCount,
    ReadingStatus,
    StatusCount,
)
from scriptlabs.labs import search
from scriptlabs.ops.usage import SearchCounts


@strawberry.type(description="One match of a search.")
class LabSearchEdge:
    cursor: str
    rank: float = strawberry.field(
        description="How well the lab matches (larger is better; 0 for an empty query): "
        "the value the results are ordered by."
    )
    snippet: str | None = strawberry.field(
        description="The best fragment of the notes, matches wrapped in <mark>…</mark>, the "
        "rest HTML-escaped; null when the notes are empty."
    )
    node: Lab


async def _facet(op: Operation, query: search.SearchQuery, facet: str) -> list[Any]:
    params = Params()
    await op.plan_each_run()
    matches = f"({query.matches_sql(search.FACET_COLUMNS, params, params.add(op.user_id))}) m_"
    return await op.fetch(search.facet_sql(facet, matches), *params.values)


async def _by_category(root: SearchFacets) -> list[CategoryCount]:
    rows = await _facet(root._op, root._query, "by_category")
    return [CategoryCount(category=r["v_"], count=r["n_"]) for r in rows]


async def _by_status(root: SearchFacets) -> list[StatusCount]:
    rows = await _facet(root._op, root._query, "by_status")
    return [StatusCount(status=ReadingStatus(r["v_"]), count=r["n_"]) for r in rows]


async def _by_rating(root: SearchFacets) -> list[RatingCount]:
    rows = await _facet(root._op, root._query, "by_rating")
    return [RatingCount(rating=r["v_"], count=r["n_"]) for r in rows]


@strawberry.type(description="Counts of all the matches of a search (not only of the page).")
class SearchFacets:
    _op: strawberry.Private[Operation]
    _query: strawberry.Private[search.SearchQuery]
    by_category: list[CategoryCount] = strawberry.field(
        resolver=_by_category,
        description="Per category, most matches first; labs without one left out.",
    )
    by_status: list[StatusCount] = strawberry.field(
        resolver=_by_status, description="Per reading status, most matches first."
    )
    by_rating: list[RatingCount] = strawberry.field(
        resolver=_by_rating, description="Per rating, most matches first; unrated labs left out."
    )


async def _total_count(root: LabSearchConnection) -> int:
    op, query = root._op, root._query
    params = Params()
    await op.plan_each_run()
    sql = query.count_sql(params, params.add(op.user_id))
    count = int(await op.fetchval(sql, *params.values))
    if root._counted is not None and count == 0 and not root._counted[0]:
        root._counted[0] = True
        root._searches.record_empty()
    return count


def _facets(root: LabSearchConnection) -> SearchFacets:
    return SearchFacets(_op=root._op, _query=root._query)


async def _suggestion(root: LabSearchConnection) -> str | None:
    op, query = root._op, root._query
    if not query.words:
        return None
    params = Params()
    sql = query.suggestion_sql(params, params.add(op.user_id))
    value = await op.fetchval(f"select {sql}", *params.values)
    return str(value) if value is not None else None


@strawberry.type(description="A page of search results, best first.")
class LabSearchConnection:
    edges: list[LabSearchEdge]
    page_info: PageInfo
    _op: strawberry.Private[Operation]
    _query: strawberry.Private[search.SearchQuery]
    # a counted search (ops/usage.py): [whether it was found empty]; None: not counted
    _counted: strawberry.Private[list[bool] | None]
    _searches: strawberry.Private[SearchCounts]
    total_count: int = strawberry.field(
        resolver=_total_count, description="How many labs match (counted only when selected)."
    )
    facets: SearchFacets = strawberry.field(
        resolver=_facets, description="Counts of the matches per category, status and rating."
    )
    suggestion: str | None = strawberry.field(
        resolver=_suggestion,
        description="When nothing matches: the query with its words spelt as in the "
        "caller's own titles, authors and categories (closest by trigram similarity); "
        "otherwise null.",
    )


def search_labs_query(
    *,
    query: str,
    filter: LabFilter | None,
    first: int | None,
    after: str | None,
    prefix: bool | None,
) -> search.SearchQuery:
    """The loader of searchLabs, shared by its resolver and the planner: the arguments
    checked (BAD_USER_INPUT naming the argument)."""
    return search.search_query(
        query=query,
        where=to_where(filter),
        first=first if given(first) else None,
        after=after if given(after) else None,
        prefix=bool(prefix),
    )


async def search_labs(
    info: Info[Context, None],
    query: str,
    filter: LabFilter | None = UNSET,
    first: int | None = UNSET,
    after: str | None = UNSET,
    prefix: bool | None = False,
) -> LabSearchConnection:
    op = info.context.user_operation()
    q = search_labs_query(query=query, filter=filter, first=first, after=after, prefix=prefix)
    top = children(info)
    rows: list[Any] = []
    if top & {"edges", "pageInfo"} and q.limit > 0:
        edge = children(info, ("edges",))
        params = Params()
        columns = columns_for(children(info, ("edges", "node")))
        if "snippet" in edge:
            columns.append("notes")
        page = q.rows_sql(columns, params, params.add(op.user_id))
        snippet = q.snippet_sql("p_", params) if "snippet" in edge else "null"
        sql = (
            f"select p_.*, {q.rank_sql('p_')} as rank_, {snippet} as snippet_ "
            f"from ({page}) p_ order by p_.d_, p_.created_at desc, p_.id desc"
        )
        await op.plan_each_run()
        rows = await op.fetch(sql, *params.values)
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    cursors = [search.encode_cursor(r["d_"], r["created_at"], r["id"]) for r in rows]
    edges = [
        LabSearchEdge(cursor=c, rank=r["rank_"], snippet=r["snippet_"], node=Lab.from_row(r))
        for c, r in zip(cursors, rows, strict=True)
    ]
    page_info = PageInfo(
        has_next_page=more,
        has_previous_page=q.after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )
    counted = None
    if q.after is None and query.strip():  # a search, as ops/usage.py counts them
        empty = "edges" in top and q.limit > 0 and not rows
        info.context.services.searches.record(empty)
        counted = [empty]
    return LabSearchConnection(
        edges=edges,
        page_info=page_info,
        _op=op,
        _query=q,
        _counted=counted,
        _searches=info.context.services.searches,
    )
