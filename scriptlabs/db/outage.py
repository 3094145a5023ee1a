"""Riding out a database that is not there: fail fast while it is down, come back on our own.

- `is_gone(exc)` says whether an error means the database (or our connection to it) is gone:
  refused, lost, shutting down, starting up. Statement timeouts and query errors are not.
- `Breaker`: once a connection could not be made, every request is refused at once
  (`DatabaseUnavailable`: HTTP 503 with Retry-After) instead of each one trying to connect
  and waiting for it; one background probe tries every `PROBE_INTERVAL` seconds and lets
  requests through again as soon as the database answers. No server restart is needed.
- `wait_for_database`: at start-up, the database is waited for (with backoff, for a bounded
  time) rather than failing at the first refusal: a server and its database are often
  started together.

asyncpg notices a pooled connection that the server closed (restart, pg_terminate_backend)
as soon as the close arrives, and its pool connects again on the next acquire; a connection
lost without a word (a network cut, a proxy) is only found out by using it: the operation
retries that once when nothing of it can have been done (db.operation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger("scriptlabs.db")

PROBE_INTERVAL = 0.5  # s between probes while the database is down
PROBE_TIMEOUT = 2.0  # s for one probe (connect and `select 1`)
RETRY_AFTER = 2  # s, the Retry-After of a request refused during an outage

# the SQLSTATE classes 08 (connection exception) and 57P0x (shutting down, starting up)
_GONE_POSTGRES = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.DatabaseDroppedError,
    asyncpg.TooManyConnectionsError,
)


class DatabaseUnavailable(ConnectionError):
    """The database cannot be reached, or the connection to it was lost: HTTP 503.

    A ConnectionError (an OSError), so code that already treats a refused connection as an
    outage (readiness, the mail sender) treats this one alike.
    """

    def __init__(self, message: str = "the database is unavailable") -> None:
        super().__init__(message)


def is_gone(exc: BaseException) -> bool:
    """Whether `exc` says the database or our connection to it is gone (not a statement's
    own failure: a statement timeout is TimeoutError, and is not)."""
    if isinstance(exc, TimeoutError):  # an OSError, but a deadline of ours
        return False
    if isinstance(exc, (OSError, *_GONE_POSTGRES)):
        return True
    # asyncpg says "connection is closed", "pool is closed", "pool is closing" as plain
    # InterfaceErrors
    if isinstance(exc, asyncpg.InterfaceError):
        return "is closed" in str(exc) or "is closing" in str(exc)
    # A connection the server ended while it sat idle in the pool (pg_terminate_backend,
    # a restart) received the server's FATAL error before its socket's end: until that end
    # is read, asyncpg still counts it open, and refuses the next statement with this
    # (measured: tests/test_restart.py)
    return isinstance(exc, asyncpg.exceptions.InternalClientError) and (
        "cannot switch to state" in str(exc)
    )


class Breaker:
    """Refuses requests at once while the database is known to be down; probes for its return.

    `trip()` is called when a connection could not be made; `check()` raises
    DatabaseUnavailable until a probe has reached the database again.
    """

    __slots__ = ("_down_since", "_task", "outages")

    def __init__(self) -> None:
        self._down_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.outages = 0  # how many times the database was found down (for tests, metrics)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def check(self) -> None:
        if self._down_since is not None:
            raise DatabaseUnavailable("the database is unavailable (waiting for it to return)")

    def trip(self, exc: BaseException, probe: Callable[[], Awaitable[object]]) -> None:
        """The database was found down: refuse requests until `probe` succeeds."""
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self.outages += 1
        log.warning("database unavailable (%s): answering 503 until it returns", _describe(exc))
        self._task = asyncio.get_running_loop().create_task(
            self._probe(probe), name="database probe"
        )

    async def _probe(self, probe: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await probe()
            except Stopped:
                return  # the pool is closing: the server is shutting down
            except Exception as exc:  # any failure means: still down
                log.debug("database still unavailable: %s", _describe(exc))
                continue
            since, self._down_since, self._task = self._down_since, None, None
            assert since is not None
            log.warning("database available again after %.1f s", time.monotonic() - since)
            return

    async def stop(self) -> None:
        """End the probe (at shut-down)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Stopped(Exception):
    """Raised by a probe to end probing: the pool is being closed."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


async def wait_for_database(dsn: str, within: float, *, connect_timeout: float = 5.0) -> None:
    """Return once `dsn` accepts a connection; retry with backoff for `within` seconds, then
    raise DatabaseUnavailable. A refusal that waiting cannot cure (a wrong password, a
    database that does not exist) is raised at once."""
    deadline = time.monotonic() + within
    delay = 0.25
    while True:
        left = deadline - time.monotonic()
        try:
            conn = await asyncpg.connect(dsn, timeout=max(0.1, min(connect_timeout, left)))
        except Exception as exc:
            if not (is_gone(exc) or isinstance(exc, TimeoutError)):
                raise
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(
                    f"the database did not answer within {within:g} s ({_describe(exc)})"
                ) from exc
            log.warning("database not reachable yet (%s): retrying", _describe(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        await conn.close()
        return
