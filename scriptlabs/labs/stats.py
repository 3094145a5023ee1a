"""A catalogue's statistics (labStats): counts by status, the average rating, distinct authors
and categories, labs per category and per rating.

The loader of `labStats`, shared by its resolver and the planner. It reads only the parts
selected. Without a filter they come from the figures the triggers of db/013_lab_stats.sql
keep per user (one row of `lab_totals`, and `lab_category_counts` for `by_category`), so their
cost does not grow with the catalogue; with a filter they are aggregated from `public.labs`,
in one scan (and one more for `by_category`).

Every query names the caller with `(select auth.uid())` besides RLS, so that each reads at
most one row of `lab_totals` even under a role that bypasses RLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scriptlabs.db.operation import Operation
from scriptlabs.db.sql import Params, Placeholders
from scriptlabs.labs.columns import ReadingStatus
from scriptlabs.labs.filters import LabWhere, compile_where

RATINGS = range(1, 6)  # contract: the distribution lists ratings 1 to 5, zero counts included

# the figures, by attribute: (aggregated from labs, read from the kept totals `t`)
_SUM_OF_RATINGS = " + ".join(f"{k} * t.rating_{k}" for k in RATINGS)
_RATED = " + ".join(f"t.rating_{k}" for k in RATINGS)
FIGURES: dict[str, tuple[str, str]] = {
    "total_labs": ("count(*)", "coalesce(t.labs, 0)"),
    "labs_read": (
        f"count(*) filter (where reading_status = '{ReadingStatus.READ.value}')",
        "coalesce(t.labs_read, 0)",
    ),
    "labs_reading": (
        f"count(*) filter (where reading_status = '{ReadingStatus.READING.value}')",
        "coalesce(t.labs_reading, 0)",
    ),
    "labs_to_read": (
        f"count(*) filter (where reading_status = '{ReadingStatus.TO_READ.value}')",
        "coalesce(t.labs_to_read, 0)",
    ),
    # contract: round(avg(rating), 2) over rated labs, halves up, null when none is rated;
    # avg(integer) is numeric sum / count, so the kept figures divide alike
    "average_rating": (
        "round(avg(rating), 2)",
        f"case when {_RATED} > 0 then round(({_SUM_OF_RATINGS})::numeric / ({_RATED}), 2) end",
    ),
    # distinct values counted by hashing, not by count(distinct ...), which sorts: a quarter of
    # the time over 500,000 filtered labs
    "total_authors": (
        "(select count(*) from (select author from w_ group by author) a_)",
        "coalesce(t.authors, 0)",
    ),
    "total_categories": (
        "(select count(*) from (select category from w_ where category is not null"
        " group by category) c_)",
        "coalesce(t.categories, 0)",
    ),
}
# the distribution's counts, one column per rating
RATING_COUNTS: dict[str, tuple[str, str]] = {
    f"rating_{k}": (f"count(*) filter (where rating = {k})", f"coalesce(t.rating_{k}, 0)")
    for k in RATINGS
}
LISTS = ("by_category", "rating_distribution")
PARTS = frozenset(FIGURES) | frozenset(LISTS)

CALLER = "(select auth.uid())"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """labStats, checked: the filter (None or empty: the whole catalogue) and the parts
    selected (attributes of PARTS; anything else is ignored)."""

    where: LabWhere | None
    parts: frozenset[str]

    @property
    def filtered(self) -> bool:
        return self.where is not None and not self.where.is_empty

    def where_sql(self, params: Placeholders) -> str:
        """The filter's condition on public.labs (`true` without one), values in `params`."""
        return compile_where(self.where, params) if self.filtered else "true"

    def with_rows(self, statement: str, where: str, caller: str) -> str:
        """`statement` with what it reads: with a filter, the caller's matching labs (the
        four columns the figures need), read once as `w_` for the figures and byCategory.
        `caller` is the SQL of the caller's id: named (and the statement planned with its
        value), PostgreSQL reads a big catalogue in one sequential pass instead of through
        the primary key."""
        if not self.filtered:
            return statement
        rows = (
            "select reading_status, rating, author, category from public.labs\n"
            f"where user_id = {caller} and {where}"
        )
        return f"with w_ as materialized ({rows})\n{statement}"

    def figures_sql(self) -> str:
        """One row: a column per selected figure, and `rating_1` to `rating_5` when the
        distribution is selected (no column at all when neither is). Filtered, it reads `w_`
        (with_rows)."""
        column = 0 if self.filtered else 1
        wanted = {**FIGURES, **RATING_COUNTS}
        selected = [a for a in FIGURES if a in self.parts]
        if "rating_distribution" in self.parts:
            selected.extend(RATING_COUNTS)
        if not selected:
            return "select"  # one row of no columns
        columns = ", ".join(f"{wanted[a][column]} as {a}" for a in selected)
        if self.filtered:
            # grouped: one row however many labs match, also when the distinct counts
            # (subqueries, no aggregate) are all that is selected
            return f"select {columns}\nfrom w_\ngroup by ()"
        # a row even for a caller who never had a lab (no row in lab_totals)
        return (
            f"select {columns}\nfrom (values (1)) as caller (one)\n"
            f"left join public.lab_totals t on t.user_id = {CALLER}"
        )

    def categories_sql(self) -> str:
        """Rows (category, count) of the labs with a category, in no particular order
        (byCategory's is category_order). Filtered, it reads `w_` (with_rows)."""
        if self.filtered:
            return (
                "select category, count(*) as count\nfrom w_\n"
                "where category is not null\ngroup by category"
            )
        return (
            "select category, n as count\nfrom public.lab_category_counts\n"
            f"where user_id = {CALLER} and n > 0"
        )


