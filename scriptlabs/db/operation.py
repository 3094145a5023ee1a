"""One operation's database work: one pooled connection, one transaction, one deadline.

`Operation` is driven by the runner (scriptlabs.graphql.execution) for a GraphQL operation,
and by the streamed endpoints (export, import) for theirs; whoever drives it alone begins and
ends it; resolvers and domain code only send statements through it. It takes plain values
(role, claims JSON, the token's user and session) and knows nothing of tokens.

- The transaction starts at the first statement (or when the runner begins it to check the
  token's session), with role, claims, statement timeout and the live-session check in one
  set-up statement.
- One deadline: STATEMENT_TIMEOUT_MS bounds the operation's whole database time, from its
  first statement on, however many statements it sends (contract, Errors).
- One connection: `apart()` runs security bookkeeping in a short transaction of its own, and
  only while the operation holds no connection; nothing ever waits for a second connection
  while holding one.
- Fair turns: connections are taken through a first-come-first-served gate, for a bounded
  time (`PoolBusy` after it: the transport answers 503 with Retry-After).
- Outages (db.outage): while the database cannot be reached, a request is refused at once
  with `DatabaseUnavailable` (503) and the operation records it in `lost`; a connection found
  dead before the operation did anything on it is replaced once, transparently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import asyncpg
from asyncpg.transaction import Transaction

from scriptlabs.db.gate import Gate
from scriptlabs.db.outage import Breaker, DatabaseUnavailable, Stopped, is_gone
from scriptlabs.errors import AppError, Code
from scriptlabs.telemetry import metrics

# contract: role and claims are transaction-local, so PgBouncer transaction pooling is safe
SET_REQUEST = """
select set_config('role', $1, true),
       set_config('request.jwt.claims', $2, true),
       set_config('statement_timeout', $3, true)
"""

# the same, for a token that names a session: refused once the session has ended (sign-out,
# revocation, password change or reset), at no extra round trip
SET_REQUEST_IN_SESSION = """
select scriptlabs_private.session_is_live($4, $5),
       set_config('role', $1, true),
       set_config('request.jwt.claims', $2, true),
       set_config('statement_timeout', $3, true)
"""

# a read of one statement: set-up, session check and the query in one round trip, in the
# statement's own (implicit) transaction, made read-only first (db/012_read_statement.sql)
READ_STATEMENT = "select scriptlabs_private.read_statement($1, $2, $3, $4, $5, $6)"

# A statement that starts with this comment is planned with its values at every run, never
# with a generic plan: read_statement sees the mark (db/014_search.sql); in a transaction of
# several statements, Operation.plan_each_run sets the same for the rest of it.
CUSTOM_PLAN = "/*custom plan*/ "
# (and, as there, gets 16 MB for its sorts, rum sorting every match of a word in memory, and no
# JIT compilation, which the costs of branches that never run could trigger)
FORCE_CUSTOM_PLANS = """
select set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('work_mem', '16MB', true),
       set_config('jit', 'off', true)
"""

SET_ROLE = "select set_config('role', $1, true)"
LOGIN_ROLE = "none"  # set_config('role', 'none'): back to the login role

SESSION_ENDED_STATE = "P0401"  # raised by read_statement for a session that has ended

# one connection given back clean in this many goes back through asyncpg's pool (Pool)
RECYCLE_EVERY = 256

# s: giving a connection back (rolling back, waiting for a cancelled statement's end) and
# rolling back take milliseconds from a database that answers; past this, the connection is
# closed rather than reused
RELEASE_TIMEOUT = 2.0

T = TypeVar("T")
log = logging.getLogger("scriptlabs.db")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


Isolation = Literal["serializable", "repeatable_read", "read_committed", "read_uncommitted"]


class Skipped(Exception):
    """A statement not sent because an earlier one failed: the operation rolls back anyway."""


class SessionEnded(Exception):
    """The token's session has ended (sign-out, revocation, password change): HTTP 401."""


