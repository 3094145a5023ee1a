"""Access tokens: Supabase-shaped HS256 JWTs, verified once and cached until they expire."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from scriptlabs.errors import AppError, Code

ALGORITHM = "HS256"
AUDIENCE = "authenticated"
REQUEST_ROLES = frozenset({"anon", "authenticated", "service_role"})


@dataclass(frozen=True, slots=True)
class Claims:
    """What the request pipeline needs of a verified token."""

    role: str
    sub: uuid.UUID | None
    session_id: uuid.UUID | None
    exp: int
    raw: dict[str, Any]
    json: str  # the claims as sent to PostgreSQL in request.jwt.claims


ANON_JSON = '{"role":"anon"}'
ANON = Claims(role="anon", sub=None, session_id=None, exp=0, raw={"role": "anon"}, json=ANON_JSON)


def _uuid_or_none(value: object) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise AppError(Code.UNAUTHENTICATED, "Invalid token") from None


class TokenVerifier:
    """Verifies bearer tokens; remembers verified ones (by their exact text) until `exp`."""

    def __init__(self, secret: str, *, cache_size: int = 10_000) -> None:
        self._secret = secret
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str) -> Claims:
        """The claims of a valid token, or AppError(UNAUTHENTICATED)."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp > now:
                return cached
            del self._cache[token]
        claims = self._decode(token)
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            raw: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "role"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AppError(Code.UNAUTHENTICATED, "Token has expired") from None
        except jwt.PyJWTError:
            raise AppError(Code.UNAUTHENTICATED, "Invalid token") from None
        role = raw.get("role")
        if role not in REQUEST_ROLES or not _audience_ok(raw, str(role)):
            raise AppError(Code.UNAUTHENTICATED, "Invalid token")
        if role == "anon":
            # Supabase's anon API key: the anonymous role, whatever else it says
            return Claims("anon", None, None, int(raw["exp"]), raw, orjson.dumps(raw).decode())
        if role == "authenticated" and not raw.get("sub"):
            raise AppError(Code.UNAUTHENTICATED, "Invalid token")
        return Claims(
            role=str(role),
            sub=_uuid_or_none(raw.get("sub")),
            session_id=_uuid_or_none(raw.get("session_id")),
            exp=int(raw["exp"]),
            raw=raw,
            json=orjson.dumps(raw).decode(),
        )


def _audience_ok(raw: dict[str, Any], role: str) -> bool:
    """`aud` must name `authenticated`; Supabase's API keys (anon, service_role) carry none."""
    aud = raw.get("aud")
    if aud is None:
        return role in ("anon", "service_role")
    return aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)


def mint_access_token(
    secret: str,
    *,
    user_id: uuid.UUID,
    email: str,
    session_id: uuid.UUID,
    issuer: str,
    expires_in: int,
    now: float | None = None,
) -> tuple[str, int]:
    """A signed access token and its `exp` (seconds since the epoch)."""
    iat = int(now if now is not None else time.time())
    exp = iat + expires_in
    claims = {
        "aud": AUDIENCE,
        "exp": exp,
        "iat": iat,
        "iss": issuer,
        "sub": str(user_id),
        "email": email,
        "role": "authenticated",
        "session_id": str(session_id),
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": iat}],
        "is_anonymous": False,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), exp
