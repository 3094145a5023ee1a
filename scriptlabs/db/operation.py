"""One GraphQL operation: one pooled connection, one transaction, role and claims set first.

The transaction starts lazily, at the first statement a resolver sends, so an operation
that needs no SQL (an `UNAUTHENTICATED` refusal, `me` without a token) costs no round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from asyncpg.transaction import Transaction

from scriptlabs.auth.tokens import Claims
from scriptlabs.errors import AppError, Code

# contract: role and claims are transaction-local, so PgBouncer transaction pooling is safe
SET_REQUEST = """
select set_config('role', $1, true),
       set_config('request.jwt.claims', $2, true),
       set_config('statement_timeout', $3, true)
"""

# the same, for a token that names a session: it is refused once the session has ended
# (sign-out, revocation, password change or reset), at no extra round trip
SET_REQUEST_IN_SESSION = """
select scriptlabs_private.session_is_live($4, $5),
       set_config('role', $1, true),
       set_config('request.jwt.claims', $2, true),
       set_config('statement_timeout', $3, true)
"""

SET_ROLE = "select set_config('role', $1, true)"

T = TypeVar("T")


class Skipped(Exception):
    """A statement not sent because an earlier one failed: the operation rolls back anyway."""


class Operation:
    """The connection and transaction of one GraphQL operation."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        claims: Claims,
        *,
        readonly: bool,
        statement_timeout_ms: int,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.pool = pool
        self._gate = gate
        self.claims = claims
        self.readonly = readonly
        self._timeout = str(statement_timeout_ms)
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        self._tx: Transaction | None = None
        # root query fields resolve concurrently; one connection takes one statement at a time
        self._lock = asyncio.Lock()
        self.failed = False

    @property
    def started(self) -> bool:
        return self._conn is not None

    async def begin(self) -> bool:
        """Take a connection, begin, set role, claims and timeout in one statement.

        False when the token names a session that has ended: the caller answers 401.
        """
        if self._conn is not None:
            return True
        conn = await self._acquire()
        claims = self.claims
        try:
            tx = conn.transaction(readonly=self.readonly)
            await tx.start()
            if claims.session_id is not None and claims.sub is not None:
                row = await conn.fetchrow(
                    SET_REQUEST_IN_SESSION,
                    claims.role,
                    claims.json,
                    self._timeout,
                    claims.sub,
                    claims.session_id,
                )
                live = bool(row and row[0])
            else:
                await conn.execute(SET_REQUEST, claims.role, claims.json, self._timeout)
                live = True
        except BaseException:
            await self._release(conn)
            raise
        self._conn, self._tx = conn, tx
        return live

    async def _acquire(self) -> asyncpg.pool.PoolConnectionProxy:
        # asyncpg's pool lets a newcomer take a released connection before the waiter woken
        # for it, so under a thousand clients some wait again and again (bench/RESULTS.md);
        # the gate, a semaphore sized like the pool, serves waiters first come, first served
        if self._gate is not None:
            await self._gate.acquire()
        try:
            return await self.pool.acquire()
        except BaseException:
            if self._gate is not None:
                self._gate.release()
            raise

    async def _release(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        try:
            await self.pool.release(conn)
        finally:
            if self._gate is not None:
                self._gate.release()

    async def connection(self) -> asyncpg.Connection:
        """The operation's connection, inside its transaction, role and claims set."""
        if self._conn is None and not await self.begin():
            self.failed = True
            raise AppError(Code.UNAUTHENTICATED, "This session has ended")
        return self._conn  # type: ignore[return-value]

    async def _run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._lock:
            if self.failed:
                raise Skipped
            try:
                return await call(await self.connection())
            except BaseException:
                self.failed = True
                raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda conn: conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda conn: conn.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(lambda conn: conn.fetchval(query, *args))

    async def execute(self, query: str, *args: Any) -> str:
        return await self._run(lambda conn: conn.execute(query, *args))

    @asynccontextmanager
    async def as_role(self, role: str) -> AsyncIterator[asyncpg.Connection]:
        """Run a block under another role (auth flows use `service_role`), then switch back.

        The block holds the connection alone; any error in it fails the operation.
        """
        async with self._lock:
            if self.failed:
                raise Skipped
            try:
                conn = await self.connection()
                await conn.execute(SET_ROLE, role)
                yield conn
                await conn.execute(SET_ROLE, self.claims.role)
            except BaseException:
                self.failed = True  # the transaction rolls back, role and all
                raise

    async def finish(self, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back to the pool."""
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        failed, self.failed = self.failed, False  # a later begin() starts afresh
        if conn is None or tx is None:
            return
        try:
            if commit and not failed:
                await tx.commit()
            else:
                await tx.rollback()
        finally:
            await self._release(conn)


async def run_apart(pool: asyncpg.Pool, role: str, query: str, *args: Any) -> None:
    """Run one statement in a short transaction of its own, under `role`.

    For security bookkeeping that must outlive the refusal of the operation that found it
    (a replayed refresh token's session revoked): that operation rolls back, this stays.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SET_ROLE, role)
        await conn.execute(query, *args)
