"""labStats: the caller's catalogue statistics."""

from __future__ import annotations

from strawberry.types import Info
from strawberry.types.unset import UNSET

from scriptlabs.graphql.context import Context
from scriptlabs.graphql.fields import graphql_name
from scriptlabs.graphql.inputs import LabFilter, to_where
from scriptlabs.graphql.selection import children
from scriptlabs.graphql.types import LabStats
from scriptlabs.labs.stats import PARTS, StatsQuery, load_lab_stats

# LabStats' field names → the loader's parts (`totalLabs` → `total_labs`)
STATS_PARTS: dict[str, str] = {graphql_name(part): part for part in PARTS}


def lab_stats_query(*, filter: LabFilter | None, fields: set[str]) -> StatsQuery:
    """The loader of `labStats`, shared by its resolver and the planner: the filter checked
    (BAD_USER_INPUT naming its place, `filter.rating`) and the selected LabStats fields as
    the parts to read."""
    parts = frozenset(STATS_PARTS[f] for f in fields if f in STATS_PARTS)
    return StatsQuery(to_where(filter), parts)


async def lab_stats(info: Info[Context, None], filter: LabFilter | None = UNSET) -> LabStats:
    op = info.context.user_operation()
    query = lab_stats_query(filter=filter, fields=children(info))
    return LabStats.from_row(await load_lab_stats(op, query))
