"""Password reset: request a link by email, check a token, set a new password with it.

A reset token is base64url(user id, token id, 32 random bytes) without padding: it names
its row of public.password_reset_tokens by primary key, and the database keeps only the
SHA-256 hash of the whole token. All reset SQL runs in security definer functions of
scriptlabs_private (db/008_mail_reset.sql), which only the login role may call: each flow
switches the operation's transaction back to it (`op.as_role("none")`) for the call.

`request_password_reset` does the same work for a known and an unknown address (a token and
a message are always made, the same functions are always called) and always answers true;
the database decides, in one call, whether a mail is queued (CONTRACT.md, Password reset).

Requests and resets have a first half, `prepare_*`, that runs before the operation takes its
connection (contract, Errors: load and abuse): the request is counted, and a reset token is
checked (refused cheaply when it cannot be used) and the new password hashed, each in a
short transaction of its own (`Operation.apart`) or with no connection held.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import html
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from scriptlabs.auth import ratelimit
from scriptlabs.auth.accounts import (
    Client,
    SignedIn,
    UserRow,
    check_password,
    normalize_email,
    start_session,
)
from scriptlabs.auth.mailer import Content
from scriptlabs.auth.passwords import Passwords
from scriptlabs.config import Settings
from scriptlabs.db.operation import Operation
from scriptlabs.errors import AppError, Code

LOGIN_ROLE = "none"  # set_config('role', 'none'): back to the session's login role
SUBJECT = "Reset your Script Labs password"
INVALID_TOKEN = "Invalid or expired reset token"
SECRET_BYTES = 32  # 256 bits of randomness
TOKEN_BYTES = 16 + 16 + SECRET_BYTES
TOKEN_LENGTH = (TOKEN_BYTES * 4 + 2) // 3  # base64url characters without padding
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")

RESET_USER_ID = "select scriptlabs_private.reset_user_id($1)"
REQUEST_RESET = """
select scriptlabs_private.request_password_reset($1, $2, $3, $4, $5, $6, $7, $8)
"""
TOKEN_STATUS = """
select expires_at, email
from scriptlabs_private.reset_token_status($1, $2, $3)
"""
RESET_PASSWORD = """
select id, email, created_at, last_sign_in_at
from scriptlabs_private.reset_password($1, $2, $3, $4)
"""
CLEANUP = "select public.cleanup_expired_tokens()"


@dataclass(frozen=True, slots=True)
class ResetToken:
    user_id: uuid.UUID
    token_id: uuid.UUID
    secret: bytes

    @classmethod
    def new(cls, user_id: uuid.UUID) -> ResetToken:
        return cls(user_id, uuid.uuid4(), secrets.token_bytes(SECRET_BYTES))

    @property
    def raw(self) -> bytes:
        return self.user_id.bytes + self.token_id.bytes + self.secret

    @property
    def value(self) -> str:
        """What the link carries: base64url characters only, so it needs no escaping."""
        return base64.urlsafe_b64encode(self.raw).decode("ascii").rstrip("=")

    @property
    def hash(self) -> bytes:
        """What the database stores; the token itself never is."""
        return hashlib.sha256(self.raw).digest()

    @classmethod
    def parse(cls, value: str) -> ResetToken | None:
        """The token `value` spells, or None for anything that no `value` ever was."""
        value = value.strip()
        if not _TOKEN.fullmatch(value):
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return None
        token = cls(uuid.UUID(bytes=raw[:16]), uuid.UUID(bytes=raw[16:32]), raw[32:])
        # only the canonical spelling: the unused low bits of the last character must be 0
        return token if len(raw) == TOKEN_BYTES and token.value == value else None


@dataclass(frozen=True, slots=True)
class TokenStatus:
    valid: bool
    expires_at: dt.datetime | None = None
    email: str | None = None  # masked: j***@example.com


def reset_link(settings: Settings, token: str) -> str:
    return f"{settings.public_url}/reset-password?token={token}"


def reset_message(link: str) -> Content:
    """The reset mail: the link, that it expires in an hour, that it may be ignored."""
    text = (
        "Hello,\n\n"
        "Someone, hopefully you, asked to reset the password of your Script Labs account.\n"
        "To choose a new password, open this link:\n\n"
        f"{link}\n\n"
        "The link expires in 1 hour and works only once.\n"
        "If you did not ask for this, you can ignore this email: "
        "your password stays as it is.\n\n"
        "-- Script Labs\n"
    )
    href = html.escape(link, quote=True)
    body_html = (
        "<!doctype html>\n"
        '<html><body style="font-family: sans-serif">\n'
        "<p>Hello,</p>\n"
        "<p>Someone, hopefully you, asked to reset the password of your Script Labs account.\n"
        "To choose a new password, open this link:</p>\n"
        f'<p><a href="{href}">{href}</a></p>\n'
        "<p>The link expires in 1 hour and works only once.</p>\n"
        "<p>If you did not ask for this, you can ignore this email: "
        "your password stays as it is.</p>\n"
        "<p>&mdash; Script Labs</p>\n"
        "</body></html>\n"
    )
    return Content(SUBJECT, text, body_html)


def mask_email(address: str) -> str:
    """`jane@example.com` → `j***@example.com`: enough to recognise, not to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


