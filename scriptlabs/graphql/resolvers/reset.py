"""Password reset resolvers: requestPasswordReset, resetTokenStatus, resetPassword.

requestPasswordReset and resetPassword have preparers (PREPARERS): the runner calls them
before the operation takes its connection (see resolvers/auth.py).
"""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from scriptlabs.auth import reset
from scriptlabs.graphql.context import Context, Preparation, Preparer
from scriptlabs.graphql.types import AuthPayload, ResetTokenStatus


async def prepare_reset_request(p: Preparation, args: dict[str, Any]) -> str:
    return await reset.prepare_reset_request(
        p.op, p.services.settings, args["email"], p.client.ip_address
    )


async def prepare_reset(p: Preparation, args: dict[str, Any]) -> reset.PreparedReset:
    return await reset.prepare_reset(p.op, p.services.passwords, args["token"], args["newPassword"])


PREPARERS: dict[str, Preparer] = {
    "requestPasswordReset": prepare_reset_request,
    "resetPassword": prepare_reset,
}


async def request_password_reset(info: Info[Context, None], email: str) -> bool:
    ctx = info.context
    normalized: str = ctx.prepared_for(info)
    return await reset.request_password_reset(ctx.operation(), ctx.settings, normalized, ctx.client)


async def reset_token_status(info: Info[Context, None], token: str) -> ResetTokenStatus:
    status = await reset.reset_token_status(info.context.operation(), token)
    return ResetTokenStatus(valid=status.valid, expires_at=status.expires_at, email=status.email)


async def reset_password(info: Info[Context, None], token: str, new_password: str) -> AuthPayload:
    ctx = info.context
    prepared: reset.PreparedReset = ctx.prepared_for(info)
    result = await reset.reset_password(ctx.operation(), ctx.settings, prepared, ctx.client)
    return AuthPayload.from_result(result)
