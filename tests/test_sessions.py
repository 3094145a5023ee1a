"""Sessions: refresh rotation and reuse detection, sign-out and revocation that take effect
on the next request, the sessions list, password change."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from ipaddress import ip_network

import asyncpg
import httpx
import jwt
import pytest

from scriptlabs.config import Settings
from tests.conftest import JWT_SECRET, Api, User, error_codes, serve

REFRESH = (
    "mutation($t: String!) { refreshSession(refreshToken: $t) {"
    " accessToken refreshToken tokenType user { id } } }"
)
SESSIONS = "{ sessions { id current userAgent ipAddress createdAt lastActivity expiresAt } }"


def session_id(token: str) -> str:
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    return str(claims["session_id"])


async def sign_in(api: Api, user: User, agent: str = "test-agent") -> tuple[str, str]:
    response = await api.client.post(
        "/graphql",
        json={
            "query": "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p)"
            " { accessToken refreshToken } }",
            "variables": {"e": user.email, "p": user.password},
        },
        headers={"user-agent": agent},
    )
    payload = response.json()["data"]["signIn"]
    return payload["accessToken"], payload["refreshToken"]


async def status_of(api: Api, token: str) -> int:
    response = await api.post("{ me { id } }", token=token)
    return response.status_code


async def test_refresh_rotates_and_the_new_pair_works(api: Api, admin: asyncpg.Connection) -> None:
    user = await api.sign_up()
    before = await admin.fetchval(
        "select last_activity from public.user_sessions where id = $1",
        uuid.UUID(session_id(user.token)),
    )
    data = await api.ok(REFRESH, {"t": user.refresh_token})
    pair = data["refreshSession"]
    assert pair["tokenType"] == "bearer"
    assert pair["user"]["id"] == user.id
    assert pair["refreshToken"] != user.refresh_token
    assert session_id(pair["accessToken"]) == session_id(user.token)
    assert await status_of(api, pair["accessToken"]) == 200
    after = await admin.fetchval(
        "select last_activity from public.user_sessions where id = $1",
        uuid.UUID(session_id(user.token)),
    )
    assert after > before
    again = await api.ok(REFRESH, {"t": pair["refreshToken"]})
    assert again["refreshSession"]["refreshToken"] not in (pair["refreshToken"], user.refresh_token)


async def test_a_replay_within_the_reuse_interval_gets_a_working_pair(api: Api) -> None:
    user = await api.sign_up()
    first = (await api.ok(REFRESH, {"t": user.refresh_token}))["refreshSession"]
    second = (await api.ok(REFRESH, {"t": user.refresh_token}))["refreshSession"]
    assert session_id(second["accessToken"]) == session_id(user.token)
    # both racing clients keep a working refresh token
    assert (await api.gql(REFRESH, {"t": first["refreshToken"]})).get("errors") is None
    assert (await api.gql(REFRESH, {"t": second["refreshToken"]})).get("errors") is None


async def test_a_replay_after_the_reuse_interval_revokes_the_whole_session(
    api: Api, admin: asyncpg.Connection
) -> None:
    user = await api.sign_up()
    pair = (await api.ok(REFRESH, {"t": user.refresh_token}))["refreshSession"]
    await admin.execute(
        "update public.refresh_tokens set rotated_at = rotated_at - interval '11 seconds'"
        " where user_id = $1 and rotated_at is not null",
        uuid.UUID(user.id),
    )
    replay = await api.gql(REFRESH, {"t": user.refresh_token})
    assert error_codes(replay) == ["UNAUTHENTICATED"]
    revoked = await admin.fetchval(
        "select revoked_at from public.user_sessions where id = $1",
        uuid.UUID(session_id(user.token)),
    )
    assert revoked is not None  # written in its own transaction: it outlived the refusal
    assert error_codes(await api.gql(REFRESH, {"t": pair["refreshToken"]})) == ["UNAUTHENTICATED"]
    assert await status_of(api, pair["accessToken"]) == 401


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "AAAA.secret", f"{'A' * 43}.secret", "x" * 5000],
)
async def test_an_unknown_refresh_token_is_unauthenticated(api: Api, token: str) -> None:
    assert error_codes(await api.gql(REFRESH, {"t": token})) == ["UNAUTHENTICATED"]


async def test_a_forged_secret_for_a_real_session_is_refused(api: Api) -> None:
    user = await api.sign_up()
    key = user.refresh_token.split(".")[0]
    assert error_codes(await api.gql(REFRESH, {"t": f"{key}.not-the-secret"})) == [
        "UNAUTHENTICATED"
    ]
    assert await status_of(api, user.token) == 200  # a guess does not end the session


async def test_an_expired_session_refuses_its_tokens(api: Api, admin: asyncpg.Connection) -> None:
    user = await api.sign_up()
    await admin.execute(
        "update public.user_sessions set expires_at = now() - interval '1 second' where id = $1",
        uuid.UUID(session_id(user.token)),
    )
    assert error_codes(await api.gql(REFRESH, {"t": user.refresh_token})) == ["UNAUTHENTICATED"]
    assert await status_of(api, user.token) == 401


async def test_sign_out_local_ends_this_session_only_at_the_next_request(api: Api) -> None:
    user = await api.sign_up()
    other_access, other_refresh = await sign_in(api, user)
    assert await status_of(api, user.token) == 200
    assert (await api.ok("mutation { signOut }", token=user.token))["signOut"] is True
    response = await api.post("{ labs { totalCount } }", token=user.token)
    assert response.status_code == 401
    assert response.json() == {
        "errors": [{"message": "This session has ended", "extensions": {"code": "UNAUTHENTICATED"}}]
    }
    assert error_codes(await api.gql(REFRESH, {"t": user.refresh_token})) == ["UNAUTHENTICATED"]
    assert await status_of(api, other_access) == 200
    assert (await api.gql(REFRESH, {"t": other_refresh})).get("errors") is None


async def test_sign_out_global_ends_every_session(api: Api) -> None:
    user = await api.sign_up()
    other_access, other_refresh = await sign_in(api, user)
    await api.ok("mutation { signOut(scope: GLOBAL) }", token=user.token)
    assert await status_of(api, user.token) == 401
    assert await status_of(api, other_access) == 401
    assert error_codes(await api.gql(REFRESH, {"t": other_refresh})) == ["UNAUTHENTICATED"]


async def test_sign_out_others_keeps_this_session(api: Api) -> None:
    user = await api.sign_up()
    other_access, _ = await sign_in(api, user)
    await api.ok("mutation { signOut(scope: OTHERS) }", token=user.token)
    assert await status_of(api, user.token) == 200
    assert await status_of(api, other_access) == 401


async def test_sign_out_does_not_touch_another_users_sessions(api: Api) -> None:
    alice, bob = await api.sign_up(), await api.sign_up()
    await api.ok("mutation { signOut(scope: GLOBAL) }", token=alice.token)
    assert await status_of(api, bob.token) == 200


async def test_revoke_session_ends_that_sessions_tokens(api: Api) -> None:
    user = await api.sign_up()
    other_access, other_refresh = await sign_in(api, user)
    revoked = await api.ok(
        "mutation($id: UUID!) { revokeSession(id: $id) }",
        {"id": session_id(other_access)},
        token=user.token,
    )
    assert revoked["revokeSession"] is True
    assert await status_of(api, other_access) == 401
    assert error_codes(await api.gql(REFRESH, {"t": other_refresh})) == ["UNAUTHENTICATED"]
    assert await status_of(api, user.token) == 200


async def test_revoking_another_users_session_is_not_found(api: Api) -> None:
    alice, bob = await api.sign_up(), await api.sign_up()
    for target in (session_id(bob.token), str(uuid.uuid4())):
        result = await api.gql(
            "mutation($id: UUID!) { revokeSession(id: $id) }", {"id": target}, token=alice.token
        )
        assert error_codes(result) == ["NOT_FOUND"]
        assert result["errors"][0]["message"] == "Session not found"
    assert await status_of(api, bob.token) == 200


async def test_sessions_lists_live_sessions_with_the_current_one_marked(api: Api) -> None:
    user = await api.sign_up()
    other_access, _ = await sign_in(api, user, agent="phone/1.0")
    third_access, _ = await sign_in(api, user, agent="tablet/2.0")
    await api.ok("mutation { signOut }", token=third_access)
    sessions = (await api.ok(SESSIONS, token=other_access))["sessions"]
    assert {s["id"] for s in sessions} == {session_id(user.token), session_id(other_access)}
    current = [s for s in sessions if s["current"]]
    assert [s["id"] for s in current] == [session_id(other_access)]
    assert current[0]["userAgent"] == "phone/1.0"
    assert current[0]["ipAddress"] == "127.0.0.1"
    assert current[0]["expiresAt"] > current[0]["lastActivity"]


async def test_sessions_of_another_user_are_never_listed(api: Api) -> None:
    alice, bob = await api.sign_up(), await api.sign_up()
    listed = (await api.ok(SESSIONS, token=alice.token))["sessions"]
    assert session_id(bob.token) not in {s["id"] for s in listed}


async def test_sessions_without_a_token_is_unauthenticated(api: Api) -> None:
    assert error_codes(await api.gql(SESSIONS)) == ["UNAUTHENTICATED"]


CHANGE = (
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }"
)


async def test_change_password_keeps_this_session_and_ends_the_others(api: Api) -> None:
    user = await api.sign_up()
    other_access, other_refresh = await sign_in(api, user)
    changed = await api.ok(
        CHANGE, {"c": user.password, "n": "a new long password"}, token=user.token
    )
    assert changed["changePassword"] is True
    assert await status_of(api, user.token) == 200
    assert (await api.gql(REFRESH, {"t": user.refresh_token})).get("errors") is None
    assert await status_of(api, other_access) == 401
    assert error_codes(await api.gql(REFRESH, {"t": other_refresh})) == ["UNAUTHENTICATED"]
    sign_in_query = (
        "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }"
    )
    old = await api.gql(sign_in_query, {"e": user.email, "p": user.password})
    assert error_codes(old) == ["UNAUTHENTICATED"]
    await api.ok(sign_in_query, {"e": user.email, "p": "a new long password"})


async def test_change_password_with_a_wrong_current_password_changes_nothing(api: Api) -> None:
    user = await api.sign_up()
    other_access, _ = await sign_in(api, user)
    result = await api.gql(
        CHANGE, {"c": "not my password", "n": "another password"}, token=user.token
    )
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["field"] == "currentPassword"
    assert await status_of(api, other_access) == 200


async def test_change_password_checks_the_new_password(api: Api) -> None:
    user = await api.sign_up()
    result = await api.gql(CHANGE, {"c": user.password, "n": "short"}, token=user.token)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["field"] == "newPassword"


async def test_a_token_without_a_session_is_accepted_until_it_expires(api: Api) -> None:
    user = await api.sign_up()
    now = int(time.time())
    foreign = jwt.encode(
        {
            "sub": user.id,
            "role": "authenticated",
            "aud": "authenticated",
            "exp": now + 60,
            "iat": now,
            "email": user.email,
        },
        JWT_SECRET,
        algorithm="HS256",
    )
    await api.ok("mutation { signOut(scope: GLOBAL) }", token=user.token)
    assert (await api.ok("{ me { id } }", token=foreign))["me"]["id"] == user.id


@pytest.fixture(scope="module")
async def proxied(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(replace(settings, trusted_proxies=(ip_network("127.0.0.0/8"),))) as c:
        yield c


async def test_session_address_honours_trusted_proxies(
    api: Api, proxied: httpx.AsyncClient
) -> None:
    user = await api.sign_up()
    response = await proxied.post(
        "/graphql",
        json={
            "query": "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p)"
            " { accessToken } }",
            "variables": {"e": user.email, "p": user.password},
        },
        headers={"x-forwarded-for": "198.51.100.4, 203.0.113.9, 127.0.0.2"},
    )
    token = response.json()["data"]["signIn"]["accessToken"]
    sessions = (await Api(proxied).ok(SESSIONS, token=token))["sessions"]
    current = next(s for s in sessions if s["current"])
    # the last hop not in TRUSTED_PROXIES is the client
    assert current["ipAddress"] == "203.0.113.9"
    # without trusted proxies the header is ignored
    untrusted = await api.client.post(
        "/graphql",
        json={"query": SESSIONS},
        headers={"authorization": f"Bearer {token}", "x-forwarded-for": "192.0.2.1"},
    )
    assert all(s["ipAddress"] != "192.0.2.1" for s in untrusted.json()["data"]["sessions"])
