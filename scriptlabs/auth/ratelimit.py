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
only. The attempt is recorded before the guarded work, in a short transaction of its own
(`Operation.apart`, as the login role, before the operation takes its connection), so a
failure stays counted when the operation rolls back, and parallel requests cannot all slip
under a limit (db/009_rate_limits.sql). Nothing here holds a connection while another is
awaited, and the slowing sleeps hold none (contract, Errors: load and abuse).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation
from scriptlabs.errors import AppError, Code

# contract: slowing never delays an answer by more than 5 seconds; leave room for the work.
# The budget is per operation: a mutation of many aliased signIn fields is one answer.
MAX_DELAY = 4.0
_slept: weakref.WeakKeyDictionary[Operation, float] = weakref.WeakKeyDictionary()
SIGN_UP_WINDOW = 3600
RESET_WINDOW = 3600
# set_config('role', 'none', true): back to the login role, which may call scriptlabs_private
LOGIN_ROLE = "none"

SIGN_IN_REFUSED = "Too many failed sign-ins; try again later"

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
    conn: asyncpg.Connection, counters: Sequence[Counter], window_seconds: int, message: str
) -> Attempt:
    """Record one attempt for every counter on `conn` (the login role, in a transaction of
    its own: `Operation.apart`), or raise RATE_LIMITED if any is at its limit."""
    if not counters:
        return Attempt()
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


def sign_in_counters(settings: Settings, email: str, address: str | None) -> list[Counter]:
    """What a sign-in attempt counts: its email (empty when malformed: not counted) and its
    client address, each when its limit is on."""
    counters = []
    if email and settings.rate_limit_signin_email > 0:
        counters.append(Counter(SIGNIN_EMAIL, email_key(email), settings.rate_limit_signin_email))
    if address is not None and settings.rate_limit_signin_ip > 0:
        counters.append(Counter(SIGNIN_IP, address_key(address), settings.rate_limit_signin_ip))
    return counters


async def take_sign_in(
    conn: asyncpg.Connection, settings: Settings, email: str, address: str | None
) -> Attempt:
    """Count a sign-in attempt (or a password change's check of the current password) before
    its password is verified; RATE_LIMITED if due. A refused attempt is not recorded, so
    `retryAfter` holds. Called the same way for known and unknown emails."""
    attempt = await take_attempt(
        conn,
        sign_in_counters(settings, email, address),
        settings.rate_limit_signin_window,
        SIGN_IN_REFUSED,
    )
    key = email_key(email) if email and attempt.ids else None
    return Attempt(attempt.number, attempt.ids, key)


async def slow_sign_in(op: Operation, settings: Settings, attempt: Attempt) -> None:
    """Sleep the slowing delay of `attempt`, within the operation's budget (MAX_DELAY).

    Call it with no connection held: after `apart()` has returned, before the operation's
    transaction begins."""
    slept = _slept.get(op, 0.0)
    delay = min(slowing_delay(settings, attempt.number), MAX_DELAY - slept)
    if delay > 0:
        _slept[op] = slept + delay
        await asyncio.sleep(delay)


async def check_sign_in(
    op: Operation, settings: Settings, email: str, address: str | None
) -> Attempt:
    """Count a sign-in attempt in a transaction of its own, then slow it if due.

    For callers that read nothing else before the password check (the sign-in flow itself
    reads the account in the same transaction: scriptlabs.auth.accounts)."""
    if sign_in_counters(settings, email, address):
        attempt = await op.apart(lambda conn: take_sign_in(conn, settings, email, address))
    else:
        attempt = Attempt()
    await slow_sign_in(op, settings, attempt)
    return attempt


async def clear_sign_in(op: Operation, attempt: Attempt) -> None:
    """A sign-in succeeded: forget its email's failures and take back its own rows.

    Runs in the operation's transaction, so it holds only if the sign-in commits.
    """
    if not attempt.ids:
        return
    async with op.as_role(LOGIN_ROLE) as conn:
        await conn.execute(CLEAR_SIGN_IN, SIGNIN_EMAIL, attempt.email_key, list(attempt.ids))


async def check_sign_up(op: Operation, settings: Settings, address: str | None) -> None:
    """Count a sign-up from `address`; RATE_LIMITED once the hour's limit is reached.

    In a transaction of its own (`op.apart`): before the operation's first statement."""
    limit = settings.rate_limit_signup_ip
    if address is None or limit <= 0:
        return
    counters = [Counter(SIGNUP_IP, address_key(address), limit + 1)]
    await op.apart(
        lambda conn: take_attempt(
            conn, counters, SIGN_UP_WINDOW, "Too many sign-ups from this address; try again later"
        )
    )


async def check_reset_request(op: Operation, settings: Settings, address: str | None) -> None:
    """Count a password reset request from `address`; RATE_LIMITED past the hour's limit.

    Per address only, so a refusal says nothing about any account. In a transaction of its
    own (`op.apart`): before the operation's first statement."""
    limit = settings.rate_limit_reset_ip
    if address is None or limit <= 0:
        return
    counters = [Counter(RESET_IP, address_key(address), limit + 1)]
    await op.apart(
        lambda conn: take_attempt(
            conn,
            counters,
            RESET_WINDOW,
            "Too many password reset requests from this address; try again later",
        )
    )
