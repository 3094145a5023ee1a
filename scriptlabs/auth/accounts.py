"""Sign-up and sign-in: argon2id passwords, a user_sessions row per sign-in, a token pair.

Each flow has two halves (contract, Errors: load and abuse). The first, `prepare_*`, runs
before the operation takes its connection: bookkeeping and reads in a short transaction of
their own (`Operation.apart`), then the argon2 work and any slowing delay, holding no
connection. The second runs in the operation's transaction and only writes what the first
decided. The request roles cannot read password hashes, so these flows use `service_role`
(`set_config('role', ...)` inside `apart`, `Operation.as_role` in the operation).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from scriptlabs.auth import ratelimit
from scriptlabs.auth.passwords import MAX_LENGTH, MIN_LENGTH, Passwords
from scriptlabs.auth.tokens import mint_access_token
from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation, RoleConnection
from scriptlabs.errors import AppError, Code

# no control characters: PostgreSQL text cannot hold NUL, and no address has one
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s.\x00-\x1f\x7f]+(\.[^@\s.\x00-\x1f\x7f]+)+$")
INVALID_CREDENTIALS = "Invalid email or password"

INSERT_USER = """
insert into auth.users (email, encrypted_password, email_confirmed_at, last_sign_in_at)
values ($1, $2, now(), now())
returning id, email, created_at, last_sign_in_at
"""

SET_ROLE = "select set_config('role', $1, true)"

FIND_USER = """
select id, email, encrypted_password, created_at
from auth.users
where lower(email) = $1
"""

# only while the password is still the one verified: a change in between wins
TOUCH_SIGN_IN = """
update auth.users set last_sign_in_at = now()
where id = $1 and encrypted_password = $2
returning id, email, created_at, last_sign_in_at
"""

# one statement: the session and its first refresh token
INSERT_SESSION = """
with session as (
    insert into public.user_sessions (user_id, id, expires_at, user_agent, ip_address)
    values ($1, $2, now() + make_interval(secs => $4), $5, $6)
    returning user_id, id
)
insert into public.refresh_tokens (user_id, session_id, token_hash)
select user_id, id, $3 from session
"""


@dataclass(frozen=True, slots=True)
class UserRow:
    id: uuid.UUID
    email: str
    created_at: dt.datetime
    last_sign_in_at: dt.datetime | None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> UserRow:
        return cls(row["id"], row["email"], row["created_at"], row["last_sign_in_at"])


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: UserRow
    access_token: str
    expires_in: int
    expires_at: dt.datetime
    refresh_token: str


@dataclass(frozen=True, slots=True)
class Client:
    """Who is asking: kept on the session row."""

    user_agent: str | None
    ip_address: str | None


def normalize_email(raw: str, field: str = "email") -> str:
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise AppError(Code.BAD_USER_INPUT, "Not a valid email address", field=field)
    return email


def check_password(password: str, field: str = "password") -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise AppError(
            Code.BAD_USER_INPUT,
            f"Password must be {MIN_LENGTH} to {MAX_LENGTH} characters long",
            field=field,
        )


def hash_token(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def make_refresh_token(user_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, bytes]:
    """An opaque refresh token and the hash that is stored (the token itself never is).

    It carries its session's key (user id, session id) so it is found by primary key,
    and 256 random bits that only the client holds.
    """
    key = base64.urlsafe_b64encode(user_id.bytes + session_id.bytes).decode().rstrip("=")
    secret = secrets.token_urlsafe(32)
    return f"{key}.{secret}", hash_token(secret)


async def start_session(
    conn: RoleConnection, settings: Settings, user: UserRow, client: Client
) -> SignedIn:
    """Insert a session for `user` (already under service_role) and mint its token pair."""
    session_id = uuid.uuid4()
    refresh_token, refresh_hash = make_refresh_token(user.id, session_id)
    await conn.execute(
        INSERT_SESSION,
        user.id,
        session_id,
        refresh_hash,
        float(settings.refresh_token_ttl),
        client.user_agent,
        client.ip_address,
    )
    return signed_in(settings, user, session_id, refresh_token)


def signed_in(
    settings: Settings, user: UserRow, session_id: uuid.UUID, refresh_token: str
) -> SignedIn:
    """A fresh access token for `session_id`, paired with `refresh_token`."""
    if settings.jwt_secret is None:
        raise RuntimeError("JWT secret not configured")
    access_token, exp = mint_access_token(
        settings.jwt_secret,
        user_id=user.id,
        email=user.email,
        session_id=session_id,
        issuer=settings.jwt_issuer,
        expires_in=settings.jwt_expiry,
    )
    return SignedIn(
        user=user,
        access_token=access_token,
        expires_in=settings.jwt_expiry,
        expires_at=dt.datetime.fromtimestamp(exp, dt.UTC),
        refresh_token=refresh_token,
    )


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A sign-up checked, counted and hashed, ready to be inserted."""

    email: str
    password_hash: str


