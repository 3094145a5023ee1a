"""`GET /metrics`: the process's metrics and the database's figures in Prometheus text.

The database figures (the design document's KPIs, the mail outbox) come from one call of
`scriptlabs_private.api_figures()` (db/017_stats.sql), made at scrape time on a pooled
connection taking its turn like any request, bounded by FIGURES_TIMEOUT, and kept for
FIGURES_TTL seconds: a storm of scrapes costs one query per interval and process. While the
database does not answer, /metrics still answers with the process's metrics and
`scriptlabs_database_up 0`.

With METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`. The text holds
counts, ratios and operation names only: no address, user id or token.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from scriptlabs.db.operation import Pool, PoolBusy
from scriptlabs.telemetry import metrics

API_FIGURES = """
select statements_mean_ms, index_hit_ratio, table_hit_ratio, connections_used,
       connections_max, labs_dead_share, mail_queued, mail_failed
from scriptlabs_private.api_figures()
"""

FIGURES_TTL = 5.0  # seconds
FIGURES_TIMEOUT = 2.0  # seconds, the turn at the pool included
POOL_REFRESH = 1.0  # seconds between a worker's pool gauges, with several workers


@dataclass(frozen=True, slots=True)
class Figures:
    statements_mean_ms: float | None
    index_hit_ratio: float | None
    table_hit_ratio: float | None
    connections_used: int
    connections_max: int
    labs_dead_share: float | None
    mail_queued: int
    mail_failed: int


# name, help, the Figures attribute, a factor to base units
GAUGES = (
    (
        "scriptlabs_db_statement_mean_seconds",
        "Mean execution time of the API roles' statements (pg_stat_statements; absent without).",
        "statements_mean_ms",
        0.001,
    ),
    (
        "scriptlabs_db_index_cache_hit_ratio",
        "Index blocks found in shared buffers, of all read (target > 0.95).",
        "index_hit_ratio",
        1.0,
    ),
    (
        "scriptlabs_db_table_cache_hit_ratio",
        "Table blocks found in shared buffers, of all read (target > 0.95).",
        "table_hit_ratio",
        1.0,
    ),
    (
        "scriptlabs_db_connections_in_use",
        "Client connections to the database server, every client's.",
        "connections_used",
        1.0,
    ),
    ("scriptlabs_db_connections_max", "The server's max_connections.", "connections_max", 1.0),
    (
        "scriptlabs_labs_dead_tuple_ratio",
        "Dead tuples of public.labs, of live and dead (vacuum falls behind when it grows).",
        "labs_dead_share",
        1.0,
    ),
    (
        "scriptlabs_mail_queued",
        "Mail in the outbox waiting to be sent (or retried).",
        "mail_queued",
        1.0,
    ),
    (
        "scriptlabs_mail_failed",
        "Mail in the outbox given up for good (until the hourly clean-up deletes it).",
        "mail_failed",
        1.0,
    ),
)


class DatabaseFigures(Collector):
    """The database's figures, read at most once per FIGURES_TTL; a Prometheus collector."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.figures: Figures | None = None
        self.up = False
        self._read_at = -FIGURES_TTL
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        if time.monotonic() - self._read_at < FIGURES_TTL:
            return
        async with self._lock:  # concurrent scrapes wait for the one query
            if time.monotonic() - self._read_at < FIGURES_TTL:
                return
            try:
                async with asyncio.timeout(FIGURES_TIMEOUT):
                    async with self.pool.connection() as conn:
                        row = await conn.fetchrow(API_FIGURES)
            except (OSError, TimeoutError, PoolBusy, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.up, self.figures = False, None
            else:
                assert row is not None
                self.up, self.figures = True, Figures(*row.values())
            self._read_at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "scriptlabs_database_up",
            "1 when the database answered the last scrape's query, 0 when it did not.",
            value=1.0 if self.up else 0.0,
        )
        if self.figures is None:
            return
        ratio = (
            self.figures.connections_used / self.figures.connections_max
            if self.figures.connections_max
            else None
        )
        for name, text, attribute, factor in GAUGES:
            value = getattr(self.figures, attribute)
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value) * factor)
        if ratio is not None:
            yield GaugeMetricFamily(
                "scriptlabs_db_connections_used_ratio",
                "Client connections of max_connections (target < 0.8).",
                value=ratio,
            )


class MetricsEndpoint:
    """The handler of GET /metrics for one app."""

    def __init__(self, pool: Pool, token: str | None, streams: Pool | None = None) -> None:
        self.pool = pool
        self.streams = streams  # exports and imports, over the same connections
        self.token = token
        self.figures = DatabaseFigures(pool)
        self.database = CollectorRegistry(auto_describe=False)
        self.database.register(self.figures)

    def update_pool(self) -> None:
        """This process's pool gauges, from the pool's own counts."""
        pool, streams = self.pool, self.streams
        in_use = pool.in_use + (streams.in_use if streams is not None else 0)
        metrics.set_pool(in_use, pool.waiting, pool.pool.get_size(), pool.pool.get_max_size())

    async def keep_pool_gauges(self) -> None:
        """With several workers, each keeps its share of the pool gauges current."""
        while True:
            self.update_pool()
            await asyncio.sleep(POOL_REFRESH)

    async def __call__(self, request: Request) -> Response:
        if self.token is not None and not _authorized(request, self.token):
            return Response(
                "metrics need the bearer token of METRICS_TOKEN\n",
                401,
                {"WWW-Authenticate": "Bearer"},
                media_type="text/plain",
            )
        self.update_pool()
        await self.figures.refresh()
        if metrics.MULTIPROCESS:
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            process = generate_latest(registry)
        else:
            process = generate_latest(metrics.REGISTRY)
        body = process + generate_latest(self.database)
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)


def _authorized(request: Request, token: str) -> bool:
    sent = request.headers.get("authorization", "")
    scheme, _, value = sent.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )
