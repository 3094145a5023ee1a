"""The pool keeps connections given back clean for the next turn (db/operation.py, Pool).

On a real PostgreSQL: a clean read's connection serves the next operation (same backend),
one whose work failed goes back through asyncpg's pool instead, an idle connection the
server ended is never handed out, the breaker's probe gets a connection while every one is
idle, and closing the pool with idle connections neither hangs nor leaves any open.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import pytest

from scriptlabs.auth.tokens import ANON
from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation, Pool
from scriptlabs.db.pool import close_pools, open_pools
from scriptlabs.errors import AppError
from tests.conftest import Database

BACKEND = "select json_build_object('pid', pg_backend_pid())::text"


async def make_pool(database: Database, size: int = 2, timeout_ms: int = 5000) -> Pool:
    raw = await asyncpg.create_pool(database.dsn, min_size=1, max_size=size)
    assert raw is not None
    return Pool(raw, size, 5.0, timeout_ms)


def operation(pool: Pool) -> Operation:
    return Operation(
        pool, role="anon", claims_json=ANON.json, user_id=None, session_id=None, readonly=True
    )


async def backend_of_a_read(pool: Pool) -> int:
    text = await operation(pool).read_statement(BACKEND, "[]")
    assert text is not None
    return int(text.split(":")[1].strip(" }"))


async def test_a_clean_read_leaves_its_connection_for_the_next_turn(database: Database) -> None:
    pool = await make_pool(database)
    try:
        first = await backend_of_a_read(pool)
        assert len(pool.idle) == 1 and pool.in_use == 0 and not pool.gate.locked()
        assert await backend_of_a_read(pool) == first  # the same connection, kept
        # an operation in a transaction gives its connection back clean too
        op = operation(pool)
        conn = await op.connection()
        assert await conn.fetchval("select pg_backend_pid()") == first
        await op.end(commit=False)
        assert len(pool.idle) == 1
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_a_failed_operation_gives_its_connection_back_through_asyncpg(
    database: Database,
) -> None:
    pool = await make_pool(database, timeout_ms=200)
    try:
        await backend_of_a_read(pool)
        assert len(pool.idle) == 1
        with pytest.raises(AppError):  # TIMEOUT: cut short, its cancel request in flight
            await operation(pool).read_statement("select pg_sleep(5)::text", "[]")
        assert pool.idle == [] and pool.in_use == 0 and not pool.gate.locked()
        assert await backend_of_a_read(pool) > 0  # and the pool goes on
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_an_idle_connection_the_server_ended_is_not_handed_out(database: Database) -> None:
    pool = await make_pool(database)
    admin = await asyncpg.connect(database.admin_dsn)
    try:
        ended = await backend_of_a_read(pool)
        await admin.execute("select pg_terminate_backend($1)", ended)
        for _ in range(100):  # until the client has seen the connection go
            try:
                if pool.idle[0].is_closed():
                    break
            except asyncpg.InterfaceError:  # taken back by asyncpg as it closed
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the ended connection still looks open")
        again = await backend_of_a_read(pool)
        assert again != ended
    finally:
        await admin.close()
        await asyncio.wait_for(pool.close(), 10)


async def test_the_probe_borrows_an_idle_connection_past_the_gate(database: Database) -> None:
    pool = await make_pool(database, size=1)
    try:
        await backend_of_a_read(pool)
        assert len(pool.idle) == 1  # asyncpg's only connection is ours, idle
        await asyncio.wait_for(pool._probe(), 5)
        await pool.gate.acquire()  # every turn taken: the probe still gets through
        try:
            await asyncio.wait_for(pool._probe(), 5)
        finally:
            pool.gate.release()
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_closing_hands_the_idle_connections_back(database: Database) -> None:
    pool = await make_pool(database, size=3)
    admin = await asyncpg.connect(database.admin_dsn)
    try:
        backends = await asyncio.gather(*(backend_of_a_read(pool) for _ in range(3)))
        assert len(pool.idle) >= 1
        await asyncio.wait_for(pool.close(), 10)
        assert pool.pool.is_closing()
        for _ in range(100):
            left = await admin.fetchval(
                "select count(*) from pg_stat_activity where pid = any($1::int[])", backends
            )
            if left == 0:
                break
            await asyncio.sleep(0.05)
        assert left == 0
    finally:
        await admin.close()


async def test_checks_get_a_connection_while_every_turn_keeps_one(settings: Settings) -> None:
    """The app's pools (db/pool.py): with every request and stream turn holding its
    connection, in use or idle, the outage probe and the replica's lag check still connect."""
    tuned = replace(settings, db_pool_min=0, db_pool_max=2)
    requests, streams = await open_pools(tuned)
    try:
        await backend_of_a_read(requests)  # a connection kept idle by a turn, then taken
        held = [await requests.take(), await requests.take()]
        held += [await streams.take(), await streams.take()]
        assert requests.idle == [] and requests.gate.locked() and streams.gate.locked()
        assert requests.pool.get_size() == tuned.db_connections_max - 1
        await asyncio.wait_for(requests._probe(), 5)
        async with asyncio.timeout(5), requests.borrowed() as conn:
            assert await conn.fetchval("select 1") == 1
        for conn in held[:2]:
            await requests.give_back(conn, clean=True)
        for conn in held[2:]:
            await streams.give_back(conn, clean=True)
    finally:
        await asyncio.wait_for(close_pools(requests, streams), 10)