async def prepare_reset_request(
    op: Operation, settings: Settings, email: str, address: str | None
) -> str:
    """The normalised address (BAD_USER_INPUT when malformed), the request counted per client
    address in a transaction of its own (RATE_LIMITED past the limit)."""
    email = normalize_email(email)
    # per client address only, so a refusal says nothing about accounts
    await ratelimit.check_reset_request(op, settings, address)
    return email


async def request_password_reset(
    op: Operation, settings: Settings, email: str, client: Client
) -> bool:
    """Queue a reset mail if the account exists (and had none in the last minute); True.

    `email` is normalised and counted already (`prepare_reset_request`). The answer and the
    work are the same whether or not the account exists.
    """
    async with op.as_role(LOGIN_ROLE) as conn:
        user_id = await conn.fetchval(RESET_USER_ID, email)
        # an unknown address gets a token too, for an id that names no account
        token = ResetToken.new(user_id or uuid.uuid4())
        content = reset_message(reset_link(settings, token.value))
        await conn.execute(
            REQUEST_RESET,
            token.user_id,
            token.token_id,
            token.hash,
            content.subject,
            content.body_text,
            content.body_html,
            client.ip_address,
            client.user_agent,
        )
    return True


async def reset_token_status(op: Operation, token: str) -> TokenStatus:
    """Whether `token` can still be used, with its expiry and its account's masked email."""
    parsed = ResetToken.parse(token)
    if parsed is None:
        return TokenStatus(valid=False)
    async with op.as_role(LOGIN_ROLE) as conn:
        row = await conn.fetchrow(TOKEN_STATUS, parsed.user_id, parsed.token_id, parsed.hash)
    if row is None:
        return TokenStatus(valid=False)
    return TokenStatus(valid=True, expires_at=row["expires_at"], email=mask_email(row["email"]))


@dataclass(frozen=True, slots=True)
class PreparedReset:
    """A reset whose token was usable when checked, and the new password's hash."""

    token: ResetToken
    password_hash: str


def invalid_token() -> AppError:
    return AppError(Code.BAD_USER_INPUT, INVALID_TOKEN, field="token")


async def prepare_reset(
    op: Operation, passwords: Passwords, token: str, new_password: str
) -> PreparedReset:
    """Check the new password and the token, then hash, holding no connection.

    A token that does not parse, or names no usable token, is refused before any hashing
    (contract, Errors: load and abuse), BAD_USER_INPUT on `token`.
    """
    check_password(new_password, field="newPassword")
    parsed = ResetToken.parse(token)
    if parsed is None:
        raise invalid_token()

    async def is_usable(conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(TOKEN_STATUS, parsed.user_id, parsed.token_id, parsed.hash)
        return row is not None

    if not await op.apart(is_usable):
        raise invalid_token()
    return PreparedReset(parsed, await passwords.hash(new_password))


async def reset_password(
    op: Operation, settings: Settings, reset: PreparedReset, client: Client
) -> SignedIn:
    """Set the password with a reset token, end every session, sign a new one in.

    The database has the last word: a token used or expired since it was checked is
    BAD_USER_INPUT (field `token`) and changes nothing.
    """
    token = reset.token
    async with op.as_role(LOGIN_ROLE) as conn:
        row = await conn.fetchrow(
            RESET_PASSWORD, token.user_id, token.token_id, token.hash, reset.password_hash
        )
    if row is None:
        raise invalid_token()
    async with op.as_role("service_role") as conn:
        return await start_session(conn, settings, UserRow.from_record(row), client)


async def cleanup_expired_tokens(conn: asyncpg.Connection) -> int:
    """Run public.cleanup_expired_tokens(); the number of rows it deleted."""
    deleted: int = await conn.fetchval(CLEANUP)
    return deleted