async def prepare_sign_up(
    op: Operation,
    settings: Settings,
    passwords: Passwords,
    email: str,
    password: str,
    address: str | None,
) -> NewAccount:
    """Check the input, count the sign-up (its own transaction), hash: no connection held."""
    email = normalize_email(email)
    check_password(password)
    # counted whether it succeeds or meets an existing email (auth.ratelimit)
    await ratelimit.check_sign_up(op, settings, address)
    return NewAccount(email, await passwords.hash(password))


async def sign_up(
    op: Operation, settings: Settings, account: NewAccount, client: Client
) -> SignedIn:
    """Insert the account and its first session in the operation (CONFLICT if it exists)."""
    async with op.as_role("service_role") as conn:
        row = await conn.fetchrow(INSERT_USER, account.email, account.password_hash)
        assert row is not None
        return await start_session(conn, settings, UserRow.from_record(row), client)


@dataclass(frozen=True, slots=True)
class VerifiedSignIn:
    """A sign-in whose password matched: the account, the hash verified, its attempt."""

    user_id: uuid.UUID
    password_hash: str
    attempt: ratelimit.Attempt


async def prepare_sign_in(
    op: Operation,
    settings: Settings,
    passwords: Passwords,
    email: str,
    password: str,
    address: str | None,
) -> VerifiedSignIn:
    """Count the attempt and read the account in one short transaction of its own, then
    slow and verify holding no connection.

    The same error, in about the same time, for an unknown email and a wrong password; the
    failure stays counted whatever the operation does.
    """
    try:
        email = normalize_email(email)
    except AppError:
        email = ""  # counted by address only, refused like a wrong password

    async def count_and_read(
        conn: asyncpg.Connection,
    ) -> tuple[ratelimit.Attempt, asyncpg.Record | None]:
        attempt = await ratelimit.take_sign_in(conn, settings, email, address)
        if not email:
            return attempt, None
        await conn.execute(SET_ROLE, "service_role")
        return attempt, await conn.fetchrow(FIND_USER, email)

    attempt, row = await op.apart(count_and_read)
    await ratelimit.slow_sign_in(op, settings, attempt)
    encoded: str | None = row["encrypted_password"] if row is not None else None
    if not await passwords.verify(encoded, password) or row is None or encoded is None:
        raise AppError(Code.UNAUTHENTICATED, INVALID_CREDENTIALS)
    return VerifiedSignIn(row["id"], encoded, attempt)


async def sign_in(
    op: Operation, settings: Settings, verified: VerifiedSignIn, client: Client
) -> SignedIn:
    """Start the session of a verified sign-in and clear its email's failures, in the
    operation (so the clearing holds only if the sign-in commits)."""
    async with op.as_role("service_role") as conn:
        touched = await conn.fetchrow(TOUCH_SIGN_IN, verified.user_id, verified.password_hash)
        if touched is None:  # the password changed (or the account went) since it was checked
            raise AppError(Code.UNAUTHENTICATED, INVALID_CREDENTIALS)
        result = await start_session(conn, settings, UserRow.from_record(touched), client)
    await ratelimit.clear_sign_in(op, verified.attempt)
    return result


ME = "select id, email, created_at, last_sign_in_at from auth.users where id = (select auth.uid())"


async def current_user(op: Operation) -> UserRow | None:
    if op.user_id is None:
        return None
    row = await op.fetchrow(ME)
    return UserRow.from_record(row) if row is not None else None
