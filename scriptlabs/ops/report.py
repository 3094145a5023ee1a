"""`scriptlabs report`: per UTC day, active users, labs created, searches and the share of
searches that found nothing. Read as the database owner (every user's rows).

- Active users: users who signed in or refreshed a session that day
  (scriptlabs_private.active_days, noted by a trigger on those session writes). An access
  token lives minutes and the clients refresh it, so a user who uses the API on a day is
  counted on that day; the requests in between write nothing.
- Labs created: labs whose created_at falls on that day and that still exist.
- Searches: searchLabs first pages of a non-blank query, and those that found nothing
  (scriptlabs/ops/usage.py), as the API's workers flushed them (every few seconds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

# one scan of the labs since the first day; the days without activity as zeros
REPORT = """
with days as (
  select d::date as day from pg_catalog.generate_series($1::date, $2::date, interval '1 day') d
),
created as (
  select (l.created_at at time zone 'UTC')::date as day, count(*) as n
  from public.labs l
  where l.created_at >= $1::date::timestamp at time zone 'UTC'
    and l.created_at < ($2::date + 1)::timestamp at time zone 'UTC'
  group by 1
),
active as (
  select a.day, count(*) as n
  from scriptlabs_private.active_days a
  where a.day between $1 and $2
  group by a.day
)
select days.day,
       coalesce(active.n, 0) as active_users,
       coalesce(created.n, 0) as labs_created,
       coalesce(u.searches, 0) as searches,
       coalesce(u.empty_searches, 0) as empty_searches
from days
left join active using (day)
left join created using (day)
left join scriptlabs_private.search_usage u using (day)
order by days.day
"""


@dataclass(frozen=True, slots=True)
class Day:
    day: dt.date
    active_users: int
    labs_created: int
    searches: int
    empty_searches: int

    @property
    def empty_share(self) -> float | None:
        """The share of searches that found nothing; None without searches."""
        return self.empty_searches / self.searches if self.searches else None

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "activeUsers": self.active_users,
            "labsCreated": self.labs_created,
            "searches": self.searches,
            "emptySearches": self.empty_searches,
            "emptyShare": self.empty_share,
        }


async def report(conn: asyncpg.Connection, days: int, today: dt.date | None = None) -> list[Day]:
    """The last `days` days up to `today` (UTC), oldest first, every day present."""
    last = today or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    rows = await conn.fetch(REPORT, first, last)
    return [
        Day(r["day"], r["active_users"], r["labs_created"], r["searches"], r["empty_searches"])
        for r in rows
    ]


def table(days: list[Day]) -> str:
    """A table for a terminal."""
    head = ("day", "active users", "labs created", "searches", "found nothing")
    lines = [head]
    for d in days:
        share = d.empty_share
        lines.append(
            (
                d.day.isoformat(),
                str(d.active_users),
                str(d.labs_created),
                str(d.searches),
                "-" if share is None else f"{d.empty_searches} ({share:.1%})",
            )
        )
    return render(lines)


def render(lines: Sequence[tuple[str, ...]], left: tuple[int, ...] = (0,)) -> str:
    """Columns aligned: those of `left` to the left, the others to the right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
