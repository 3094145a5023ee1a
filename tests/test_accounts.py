"""Sign-up and sign-in: what they answer, what they refuse, and what they store."""

from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from scriptlabs.config import Argon2Params, Settings
from tests.conftest import Api, error_codes, serve

PAYLOAD = (
    "accessToken tokenType expiresIn expiresAt refreshToken"
    " user { id email createdAt lastSignInAt }"
)
SIGN_UP = (
    f"mutation($e: String!, $p: String!) {{ signUp(email: $e, password: $p) {{ {PAYLOAD} }} }}"
)
SIGN_IN = (
    f"mutation($e: String!, $p: String!) {{ signIn(email: $e, password: $p) {{ {PAYLOAD} }} }}"
)
PASSWORD = "correct horse battery"


def fresh_email() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}@example.com"


def when(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


async def sign_up(api: Api, email: str, password: str = PASSWORD) -> dict[str, Any]:
    data = await api.ok(SIGN_UP, {"e": email, "p": password})
    payload: dict[str, Any] = data["signUp"]
    return payload


def only_error(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("data") is None, result
    assert len(result["errors"]) == 1, result
    error: dict[str, Any] = result["errors"][0]
    return error


async def test_sign_up_answers_a_full_auth_payload(api: Api) -> None:
    email = fresh_email()
    started = dt.datetime.now(dt.UTC)
    payload = await sign_up(api, email)
    assert payload["tokenType"] == "bearer"
    assert payload["expiresIn"] == 3600
    expected = started + dt.timedelta(seconds=3600)
    assert abs((when(payload["expiresAt"]) - expected).total_seconds()) < 30
    assert isinstance(payload["accessToken"], str) and payload["accessToken"].count(".") == 2
    assert isinstance(payload["refreshToken"], str) and len(payload["refreshToken"]) >= 32
    user = payload["user"]
    assert uuid.UUID(user["id"])
    assert user["email"] == email
    assert abs((when(user["createdAt"]) - started).total_seconds()) < 30
    assert user["lastSignInAt"] is not None


async def test_sign_up_trims_and_lower_cases_the_email(api: Api) -> None:
    local = f"Mixed.Case-{uuid.uuid4().hex[:8]}"
    payload = await sign_up(api, f"  \t{local}@Example.COM \n")
    assert payload["user"]["email"] == f"{local.lower()}@example.com"
    me = await api.ok("{ me { email } }", token=payload["accessToken"])
    assert me["me"]["email"] == f"{local.lower()}@example.com"


async def test_sign_up_of_an_existing_email_is_a_conflict(
    api: Api, admin: asyncpg.Connection
) -> None:
    email = fresh_email()
    await sign_up(api, email)
    for again in (email, email.upper(), f"  {email} ", f"{email[:1].upper()}{email[1:]}"):
        result = await api.gql(SIGN_UP, {"e": again, "p": "another password"})
        error = only_error(result)
        assert error["extensions"]["code"] == "CONFLICT", result
        assert "users_email_key" not in error["message"]
    count = await admin.fetchval("select count(*) from auth.users where lower(email) = $1", email)
    assert count == 1


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "plainaddress",
        "no-at-sign.example.com",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        "@example.com",
        "a@",
        "a@example..com",
        f"{'a' * 250}@example.com",
        "a\u0000b@example.com",  # PostgreSQL text cannot hold NUL
        "a@exam\u0000ple.com",
        "a\u0007@example.com",
    ],
)
async def test_an_invalid_email_is_bad_user_input_on_email(api: Api, email: str) -> None:
    error = only_error(await api.gql(SIGN_UP, {"e": email, "p": PASSWORD}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "email"}, error


@pytest.mark.parametrize("length", [0, 1, 7, 1025, 5000])
async def test_a_password_of_the_wrong_length_is_bad_user_input_on_password(
    api: Api, admin: asyncpg.Connection, length: int
) -> None:
    email = fresh_email()
    error = only_error(await api.gql(SIGN_UP, {"e": email, "p": "p" * length}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "password"}, error
    assert await admin.fetchval("select count(*) from auth.users where email = $1", email) == 0


@pytest.mark.parametrize("length", [8, 1024])
async def test_a_password_of_8_or_1024_characters_is_accepted(api: Api, length: int) -> None:
    email = fresh_email()
    password = ("pässwörd" * 200)[:length]
    await sign_up(api, email, password)
    data = await api.ok(SIGN_IN, {"e": email, "p": password})
    assert data["signIn"]["user"]["email"] == email


async def test_sign_in_ignores_case_and_surrounding_spaces_in_the_email(api: Api) -> None:
    email = fresh_email()
    signed_up = await sign_up(api, email)
    for variant in (email, email.upper(), f"  {email}\t"):
        data = await api.ok(SIGN_IN, {"e": variant, "p": PASSWORD})
        assert data["signIn"]["user"]["id"] == signed_up["user"]["id"]
        assert data["signIn"]["user"]["email"] == email
        assert data["signIn"]["tokenType"] == "bearer"


async def test_unknown_email_and_wrong_password_get_the_same_error(api: Api) -> None:
    email = fresh_email()
    await sign_up(api, email)
    wrong_password = only_error(await api.gql(SIGN_IN, {"e": email, "p": "not the password"}))
    unknown_email = only_error(await api.gql(SIGN_IN, {"e": fresh_email(), "p": PASSWORD}))
    malformed_email = only_error(await api.gql(SIGN_IN, {"e": "nonsense", "p": PASSWORD}))
    with_nul = only_error(await api.gql(SIGN_IN, {"e": f"\u0000{email}", "p": PASSWORD}))
    assert wrong_password["extensions"] == {"code": "UNAUTHENTICATED"}
    for other in (unknown_email, malformed_email, with_nul):
        assert other["message"] == wrong_password["message"]
        assert other["extensions"] == wrong_password["extensions"]
    assert email not in wrong_password["message"]


async def test_a_password_differing_only_in_case_is_wrong(api: Api) -> None:
    email = fresh_email()
    await sign_up(api, email)
    error = only_error(await api.gql(SIGN_IN, {"e": email, "p": PASSWORD.upper()}))
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_password_is_stored_as_an_argon2id_hash(
    api: Api, admin: asyncpg.Connection
) -> None:
    email = fresh_email()
    await sign_up(api, email)
    stored = await admin.fetchval(
        "select encrypted_password from auth.users where email = $1", email
    )
    assert stored.startswith("$argon2id$"), stored
    assert PASSWORD not in stored


USER_TABLES = """
select format('%I.%I', table_schema, table_name) as tbl,
       case when table_schema = 'auth' and table_name = 'users' then 'id' else 'user_id' end
         as owner
from information_schema.columns
where (table_schema = 'public' and column_name = 'user_id')
   or (table_schema = 'auth' and table_name = 'users' and column_name = 'id')
"""


async def everything_stored_for(admin: asyncpg.Connection, user_id: uuid.UUID) -> list[str]:
    """Every row of every table that holds the user's data, as JSON text (bytea as hex)."""
    texts: list[str] = []
    for table in await admin.fetch(USER_TABLES):
        rows = await admin.fetch(
            f"select row_to_json(t)::text as row from {table['tbl']} t where {table['owner']} = $1",
            user_id,
        )
        texts.extend(r["row"] for r in rows)
    return texts


async def test_the_refresh_token_is_not_stored_in_clear(
    api: Api, admin: asyncpg.Connection
) -> None:
    payload = await sign_up(api, fresh_email())
    refresh = payload["refreshToken"]
    user_id = uuid.UUID(payload["user"]["id"])
    stored = await everything_stored_for(admin, user_id)
    assert any(payload["user"]["email"] in row for row in stored)  # the dump does see the user
    secrets = [refresh, *(part for part in refresh.split(".") if len(part) >= 16)]
    for row in stored:
        for secret in secrets:
            assert secret not in row, row
            assert secret.encode().hex() not in row, row
    assert PASSWORD not in " ".join(stored)


async def test_me_without_a_token_is_null(api: Api) -> None:
    assert await api.gql("{ me { id email } }") == {"data": {"me": None}}


async def test_me_with_a_token_is_the_user(api: Api) -> None:
    email = fresh_email()
    payload = await sign_up(api, email)
    data = await api.ok("{ me { id email createdAt lastSignInAt } }", token=payload["accessToken"])
    assert data["me"] == payload["user"]


async def test_last_sign_in_at_moves_on_sign_in(api: Api) -> None:
    email = fresh_email()
    payload = await sign_up(api, email)
    first = when(payload["user"]["lastSignInAt"])
    signed_in = (await api.ok(SIGN_IN, {"e": email, "p": PASSWORD}))["signIn"]
    second = when(signed_in["user"]["lastSignInAt"])
    assert second > first
    assert signed_in["user"]["createdAt"] == payload["user"]["createdAt"]
    me = await api.ok("{ me { lastSignInAt } }", token=signed_in["accessToken"])
    assert when(me["me"]["lastSignInAt"]) == second
    # a failed attempt does not move it
    await api.gql(SIGN_IN, {"e": email, "p": "wrong password"})
    me = await api.ok("{ me { lastSignInAt } }", token=signed_in["accessToken"])
    assert when(me["me"]["lastSignInAt"]) == second


async def test_both_tokens_of_sign_in_work(api: Api) -> None:
    email = fresh_email()
    await sign_up(api, email)
    signed_in = (await api.ok(SIGN_IN, {"e": email, "p": PASSWORD}))["signIn"]
    data = await api.ok("{ me { email } labs { totalCount } }", token=signed_in["accessToken"])
    assert data == {"me": {"email": email}, "labs": {"totalCount": 0}}
    assert signed_in["refreshToken"]
    assert signed_in["expiresIn"] == 3600


async def test_a_failed_sign_up_writes_nothing(api: Api, admin: asyncpg.Connection) -> None:
    email = fresh_email()
    result = await api.gql(
        'mutation($e: String!) { ok: signUp(email: $e, password: "long enough") { tokenType }'
        ' bad: signUp(email: "nonsense", password: "long enough") { tokenType } }',
        {"e": email},
    )
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    assert result["data"] is None
    assert await admin.fetchval("select count(*) from auth.users where email = $1", email) == 0


async def test_unknown_email_and_wrong_password_take_about_the_same_time(
    settings: Settings,
) -> None:
    # argon2 costs enough here that skipping it for unknown emails would show plainly
    slow = replace(settings, argon2=Argon2Params(time_cost=2, memory_cost=32 * 1024, parallelism=1))
    async with serve(slow) as client:
        api = Api(client)
        user = await api.sign_up()
        query = (
            "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }"
        )

        async def timed(email: str) -> float:
            started = time.perf_counter()
            result = await api.gql(query, {"e": email, "p": "not the password"})
            elapsed = time.perf_counter() - started
            assert result["errors"][0]["message"] == "Invalid email or password"
            return elapsed

        for _ in range(3):  # warm both paths
            await timed(user.email)
            await timed("nobody@example.com")
        known, unknown = [], []
        for i in range(15):  # interleaved, so drift hits both alike
            known.append(await timed(user.email))
            unknown.append(await timed(f"nobody-{i}@example.com"))
    median_known, median_unknown = statistics.median(known), statistics.median(unknown)
    slower = max(median_known, median_unknown)
    assert abs(median_known - median_unknown) < 0.25 * slower + 0.003, (
        median_known,
        median_unknown,
    )
