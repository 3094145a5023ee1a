"""Who is calling: the bearer token's claims and the client's address."""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

from scriptlabs.auth.accounts import Client
from scriptlabs.auth.tokens import ANON, Claims, TokenVerifier
from scriptlabs.config import Network
from scriptlabs.errors import AppError, Code


def claims_of(conn: HTTPConnection, verifier: TokenVerifier) -> Claims:
    """ANON without an Authorization header; AppError(UNAUTHENTICATED) for a bad one."""
    header = conn.headers.get("authorization")
    if header is None:
        return ANON
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AppError(Code.UNAUTHENTICATED, "Authorization must be 'Bearer <token>'")
    return verifier.verify(token)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(conn: HTTPConnection, proxies: tuple[Network, ...]) -> str | None:
    """The peer's address; through trusted proxies, the last untrusted X-Forwarded-For hop."""
    peer = conn.client.host if conn.client else None
    if peer is None or not proxies or not _trusted(peer, proxies):
        return _valid(peer)
    hops = [h.strip() for h in conn.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return _valid(hop)
    return _valid(hops[0] if hops else peer)


def _valid(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def client_of(conn: HTTPConnection, proxies: tuple[Network, ...]) -> Client:
    agent = conn.headers.get("user-agent")
    return Client(
        user_agent=agent[:512] if agent else None, ip_address=client_address(conn, proxies)
    )
