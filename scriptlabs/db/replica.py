"""Read replicas: read-only operations on a streaming replica, the caller's own writes kept.

With DATABASE_REPLICA_URL set, `Replica.choose` picks the pool of each query (the runner
decides read-only once per operation, scriptlabs.graphql.execution):

- The replica has its own pool and its own breaker (db.outage): while it cannot be reached,
  reads go to the primary, never a 503. A read that meets the replica's loss (refused, the
  connection dropped, no turn at its pool) is run again on the primary: a read is safe to
  repeat, so losing the replica fails no request.
- Lag: a watcher, every `WATCH_INTERVAL` seconds, reads the primary's WAL position, then the
  replica's replay position. Each primary position is kept with the time it was read until
  the replica has replayed it: the oldest one still waiting says how far behind the replica
  is, to within one interval. Past REPLICA_MAX_LAG_S (or a replica that is no longer in
  recovery, or a watcher that cannot reach it), reads go to the primary until it is back.
  Until the first check, reads go to the primary.
- Read your own writes, across workers: a writing mutation by a signed-in caller stamps the
  caller's row in `scriptlabs_private.recent_writes`, in its own transaction, just before
  its commit (db/019_replica_writes.sql). Before a signed-in caller's read goes to the
  replica, the worker asks the primary (`wrote_within`: one index probe, one round trip on
  a connection of the primary's pool) whether that caller wrote within
  REPLICA_READ_AFTER_WRITE seconds; the reads arriving while a probe waits for its turn at the
  pool join it (one statement for all of them), and none joins a probe already sent, so each
  read is answered by a probe sent after it arrived. The marker is on the primary, so it is
  seen by every worker the moment the write commits, which a per-process memory would not
  be. A caller
  found to have written is remembered by this worker for the rest of the window (no probe),
  as is a caller who wrote through this worker. A token issued within the window (sign-up,
  sign-in, refresh: writes by an anonymous caller) also reads from the primary. The window
  must exceed the lag bound (settings), so a write older than the window is on the replica.
- What stays on the primary: mutations, the events of subscriptions (read right after the
  commit that announced them), exports and the auth flows.

The probe costs one short round trip to the primary per read of a signed-in caller; the
reads' own work (planning, scanning, building the JSON) is what moves to the replica
(bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid

import asyncpg

from scriptlabs.config import Settings
from scriptlabs.db.operation import Pool
from scriptlabs.db.pool import create_pool

log = logging.getLogger("scriptlabs.db")

WATCH_INTERVAL = 1.0  # s between lag checks
WATCH_TIMEOUT = 2.0  # s for one check (both databases)
PRIMARY_POSITION = "select (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8"
REPLICA_POSITION = (
    "select pg_is_in_recovery(), (coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0'::pg_lsn)::int8"
)
WROTE_WITHIN = """
select u, left_s from unnest($1::uuid[]) u,
  lateral (select scriptlabs_private.wrote_within(u, $2) as left_s) w
