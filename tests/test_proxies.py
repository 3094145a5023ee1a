"""The client's address behind proxies: X-Forwarded-For as TRUSTED_PROXIES vouch for it.

Contract: the right-most untrusted hop of every X-Forwarded-For line taken together."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from starlette.requests import Request

from scriptlabs.config import Network
from scriptlabs.http.client import client_address

PROXIES: tuple[Network, ...] = (
    ip_network("10.0.0.0/8"),
    ip_network("172.18.0.1/32"),
    ip_network("2001:db8:ffff::/48"),
)


def request(peer: str | None, *forwarded: str) -> Request:
    """A request from `peer` carrying one X-Forwarded-For line per `forwarded` value."""
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/graphql",
            "query_string": b"",
            "headers": [(b"x-forwarded-for", line.encode("latin-1")) for line in forwarded],
            "client": (peer, 51234) if peer is not None else None,
        }
    )


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address(request("10.1.2.3", "198.51.100.7"), ()) == "10.1.2.3"


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_address(request("203.0.113.5", "198.51.100.7"), PROXIES) == "203.0.113.5"


def test_the_right_most_untrusted_hop_is_the_client() -> None:
    assert client_address(request("10.0.0.2", "198.51.100.7, 10.0.0.9"), PROXIES) == (
        "198.51.100.7"
    )


def test_several_header_lines_are_read_together_in_order() -> None:
    # as "192.0.2.50, 198.51.100.7, 10.0.0.9": the last line's hop is trusted, so the client
    # is the right-most hop of the line before
    conn = request("10.0.0.2", "192.0.2.50, 198.51.100.7", "10.0.0.9")
    assert client_address(conn, PROXIES) == "198.51.100.7"
    conn = request("10.0.0.2", "192.0.2.50", "198.51.100.7", "10.0.0.9, 10.0.0.8")
    assert client_address(conn, PROXIES) == "198.51.100.7"


def test_a_client_cannot_choose_its_address_with_a_first_header_line() -> None:
    # the proxy appended a line of its own after the client's spoofed one
    conn = request("10.0.0.2", "192.0.2.1", "203.0.113.77")
    assert client_address(conn, PROXIES) == "203.0.113.77"


def test_spoofed_left_most_entries_are_ignored() -> None:
    conn = request("172.18.0.1", "1.1.1.1, 10.0.0.1, 203.0.113.77")
    assert client_address(conn, PROXIES) == "203.0.113.77"


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert client_address(request("10.0.0.2", "10.9.9.9, 10.0.0.9"), PROXIES) == "10.9.9.9"
    assert client_address(request("10.0.0.2", "10.9.9.9", "10.0.0.9"), PROXIES) == "10.9.9.9"


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert client_address(request("10.0.0.2"), PROXIES) == "10.0.0.2"


def test_ipv6_hops_and_peers() -> None:
    conn = request("2001:db8:ffff::1", "2001:DB8::42, 2001:db8:ffff::9")
    assert client_address(conn, PROXIES) == "2001:db8::42"
    # an IPv4 proxy seen through a dual-stack socket is still the trusted proxy
    conn = request("::ffff:10.0.0.2", "2001:db8::42")
    assert client_address(conn, PROXIES) == "2001:db8::42"
    # a zone names the sender's interface; the address is kept without it
    assert client_address(request("10.0.0.2", "fe80::1%eth0"), PROXIES) == "fe80::1"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        # garbage right of any real hop: the peer handed it on, so the peer is the client
        (("198.51.100.7, not-an-ip",), "10.0.0.2"),
        (("198.51.100.7", "not-an-ip"), "10.0.0.2"),
        (("198.51.100.7, 198.51.100.7:443",), "10.0.0.2"),
        (("198.51.100.7,",), "10.0.0.2"),
        (("",), "10.0.0.2"),
        # garbage left of a trusted hop: that hop is the last address anyone vouches for
        (("198.51.100.7, unknown, 10.0.0.9",), "10.0.0.9"),
        (("198.51.100.7,, 10.0.0.9",), "10.0.0.9"),
        # garbage left of the client changes nothing
        (("unknown, 203.0.113.77, 10.0.0.9",), "203.0.113.77"),
    ],
)
def test_a_hop_that_is_no_address_is_never_taken_for_the_client(
    forwarded: tuple[str, ...], expected: str
) -> None:
    assert client_address(request("10.0.0.2", *forwarded), PROXIES) == expected


def test_a_peer_that_is_no_address_gives_no_address() -> None:
    assert client_address(request("testclient", "198.51.100.7"), PROXIES) is None
    assert client_address(request(None, "198.51.100.7"), PROXIES) is None
