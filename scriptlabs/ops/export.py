"""`scriptlabs export --user EMAIL --format csv|json`: a user's labs on standard output.

The same bytes as GET /export/labs.csv|json (scriptlabs.labs.export writes both), read the
same way: the user is found by email as the owner, then the export runs as the API's login
role switched to `authenticated` with claims naming that user, so RLS applies as it does to
the user's own requests. Nothing but the export goes to standard output; a progress line goes
to standard error when it is a terminal.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import BinaryIO, TextIO

import asyncpg
import orjson

from scriptlabs.auth.tokens import AUDIENCE
from scriptlabs.config import Settings
from scriptlabs.db.operation import Isolation, Operation, Pool
from scriptlabs.db.pool import create_pool
from scriptlabs.labs.export import Format, count_labs, export_chunks, open_cursor
from scriptlabs.ops.progress import Progress

FIND_USER = "select id, email from auth.users where lower(email) = lower($1)"


class UnknownUser(LookupError):
    """No account has that email."""


async def find_user(admin_dsn: str, email: str) -> tuple[uuid.UUID, str]:
    """The id and stored email of the account with `email` (case-insensitive)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        row = await conn.fetchrow(FIND_USER, email.strip())
    finally:
        await conn.close()
    if row is None:
        raise UnknownUser(email)
    return row["id"], row["email"]


async def as_user(
    settings: Settings, email: str, *, readonly: bool, isolation: Isolation | None = None
) -> tuple[Pool, Operation]:
    """An operator's command acting as the user with `email`: a pool of one connection (close
    it when done) and an operation under that user's role and claims, so Row Level Security
    applies as to the user's own requests; no deadline (an operator stops it with Ctrl-C)."""
    assert settings.database_url is not None
    admin = settings.database_admin_url or settings.database_url
    user_id, stored_email = await find_user(admin, email)
    claims = {"sub": str(user_id), "email": stored_email, "role": "authenticated", "aud": AUDIENCE}
    raw = await create_pool(replace(settings, db_pool_min=1, db_pool_max=1))
    pool = Pool(raw, 1, settings.db_pool_wait_seconds, 0)
    op = Operation(
        pool,
        role="authenticated",
        claims_json=orjson.dumps(claims).decode(),
        user_id=user_id,
        session_id=None,
        readonly=readonly,
        isolation=isolation,
        timeout_ms=0,
    )
    return pool, op


async def export_user_labs(
    settings: Settings, email: str, fmt: Format, out: BinaryIO, progress: TextIO | None
) -> int:
    """Write the labs of the user with `email` to `out`; the number of labs written."""
    pool, op = await as_user(settings, email, readonly=True, isolation="repeatable_read")
    written = 0
    try:
        total = await count_labs(op) if progress is not None else 0
        await open_cursor(op, fmt)
        bar = Progress(progress, "exported", "labs", total)
        async for chunk, rows in export_chunks(op, fmt):
            out.write(chunk)
            written += rows
            bar.show(written)
        out.flush()
        bar.done(written)
    finally:
        await op.end(commit=False)
        await pool.close()
    return written
