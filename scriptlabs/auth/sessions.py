"""Sessions: refresh-token rotation with reuse detection, sign-out, listing, password change.

A refresh token names its session and carries a secret (accounts.make_refresh_token); the
database keeps only the secret's hash, one row per token (db/007_sessions.sql). Ending a
session ends its access tokens too: every request's set-up statement checks that the
token's session is live (db.operation.Operation.begin).

Password change and refresh have a first half that runs before the operation takes its
connection (contract, Errors: load and abuse): `prepare_password_change` reads, counts and
hashes with no connection held; `parse_refresh_token` refuses a token that cannot be one
before any database work. A replayed refresh token's session is revoked after the
operation's connection is given back (`Operation.later`)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import uuid
from dataclasses import dataclass

import asyncpg

from scriptlabs.auth import ratelimit
from scriptlabs.auth.accounts import (
    SignedIn,
    UserRow,
    check_password,
    hash_token,
    make_refresh_token,
    signed_in,
)
from scriptlabs.auth.passwords import Passwords
from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation
from scriptlabs.errors import AppError, Code

INVALID_REFRESH = "Invalid refresh token"
WRONG_PASSWORD = "The current password is wrong"

SET_ROLE = "select set_config('role', $1, true)"
LOGIN_ROLE = "none"  # set_config('role', 'none'): back to the login role

FIND_REFRESH_TOKEN = """
select s.revoked_at is null and s.expires_at > now() as live,
       t.rotated_at,
       u.id, u.email, u.created_at, u.last_sign_in_at
from public.user_sessions s
join public.refresh_tokens t
  on t.user_id = s.user_id and t.session_id = s.id and t.token_hash = $3
join auth.users u on u.id = s.user_id
where s.user_id = $1 and s.id = $2
"""

# the first use of a token claims it; a racing second use waits for the first to commit,
# finds rotated_at set, and takes the reuse path below
CLAIM_REFRESH_TOKEN = """
update public.refresh_tokens set rotated_at = now()
where user_id = $1 and session_id = $2 and token_hash = $3 and rotated_at is null
returning true
"""

SECONDS_SINCE_ROTATION = """
select extract(epoch from clock_timestamp() - rotated_at)::float8
from public.refresh_tokens
where user_id = $1 and session_id = $2 and token_hash = $3
"""

ISSUE_REFRESH_TOKEN = """
with child as (
    insert into public.refresh_tokens (user_id, session_id, token_hash, parent_hash)
    values ($1, $2, $3, $4)
)
update public.user_sessions
set last_activity = now(), expires_at = now() + make_interval(secs => $5)
where user_id = $1 and id = $2
"""

REVOKE_SESSION = """
update public.user_sessions set revoked_at = now()
where user_id = $1 and id = $2 and revoked_at is null
"""

# under the caller's role: RLS keeps these to the caller's own sessions
LIST_SESSIONS = """
select id, created_at, last_activity, expires_at, user_agent, host(ip_address) as ip_address
from public.user_sessions
where revoked_at is null and expires_at > now()
order by last_activity desc, id
"""

END_THIS_SESSION = "update public.user_sessions set revoked_at = now() where id = $1"
END_ALL_SESSIONS = "update public.user_sessions set revoked_at = now() where revoked_at is null"
END_OTHER_SESSIONS = """
update public.user_sessions set revoked_at = now()
where revoked_at is null and id is distinct from $1
"""

REVOKE_OWN_SESSION = """
update public.user_sessions set revoked_at = coalesce(revoked_at, now())
where id = $1
returning id
"""

SESSION_IS_LIVE = "select scriptlabs_private.session_is_live($1, $2)"

ACCOUNT_OF = "select email, encrypted_password from auth.users where id = $1"

# the row locked until the operation ends, and only while its password is still the one
# verified: of two concurrent changes, the first to commit wins
LOCK_PASSWORD = """
select true
from auth.users
where id = $1 and encrypted_password = $2
for no key update
"""

CHANGE_PASSWORD = """
with changed as (
    update auth.users set encrypted_password = $2, updated_at = now() where id = $1
),
voided as (
    -- a reset link mailed before the change no longer works (db/011 grants this delete)
    delete from public.password_reset_tokens where user_id = $1 and used_at is null
)
update public.user_sessions set revoked_at = now()
where user_id = $1 and revoked_at is null and id is distinct from $3
"""


class SignOutScope(enum.Enum):
    LOCAL = "LOCAL"
    GLOBAL = "GLOBAL"
    OTHERS = "OTHERS"


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: uuid.UUID
    created_at: dt.datetime
    last_activity: dt.datetime
    expires_at: dt.datetime
    user_agent: str | None
    ip_address: str | None
    current: bool


def parse_refresh_token(token: str) -> tuple[uuid.UUID, uuid.UUID, bytes]:
    """(user id, session id, hash of the secret); UNAUTHENTICATED when it cannot be one."""
    key, _, secret = token.partition(".")
    try:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32 or not secret:
        raise AppError(Code.UNAUTHENTICATED, INVALID_REFRESH)
    return uuid.UUID(bytes=raw[:16]), uuid.UUID(bytes=raw[16:]), hash_token(secret)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token that decodes: its session's key and the hash of its secret."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    secret_hash: bytes


def prepare_refresh(token: str) -> RefreshToken:
    """The token's parts, or UNAUTHENTICATED for a token that does not decode: no database."""
    return RefreshToken(*parse_refresh_token(token))


