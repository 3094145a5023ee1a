"""Rate limits of the auth flows, counted in PostgreSQL (CONTRACT.md section 4, Auth).

- Sign-in: failures per email and per client address within RATE_LIMIT_SIGNIN_WINDOW. From
  the RATE_LIMIT_SLOW_AFTER-th attempt on, answers are slowed (doubling, at most
  MAX_DELAY); the attempt numbered RATE_LIMIT_SIGNIN_EMAIL (or _IP) is refused with
  RATE_LIMITED and `retryAfter`, whatever the password, until enough failures have left the
  window. A successful sign-in clears its email's failures.
- Sign-up: attempts per client address and hour (RATE_LIMIT_SIGNUP_IP), each well-formed
  request counted, whether it creates an account or meets an existing one: the limit bounds
  account creation, probing for existing emails and the argon2 work an address can cause.
- Password reset requests: per client address and hour (RATE_LIMIT_RESET_IP).

A limit of 0 turns it off; a request without a known client address is limited by email
only. The attempt is recorded before the guarded work, on a pool connection of its own (one
short transaction, as the login role), so a failure stays counted when the operation rolls
back, and parallel requests cannot all slip under a limit (db/009_rate_limits.sql). That
happens before a sign-in's operation takes its own connection, so it never holds two, and
the slowing sleeps hold none.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation, Skipped
from scriptlabs.errors import AppError, Code

# contract: slowing never delays an answer by more than 5 seconds; leave room for the work.
# The budget is per operation: a mutation of many aliased signIn fields is one answer.
MAX_DELAY = 4.0
_slept: weakref.WeakKeyDictionary[Operation, float] = weakref.WeakKeyDictionary()
SIGN_UP_WINDOW = 3600
RESET_WINDOW = 3600
# how long a request waits for a pool connection to record its attempt
ACQUIRE_TIMEOUT = 10.0
# set_config('role', 'none', true): back to the login role, which may call scriptlabs_private
LOGIN_ROLE = "none"

SIGNIN_EMAIL = "signin_email"
SIGNIN_IP = "signin_ip"
SIGNUP_IP = "signup_ip"
RESET_IP = "reset_ip"

TAKE_ATTEMPT = """
select attempt_kind, attempt_number, retry_after, attempt_id
from scriptlabs_private.take_attempt($1::text[], $2::bytea[], $3::int[], $4::int)
"""

CLEAR_SIGN_IN = """
select scriptlabs_private.clear_attempts($1, $2),
       scriptlabs_private.drop_attempts($3::bigint[])
"""


@dataclass(frozen=True, slots=True)
class Counter:
    """One thing counted for an attempt: the attempt numbered `refuse_at` is refused."""

    kind: str
    key: bytes
    refuse_at: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt let through: its highest number among its counters, the rows recorded."""

    number: int = 0
    ids: tuple[int, ...] = ()
    email_key: bytes | None = None


def email_key(email: str) -> bytes:
    """The key of an email: its SHA-256 (lower-cased), so no email is stored in clear."""
    return hashlib.sha256(email.strip().lower().encode()).digest()


def address_key(address: str) -> bytes:
    """The key of a client address; an IPv6 client counts by its /64, which one host holds."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            text = str(ip.ipv4_mapped)
        else:
            text = str(ipaddress.IPv6Network((ip, 64), strict=False))
    else:
        text = str(ip)
    return hashlib.sha256(text.encode()).digest()


def slowing_delay(settings: Settings, number: int) -> float:
    """Seconds to wait before answering the attempt numbered `number` in its window."""
    slow_after = settings.rate_limit_slow_after
    if slow_after <= 0 or number < slow_after:
        return 0.0
    base = settings.rate_limit_slow_base_ms / 1000
    return min(MAX_DELAY, base * 2.0 ** min(number - slow_after, 16))


async def take_attempt(
    op: Operation, counters: Sequence[Counter], window_seconds: int, message: str
) -> Attempt:
    """Record one attempt for every counter, or raise RATE_LIMITED if any is at its limit.

    Nothing is counted for a field of an operation that has failed already: it rolls back and
    its later fields are skipped anyway.
    """
    if op.failed:
        raise Skipped
    if not counters:
        return Attempt()
    async with op.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
        rows = await conn.fetch(
            TAKE_ATTEMPT,
            [c.kind for c in counters],
            [c.key for c in counters],
            [c.refuse_at for c in counters],
            window_seconds,
        )
    retry_after = max(row["retry_after"] for row in rows)
    if retry_after > 0:
        raise AppError(Code.RATE_LIMITED, message, extra={"retryAfter": retry_after})
    return Attempt(
        number=max(row["attempt_number"] for row in rows),
        ids=tuple(row["attempt_id"] for row in rows),
    )


async def check_sign_in(
    op: Operation, settings: Settings, email: str, address: str | None
) -> Attempt:
    """Count a sign-in attempt before its password is checked; refuse or slow it if due.

    Called the same way for known and unknown emails (`email` empty when malformed: only the
    address counts then). A refused attempt is not recorded, so `retryAfter` holds.
    """
    counters = []
    key = email_key(email) if email else None
    if key is not None and settings.rate_limit_signin_email > 0:
        counters.append(Counter(SIGNIN_EMAIL, key, settings.rate_limit_signin_email))
    if address is not None and settings.rate_limit_signin_ip > 0:
        counters.append(Counter(SIGNIN_IP, address_key(address), settings.rate_limit_signin_ip))
    attempt = await take_attempt(
        op,
        counters,
        settings.rate_limit_signin_window,
        "Too many failed sign-ins; try again later",
    )
    slept = _slept.get(op, 0.0)
    delay = min(slowing_delay(settings, attempt.number), MAX_DELAY - slept)
    if delay > 0:
        _slept[op] = slept + delay
        await asyncio.sleep(delay)
    return Attempt(attempt.number, attempt.ids, key if attempt.ids else None)


async def clear_sign_in(op: Operation, attempt: Attempt) -> None:
    """A sign-in succeeded: forget its email's failures and take back its own rows.

    Runs in the operation's transaction, so it holds only if the sign-in commits.
    """
    if not attempt.ids:
        return
    async with op.as_role(LOGIN_ROLE) as conn:
        await conn.execute(CLEAR_SIGN_IN, SIGNIN_EMAIL, attempt.email_key, list(attempt.ids))


async def check_sign_up(op: Operation, settings: Settings, address: str | None) -> None:
    """Count a sign-up from `address`; RATE_LIMITED once the hour's limit is reached."""
    limit = settings.rate_limit_signup_ip
    if address is None or limit <= 0:
        return
    await take_attempt(
        op,
        [Counter(SIGNUP_IP, address_key(address), limit + 1)],
        SIGN_UP_WINDOW,
        "Too many sign-ups from this address; try again later",
    )


async def check_reset_request(op: Operation, settings: Settings, address: str | None) -> None:
    """Count a password reset request from `address`; RATE_LIMITED past the hour's limit.

    Per address only, so a refusal says nothing about any account. Call it before the
    operation's first statement (it takes a pool connection of its own).
    """
    limit = settings.rate_limit_reset_ip
    if address is None or limit <= 0:
        return
    await take_attempt(
        op,
        [Counter(RESET_IP, address_key(address), limit + 1)],
        RESET_WINDOW,
        "Too many password reset requests from this address; try again later",
    )