where left_s is not null
"""
NOTE_WRITE = "select scriptlabs_private.note_write($1)"
MAX_SAMPLES = 64


class _Probe:
    """One read-your-writes probe: the callers it asks about, and its answer."""

    __slots__ = ("done", "users")

    def __init__(self) -> None:
        self.users: set[uuid.UUID] = set()
        self.done: asyncio.Future[dict[uuid.UUID, float]] = (
            asyncio.get_running_loop().create_future()
        )
        # its error is read even when every reader has given up waiting
        self.done.add_done_callback(lambda done: done.cancelled() or done.exception())


class Replica:
    """The replica's pool, whether it may be used now, and who must read from the primary."""

    def __init__(self, pool: Pool, primary: Pool, settings: Settings) -> None:
        self.pool = pool
        self.primary = primary
        self.window = float(settings.replica_read_after_write)
        self.max_lag = float(settings.replica_max_lag_s)
        self.lag: float | None = None  # s, to within WATCH_INTERVAL; None: unknown
        self.usable = False
        # this worker's callers who must read from the primary, until (monotonic time)
        self._writers: dict[uuid.UUID, float] = {}
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._probe: _Probe | None = None  # the read-your-writes probe readers may still join
        self._sending: set[asyncio.Task[None]] = set()
        # for tests and metrics: reads sent to each side, reads run again on the primary
        self.reads = 0
        self.primary_reads = 0
        self.fallbacks = 0

    # -- life cycle

    async def start(self) -> None:
        """Check once (the app starts even when the replica is down), then keep watching."""
        await self.check()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="replica lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.breaker.stop()
        await self.pool.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            await self.check()

    async def check(self) -> None:
        """Measure the lag once; decide whether reads may go to the replica."""
        try:
            async with asyncio.timeout(WATCH_TIMEOUT):
                async with self.primary.borrowed() as conn:
                    position = await conn.fetchval(PRIMARY_POSITION)
                now = time.monotonic()
                async with self.pool.borrowed() as conn:
                    row = await conn.fetchrow(REPLICA_POSITION)
        except Exception as exc:  # either side unreachable: not used until a check succeeds
            if self.usable:
                log.warning("read replica not used: %s", f"{type(exc).__name__}: {exc}")
            self.usable, self.lag = False, None
            return
        assert row is not None
        in_recovery, replayed = row[0], row[1]
        self._samples.append((now, int(position)))
        while self._samples and self._samples[0][1] <= replayed:
            self._samples.popleft()
        while len(self._samples) > MAX_SAMPLES:
            self._samples.popleft()
        self.lag = now - self._samples[0][0] if self._samples else 0.0
        usable = bool(in_recovery) and self.lag <= self.max_lag and not self.pool.breaker.down
        if usable != self.usable:
            if usable:
                log.warning("read replica in use (lag %.1f s)", self.lag)
            elif not in_recovery:
                log.warning("read replica not used: it is not in recovery (promoted?)")
            else:
                log.warning("read replica not used: %.1f s behind the primary", self.lag)
        self.usable = usable

    # -- choosing

    async def choose(self, user: uuid.UUID | None, issued_at: object) -> Pool:
        """The pool a read runs on, for the caller `user` (None: anonymous) whose token was
        issued at `issued_at` (its `iat` claim, as sent)."""
        if not self.usable or self.pool.breaker.down:
            self.primary_reads += 1
            return self.primary
        if user is not None and await self._wrote_lately(user, issued_at):
            self.primary_reads += 1
            return self.primary
        self.reads += 1
        return self.pool

    async def _wrote_lately(self, user: uuid.UUID, issued: object) -> bool:
        now = time.monotonic()
        until = self._writers.get(user)
        if until is not None:
            if until > now:
                return True
            del self._writers[user]
        if isinstance(issued, int | float) and time.time() - issued < self.window:
            return True  # a fresh token: signed up, in or refreshed just now
        try:
            found = await self._ask(user)
        except Exception:  # the primary down or busy: the read meets the same there
            return True
        left = found.get(user)
        if left is None:
            return False
        self._writers[user] = now + left
        return True

    async def _ask(self, user: uuid.UUID) -> dict[uuid.UUID, float]:
        """Who of the callers asking now wrote lately, in one statement to the primary.

        The reads that arrive while a probe waits for its connection join it; once its
        statement is sent, the next read starts a new one. Every read is thus answered by a
        probe sent after it arrived, so after any write whose answer its caller had seen."""
        probe = self._probe
        if probe is None:
            probe = self._probe = _Probe()
            task = asyncio.get_running_loop().create_task(self._send(probe), name="replica probe")
            self._sending.add(task)  # held: the loop keeps only a weak reference
            task.add_done_callback(self._sending.discard)
        probe.users.add(user)
        # shielded: a reader that gives up (a client gone) does not cancel the others' probe
        return await asyncio.shield(probe.done)

    async def _send(self, probe: _Probe) -> None:
        try:
            async with self.primary.connection() as conn:
                if self._probe is probe:
                    self._probe = None  # from here on, newcomers start the next probe
                rows = await conn.fetch(
                    WROTE_WITHIN, list(probe.users), self.window, timeout=WATCH_TIMEOUT
                )
        except BaseException as exc:
            if self._probe is probe:
                self._probe = None
            probe.done.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            if not isinstance(exc, Exception):
                raise
            return
        probe.done.set_result({row[0]: float(row[1]) for row in rows})

    def wrote(self, user: uuid.UUID) -> None:
        """`user` committed a write through this worker: their reads go to the primary."""
        if len(self._writers) > 100_000:  # a bound: expired entries go first
            now = time.monotonic()
            self._writers = {k: v for k, v in self._writers.items() if v > now}
        self._writers[user] = time.monotonic() + self.window

    def lost(self, exc: BaseException | None = None) -> None:
        """A read met the replica's loss: not used until the watcher sees it again."""
        if self.usable:
            log.warning("read replica lost: reads go to the primary (%s)", exc)
        self.usable = False
        self.fallbacks += 1


async def create_replica(settings: Settings, primary: Pool) -> Replica | None:
    """The replica of DATABASE_REPLICA_URL, started; None when it is not set."""
    url = settings.database_replica_url
    if not url:
        return None
    # min 0: no connection is made at start-up, so a replica that is down delays nothing
    # one connection beyond the turns: the lag check borrows past the gate (db/pool.py)
    raw = await create_pool(
        settings.with_database(url, settings.database_admin_url),
        min_size=0,
        max_size=settings.db_pool_max + 1,
    )
    assert isinstance(raw, asyncpg.Pool)
    pool = Pool(
        raw,
        settings.db_pool_max,
        # a short wait: a busy replica sends its reads to the primary instead
        min(1.0, settings.db_pool_wait_seconds),
        settings.statement_timeout_ms,
    )
    replica = Replica(pool, primary, settings)
    await replica.start()
    return replica
