"""The worker's one LISTEN connection, and the fan-out of lab events to its subscribers.

Each worker process holds one asyncpg connection of its own (never one of the request pool:
LISTEN ties a connection to a session, and behind a transaction-mode PgBouncer it must be a
direct one, DATABASE_LISTEN_URL). It LISTENs on `scriptlabs_lab_events` (db/015), whose
payloads carry ids only, and hands each event to the queues of that user's subscribers on this
worker: a dictionary look-up by user id, whatever the number of subscribers.

When the connection is lost (the database restarted, the backend was terminated), the
listener connects again with a growing back-off (0.1 s doubling to 5 s). Events committed
while it was away are never delivered (NOTIFY keeps nothing for an absent listener), so a
subscription cannot silently go on across the gap: `on_lost` is called at once, and the
WebSocket side closes every socket holding subscriptions (1013, try again later) so clients
subscribe again and re-read. `reconnects` counts the gaps.

A subscriber's queue is bounded: a client that does not read its socket cannot make the
worker hold more than `QUEUE_SIZE` events for it. When the queue is full the subscriber is
told (`overflow`) and is closed by its socket; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

log = logging.getLogger("scriptlabs.realtime")

CHANNEL = "scriptlabs_lab_events"
LISTENER_NAME = "scriptlabs lab events"  # application_name of the LISTEN connection
# events held for one subscriber that has not taken them yet: more than one importLabs
# (IMPORT_MAX, 1,000) announces at once, since its notifications arrive in one burst. A note is
# made once per notification and shared by every subscriber's inbox, so a full inbox holds
# 4,096 references (32 KiB), not 4,096 events.
QUEUE_SIZE = 4096
# a terminated backend or a restart closes the socket, which the driver sees at once; a probe
# this often also finds a connection that went silent (a network partition)
PROBE_SECONDS = 10.0
EVENT_TYPES = {"C": "CREATED", "U": "UPDATED", "D": "DELETED"}


@dataclass(frozen=True, slots=True)
class LabEventNote:
    """One notification: what happened to which lab of which user."""

    type: str  # CREATED, UPDATED or DELETED
    user_id: uuid.UUID
    lab_id: uuid.UUID


def parse_payload(payload: str) -> LabEventNote | None:
    """`C:<user id>:<lab id>` as a note; None for anything else (logged, never raised)."""
    letter, _, rest = payload.partition(":")
    user, _, lab = rest.partition(":")
    kind = EVENT_TYPES.get(letter)
    try:
        if kind is None:
            raise ValueError(letter)
        return LabEventNote(kind, uuid.UUID(user), uuid.UUID(lab))
    except ValueError:
        log.warning("ignored a malformed lab event payload: %r", payload[:200])
        return None


class Subscriber:
    """One subscription's inbox: events of one user, bounded."""

    def __init__(self, user_id: uuid.UUID, overflow: Callable[[], None]) -> None:
        self.user_id = user_id
        self.queue: asyncio.Queue[LabEventNote] = asyncio.Queue(QUEUE_SIZE)
        self._overflow = overflow
        self.overflowed = False

    def offer(self, note: LabEventNote) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(note)
        except asyncio.QueueFull:
            self.overflowed = True
            self._overflow()


class Listener:
    """LISTEN on one connection of its own; fan out to the subscribers by user id."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.on_lost: Callable[[], None] | None = None  # called when events may be missed
        self._subscribers: dict[uuid.UUID, set[Subscriber]] = {}
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._listening = asyncio.Event()
        self.reconnects = 0  # times the connection was made again after a loss
        self.received = 0

    # -- subscribers

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(subscriber.user_id, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        subs = self._subscribers.get(subscriber.user_id)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[subscriber.user_id]

    def count(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is not None:
            return len(self._subscribers.get(user_id, ()))
        return sum(len(s) for s in self._subscribers.values())

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.received += 1
        if not isinstance(payload, str):
            return
        user = _user_of(payload)
        subs = self._subscribers.get(user) if user is not None else None
        if not subs:
            return  # nobody on this worker watches that user: not even parsed whole
        note = parse_payload(payload)
        if note is None:
            return
        for subscriber in list(subs):
            subscriber.offer(note)

    # -- the connection

    async def start(self) -> None:
        """Start listening in the background (the first attempt is awaited briefly, so that
        subscriptions made right after start-up hear events; failures are retried)."""
        self._task = asyncio.create_task(self._run(), name="lab event listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def wait_listening(self, seconds: float) -> bool:
        """Whether the listener is (or gets back within `seconds`) listening."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), seconds)
        return self.listening

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("lab events: cannot LISTEN (again in %.1f s): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not first:
                self.reconnects += 1
                log.warning("lab events: listening again (events meanwhile were not delivered)")
            first, delay = False, 0.1
            await self._lost.wait()
            self._listening.clear()
            log.warning("lab events: the LISTEN connection was lost")
            if self.on_lost is not None:
                self.on_lost()
            await self._close()

    async def _connect(self) -> None:
        self._lost.clear()
        conn = await asyncpg.connect(
            self._dsn,
            timeout=10,
            statement_cache_size=0,  # one statement, once
            server_settings={"application_name": LISTENER_NAME},
        )
        try:
            conn.add_termination_listener(lambda _c: self._lost.set())
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._listening.set()
        # the driver reads all the time (notifications), so a closed socket is seen at once;
        # the probe finds a connection that went silent
        asyncio.get_running_loop().call_later(PROBE_SECONDS, self._probe, conn)

    def _probe(self, conn: asyncpg.Connection) -> None:
        if conn is not self._conn or conn.is_closed():
            if conn is self._conn:
                self._lost.set()
            return
        task = asyncio.ensure_future(self._ping(conn))
        task.add_done_callback(lambda _t: None)

    async def _ping(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.execute("select 1", timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if conn is self._conn:
                self._lost.set()
            return
        if conn is self._conn:
            asyncio.get_running_loop().call_later(PROBE_SECONDS, self._probe, conn)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._listening.clear()
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()


def _user_of(payload: str) -> uuid.UUID | None:
    """The user id of a payload, cheaply (the dispatch key); None when it is not one."""
    try:
        return uuid.UUID(payload[2:38])
    except ValueError:
        return None
