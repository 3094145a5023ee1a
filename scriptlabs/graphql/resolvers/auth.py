"""Account resolvers: sign-up, sign-in, me."""

from __future__ import annotations

from strawberry.types import Info

from scriptlabs.auth import accounts
from scriptlabs.graphql.context import Context
from scriptlabs.graphql.types import AuthPayload, User


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
