"""Account resolvers: sign-up, sign-in, me, sessions, sign-out, password change."""

from __future__ import annotations

import uuid

from strawberry.types import Info

from scriptlabs.auth import accounts, sessions
from scriptlabs.graphql.context import Context
from scriptlabs.graphql.types import AuthPayload, Session, SignOutScope, User


async def me(info: Info[Context, None]) -> User | None:
    ctx = info.context
    if ctx.claims.sub is None:
        return None
    row = await accounts.current_user(ctx.operation())
    return User.from_row(row) if row is not None else None


async def sign_up(info: Info[Context, None], email: str, password: str) -> AuthPayload:
    ctx = info.context
    result = await accounts.sign_up(
        ctx.operation(), ctx.settings, ctx.services.passwords, email, password, ctx.client
    )
    return AuthPayload.from_result(result)


async def sign_in(info: Info[Context, None], email: str, password: str) -> AuthPayload:
    ctx = info.context
    result = await accounts.sign_in(
        ctx.operation(), ctx.settings, ctx.services.passwords, email, password, ctx.client
    )
    return AuthPayload.from_result(result)


async def refresh_session(info: Info[Context, None], refresh_token: str) -> AuthPayload:
    ctx = info.context
    result = await sessions.refresh_session(ctx.operation(), ctx.settings, refresh_token)
    return AuthPayload.from_result(result)


async def list_sessions(info: Info[Context, None]) -> list[Session]:
    rows = await sessions.list_sessions(info.context.user_operation())
    return [Session.from_row(r) for r in rows]


async def sign_out(
    info: Info[Context, None], scope: SignOutScope | None = SignOutScope.LOCAL
) -> bool:
    await sessions.sign_out(info.context.user_operation(), scope or SignOutScope.LOCAL)
    return True


async def revoke_session(info: Info[Context, None], id: uuid.UUID) -> bool:
    await sessions.revoke_session(info.context.user_operation(), id)
    return True


async def change_password(
    info: Info[Context, None], current_password: str, new_password: str
) -> bool:
    ctx = info.context
    await sessions.change_password(
        ctx.user_operation(), ctx.services.passwords, current_password, new_password
    )
    return True
