"""Turns at the pool: first come, first served, each wait bounded, one timer for all waiters.

asyncio.Semaphore would do the turns, but bounding each wait with `asyncio.timeout` arms and
cancels a timer per waiter, and under load most requests wait (bench/RESULTS.md: 4 % of the
API's time). Every wait of a gate lasts the same `wait` seconds, so the waiters' deadlines
come in the order they queued: one timer, armed for the oldest waiter's deadline, is enough.
A released turn goes straight to the oldest waiter, never to a newcomer.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Gate:
    """`turns` turns; `acquire` waits at most `wait` seconds for one (TimeoutError)."""

    __slots__ = ("_free", "_timer", "_wait", "_waiters")

    def __init__(self, turns: int, wait: float) -> None:
        if turns < 1:
            raise ValueError("a gate needs at least one turn")
        self._free = turns
        self._wait = wait
        # (deadline, future) in arrival order, so in deadline order too
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def locked(self) -> bool:
        """Whether a caller would wait now."""
        return self._free == 0 or bool(self._waiters)

    @property
    def waiting(self) -> int:
        return sum(1 for _, future in self._waiters if not future.done())

    async def acquire(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        deadline = loop.time() + self._wait
        self._waiters.append((deadline, future))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        try:
            await future
        except asyncio.CancelledError:
            # handed a turn just as the waiter was cancelled: pass it on
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # the turn passes over directly
                return
        self._free += 1

    def _expire(self) -> None:
        """Refuse the waiters whose time is up; wait for the next deadline."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._waiters:
            deadline, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
            elif deadline <= now:
                self._waiters.popleft()
                future.set_exception(TimeoutError())
            else:
                self._timer = loop.call_at(deadline, self._expire)
                return
