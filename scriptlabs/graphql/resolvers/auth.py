"""Account resolvers: sign-up, sign-in, me, sessions, sign-out, password change.

The mutations that hash or verify a password, or count an attempt that must outlive a
refusal, have a preparer (PREPARERS, by field name): the runner calls it before the
operation takes its connection, and the resolver picks up what it made with
`Context.prepared_for` (scriptlabs.graphql.context).
"""

from __future__ import annotations

import uuid
from typing import Any

from strawberry.types import Info

from scriptlabs.auth import accounts, sessions
from scriptlabs.errors import AppError, Code
from scriptlabs.graphql.context import Context, Preparation, Preparer
from scriptlabs.graphql.types import AuthPayload, Session, SignOutScope, User

# -- preparers: before the operation's transaction, no connection held


async def prepare_sign_up(p: Preparation, args: dict[str, Any]) -> accounts.NewAccount:
    s = p.services
    return await accounts.prepare_sign_up(
        p.op, s.settings, s.passwords, args["email"], args["password"], p.client.ip_address
    )


async def prepare_sign_in(p: Preparation, args: dict[str, Any]) -> accounts.VerifiedSignIn:
    s = p.services
    return await accounts.prepare_sign_in(
        p.op, s.settings, s.passwords, args["email"], args["password"], p.client.ip_address
    )


async def prepare_refresh(p: Preparation, args: dict[str, Any]) -> sessions.RefreshToken:
    return sessions.prepare_refresh(args["refreshToken"])


async def prepare_change_password(p: Preparation, args: dict[str, Any]) -> sessions.PasswordChange:
    if p.claims.role == "anon":
        raise AppError(Code.UNAUTHENTICATED, "Authentication required")
    s = p.services
    return await sessions.prepare_password_change(
        p.op, s.settings, s.passwords, args["currentPassword"], args["newPassword"]
    )


PREPARERS: dict[str, Preparer] = {
    "signUp": prepare_sign_up,
    "signIn": prepare_sign_in,
    "refreshSession": prepare_refresh,
    "changePassword": prepare_change_password,
}

# -- resolvers


async def me(info: Info[Context, None]) -> User | None:
    ctx = info.context
    if ctx.claims.sub is None:
        return None
    row = await accounts.current_user(ctx.operation())
    return User.from_row(row) if row is not None else None


async def sign_up(info: Info[Context, None], email: str, password: str) -> AuthPayload:
    ctx = info.context
    account: accounts.NewAccount = ctx.prepared_for(info)
    result = await accounts.sign_up(ctx.operation(), ctx.settings, account, ctx.client)
    return AuthPayload.from_result(result)


async def sign_in(info: Info[Context, None], email: str, password: str) -> AuthPayload:
    ctx = info.context
    verified: accounts.VerifiedSignIn = ctx.prepared_for(info)
    result = await accounts.sign_in(ctx.operation(), ctx.settings, verified, ctx.client)
    return AuthPayload.from_result(result)


async def refresh_session(info: Info[Context, None], refresh_token: str) -> AuthPayload:
    ctx = info.context
    token: sessions.RefreshToken = ctx.prepared_for(info)
    result = await sessions.refresh_session(ctx.operation(), ctx.settings, token)
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
    change: sessions.PasswordChange = ctx.prepared_for(info)
    await sessions.change_password(ctx.user_operation(), change)
    return True
