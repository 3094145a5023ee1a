"""Password reset resolvers: requestPasswordReset, resetTokenStatus, resetPassword."""

from __future__ import annotations

from strawberry.types import Info

from scriptlabs.auth import reset
from scriptlabs.graphql.context import Context
from scriptlabs.graphql.types import AuthPayload, ResetTokenStatus


async def request_password_reset(info: Info[Context, None], email: str) -> bool:
    ctx = info.context
    return await reset.request_password_reset(ctx.operation(), ctx.settings, email, ctx.client)


async def reset_token_status(info: Info[Context, None], token: str) -> ResetTokenStatus:
    status = await reset.reset_token_status(info.context.operation(), token)
    return ResetTokenStatus(valid=status.valid, expires_at=status.expires_at, email=status.email)


async def reset_password(info: Info[Context, None], token: str, new_password: str) -> AuthPayload:
    ctx = info.context
    result = await reset.reset_password(
        ctx.operation(), ctx.settings, ctx.services.passwords, token, new_password, ctx.client
    )
    return AuthPayload.from_result(result)
