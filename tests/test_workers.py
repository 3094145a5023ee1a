"""`scriptlabs serve --workers 2`: each worker listens on a socket of its own (http/workers.py),
so new connections are spread over the workers, not taken mostly by one.

Read from /proc (Linux): which process holds which socket, and each TCP socket's state.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Database, serve_process

ROOT = Path(__file__).resolve().parent.parent
ESTABLISHED, LISTEN = "01", "0A"

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def socket_owners(pids: list[int]) -> dict[int, int]:
    """socket inode → the process (of `pids`) that holds it."""
    owners = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(FileNotFoundError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        owners[int(link[8:-1])] = pid
    return owners


def sockets_on(port: int, state: str) -> list[int]:
    """The inodes of the TCP sockets whose local port is `port`, in `state`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    found.append(int(fields[9]))
    return found


@contextlib.contextmanager
def two_workers(database: Database) -> Iterator[tuple[int, int]]:
    """The supervisor's pid and the port, once both workers listen."""
    with serve_process(database, workers=2, DB_POOL_MAX="2", DB_POOL_MIN="1") as server:
        deadline = time.monotonic() + 15  # the other worker may still be starting
        while len(sockets_on(server.port, LISTEN)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield server.pid, server.port


def test_each_worker_listens_on_its_own_socket_and_takes_its_share(database: Database) -> None:
    with two_workers(database) as (supervisor, port):
        workers = children(supervisor)
        owners = socket_owners(workers)
        listening = sockets_on(port, LISTEN)
        assert len(listening) == 2, "the workers share one listening socket"
        listeners = {owners.get(inode) for inode in listening}
        assert None not in listeners and len(listeners) == 2  # one socket each
        assert not set(listening) & set(socket_owners([supervisor]))  # it only holds the port
        for _ in range(3):
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
            try:
                time.sleep(0.3)  # accepted by now
                owners = socket_owners(workers)
                shares = collections.Counter(
                    owners[inode] for inode in sockets_on(port, ESTABLISHED) if inode in owners
                )
                assert sum(shares.values()) == 32
                # a fair coin gives either fewer than 4 of 32 once in 400,000 tries; with
                # one shared socket, one worker took 21 to 31 of them
                assert len(shares) == 2 and min(shares.values()) >= 4, shares
            finally:
                for client in clients:
                    client.close()
            time.sleep(0.2)
