"""One connection per operation (contract, Errors: load and abuse).

Apps with a pool of one or a few connections and the auth rate limits on take storms of
concurrent sign-ins, sign-ups, reset requests and refreshes, all carrying a session token;
every answer is the expected one, none is an internal error or an HTTP 5xx, and meanwhile
another user's queries and the readiness check keep answering. With a pool of one
connection, any flow that waited for a second connection while holding one, or held one
while argon2 ran or a slowed sign-in slept, would stall everything behind it.

Each test counts from client addresses of its own, so rate limit counts are not shared."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from scriptlabs.app import create_app
from scriptlabs.auth.passwords import Passwords
from scriptlabs.auth.reset import ResetToken
from scriptlabs.config import Argon2Params, Settings
from tests.conftest import code, retry_after

PASSWORD = "correct horse battery"
WRONG = "not the password"

SIGN_UP = "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { accessToken } }"
SIGN_IN = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }"
SIGN_UP_FULL = (
    "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p)"
    " { accessToken refreshToken } }"
)
REFRESH = "mutation($t: String!) { refreshSession(refreshToken: $t) { refreshToken } }"
REQUEST_RESET = "mutation($e: String!) { requestPasswordReset(email: $e) }"
RESET = (
    "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p)"
    " { accessToken } }"
)
CHANGE = (
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }"
)
CREATE_LAB = 'mutation { createLab(input: {title: "Dune", author: "Herbert"}) { id } }'
LABS = "{ labs { nodes { id } } }"

# the 4th sign-in attempt for one email is refused; the address limits are on, and set so
# that each storm's expected answers can be counted exactly
LIMITS: dict[str, Any] = {
    "rate_limit_signin_email": 4,
    "rate_limit_signin_ip": 200,
    "rate_limit_signin_window": 900,
    "rate_limit_slow_after": 2,
    "rate_limit_slow_base_ms": 100,
    "refresh_reuse_interval": 0,  # every replay is taken for a stolen token
}


def fresh_email() -> str:
    return f"pool-{uuid.uuid4().hex[:12]}@example.com"


def fresh_address() -> str:
    """A client address in a /64 of its own (documentation prefix)."""
    return f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::9"


class Caller:
    """HTTP to one app from one client address, optionally with a bearer token."""

    def __init__(self, app: Starlette, address: str | None = None) -> None:
        transport = httpx.ASGITransport(app=app, client=(address or fresh_address(), 123))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body: dict[str, Any] = {"query": query, "variables": variables or {}}
        response = await self.client.post("/graphql", json=body, headers=headers)
        assert response.status_code == 200, (response.status_code, response.text)
        result: dict[str, Any] = response.json()
        return result

    async def sign_up(self) -> tuple[str, str, str]:
        """A new user: email, access token, refresh token."""
        email = fresh_email()
        result = await self.gql(SIGN_UP_FULL, {"e": email, "p": PASSWORD})
        assert "errors" not in result, result
        payload = result["data"]["signUp"]
        return email, payload["accessToken"], payload["refreshToken"]


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def keep_answering(
    check: Callable[[], Awaitable[None]], stop: asyncio.Event, bound: float = 5.0
) -> int:
    """Run `check` again and again until `stop`; each must complete within `bound` seconds."""
    count = 0
    while not stop.is_set():
        await asyncio.wait_for(check(), bound)
        count += 1
        await asyncio.sleep(0.02)
    return count


@pytest.mark.parametrize("pool_size", [1, 3])
async def test_a_storm_of_auth_requests_with_a_token_starves_no_one(
    settings: Settings, pool_size: int
) -> None:
    k = 3 * pool_size  # requests of each kind
    limits = replace(
        small(settings),
        db_pool_max=pool_size,
        rate_limit_signup_ip=k // 2 + 1,
        rate_limit_reset_ip=k // 2 + 1,
    )
    async with started(limits) as app:
        # each user signs up from an address of its own: sign-ups are limited per address
        _, storm_token, _ = await Caller(app).sign_up()
        victim, _, _ = await Caller(app).sign_up()
        signing_in = [(await Caller(app).sign_up())[0] for _ in range(k)]
        refreshing = [(await Caller(app).sign_up())[2] for _ in range(k)]
        _, reader_token, _ = await Caller(app).sign_up()
        setup = Caller(app)
        lab = (await setup.gql(CREATE_LAB, token=reader_token))["data"]["createLab"]

        storm = Caller(app)  # one client, one address, one session token
        reader = Caller(app)

        async def read_labs() -> None:
            result = await reader.gql(LABS, token=reader_token)
            assert result == {"data": {"labs": {"nodes": [lab]}}}, result

        async def ready() -> None:
            response = await reader.client.get("/health/ready")
            assert response.status_code == 200, response.text

        def send(query: str, variables: dict[str, Any]) -> Awaitable[dict[str, Any]]:
            return storm.gql(query, variables, token=storm_token)

        kinds: dict[str, list[Awaitable[dict[str, Any]]]] = {
            "wrong sign-in": [send(SIGN_IN, {"e": victim, "p": WRONG}) for _ in range(k)],
            "sign-in": [send(SIGN_IN, {"e": e, "p": PASSWORD}) for e in signing_in],
            "sign-up": [send(SIGN_UP, {"e": fresh_email(), "p": PASSWORD}) for _ in range(k)],
            "reset request": [send(REQUEST_RESET, {"e": fresh_email()}) for _ in range(k)],
            # each refresh token twice at once: one rotation, one replay
            "refresh": [send(REFRESH, {"t": t}) for t in refreshing for _ in range(2)],
            "garbage refresh": [send(REFRESH, {"t": f"garbage-{i}"}) for i in range(k)],
        }
        stop = asyncio.Event()
        watchers = [
            asyncio.create_task(keep_answering(read_labs, stop)),
            asyncio.create_task(keep_answering(ready, stop)),
        ]
        try:
            flat = [(kind, call) for kind, calls in kinds.items() for call in calls]
            answers = await asyncio.wait_for(asyncio.gather(*(c for _, c in flat)), 60)
        finally:
            stop.set()
            reads, checks = await asyncio.gather(*watchers)
        assert reads >= 1 and checks >= 1

        got: dict[str, Counter[str | None]] = {kind: Counter() for kind in kinds}
        for (kind, _), answer in zip(flat, answers, strict=True):
            got[kind][code(answer)] += 1
            if code(answer) == "RATE_LIMITED":
                retry_after(answer)
        refused_at = LIMITS["rate_limit_signin_email"]
        allowed = k // 2 + 1
        assert got == {
            "wrong sign-in": Counter(
                {"UNAUTHENTICATED": min(k, refused_at - 1), "RATE_LIMITED": k - refused_at + 1}
            )
            - Counter(),
            "sign-in": Counter({None: k}),
            "sign-up": Counter({None: allowed, "RATE_LIMITED": k - allowed}) - Counter(),
            "reset request": Counter({None: allowed, "RATE_LIMITED": k - allowed}) - Counter(),
            "refresh": Counter({None: k, "UNAUTHENTICATED": k}),
            "garbage refresh": Counter({"UNAUTHENTICATED": k}),
        }

        # every replay revoked its session once the operation was over: the rotated tokens
        # of those sessions no longer work
        rotated = [
            a["data"]["refreshSession"]["refreshToken"]
            for (kind, _), a in zip(flat, answers, strict=True)
            if kind == "refresh" and code(a) is None
        ]
        for token in rotated:
            assert code(await setup.gql(REFRESH, {"t": token})) == "UNAUTHENTICATED"
        # and the storm's own session is still fine
        assert code(await storm.gql(LABS, token=storm_token)) is None


def small(settings: Settings, **changes: Any) -> Settings:
    """`settings` with a pool of two connections and the limits on."""
    return replace(settings, db_pool_min=1, db_pool_max=2, **(LIMITS | changes))


@pytest.fixture(scope="module")
async def limited(settings: Settings) -> AsyncIterator[Starlette]:
    async with started(small(settings)) as app:
        yield app


async def test_a_wrong_current_password_counts_as_a_failed_sign_in(limited: Starlette) -> None:
    caller = Caller(limited)
    email, token, _ = await caller.sign_up()
    for _ in range(LIMITS["rate_limit_signin_email"] - 1):
        result = await caller.gql(CHANGE, {"c": WRONG, "n": "a new long password"}, token=token)
        assert result["errors"][0]["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": "currentPassword",
        }
    refused = await caller.gql(CHANGE, {"c": WRONG, "n": "a new long password"}, token=token)
    assert 890 <= retry_after(refused) <= 900
    assert refused["data"] is None
    # the account is locked for sign-ins too, and for the right password, from anywhere
    right = await caller.gql(CHANGE, {"c": PASSWORD, "n": "a new long password"}, token=token)
    assert code(right) == "RATE_LIMITED"
    elsewhere = await Caller(limited).gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert code(elsewhere) == "RATE_LIMITED"
    # nothing changed: the session still works
    assert code(await caller.gql(LABS, token=token)) is None


async def test_failed_sign_ins_count_against_a_password_change(limited: Starlette) -> None:
    caller = Caller(limited)
    email, token, _ = await caller.sign_up()
    for _ in range(LIMITS["rate_limit_signin_email"] - 1):
        assert code(await Caller(limited).gql(SIGN_IN, {"e": email, "p": WRONG})) is not None
    right = await caller.gql(CHANGE, {"c": PASSWORD, "n": "a new long password"}, token=token)
    assert code(right) == "RATE_LIMITED"


async def test_a_successful_password_change_clears_the_failures(limited: Starlette) -> None:
    caller = Caller(limited)
    _, token, _ = await caller.sign_up()
    new = "a new long password"
    for _ in range(2):
        assert code(await caller.gql(CHANGE, {"c": WRONG, "n": new}, token=token)) == (
            "BAD_USER_INPUT"
        )
    assert await caller.gql(CHANGE, {"c": PASSWORD, "n": new}, token=token) == {
        "data": {"changePassword": True}
    }
    for _ in range(LIMITS["rate_limit_signin_email"] - 1):
        assert code(await caller.gql(CHANGE, {"c": WRONG, "n": new}, token=token)) == (
            "BAD_USER_INPUT"
        )
    assert code(await caller.gql(CHANGE, {"c": new, "n": PASSWORD}, token=token)) == (
        "RATE_LIMITED"
    )


async def test_wrong_current_passwords_are_slowed(settings: Settings) -> None:
    base_ms = 400
    async with started(small(settings, rate_limit_slow_base_ms=base_ms)) as app:
        caller = Caller(app)
        _, token, _ = await caller.sign_up()
        times = []
        for _ in range(2):
            begun = time.monotonic()
            result = await caller.gql(CHANGE, {"c": WRONG, "n": "a new password"}, token=token)
            times.append(time.monotonic() - begun)
            assert code(result) == "BAD_USER_INPUT"
        # the second attempt is the first slowed one (rate_limit_slow_after = 2)
        assert times[1] >= base_ms / 1000, times


async def test_a_reset_token_that_does_not_exist_is_refused_before_hashing(
    settings: Settings,
) -> None:
    # argon2 made expensive, so that a hash would show plainly in the answer's time
    costly = Argon2Params(time_cost=12, memory_cost=128 * 1024, parallelism=1)
    passwords = Passwords(costly)
    begun = time.monotonic()
    await passwords.hash(PASSWORD)
    one_hash = time.monotonic() - begun
    assert one_hash > 0.3, "argon2 too fast here to tell a hash from none"
    async with started(replace(settings, argon2=costly)) as app:
        caller = Caller(app)
        _, token, _ = await caller.sign_up()
        unknown = ResetToken.new(uuid.uuid4()).value
        for value in (unknown, "not a token"):
            begun = time.monotonic()
            result = await caller.gql(RESET, {"t": value, "p": "a new long password"}, token=token)
            elapsed = time.monotonic() - begun
            assert result["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "token"}
            assert elapsed < one_hash / 2, (elapsed, one_hash)
