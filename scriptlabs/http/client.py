"""Who is calling: the bearer token's claims and the client's address."""

from __future__ import annotations

import functools
import ipaddress

from starlette.requests import HTTPConnection

from scriptlabs.auth.accounts import Client
from scriptlabs.auth.tokens import ANON, Claims, TokenVerifier
from scriptlabs.config import Network
from scriptlabs.errors import AppError, Code

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


# a client comes back again and again: its address is parsed once (bounded, as hops
# written by clients are parsed here too)
@functools.lru_cache(maxsize=4096)
def _address(text: str | None) -> IPAddress | None:
    """`text` as an IP address, or None when it is not one (a name, a port, garbage)."""
    if text is None:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # a zone (fe80::1%eth0) names an interface of the sender, and inet cannot hold it
        return ipaddress.IPv6Address(ip.packed)
    return ip


def _trusted(ip: IPAddress, proxies: tuple[Network, ...]) -> bool:
    # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; match them against IPv4 ranges
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in network or (mapped is not None and mapped in network) for network in proxies)


def forwarded_hops(conn: HTTPConnection) -> list[str]:
    """Every X-Forwarded-For line taken together, in order, as if joined by commas."""
    return [
        hop.strip() for line in conn.headers.getlist("x-forwarded-for") for hop in line.split(",")
    ]


def client_address(conn: HTTPConnection, proxies: tuple[Network, ...]) -> str | None:
    """The address per-address limits and sessions use (contract: TRUSTED_PROXIES).

    The peer, unless it is a trusted proxy; then walk X-Forwarded-For from the right: each
    trusted hop vouches for the one to its left, and the first hop not trusted is the client.
    A hop that is not an address (empty, garbage, a port) ends the walk at the last trusted
    address seen, so the answer is never a value the client wrote unchecked. When every hop is
    trusted, the left-most one is the client.
    """
    peer = _address(conn.client.host) if conn.client else None
    if peer is None or not proxies or not _trusted(peer, proxies):
        return None if peer is None else _text(peer)
    nearest = peer  # the last trusted address on the way in
    for hop in reversed(forwarded_hops(conn)):
        ip = _address(hop)
        if ip is None:
            break
        if not _trusted(ip, proxies):
            return _text(ip)
        nearest = ip
    return _text(nearest)


_text = functools.lru_cache(maxsize=4096)(str)


def client_of(conn: HTTPConnection, proxies: tuple[Network, ...]) -> Client:
    agent = conn.headers.get("user-agent")
    return Client(
        user_agent=agent[:512] if agent else None, ip_address=client_address(conn, proxies)
    )
