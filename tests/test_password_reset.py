"""Password reset through the API, with real mail: the sender delivers into an SMTP sink.

These tests use the `mail_client` API, on a database of its own whose sender mails into
`smtp_sink`; the link is read out of the mail that arrived, as a person would."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import re
import statistics
import sys
import time
import uuid
from email.message import EmailMessage
from typing import Any

import asyncpg
import pytest

from tests.conftest import Api, Database, SmtpSink, User, error_codes

REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) }"
STATUS = "query($t: String!) { resetTokenStatus(token: $t) { valid expiresAt email } }"
RESET = (
    "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) {"
    " accessToken refreshToken tokenType user { id email lastSignInAt } } }"
)
SIGN_IN = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }"
REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }"
ME = "{ me { id email } }"
NEW_PASSWORD = "a brand new passphrase"
LINK = re.compile(r"https://app\.scriptlabs\.test/reset-password\?token=([A-Za-z0-9_-]+)")


def only_error(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("data") is None, result
    assert len(result["errors"]) == 1, result
    error: dict[str, Any] = result["errors"][0]
    return error


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None, message
    return text.get_content(), html.get_content()


def token_in(message: EmailMessage) -> str:
    text, html = parts(message)
    links = LINK.findall(text)
    assert len(links) == 1, text
    assert set(LINK.findall(html)) == set(links)  # the same link, unescaped: base64url needs none
    token: str = links[0]
    return token


async def request_reset(api: Api, address: str) -> None:
    data = await api.ok(REQUEST, {"e": address})
    assert data == {"requestPasswordReset": True}


async def mailed_token(api: Api, sink: SmtpSink, user: User, count: int = 1) -> str:
    """Ask for a reset and read the token out of the (count-th) mail that arrives."""
    await request_reset(api, user.email)
    messages = await sink.wait_for(user.email, count)
    return token_in(messages[-1])


async def reset_password(api: Api, token: str, password: str = NEW_PASSWORD) -> dict[str, Any]:
    return await api.gql(RESET, {"t": token, "p": password})


async def password_hash(admin: asyncpg.Connection, user: User) -> str:
    value: str = await admin.fetchval(
        "select encrypted_password from auth.users where id = $1", uuid.UUID(user.id)
    )
    return value


async def live_sessions(admin: asyncpg.Connection, user: User) -> int:
    count: int = await admin.fetchval(
        "select count(*) from public.user_sessions where user_id = $1 and revoked_at is null",
        uuid.UUID(user.id),
    )
    return count


async def outbox_of(admin: asyncpg.Connection, user: User) -> list[asyncpg.Record]:
    return await admin.fetch(
        "select * from scriptlabs_private.mail_outbox where user_id = $1 order by id",
        uuid.UUID(user.id),
    )


async def wait_until_sent(admin: asyncpg.Connection, user: User, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while any(row["sent_at"] is None for row in await outbox_of(admin, user)):
        assert time.monotonic() < deadline, "the outbox was not marked sent"
        await asyncio.sleep(0.02)


async def test_the_mailed_link_resets_the_password_end_to_end(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    second = await mail_api.ok(SIGN_IN, {"e": user.email, "p": user.password})
    old_access = [user.token, second["signIn"]["accessToken"]]
    started = dt.datetime.now(dt.UTC)
    await request_reset(mail_api, f"  {user.email.upper()} ")  # trimmed, case-insensitive

    [message] = await smtp_sink.wait_for(user.email)
    assert message["To"] == user.email
    assert message["From"] == "Script Labs <no-reply@scriptlabs.test>"
    assert message["Subject"] == "Reset your Script Labs password"
    text, html = parts(message)
    for body in (text, html):
        assert "1 hour" in body
        assert "ignore this email" in body
    token = token_in(message)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)

    data = await mail_api.ok(STATUS, {"t": token})
    status = data["resetTokenStatus"]
    assert status["valid"] is True
    assert status["email"] == f"{user.email[0]}***@example.com"
    expires = dt.datetime.fromisoformat(status["expiresAt"])
    assert abs((expires - started - dt.timedelta(hours=1)).total_seconds()) < 30

    result = await reset_password(mail_api, token)
    assert "errors" not in result, result
    payload = result["data"]["resetPassword"]
    assert payload["tokenType"] == "bearer"
    assert payload["user"]["id"] == user.id
    assert payload["user"]["email"] == user.email
    me = await mail_api.ok(ME, token=payload["accessToken"])
    assert me["me"] == {"id": user.id, "email": user.email}

    # every earlier session ended; only the new one lives
    assert await live_sessions(mail_admin, user) == 1
    for access in old_access:
        assert (await mail_api.post(ME, token=access)).status_code == 401
    assert error_codes(await mail_api.gql(REFRESH, {"t": user.refresh_token})) == [
        "UNAUTHENTICATED"
    ]
    assert "errors" not in await mail_api.gql(REFRESH, {"t": payload["refreshToken"]})

    old = await mail_api.gql(SIGN_IN, {"e": user.email, "p": user.password})
    assert error_codes(old) == ["UNAUTHENTICATED"]
    await mail_api.ok(SIGN_IN, {"e": user.email, "p": NEW_PASSWORD})
    # and the link is spent
    assert (await mail_api.ok(STATUS, {"t": token}))["resetTokenStatus"] == {
        "valid": False,
        "expiresAt": None,
        "email": None,
    }


async def test_a_used_token_is_refused_and_changes_nothing(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    assert "errors" not in await reset_password(mail_api, token)
    before = (await password_hash(mail_admin, user), await live_sessions(mail_admin, user))

    error = only_error(await reset_password(mail_api, token, "yet another passphrase"))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "token"}
    assert error["message"] == "Invalid or expired reset token"
    assert (await password_hash(mail_admin, user), await live_sessions(mail_admin, user)) == before
    await mail_api.ok(SIGN_IN, {"e": user.email, "p": NEW_PASSWORD})


async def test_one_token_used_twice_at_once_works_once(mail_api: Api, smtp_sink: SmtpSink) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    results = await asyncio.gather(
        reset_password(mail_api, token, "first of the racers"),
        reset_password(mail_api, token, "second of the racers"),
    )
    assert sorted(error_codes(r) for r in results) == [[], ["BAD_USER_INPUT"]]
    winner = "first of the racers" if not error_codes(results[0]) else "second of the racers"
    await mail_api.ok(SIGN_IN, {"e": user.email, "p": winner})


async def test_an_expired_token_is_refused(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    await mail_admin.execute(
        "update public.password_reset_tokens set expires_at = now() - interval '1 second'"
        " where user_id = $1",
        uuid.UUID(user.id),
    )
    before = await password_hash(mail_admin, user)
    status = (await mail_api.ok(STATUS, {"t": token}))["resetTokenStatus"]
    assert status == {"valid": False, "expiresAt": None, "email": None}
    error = only_error(await reset_password(mail_api, token))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "token"}
    assert await password_hash(mail_admin, user) == before
    assert await live_sessions(mail_admin, user) == 1


async def test_a_newer_request_invalidates_the_older_token(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    older = await mailed_token(mail_api, smtp_sink, user)
    # past the one-mail-a-minute limit without waiting for it
    await mail_admin.execute(
        "update scriptlabs_private.mail_outbox set created_at = created_at - interval '61 seconds'"
        " where user_id = $1",
        uuid.UUID(user.id),
    )
    newer = await mailed_token(mail_api, smtp_sink, user, count=2)
    assert newer != older
    assert (await mail_api.ok(STATUS, {"t": older}))["resetTokenStatus"]["valid"] is False
    assert error_codes(await reset_password(mail_api, older)) == ["BAD_USER_INPUT"]
    assert (await mail_api.ok(STATUS, {"t": newer}))["resetTokenStatus"]["valid"] is True
    assert "errors" not in await reset_password(mail_api, newer)


async def test_at_most_one_mail_per_address_per_minute(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    for address in (user.email, user.email.upper(), f" {user.email}"):
        await request_reset(mail_api, address)  # still true
    # the database decided at once: nothing more was queued, and the first link still works
    assert len(await outbox_of(mail_admin, user)) == 1
    await wait_until_sent(mail_admin, user)
    assert len(smtp_sink.to(user.email)) == 1
    assert (await mail_api.ok(STATUS, {"t": token}))["resetTokenStatus"]["valid"] is True


async def test_an_unknown_address_gets_true_and_no_mail(
    mail_api: Api, mail_admin: asyncpg.Connection
) -> None:
    address = f"nobody-{uuid.uuid4().hex[:12]}@example.com"
    await request_reset(mail_api, address)
    queued = await mail_admin.fetchval(
        "select count(*) from scriptlabs_private.mail_outbox where to_address = $1", address
    )
    assert queued == 0


@pytest.mark.parametrize(
    "address",
    ["not-an-email", "a@b", "two@@example.com", " ", "x" * 300, "a\u0000b@example.com"],
)
async def test_a_malformed_address_is_bad_user_input(mail_api: Api, address: str) -> None:
    error = only_error(await mail_api.gql(REQUEST, {"e": address}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "email"}


async def test_known_and_unknown_addresses_take_about_the_same_time(mail_api: Api) -> None:
    rounds = 15
    known = [await mail_api.sign_up() for _ in range(rounds)]  # each one mails: the full path

    async def timed(address: str) -> float:
        started = time.perf_counter()
        await request_reset(mail_api, address)
        return time.perf_counter() - started

    for _ in range(3):  # warm up both paths
        await timed(known[0].email)
        await timed(f"warm-{uuid.uuid4().hex[:12]}@example.com")
    known_times, unknown_times = [], []
    for user in known[1:]:  # interleaved, so drift hits both alike
        known_times.append(await timed(user.email))
        unknown_times.append(await timed(f"nobody-{uuid.uuid4().hex[:12]}@example.com"))
    median_known = statistics.median(known_times)
    median_unknown = statistics.median(unknown_times)
    slower = max(median_known, median_unknown)
    assert abs(median_known - median_unknown) < 0.5 * slower + 0.005, (
        median_known,
        median_unknown,
    )


async def test_the_token_is_stored_only_as_a_hash_and_the_mail_body_goes_once_sent(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    rows = await mail_admin.fetch(
        "select * from public.password_reset_tokens where user_id = $1", uuid.UUID(user.id)
    )
    assert len(rows) == 1
    await wait_until_sent(mail_admin, user)
    [mail] = await outbox_of(mail_admin, user)
    assert mail["sent_at"] is not None and mail["attempts"] == 1
    assert mail["body_text"] is None and mail["body_html"] is None
    for row in [*rows, mail]:
        for value in row.values():
            as_text = value.hex() if isinstance(value, bytes) else str(value)
            assert token not in as_text
            assert value != token.encode()
    # what is stored is a hash of the whole token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert rows[0]["token_hash"] == hashlib.sha256(raw).digest()


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role"])
async def test_the_outbox_and_reset_tokens_are_unreadable_by_request_roles(
    mail_api: Api, mail_database: Database, role: str
) -> None:
    user = await mail_api.sign_up()
    await request_reset(mail_api, user.email)
    conn = await asyncpg.connect(mail_database.dsn)  # the login role, as the API
    try:
        for query in (
            "select * from scriptlabs_private.mail_outbox",
            "select count(*) from scriptlabs_private.mail_outbox",
            "select * from public.password_reset_tokens",
            "select token_hash from public.password_reset_tokens",
            "select scriptlabs_private.reset_user_id($1)",
            "select public.cleanup_expired_tokens()",
        ):
            if role == "service_role" and "cleanup" in query:
                continue  # the one thing it may do
            args = [user.email] if "$1" in query else []
            async with conn.transaction():
                await conn.execute(
                    "select set_config('role', $1, true),"
                    " set_config('request.jwt.claims', $2, true)",
                    role,
                    f'{{"role": "{role}", "sub": "{user.id}"}}',
                )
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_a_new_password_is_checked_and_garbage_tokens_are_invalid(
    mail_api: Api, smtp_sink: SmtpSink
) -> None:
    user = await mail_api.sign_up()
    token = await mailed_token(mail_api, smtp_sink, user)
    error = only_error(await reset_password(mail_api, token, "short"))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "newPassword"}
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for garbage in ("", "abc", "x" * 86, token + "A", flipped, token[:43], "../" + token[3:]):
        status = (await mail_api.ok(STATUS, {"t": garbage}))["resetTokenStatus"]
        assert status == {"valid": False, "expiresAt": None, "email": None}, garbage
        error = only_error(await reset_password(mail_api, garbage))
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "token"}, garbage
    # none of that spent the real token
    assert (await mail_api.ok(STATUS, {"t": token}))["resetTokenStatus"]["valid"] is True


async def test_cleanup_deletes_expired_and_used_tokens_and_keeps_valid_ones(
    mail_api: Api, smtp_sink: SmtpSink, mail_admin: asyncpg.Connection, mail_database: Database
) -> None:
    valid, expired, used = [await mail_api.sign_up() for _ in range(3)]
    for user in (valid, expired, used):
        await request_reset(mail_api, user.email)
    used_token = token_in((await smtp_sink.wait_for(used.email))[0])
    assert "errors" not in await reset_password(mail_api, used_token)  # used a moment ago
    await mail_admin.execute(
        "update public.password_reset_tokens set expires_at = now() - interval '1 second'"
        " where user_id = $1",
        uuid.UUID(expired.id),
    )

    async def tokens_of(user: User) -> int:
        count: int = await mail_admin.fetchval(
            "select count(*) from public.password_reset_tokens where user_id = $1",
            uuid.UUID(user.id),
        )
        return count

    conn = await asyncpg.connect(mail_database.dsn)  # as the API's login role
    try:
        deleted = await conn.fetchval("select public.cleanup_expired_tokens()")
    finally:
        await conn.close()
    assert deleted >= 2
    assert [await tokens_of(u) for u in (valid, expired, used)] == [1, 0, 0]
    valid_token = token_in((await smtp_sink.wait_for(valid.email))[0])
    assert (await mail_api.ok(STATUS, {"t": valid_token}))["resetTokenStatus"]["valid"] is True


async def test_the_cleanup_command_runs_the_cleanup(
    mail_api: Api, mail_admin: asyncpg.Connection, mail_database: Database
) -> None:
    user = await mail_api.sign_up()
    await request_reset(mail_api, user.email)
    await mail_admin.execute(
        "update public.password_reset_tokens set expires_at = now() - interval '1 second'"
        " where user_id = $1",
        uuid.UUID(user.id),
    )
    env = {
        **os.environ,
        "DATABASE_URL": mail_database.dsn,
        "DATABASE_ADMIN_URL": mail_database.admin_dsn,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scriptlabs",
        "cleanup-tokens",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert re.fullmatch(r"deleted [1-9]\d* rows .*\n", stdout.decode()), stdout
    remaining = await mail_admin.fetchval(
        "select count(*) from public.password_reset_tokens where user_id = $1",
        uuid.UUID(user.id),
    )
    assert remaining == 0
