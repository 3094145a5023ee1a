"""The asyncpg pool the API runs on, and the turns taken at it."""

from __future__ import annotations

import asyncpg

from scriptlabs.config import Settings
from scriptlabs.db.operation import Pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without a reset query.

    Every setting an operation makes is transaction-local (`set_config(..., true)`), and
    asyncpg rolls back any open transaction on release, so the usual `RESET ALL` round
    trip buys nothing here (measured: 15 % of a short request's time).
    """


async def create_pool(
    settings: Settings, *, min_size: int | None = None, max_size: int | None = None
) -> asyncpg.Pool:
    if not settings.database_url:
        raise RuntimeError("no database URL")
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max if max_size is None else max_size,
        statement_cache_size=settings.db_statement_cache_size,
        reset=_keep_session,
        # a connection attempt to a host that does not answer fails after this, not after
        # asyncpg's 60 s (db.outage then refuses requests at once until the database is back)
        timeout=settings.db_connect_timeout_s,
        # no statement_timeout here: PgBouncer refuses startup parameters it does not know.
        # A transaction sets its own (transaction-local); a read in one statement is bounded
        # by the client's timeout, which cancels it on the server (db.operation)
        server_settings={"application_name": "scriptlabs"},
    )
    assert pool is not None
    return pool


async def open_pools(settings: Settings) -> tuple[Pool, Pool]:
    """The turns of requests (DB_POOL_MAX) and of streams (exports and imports), over one
    asyncpg pool of `Settings.db_connections_max` connections with one outage breaker. The
    connection beyond their turns is for `Pool.borrowed` (the outage probe, the replica's lag
    check): they never wait for a connection that a turn keeps idle."""
    raw = await create_pool(settings, max_size=settings.db_connections_max)
    requests = Pool(
        raw, settings.db_pool_max, settings.db_pool_wait_seconds, settings.statement_timeout_ms
    )
    streams = Pool(
        raw,
        settings.exports_at_once + settings.imports_at_once,
        settings.db_pool_wait_seconds,
        settings.statement_timeout_ms,
        breaker=requests.breaker,
    )
    return requests, streams


async def close_pools(requests: Pool, streams: Pool) -> None:
    await streams.release_idle()
    await requests.close()  # its idle connections, then asyncpg's pool
