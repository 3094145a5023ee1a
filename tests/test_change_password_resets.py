"""changePassword voids the account's outstanding password reset links.

A link mailed before the change (perhaps to a mailbox an attacker reads, the reason the
password is being changed) must not set the password afterwards."""

from __future__ import annotations

import uuid

import asyncpg

from tests.conftest import Api, SmtpSink
from tests.test_password_reset import (
    NEW_PASSWORD,
    SIGN_IN,
    STATUS,
    mailed_token,
    only_error,
    reset_password,
)

CHANGE = (
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }"
)
CHANGED_PASSWORD = "changed on purpose, by me"


async def test_changing_the_password_voids_unused_reset_tokens(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    status = await mail_api.ok(STATUS, {"t": token})
    assert status["resetTokenStatus"]["valid"] is True

    changed = await mail_api.ok(
        CHANGE, {"c": user.password, "n": CHANGED_PASSWORD}, token=user.token
    )
    assert changed == {"changePassword": True}

    status = await mail_api.ok(STATUS, {"t": token})
    assert status["resetTokenStatus"] == {"valid": False, "expiresAt": None, "email": None}
    error = only_error(await reset_password(mail_api, token))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "token"}
    # the password is the one just chosen, not the link's
    await mail_api.ok(SIGN_IN, {"e": user.email, "p": CHANGED_PASSWORD})
    refused = await mail_api.gql(SIGN_IN, {"e": user.email, "p": NEW_PASSWORD})
    assert refused["data"] is None
    unused = await mail_admin.fetchval(
        "select count(*) from public.password_reset_tokens where user_id = $1 and used_at is null",
        uuid.UUID(user.id),
    )
    assert unused == 0


async def test_a_refused_password_change_leaves_reset_tokens_working(
    mail_api: Api, smtp_sink: SmtpSink
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    result = await mail_api.gql(
        CHANGE, {"c": "not my password", "n": CHANGED_PASSWORD}, token=user.token
    )
    assert only_error(result)["extensions"]["code"] == "BAD_USER_INPUT"
    status = await mail_api.ok(STATUS, {"t": token})
    assert status["resetTokenStatus"]["valid"] is True
    reset = await reset_password(mail_api, token)
    assert "errors" not in reset, reset
