"""`scriptlabs serve --workers N`: uvicorn's supervisor, each worker listening on its own socket.

uvicorn binds one socket and every worker accepts from it. Linux wakes the waiting workers
in the same order each time, so one of them takes most new connections: of 32 opened one
after the other, 21 to 31 went to one of two workers (fifteen tries, bench/RESULTS.md). A
client's long-lived connections (HTTP keep-alive, a proxy's pool, a load test) then load one
worker while the other idles, and the busy one's answers wait. Here the supervisor binds the
port with SO_REUSEPORT without listening on it (it only holds the port), and each worker
listens on a socket of its own bound to the same address: the kernel spreads new connections
over the workers by a hash of their addresses, as nginx's and gunicorn's `reuseport` do.
Restarts, signals and health checks stay uvicorn's (its Multiprocess supervisor).
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

REUSE_PORT = getattr(socket, "SO_REUSEPORT", None)


def reuse_port_socket(family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    """A TCP socket bound to `address` with SO_REUSEADDR and SO_REUSEPORT, not listening."""
    assert REUSE_PORT is not None
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, REUSE_PORT, 1)
    sock.bind(address)
    return sock


class OwnSocketProcess(multiprocess.Process):
    """A uvicorn worker that listens on a socket of its own, bound like the supervisor's."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        assert sockets, "the supervisor passes the socket it holds the port with"
        held = sockets[0]
        own = reuse_port_socket(held.family, held.getsockname()[:2])
        own.set_inheritable(True)
        held.close()  # this worker's copy; the supervisor keeps the port
        super().target([own])


def run(config: uvicorn.Config) -> None:
    """Serve `config` (an import string, `workers` > 1) until a signal stops the supervisor."""
    if REUSE_PORT is None:  # not Linux or BSD: one shared socket, as uvicorn does
        sock = config.bind_socket()
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        try:
            sock = reuse_port_socket(family, (config.host, config.port))
        except OSError as exc:
            print(f"scriptlabs serve: {exc}", file=sys.stderr)
            sys.exit(STARTUP_FAILURE)
        # the supervisor makes its workers from this class (four places in uvicorn): the
        # name is replaced in this process only, which does nothing but supervise
        multiprocess.Process = OwnSocketProcess  # type: ignore[misc]
    sock.set_inheritable(True)
    try:
        multiprocess.Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
