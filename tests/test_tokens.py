"""Access tokens: what is refused (HTTP 401, the contract's body) and what is accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.conftest import JWT_SECRET, Api, User

ME = "{ me { id email } }"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hand_made(
    header: dict[str, Any], payload: dict[str, Any], key: bytes | None, digest: str = "sha256"
) -> str:
    """A JWT put together by hand: an HMAC over header.payload with `key`, or unsigned."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    if key is None:
        return f"{signing_input}."
    signature = hmac.new(key, signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{b64url(signature)}"


def supabase_claims(user_id: str, **changes: Any) -> dict[str, Any]:
    """The claims a Supabase-style issuer sharing the secret would sign (no session_id)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 600,
        "email": "someone@example.com",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], key: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def assert_refused(response: httpx.Response) -> None:
    """HTTP 401, body {"errors":[{"message":..., "extensions":{"code":"UNAUTHENTICATED"}}]}."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert set(error) == {"message", "extensions"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}


async def send(api: Api, header: str, query: str = ME) -> httpx.Response:
    return await api.post(query, headers={"authorization": header})


def _bad_tokens(user: User) -> dict[str, str]:
    real = user.token
    head, payload, signature = real.split(".")
    claims = jwt.decode(real, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    other = str(uuid.uuid4())
    tampered = segment({**claims, "sub": other})
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT"}
    secret = JWT_SECRET.encode()
    return {
        "alg none": hand_made({"alg": "none", "typ": "JWT"}, claims, None),
        "alg None": hand_made({"alg": "None", "typ": "JWT"}, claims, None),
        "alg none with the real signature": (
            f"{segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}"
        ),
        "wrong key": sign(claims, "another-secret-that-is-long-enough-0123456789abcdef"),
        "expired": sign({**claims, "iat": now - 7200, "exp": now - 60}),
        "wrong audience": sign({**claims, "aud": "someone-else"}),
        "no audience": sign({k: v for k, v in claims.items() if k != "aud"}),
        "no exp": sign({k: v for k, v in claims.items() if k != "exp"}),
        "tampered payload": f"{head}.{tampered}.{signature}",
        "HS512": hand_made({"alg": "HS512", "typ": "JWT"}, claims, secret, "sha512"),
        "HS384": hand_made({"alg": "HS384", "typ": "JWT"}, claims, secret, "sha384"),
        "RS256 label, HMAC signature": hand_made(
            {"alg": "RS256", "typ": "JWT"}, claims, JWT_SECRET.encode()
        ),
        "signature dropped": f"{head}.{payload}.",
        "two segments": f"{head}.{payload}",
        "garbage": "garbage",
        "garbage with dots": "a.b.c",
        "role postgres": sign({**claims, "role": "postgres"}),
        "no role": sign({k: v for k, v in claims.items() if k != "role"}),
        "authenticated without sub": sign({k: v for k, v in claims.items() if k != "sub"}),
        "sub not a uuid": sign({**claims, "sub": "1 or 1=1"}),
        "session_id not a uuid": sign({**claims, "session_id": "x"}),
        "hand-made HS256 with the wrong key": hand_made(hs256, claims, b"wrong"),
    }


BAD_TOKEN_NAMES = [
    "alg none",
    "alg None",
    "alg none with the real signature",
    "wrong key",
    "expired",
    "wrong audience",
    "no audience",
    "no exp",
    "tampered payload",
    "HS512",
    "HS384",
    "RS256 label, HMAC signature",
    "signature dropped",
    "two segments",
    "garbage",
    "garbage with dots",
    "role postgres",
    "no role",
    "authenticated without sub",
    "sub not a uuid",
    "session_id not a uuid",
    "hand-made HS256 with the wrong key",
]


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
async def test_a_bad_token_is_refused_with_401(api: Api, name: str) -> None:
    user = await api.sign_up()
    token = _bad_tokens(user)[name]
    assert_refused(await send(api, f"Bearer {token}"))
    # also for fields that need a user, and over GET
    assert_refused(await send(api, f"Bearer {token}", "{ labs { totalCount } }"))
    response = await api.client.get(
        "/graphql", params={"query": ME}, headers={"authorization": f"Bearer {token}"}
    )
    assert_refused(response)


def test_the_bad_tokens_cover_every_case() -> None:
    user = User(
        id=str(uuid.uuid4()),
        email="x@example.com",
        password="x",
        token=sign(supabase_claims(str(uuid.uuid4()))),
        refresh_token="x",
    )
    assert sorted(_bad_tokens(user)) == sorted(BAD_TOKEN_NAMES)


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Basic x", "Bearer", "Bearer ", "bearer", "", "Token abc"]
)
async def test_a_malformed_authorization_header_is_refused_with_401(api: Api, header: str) -> None:
    assert_refused(await send(api, header))


async def test_the_scheme_name_is_case_insensitive(api: Api) -> None:
    user = await api.sign_up()
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = await send(api, f"{scheme} {user.token}")
        assert response.status_code == 200
        assert response.json() == {"data": {"me": {"id": user.id, "email": user.email}}}


async def test_a_token_minted_elsewhere_with_the_same_secret_is_accepted(api: Api) -> None:
    user = await api.sign_up()
    await api.ok(
        'mutation { createLab(input: {title: "Solaris", author: "Lem"}) { id } }', token=user.token
    )
    token = sign(supabase_claims(user.id, email=user.email))
    data = await api.ok("{ me { id } labs { totalCount nodes { title } } }", token=token)
    assert data == {
        "me": {"id": user.id},
        "labs": {"totalCount": 1, "nodes": [{"title": "Solaris"}]},
    }


async def test_a_service_role_token_without_sub_is_accepted(api: Api) -> None:
    now = int(time.time())
    token = sign({"role": "service_role", "aud": "authenticated", "iat": now, "exp": now + 600})
    data = await api.ok(ME, token=token)
    assert data == {"me": None}


async def test_the_issued_access_token_has_supabase_claims(
    api: Api, admin: asyncpg.Connection
) -> None:
    user = await api.sign_up()
    header = jwt.get_unverified_header(user.token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(user.token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    required = {"sub", "role", "aud", "exp", "iat", "iss", "email", "session_id"}
    assert required <= set(claims), claims
    assert claims["sub"] == user.id
    assert claims["role"] == "authenticated"
    assert claims["aud"] == "authenticated"
    assert claims["email"] == user.email
    assert isinstance(claims["iss"], str) and claims["iss"]
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60
    row = await admin.fetchrow(
        "select user_id, revoked_at, expires_at > now() as live from public.user_sessions"
        " where id = $1",
        uuid.UUID(claims["session_id"]),
    )
    assert row is not None
    assert row["user_id"] == uuid.UUID(user.id)
    assert row["revoked_at"] is None and row["live"]


async def test_every_sign_in_starts_its_own_session(api: Api, admin: asyncpg.Connection) -> None:
    user = await api.sign_up()
    ids = {jwt.decode(user.token, options={"verify_signature": False})["session_id"]}
    for _ in range(2):
        data = await api.ok(
            "mutation($e: String!, $p: String!) {"
            " signIn(email: $e, password: $p) { accessToken } }",
            {"e": user.email, "p": user.password},
        )
        token = data["signIn"]["accessToken"]
        ids.add(jwt.decode(token, options={"verify_signature": False})["session_id"])
        assert (await api.ok(ME, token=token))["me"]["id"] == user.id
    assert len(ids) == 3
    rows = await admin.fetch(
        "select id from public.user_sessions where user_id = $1", uuid.UUID(user.id)
    )
    assert {str(r["id"]) for r in rows} == ids


async def test_supabase_api_keys_are_accepted_as_their_roles(api: Api) -> None:
    now = int(time.time())
    anon_key = sign({"iss": "supabase", "role": "anon", "iat": now, "exp": now + 60})
    me = await api.gql(ME, token=anon_key)
    assert me == {"data": {"me": None}}
    labs = await api.gql("{ labs { totalCount } }", token=anon_key)
    assert [e["extensions"]["code"] for e in labs["errors"]] == ["UNAUTHENTICATED"]
    service_key = sign({"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 60})
    assert await api.gql(ME, token=service_key) == {"data": {"me": None}}
    # an authenticated token must still name its audience
    no_aud = sign({"sub": str(uuid.uuid4()), "role": "authenticated", "exp": now + 60})
    assert_refused(await send(api, f"Bearer {no_aud}"))