class PoolBusy(Exception):
    """Every connection stayed busy for the whole wait: HTTP 503 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("every database connection is busy")
        self.retry_after = retry_after


def timed_out() -> AppError:
    return AppError(Code.TIMEOUT, "The operation took too long and was cancelled")


@dataclass(slots=True)
class Pool:
    """The asyncpg pool behind a first-come-first-served gate of `turns` turns.

    asyncpg's pool lets a newcomer take a released connection before the waiter woken for it,
    so under a thousand clients some wait again and again (bench/RESULTS.md); the gate
    (db/gate.py) serves waiters in order. `wait` bounds the wait for a turn.

    While the database is down (a connection could not be made), `breaker` refuses every
    request at once, before it waits for a turn, until its probe reaches the database again.

    A connection given back clean (its work done without an error, no transaction open) is
    kept in `idle` for the next turn instead of going back through asyncpg's pool: asyncpg's
    release runs a task and a timer of its own for every connection given back, a tenth of
    a short read's time in the API. Every `RECYCLE_EVERY`th one still goes back through it,
    so asyncpg keeps recycling connections after its own count of queries; anything
    else (an error, a timeout, a transaction left open, a closing pool) goes back through it
    at once. Close with `close()`, which hands the idle ones back before closing asyncpg's
    pool (it would otherwise wait for them for ever).
    """

    pool: asyncpg.Pool
    turns: int
    wait: float
    statement_timeout_ms: int
    breaker: Breaker = field(default_factory=Breaker)
    gate: Gate = field(init=False)
    # for the metrics (telemetry/metrics.py): connections held
    in_use: int = 0
    idle: list[asyncpg.pool.PoolConnectionProxy] = field(default_factory=list)
    given_back: int = 0
    closing: bool = False

    def __post_init__(self) -> None:
        self.gate = Gate(self.turns, self.wait)

    @property
    def waiting(self) -> int:
        """Callers waiting for a turn (the metrics)."""
        return self.gate.waiting

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        conn = await self.take()
        clean = False
        try:
            yield conn
            clean = True
        finally:
            await self.give_back(conn, clean=clean)

    async def take(self) -> asyncpg.pool.PoolConnectionProxy:
        self.breaker.check()  # the database is down: refused at once, nothing waits
        try:
            await self.gate.acquire()  # a turn, waited for for a bounded time
        except TimeoutError:
            metrics.count_db_unavailable("pool_busy")
            raise PoolBusy(max(1, round(self.wait))) from None
        try:
            self.breaker.check()  # found down while this one waited
            conn = await self._connect()
        except BaseException as exc:
            self.gate.release()
            # a connection could not be made (refused, timed out, the server starting or
            # stopping): the database is down
            if isinstance(exc, DatabaseUnavailable):
                raise
            if is_gone(exc) or isinstance(exc, TimeoutError):
                self.breaker.trip(exc, self._probe)
                raise DatabaseUnavailable() from exc
            raise
        self.in_use += 1
        return conn

    async def _connect(self) -> asyncpg.pool.PoolConnectionProxy:
        """An idle connection (the one given back last) or one from asyncpg's pool."""
        while self.idle:
            conn = self.idle.pop()
            if _open(conn):
                return conn
            await self._release(conn)  # lost while idle: asyncpg tidies it away
        return await self.pool.acquire()

    @asynccontextmanager
    async def borrowed(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        """A connection past the gate, for the breaker's probe and the replica's lag check:
        they must not queue behind the requests they decide about."""
        conn = await self._connect()
        try:
            yield conn
        finally:
            await self._release(conn)

    async def _probe(self) -> None:
        """Whether the database answers again (the breaker's probe): past the gate, as it
        runs only while requests are refused before it."""
        if self.closing or self.pool.is_closing():
            raise Stopped
        async with self.borrowed() as conn:
            await conn.fetchval("select 1")

    async def release_idle(self) -> None:
        """From now on, hand every connection back to asyncpg's pool, the idle ones now."""
        self.closing = True
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await self._release(conn)

    async def close(self) -> None:
        """Hand the idle connections back and close asyncpg's pool (it waits for the ones
        operations still hold; another Pool over it: `release_idle` that one first)."""
        await self.release_idle()
        await self.pool.close()

    async def ping(self) -> None:
        """One trivial statement, taking a turn like any request."""
        async with self.connection() as conn:
            await conn.fetchval("select 1")

    async def give_back(self, conn: asyncpg.pool.PoolConnectionProxy, *, clean: bool) -> None:
        """The connection back, and the turn; `clean`: its work ended without an error."""
        self.in_use -= 1
        try:
            self.given_back += 1
            if (
                clean
                and not self.closing
                and self.given_back % RECYCLE_EVERY
                and _open(conn)
                and not conn.is_in_transaction()
            ):
                self.idle.append(conn)
            else:
                await self._release(conn)
        finally:
            self.gate.release()

    async def _release(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        try:
            # bounded: after a statement timed out, asyncpg waits for its cancel request to be
            # answered, over a new connection, before the connection is reused; to a database
            # that stopped answering (a network cut, a hung host) that wait has no end. Past
            # the bound asyncpg closes the connection (a new one is made when needed)
            await self.pool.release(conn, timeout=RELEASE_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("a connection was closed instead of reused: %s", _describe(exc))
            if isinstance(exc, TimeoutError):
                # not even a cancel request was answered: the database has stopped answering
                self.breaker.trip(exc, self._probe)


def _open(conn: asyncpg.pool.PoolConnectionProxy) -> bool:
    """Whether the connection is still open. When its socket closes, asyncpg takes it back
    into its pool at once, and the proxy then refuses every call."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class Operation:
    """The connection, transaction and deadline of one GraphQL operation."""

    def __init__(
        self,
        pool: Pool,
        *,
        role: str,
        claims_json: str,
        user_id: uuid.UUID | None,
        session_id: uuid.UUID | None,
        readonly: bool,
        isolation: Isolation | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        self.pool = pool
        self.role = role
        self.claims_json = claims_json
        self.user_id = user_id
        self.session_id = session_id
        self.readonly = readonly
        self.isolation = isolation  # asyncpg's name, e.g. "repeatable_read"; None: the default
        # the operation's whole database time: STATEMENT_TIMEOUT_MS unless given (an export
        # has a bound of its own, EXPORT_TIMEOUT_S)
        self.timeout_ms = pool.statement_timeout_ms if timeout_ms is None else timeout_ms
        self._budget = self.timeout_ms / 1000 if self.timeout_ms else None
        self._deadline: float | None = None
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        self._tx: Transaction | None = None
        # root query fields resolve concurrently; one connection takes one statement at a time
        self._lock = asyncio.Lock()
        self.failed = False
        self.ended = False
        self._later: list[Callable[[asyncpg.Connection], Awaitable[object]]] = []
        self._custom_plans = False
        # the error that said the database was gone, if one did: the runner answers 503
        self.lost: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._conn is not None

    # -- the runner's side: begin, end, a read in one statement

    async def begin(self) -> None:
        """Take a connection and begin; SessionEnded when the token's session has ended.

        A connection found dead at the set-up statement is replaced once: nothing of the
        operation has run, and its transaction, if the server saw it, was never committed.
        """
        try:
            await self._begin()
        except DatabaseUnavailable as exc:
            self.lost = exc
            raise
        except Exception as exc:
            if not is_gone(exc):
                raise
            log.warning("a pooled connection was found dead: retrying on another (%s)", exc)
            try:
                await self._begin()
            except Exception as again:
                if not is_gone(again):
                    raise
                self.lost = again
                raise DatabaseUnavailable() from again

    async def _begin(self) -> None:
        if self._conn is not None:
            return
        if self.ended:
            raise RuntimeError("the operation has ended")
        conn = await self.pool.take()
        self._start_clock()
        try:
            tx = conn.transaction(readonly=self.readonly, isolation=self.isolation)
            async with asyncio.timeout(self._remaining()):  # BEGIN takes no timeout itself
                await tx.start()
            timeout = str(self.timeout_ms)
            if self.session_id is not None:
                live = await conn.fetchval(
                    SET_REQUEST_IN_SESSION,
                    self.role,
                    self.claims_json,
                    timeout,
                    self.user_id,
                    self.session_id,
                    timeout=self._remaining(),
                )
            else:
                await conn.execute(
                    SET_REQUEST, self.role, self.claims_json, timeout, timeout=self._remaining()
                )
                live = True
        except BaseException:
            # an open transaction is rolled back on release
            await self.pool.give_back(conn, clean=False)
            raise
        self._conn, self._tx = conn, tx
        if self.session_id is not None and not live:
            self.failed = True
            raise SessionEnded

    async def read_statement(self, query: str, args: str) -> str | None:
        """Run one read-only statement (its one parameter: `args`, a JSON array) as the whole
        operation: set-up, session check and query in one round trip. Its text result."""
        if self._conn is not None or self.ended:
            raise RuntimeError("read_statement runs alone, as the whole operation")
        self.ended = True
        try:
            result = await self._read_statement_retrying(query, args)
        except DatabaseUnavailable as exc:
            self.lost = exc
            raise
        await self._run_later()
        return result

    async def _read_statement_retrying(self, query: str, args: str) -> str | None:
        """A read found a dead pooled connection: safe to run again whatever the server saw of
        it, once, on another; a second dead one means the database is gone."""
        for attempt in (1, 2):
            try:
                return await self._read_statement(query, args)
            except DatabaseUnavailable:
                raise
            except Exception as exc:
                if not is_gone(exc):
                    raise
                if attempt == 2:
                    raise DatabaseUnavailable() from exc
                log.warning("a pooled connection was found dead: retrying on another (%s)", exc)
        raise AssertionError("unreachable")

    async def _read_statement(self, query: str, args: str) -> str | None:
        conn = await self.pool.take()  # (not Pool.connection: no generator on the hot path)
        clean = False
        try:
            self._start_clock()
            result: str | None = await conn.fetchval(
                READ_STATEMENT,
                self.role,
                self.claims_json,
                self.user_id,
                self.session_id,
                query,
                args,
                timeout=self._remaining(),
            )
            clean = True
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == SESSION_ENDED_STATE:
                raise SessionEnded from None
            raise
        except TimeoutError:
            raise timed_out() from None
        finally:
            await self.pool.give_back(conn, clean=clean)
        return result

    async def end(self, *, commit: bool) -> None:
        """Commit (only when asked and nothing failed) or roll back, give the connection back,
        then run the bookkeeping deferred with `later()`, each in a transaction of its own."""
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        self.ended = True
        if conn is not None and tx is not None:
            clean = False
            try:
                # neither takes a timeout: a database that stopped answering would hold the
                # request for ever. A commit gets the operation's whole budget again (cut
                # short, its outcome is unknown); a rollback, a moment
                if commit and not self.failed:
                    async with asyncio.timeout(self._budget):
                        await tx.commit()
                else:
                    async with asyncio.timeout(RELEASE_TIMEOUT):
                        await tx.rollback()
                clean = not self.failed
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                if commit and not self.failed:
                    raise  # a commit lost: the caller reports an internal error
            finally:
                await self.pool.give_back(conn, clean=clean)
        await self._run_later()

    # -- the deadline

    def _start_clock(self) -> None:
        if self._deadline is None and self._budget is not None:
            self._deadline = time.monotonic() + self._budget

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise timed_out()
        return left

    # -- statements

    async def connection(self) -> asyncpg.Connection:
        """The operation's connection, inside its transaction, role and claims set."""
        if self._conn is None:
            await self.begin()
        assert self._conn is not None
        return self._conn  # type: ignore[return-value]

    async def _run(self, call: Callable[[asyncpg.Connection, float | None], Awaitable[T]]) -> T:
        async with self._lock:
            if self.failed:
                raise Skipped
            try:
                conn = await self.connection()
                return await call(conn, self._remaining())
            except TimeoutError:
                self.failed = True
                raise timed_out() from None
            except BaseException as exc:
                self.failed = True
                if unavailable := self._unavailable(exc):
                    raise unavailable from exc
                raise

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable | None:
        """When `exc` says the database is gone: recorded in `lost`, and the error to raise
        instead (None: raise `exc` itself). After the operation's first statement, nothing
        is retried."""
        if isinstance(exc, DatabaseUnavailable):
            self.lost = exc
            return None
        if not is_gone(exc):
            return None
        self.lost = exc
        return DatabaseUnavailable()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda conn, t: conn.fetch(query, *args, timeout=t))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda conn, t: conn.fetchrow(query, *args, timeout=t))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(lambda conn, t: conn.fetchval(query, *args, timeout=t))

    async def execute(self, query: str, *args: Any) -> str:
        return await self._run(lambda conn, t: conn.execute(query, *args, timeout=t))

    async def plan_each_run(self) -> None:
        """Plan this transaction's statements with their values from now on (the driver's
        prepared statements would otherwise settle on a generic plan)."""
        if not self._custom_plans:
            await self.execute(FORCE_CUSTOM_PLANS)
            self._custom_plans = True

    @asynccontextmanager
    async def as_role(self, role: str) -> AsyncIterator[RoleConnection]:
        """Run a block under another role (auth flows use `service_role`), then switch back.

        The block holds the connection alone; any error in it fails the operation.
        """
        async with self._lock:
            if self.failed:
                raise Skipped
            try:
                conn = await self.connection()
                await conn.execute(SET_ROLE, role, timeout=self._remaining())
                yield RoleConnection(conn, self)
                await conn.execute(SET_ROLE, self.role, timeout=self._remaining())
            except TimeoutError:
                self.failed = True
                raise timed_out() from None
            except BaseException as exc:
                self.failed = True  # the transaction rolls back, role and all
                if unavailable := self._unavailable(exc):
                    raise unavailable from exc
                raise

    # -- bookkeeping that must outlive the operation

    async def apart(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `call` in a short transaction of its own, as the login role, committed whatever
        the operation does: for a failed sign-in counted, read before any password is hashed.

        Only before the operation has taken its connection: it never holds two.
        """
        if self._conn is not None:
            raise RuntimeError("apart() while the operation holds its connection")
        try:
            async with self.pool.connection() as conn, conn.transaction():
                return await call(cast(asyncpg.Connection, conn))
        except Exception as exc:
            if unavailable := self._unavailable(exc):
                raise unavailable from exc
            raise

    def later(self, call: Callable[[asyncpg.Connection], Awaitable[object]]) -> None:
        """Run `call` after the operation's connection is given back, in a transaction of its
        own, as the login role: for a replayed refresh token's session, revoked even though
        the operation fails."""
        self._later.append(call)

    async def _run_later(self) -> None:
        calls, self._later = self._later, []
        for call in calls:
            async with self.pool.connection() as conn, conn.transaction():
                await call(cast(asyncpg.Connection, conn))


class RoleConnection:
    """The operation's connection under another role: statements keep the deadline."""

    def __init__(self, conn: asyncpg.Connection, op: Operation) -> None:
        self._conn = conn
        self._op = op

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._conn.fetch(query, *args, timeout=self._op._remaining())

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._conn.fetchrow(query, *args, timeout=self._op._remaining())

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._conn.fetchval(query, *args, timeout=self._op._remaining())

    async def execute(self, query: str, *args: Any) -> str:
        return await self._conn.execute(query, *args, timeout=self._op._remaining())
