"""Search usage, for `scriptlabs report`: counted in the process, written in batches.

A search is a searchLabs field answering the first page (no `after`) of a query that is not
blank; it found nothing when its answer shows no match: `totalCount` 0, or no edges where a
page was asked for (`first` above 0). Later pages of the same search are not counted again.

Counting costs a dictionary update on the search path, never a statement: the app's
`SearchCounts` (Services.searches) holds its counts per UTC day, and `UsageFlusher` (started by
the app's lifespan) adds them
to scriptlabs_private.search_usage every few seconds and once more at shut-down, in one
statement whatever the number of searches. Nothing of the query, nor who asked, is kept.
Counts a flush could not write (the database away) are kept for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

import orjson

from scriptlabs.db.operation import Pool

log = logging.getLogger("scriptlabs.usage")

FLUSH_SECONDS = 10.0
ADD = "select scriptlabs_private.add_search_usage($1::date[], $2::bigint[], $3::bigint[])"


class SearchCounts:
    """Searches and empty searches per UTC day, since the last flush."""

    def __init__(self) -> None:
        self._days: dict[dt.date, list[int]] = {}

    def record(self, empty: bool) -> None:
        day = dt.datetime.now(dt.UTC).date()
        counts = self._days.get(day)
        if counts is None:
            counts = self._days[day] = [0, 0]
        counts[0] += 1
        if empty:
            counts[1] += 1

    def record_empty(self) -> None:
        """A search recorded as found (its page unread) turned out empty (its count 0)."""
        counts = self._days.setdefault(dt.datetime.now(dt.UTC).date(), [0, 0])
        counts[1] = min(counts[1] + 1, counts[0])

    def take(self) -> dict[dt.date, list[int]]:
        """The counts so far; the counter starts again from nothing."""
        days, self._days = self._days, {}
        return days

    def give_back(self, days: dict[dt.date, list[int]]) -> None:
        """Counts that could not be written: added to those of the next flush."""
        for day, (searches, empty) in days.items():
            counts = self._days.setdefault(day, [0, 0])
            counts[0] += searches
            counts[1] += empty

    async def flush(self, pool: Pool) -> int:
        """Write the counts so far in one statement; the number of searches written."""
        days = self.take()
        if not days:
            return 0
        ordered = sorted(days)
        try:
            async with pool.connection() as conn:
                await conn.execute(
                    ADD, ordered, [days[d][0] for d in ordered], [days[d][1] for d in ordered]
                )
        except BaseException:
            self.give_back(days)
            raise
        return sum(c[0] for c in days.values())


def found_nothing(value: bytes, count_key: str | None, edges_key: str | None) -> bool:
    """Whether a planned searchLabs answer (its JSON) shows no match. A parse (about 11 us
    for 20 edges with snippets, 10 kB): looking for `:[]` in the bytes costs more."""
    answer: Any = orjson.loads(value)
    if not isinstance(answer, dict):
        return False
    if count_key is not None and answer.get(count_key) == 0:
        return True
    return edges_key is not None and answer.get(edges_key) == []


class UsageFlusher:
    """Writes `counts` every `seconds` and at `stop()`."""

    def __init__(self, counts: SearchCounts, pool: Pool, seconds: float = FLUSH_SECONDS) -> None:
        self.counts = counts
        self.pool = pool
        self.seconds = seconds
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="search usage flusher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def flush(self) -> None:
        try:
            await self.counts.flush(self.pool)
        except Exception as exc:
            if not self._failed:  # once per outage
                log.warning("search usage not written, kept for the next flush: %s", exc)
            self._failed = True
        else:
            self._failed = False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            await self.flush()