async def refresh_session(op: Operation, settings: Settings, token: RefreshToken) -> SignedIn:
    """Rotate `token`: a new token pair for its session.

    A token used before answers again within REFRESH_REUSE_INTERVAL of its rotation (clients
    race their refreshes); later it is taken as stolen and its whole session is revoked,
    after the operation's connection is given back and in a transaction of its own, so that
    the revocation outlives this refusal (contract, section 4, Auth).
    """
    user_id, session_id, secret_hash = token.user_id, token.session_id, token.secret_hash
    async with op.as_role("service_role") as conn:
        row = await conn.fetchrow(FIND_REFRESH_TOKEN, user_id, session_id, secret_hash)
        if row is None or not row["live"]:
            raise AppError(Code.UNAUTHENTICATED, INVALID_REFRESH)
        claimed = await conn.fetchval(CLAIM_REFRESH_TOKEN, user_id, session_id, secret_hash)
        if not claimed:
            since = await conn.fetchval(SECONDS_SINCE_ROTATION, user_id, session_id, secret_hash)
            if since is None or since > settings.refresh_reuse_interval:
                op.later(lambda c: revoke_replayed(c, user_id, session_id))
                raise AppError(Code.UNAUTHENTICATED, INVALID_REFRESH)
        new_token, new_hash = make_refresh_token(user_id, session_id)
        await conn.execute(
            ISSUE_REFRESH_TOKEN,
            user_id,
            session_id,
            new_hash,
            secret_hash,
            float(settings.refresh_token_ttl),
        )
    user = UserRow(row["id"], row["email"], row["created_at"], row["last_sign_in_at"])
    return signed_in(settings, user, session_id, new_token)


async def revoke_replayed(
    conn: asyncpg.Connection, user_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    """Revoke the session of a replayed refresh token (`conn`: the login role, in a
    transaction of its own)."""
    await conn.execute(SET_ROLE, "service_role")
    await conn.execute(REVOKE_SESSION, user_id, session_id)


async def list_sessions(op: Operation) -> list[SessionRow]:
    current = op.session_id
    return [
        SessionRow(
            id=r["id"],
            created_at=r["created_at"],
            last_activity=r["last_activity"],
            expires_at=r["expires_at"],
            user_agent=r["user_agent"],
            ip_address=r["ip_address"],
            current=r["id"] == current,
        )
        for r in await op.fetch(LIST_SESSIONS)
    ]


async def sign_out(op: Operation, scope: SignOutScope) -> None:
    """End this session (LOCAL), all of the caller's (GLOBAL), or all but this (OTHERS)."""
    current = op.session_id
    if scope is SignOutScope.GLOBAL:
        await op.execute(END_ALL_SESSIONS)
    elif scope is SignOutScope.OTHERS:
        await op.execute(END_OTHER_SESSIONS, current)
    elif current is not None:  # a token with no session (minted elsewhere): nothing to end
        await op.execute(END_THIS_SESSION, current)


async def revoke_session(op: Operation, session_id: uuid.UUID) -> None:
    if await op.fetchval(REVOKE_OWN_SESSION, session_id) is None:
        raise AppError(Code.NOT_FOUND, "Session not found")


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """A password change whose current password matched: the hash it replaces, the new
    hash, and the sign-in attempt it counted."""

    old_hash: str
    new_hash: str
    attempt: ratelimit.Attempt


def wrong_password() -> AppError:
    return AppError(Code.BAD_USER_INPUT, WRONG_PASSWORD, field="currentPassword")


async def prepare_password_change(
    op: Operation,
    settings: Settings,
    passwords: Passwords,
    current_password: str,
    new_password: str,
) -> PasswordChange:
    """Check the current password and hash the new one, holding no connection.

    The check counts as a sign-in attempt of the account's email (contract, Errors: load and
    abuse): refused with RATE_LIMITED when due, slowed like a sign-in, and a wrong password
    stays counted as a failure (recorded in a transaction of its own).
    """
    user_id, session_id = op.user_id, op.session_id
    if user_id is None:
        raise AppError(Code.UNAUTHENTICATED, "Authentication required")
    check_password(new_password, field="newPassword")

    async def read_and_count(
        conn: asyncpg.Connection,
    ) -> tuple[str, ratelimit.Attempt] | None:
        # an ended session gets 401 when the operation begins: count and verify nothing
        if session_id is not None and not await conn.fetchval(SESSION_IS_LIVE, user_id, session_id):
            return None
        await conn.execute(SET_ROLE, "service_role")
        row = await conn.fetchrow(ACCOUNT_OF, user_id)
        if row is None:
            return None
        await conn.execute(SET_ROLE, LOGIN_ROLE)
        attempt = await ratelimit.take_sign_in(conn, settings, row["email"], None)
        return row["encrypted_password"], attempt

    found = await op.apart(read_and_count)
    if found is None:
        raise AppError(Code.UNAUTHENTICATED, "Authentication required")
    old_hash, attempt = found
    await ratelimit.slow_sign_in(op, settings, attempt)
    if not await passwords.verify(old_hash, current_password):
        raise wrong_password()
    return PasswordChange(old_hash, await passwords.hash(new_password), attempt)


async def change_password(op: Operation, change: PasswordChange) -> None:
    """Set the new password, end the caller's other sessions (and void unused reset links),
    and clear the email's failed sign-ins, in the operation's transaction.

    BAD_USER_INPUT on currentPassword when the password changed since it was checked.
    """
    user_id = op.user_id
    if user_id is None:
        raise AppError(Code.UNAUTHENTICATED, "Authentication required")
    async with op.as_role("service_role") as conn:
        if not await conn.fetchval(LOCK_PASSWORD, user_id, change.old_hash):
            raise wrong_password()
        await conn.execute(CHANGE_PASSWORD, user_id, change.new_hash, op.session_id)
    await ratelimit.clear_sign_in(op, change.attempt)