def category_order(alias: str) -> str:
    """byCategory's order over rows of categories_sql: most labs first, then the name."""
    return f"{alias}.count desc, {alias}.category"


def ratings_sql(figures: str) -> str:
    """Rows (rating, count), ratings 1 to 5, from the `rating_<k>` columns of the figures row
    `figures` (an alias); order by rating."""
    counts = ", ".join(f"{figures}.rating_{k}" for k in RATINGS)
    return (
        "select r.rating::integer as rating, r.count "
        f"from unnest(array[{counts}]) with ordinality as r (count, rating)"
    )


@dataclass(frozen=True, slots=True)
class LabStatsRow:
    """The selected parts of a catalogue's statistics; parts not selected are zero or empty."""

    total_labs: int = 0
    labs_read: int = 0
    labs_reading: int = 0
    labs_to_read: int = 0
    average_rating: Decimal | None = None
    total_authors: int = 0
    total_categories: int = 0
    by_category: tuple[tuple[str, int], ...] = ()
    rating_distribution: tuple[tuple[int, int], ...] = ()


def lab_stats_sql(query: StatsQuery, params: Placeholders, caller: str = CALLER) -> str:
    """The resolver's one statement: one row, the figures row's columns and, when selected,
    `by_category`, an array of (category, count) records in byCategory's order."""
    where = query.where_sql(params)
    columns = ["f.*"]
    if "by_category" in query.parts:
        columns.append(
            f"array(select row(c.category, c.count) from ({query.categories_sql()}) c "
            f"order by {category_order('c')}) as by_category"
        )
    statement = f"select {', '.join(columns)}\nfrom ({query.figures_sql()}) f"
    return query.with_rows(statement, where, caller)


async def load_lab_stats(op: Operation, query: StatsQuery) -> LabStatsRow:
    """Read the selected parts in one statement (one snapshot)."""
    params = Params()
    caller = CALLER
    if query.filtered:
        await op.plan_each_run()
        caller = params.add(op.user_id)
    row = await op.fetchrow(lab_stats_sql(query, params, caller), *params.values)
    assert row is not None
    values: dict[str, Any] = {a: row[a] for a in FIGURES if a in query.parts}
    if "by_category" in query.parts:
        values["by_category"] = tuple((c[0], c[1]) for c in row["by_category"])
    if "rating_distribution" in query.parts:
        values["rating_distribution"] = tuple((k, row[f"rating_{k}"]) for k in RATINGS)
    return LabStatsRow(**values)
