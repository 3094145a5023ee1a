"""The pool's gate (db/gate.py): turns first come first served, each wait bounded."""

from __future__ import annotations

import asyncio
import time

import pytest

from scriptlabs.db.gate import Gate


async def test_turns_go_in_arrival_order_and_never_to_a_newcomer() -> None:
    gate = Gate(1, wait=5)
    await gate.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await gate.acquire()
        order.append(name)

    waiters = [asyncio.create_task(take(name)) for name in "abc"]
    await asyncio.sleep(0.01)
    assert gate.waiting == 3 and gate.locked()
    gate.release()  # handed to "a" directly: a newcomer now still waits behind b and c
    late = asyncio.create_task(take("late"))
    await asyncio.sleep(0.01)
    assert order == ["a"]
    for _ in range(3):
        gate.release()
        await asyncio.sleep(0.01)
    assert order == ["a", "b", "c", "late"]
    await asyncio.gather(*waiters, late)
    gate.release()
    assert not gate.locked() and gate.waiting == 0


async def test_every_wait_is_bounded_and_the_turns_stay_counted() -> None:
    gate = Gate(2, wait=0.2)
    await gate.acquire()
    await gate.acquire()
    started = time.monotonic()
    first = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.1)
    second = asyncio.create_task(gate.acquire())  # its deadline comes 0.1 s after the first's
    with pytest.raises(TimeoutError):
        await first
    assert 0.18 < time.monotonic() - started < 1.0
    assert not second.done()
    with pytest.raises(TimeoutError):
        await second
    assert 0.28 < time.monotonic() - started < 1.1
    gate.release()
    gate.release()
    # both turns are back, and a later wait is bounded again
    await gate.acquire()
    await gate.acquire()
    with pytest.raises(TimeoutError):
        await gate.acquire()
    gate.release()
    await asyncio.wait_for(gate.acquire(), 1)


async def test_a_cancelled_waiter_takes_no_turn() -> None:
    gate = Gate(1, wait=5)
    await gate.acquire()
    gone = asyncio.create_task(gate.acquire())
    stays = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert gate.waiting == 1
    gate.release()
    await asyncio.wait_for(stays, 1)
    gate.release()
    assert not gate.locked()


async def test_a_turn_handed_to_a_waiter_cancelled_meanwhile_passes_on() -> None:
    gate = Gate(1, wait=5)
    await gate.acquire()
    unlucky = asyncio.create_task(gate.acquire())
    next_one = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    gate.release()  # the turn is unlucky's, but it is cancelled before it runs
    unlucky.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unlucky
    await asyncio.wait_for(next_one, 1)
    gate.release()
    assert not gate.locked()


def test_a_gate_needs_a_turn() -> None:
    with pytest.raises(ValueError):
        Gate(0, wait=1)
