"""Rate limits of sign-in, sign-up and password reset requests: counted in PostgreSQL, so they
hold across app instances; refused with RATE_LIMITED and an integer retryAfter.

The apps here have low limits and short delays of their own; each test counts from client
addresses of its own (random IPv6 /64s), so tests do not share counts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from scriptlabs.app import create_app
from scriptlabs.auth import ratelimit
from scriptlabs.auth.tokens import ANON
from scriptlabs.config import Settings, SettingsError
from scriptlabs.db.operation import Operation, Pool
from scriptlabs.db.pool import create_pool
from scriptlabs.errors import AppError
from tests.conftest import code, retry_after

SIGN_UP = "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { tokenType } }"
SIGN_IN = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }"
REQUEST_RESET = "mutation($e: String!) { requestPasswordReset(email: $e) }"
PASSWORD = "correct horse battery"
WRONG = "not the password"

# the 4th attempt for one email is refused, the 7th from one address, the 4th sign-up
LIMITS = {
    "rate_limit_signin_email": 4,
    "rate_limit_signin_ip": 7,
    "rate_limit_signin_window": 900,
    "rate_limit_signup_ip": 3,
    "rate_limit_reset_ip": 2,
    "rate_limit_slow_after": 2,
    "rate_limit_slow_base_ms": 5,
}


def fresh_email() -> str:
    return f"limit-{uuid.uuid4().hex[:12]}@example.com"


def fresh_address() -> str:
    """A client address in a /64 of its own (documentation prefix)."""
    return f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::7"


def fresh_ipv4() -> str:
    """An IPv4 client address (benchmarking range), most likely used by no other test."""
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


async def started(app: Starlette) -> AsyncIterator[Starlette]:
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def limited(settings: Settings) -> AsyncIterator[Starlette]:
    async for app in started(create_app(replace(settings, **LIMITS))):
        yield app


@pytest.fixture(scope="module")
async def limited_twin(settings: Settings) -> AsyncIterator[Starlette]:
    """A second instance of the same API over the same database (another worker)."""
    async for app in started(create_app(replace(settings, **LIMITS))):
        yield app


class Caller:
    """GraphQL from one client address."""

    def __init__(self, app: Starlette, address: str) -> None:
        transport = httpx.ASGITransport(app=app, client=(address, 123))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def gql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def sign_in(self, email: str, password: str) -> dict[str, Any]:
        return await self.gql(SIGN_IN, {"e": email, "p": password})

    async def sign_up(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        return await self.gql(SIGN_UP, {"e": email, "p": password})


async def new_user(app: Starlette) -> str:
    email = fresh_email()
    assert code(await Caller(app, fresh_address()).sign_up(email)) is None
    return email


async def test_the_first_failure_is_never_refused(limited: Starlette) -> None:
    caller = Caller(limited, fresh_address())
    assert code(await caller.sign_in(await new_user(limited), WRONG)) == "UNAUTHENTICATED"
    assert code(await caller.sign_in(fresh_email(), WRONG)) == "UNAUTHENTICATED"


async def test_failures_for_one_email_are_refused_even_with_the_right_password(
    limited: Starlette,
) -> None:
    email = await new_user(limited)
    caller = Caller(limited, fresh_address())
    for _ in range(3):
        assert code(await caller.sign_in(email, WRONG)) == "UNAUTHENTICATED"
    refused = await caller.sign_in(email, WRONG)
    assert 890 <= retry_after(refused) <= 900
    assert refused["data"] is None
    assert refused["errors"][0]["message"] == "Too many failed sign-ins; try again later"
    # the point of it: the right password is refused too, and so it is from elsewhere
    assert 890 <= retry_after(await caller.sign_in(email, PASSWORD)) <= 900
    elsewhere = Caller(limited, fresh_address())
    assert 890 <= retry_after(await elsewhere.sign_in(email, PASSWORD)) <= 900


async def test_an_unknown_email_is_limited_like_a_known_one(limited: Starlette) -> None:
    known, unknown = await new_user(limited), fresh_email()
    answers: dict[str, list[dict[str, Any]]] = {known: [], unknown: []}
    for email in (known, unknown):
        caller = Caller(limited, fresh_address())
        for _ in range(4):
            answers[email].append(await caller.sign_in(email, WRONG))
    for first, second in zip(answers[known], answers[unknown], strict=True):
        assert first["errors"][0]["message"] == second["errors"][0]["message"]
        assert set(first["errors"][0]["extensions"]) == set(second["errors"][0]["extensions"])
    assert [code(a) for a in answers[unknown]] == ["UNAUTHENTICATED"] * 3 + ["RATE_LIMITED"]


async def test_a_successful_sign_in_clears_the_emails_failures(limited: Starlette) -> None:
    email = await new_user(limited)
    caller = Caller(limited, fresh_address())
    for _ in range(2):
        assert code(await caller.sign_in(email, WRONG)) == "UNAUTHENTICATED"
    assert code(await caller.sign_in(email, PASSWORD)) is None
    for _ in range(3):
        assert code(await caller.sign_in(email, WRONG)) == "UNAUTHENTICATED"
    assert code(await caller.sign_in(email, WRONG)) == "RATE_LIMITED"


async def test_failures_from_one_address_are_refused_across_emails(limited: Starlette) -> None:
    address = fresh_address()
    caller = Caller(limited, address)
    for _ in range(6):
        assert code(await caller.sign_in(fresh_email(), WRONG)) == "UNAUTHENTICATED"
    email = await new_user(limited)
    assert 890 <= retry_after(await caller.sign_in(email, PASSWORD)) <= 900
    # another address is not concerned, and an address in the same /64 is the same client
    assert code(await Caller(limited, fresh_address()).sign_in(email, PASSWORD)) is None
    neighbour = address.replace("::7", "::8")
    assert code(await Caller(limited, neighbour).sign_in(email, PASSWORD)) == "RATE_LIMITED"


async def test_successful_sign_ins_do_not_count_against_the_address(limited: Starlette) -> None:
    email = await new_user(limited)
    caller = Caller(limited, fresh_address())
    for _ in range(8):
        assert code(await caller.sign_in(email, PASSWORD)) is None


async def test_failures_leave_the_window_and_retry_after_says_when(
    limited: Starlette, admin: asyncpg.Connection
) -> None:
    email = await new_user(limited)
    caller = Caller(limited, fresh_address())
    for _ in range(3):
        await caller.sign_in(email, WRONG)
    key = ratelimit.email_key(email)
    await admin.execute(
        "update scriptlabs_private.auth_attempts set at = at - interval '10 minutes'"
        " where kind = 'signin_email' and key = $1",
        key,
    )
    # refused until the oldest failure is 15 minutes old: 5 minutes from now
    assert 295 <= retry_after(await caller.sign_in(email, PASSWORD)) <= 300
    await admin.execute(
        "update scriptlabs_private.auth_attempts set at = at - interval '6 minutes'"
        " where kind = 'signin_email' and key = $1",
        key,
    )
    assert code(await caller.sign_in(email, PASSWORD)) is None


async def test_the_limits_hold_across_app_instances(
    limited: Starlette, limited_twin: Starlette
) -> None:
    email, address = await new_user(limited), fresh_address()
    assert code(await Caller(limited, address).sign_in(email, WRONG)) == "UNAUTHENTICATED"
    assert code(await Caller(limited_twin, address).sign_in(email, WRONG)) == "UNAUTHENTICATED"
    assert code(await Caller(limited, address).sign_in(email, WRONG)) == "UNAUTHENTICATED"
    assert code(await Caller(limited_twin, address).sign_in(email, PASSWORD)) == "RATE_LIMITED"


async def test_parallel_failures_cannot_slip_under_the_limit(limited: Starlette) -> None:
    email = await new_user(limited)
    callers = [Caller(limited, fresh_address()) for _ in range(8)]
    results = await asyncio.gather(*(c.sign_in(email, WRONG) for c in callers))
    assert sorted(code(r) or "" for r in results) == ["RATE_LIMITED"] * 5 + ["UNAUTHENTICATED"] * 3


async def test_slowing_is_bounded(settings: Settings, admin: asyncpg.Connection) -> None:
    """Nine failures on record: the next attempt would wait 256 s uncapped, and each of three
    in one operation as long; the whole answer comes within 5 s."""
    slow = replace(
        settings,
        rate_limit_signin_email=20,
        rate_limit_slow_after=2,
        rate_limit_slow_base_ms=1000,
    )
    async for app in started(create_app(slow)):
        email = await new_user(app)
        await admin.execute(
            "insert into scriptlabs_private.auth_attempts (kind, key)"
            " select 'signin_email', $1 from generate_series(1, 9)",
            ratelimit.email_key(email),
        )
        caller = Caller(app, fresh_address())
        three = (
            "mutation($e: String!, $p: String!) {"
            " a: signIn(email: $e, password: $p) { accessToken }"
            " b: signIn(email: $e, password: $p) { accessToken }"
            " c: signIn(email: $e, password: $p) { accessToken } }"
        )
        begun = time.monotonic()
        result = await asyncio.wait_for(caller.gql(three, {"e": email, "p": PASSWORD}), 10)
        elapsed = time.monotonic() - begun
    assert "errors" not in result, result
    assert ratelimit.MAX_DELAY <= elapsed < 5.0, elapsed


def test_the_delay_grows_from_the_slowing_threshold_and_is_capped() -> None:
    default = Settings()
    delays = [ratelimit.slowing_delay(default, n) for n in range(1, 30)]
    assert delays[:8] == [0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert max(delays) == ratelimit.MAX_DELAY < 5
    off = replace(default, rate_limit_slow_after=0)
    assert {ratelimit.slowing_delay(off, n) for n in range(1, 30)} == {0.0}


async def test_sign_ups_per_address_are_limited(limited: Starlette) -> None:
    caller = Caller(limited, fresh_address())
    existing = await new_user(limited)
    assert code(await caller.sign_up("not an email")) == "BAD_USER_INPUT"  # not counted
    assert code(await caller.sign_up(fresh_email())) is None
    assert code(await caller.sign_up(existing)) == "CONFLICT"  # counted too
    assert code(await caller.sign_up(fresh_email())) is None
    refused = await caller.sign_up(fresh_email())
    assert 3590 <= retry_after(refused) <= 3600
    assert code(await Caller(limited, fresh_address()).sign_up(fresh_email())) is None


async def test_reset_requests_per_address_are_limited(limited: Starlette) -> None:
    caller = Caller(limited, fresh_ipv4())
    for _ in range(2):
        assert await caller.gql(REQUEST_RESET, {"e": fresh_email()}) == {
            "data": {"requestPasswordReset": True}
        }
    refused = await caller.gql(REQUEST_RESET, {"e": fresh_email()})
    assert 3590 <= retry_after(refused) <= 3600
    other = await Caller(limited, fresh_ipv4()).gql(REQUEST_RESET, {"e": fresh_email()})
    assert other == {"data": {"requestPasswordReset": True}}


async def test_requests_without_a_client_address_are_limited_by_email_only(
    settings: Settings,
) -> None:
    limits = replace(settings, **LIMITS)
    pool = Pool(await create_pool(limits), 2, 10.0, 5000)
    try:
        op = Operation(
            pool, role="anon", claims_json=ANON.json, user_id=None, session_id=None, readonly=False
        )
        for _ in range(5):
            await ratelimit.check_sign_up(op, limits, None)
            await ratelimit.check_reset_request(op, limits, None)
        email = fresh_email()
        for _ in range(3):
            await ratelimit.check_sign_in(op, limits, email, None)
        with pytest.raises(AppError) as refused:
            await ratelimit.check_sign_in(op, limits, email, None)
        assert refused.value.extensions["code"] == "RATE_LIMITED"
    finally:
        await pool.close()


async def test_keys_are_digests_and_no_email_is_stored_in_clear(
    limited: Starlette, admin: asyncpg.Connection
) -> None:
    email = fresh_email()
    await Caller(limited, fresh_address()).sign_in(email.upper(), WRONG)
    digest = hashlib.sha256(email.encode()).digest()
    rows = await admin.fetch(
        "select kind from scriptlabs_private.auth_attempts where key = $1", digest
    )
    assert [r["kind"] for r in rows] == ["signin_email"]
    stored = await admin.fetchval(
        "select count(*) from scriptlabs_private.auth_attempts"
        " where position(convert_to($1, 'UTF8') in key) > 0",
        email.split("@")[0],
    )
    assert stored == 0


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role"])
async def test_request_roles_can_neither_read_nor_call_the_rate_limits(
    admin: asyncpg.Connection, role: str
) -> None:
    statements = [
        "select count(*) from scriptlabs_private.auth_attempts",
        "select scriptlabs_private.prune_attempts()",
        "select scriptlabs_private.clear_attempts('signin_email', ''::bytea)",
        "select * from scriptlabs_private.take_attempt('{}', '{}', '{}', 60)",
    ]
    for statement in statements:
        async with admin.transaction():
            await admin.execute("select set_config('role', $1, true)", role)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await admin.execute(statement)


async def test_the_login_role_reaches_the_table_only_through_the_functions(
    settings: Settings,
) -> None:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("select * from scriptlabs_private.auth_attempts")
        assert await conn.fetchval("select scriptlabs_private.prune_attempts()") >= 0
    finally:
        await conn.close()


def test_settings_of_the_rate_limits() -> None:
    settings = Settings.from_env({})
    assert (
        settings.rate_limit_signin_email,
        settings.rate_limit_signin_ip,
        settings.rate_limit_signin_window,
        settings.rate_limit_signup_ip,
        settings.rate_limit_reset_ip,
        settings.rate_limit_slow_after,
    ) == (10, 20, 900, 10, 5, 3)
    assert Settings.from_env({"RATE_LIMIT_SIGNIN_IP": "0"}).rate_limit_signin_ip == 0
    built = Settings()  # the same defaults when built in code
    assert (
        built.rate_limit_signin_email,
        built.rate_limit_signin_ip,
        built.rate_limit_signup_ip,
        built.rate_limit_reset_ip,
    ) == (10, 20, 10, 5)
    for bad in ({"RATE_LIMIT_SIGNIN_EMAIL": "1"}, {"RATE_LIMIT_SIGNIN_WINDOW": "90000"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)
