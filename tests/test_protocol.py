"""The HTTP protocol `scriptlabs serve` runs: uvicorn's httptools, each answer written once.

Over real sockets: what one turn of the event loop writes leaves together at its end, a large
write leaves at once, closing writes what is held first; and a real uvicorn with this protocol
answers keep-alive requests, a streamed body larger than the hold and `Connection: close`
with the same bytes as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scriptlabs.http.protocol import FLUSH_BYTES, CoalescingTransport
from tests.conftest import in_process_server


@contextlib.asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[CoalescingTransport, socket.socket]]:
    """A real TCP connection: our end wrapped, the peer a plain non-blocking socket."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    connecting = asyncio.ensure_future(
        loop.create_connection(asyncio.Protocol, *listener.getsockname())
    )
    peer, _ = await loop.sock_accept(listener)
    transport, _ = await connecting
    wrapped = CoalescingTransport(transport, loop)  # type: ignore[arg-type]
    try:
        yield wrapped, peer
    finally:
        transport.close()
        peer.close()
        listener.close()


def received(peer: socket.socket) -> bytes:
    """What has arrived so far, without waiting."""
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def arrived(peer: socket.socket, size: int) -> bytes:
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < size and time.monotonic() < deadline:
        got += received(peer)
        await asyncio.sleep(0.01)
    return got


async def test_writes_of_one_turn_leave_together_at_its_end() -> None:
    async with socket_pair() as (transport, peer):
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(memoryview(b"ok"))
        await asyncio.sleep(0.05)  # (the loop turns: the flush runs)
        assert await arrived(peer, 40) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        transport.write(b"second")
        time.sleep(0.05)  # noqa: ASYNC251 (on purpose: the loop does not turn, nothing leaves)
        assert received(peer) == b""
        assert transport.get_write_buffer_size() >= 6
        assert await arrived(peer, 6) == b"second"


async def test_a_large_write_leaves_at_once_and_close_writes_what_is_held() -> None:
    async with socket_pair() as (transport, peer):
        big = bytes(range(256)) * (FLUSH_BYTES // 256 + 1)
        transport.write(big)  # over the hold: written now, not at the end of the turn
        assert transport.get_write_buffer_size() < len(big)
        transport.write(b"tail")
        transport.close()  # held bytes first, then the close
        got = await arrived(peer, len(big) + 4)
        assert got == big + b"tail"
        assert transport.is_closing()


async def test_abort_drops_what_is_held() -> None:
    async with socket_pair() as (transport, peer):
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0.05)
        assert received(peer) == b""


async def streamed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Three answers: a short one, a streamed one larger than the hold, and an empty one."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in range(4):
            chunk = bytes([65 + part]) * (FLUSH_BYTES // 2 + 7)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = b"" if path == "/empty" else b'{"data":{"ok":true}}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[int]:
    async with in_process_server(streamed_app, lifespan="off") as port:
        yield port


async def exchange(port: int, request: bytes, until: bytes | None) -> bytes:
    """What the server answers `request`, read until it ends with `until` (None: until the
    server closes the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        got = b""
        while until is None or not got.endswith(until):
            chunk = await asyncio.wait_for(reader.read(1 << 20), 5)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()


async def test_keep_alive_answers_come_whole_and_in_order(server: int) -> None:
    one = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n"
    got = await exchange(server, one + b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\n" + one, b"}}")
    answers = got.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 3
    assert answers[0].endswith(b'\r\n\r\n{"data":{"ok":true}}')
    assert answers[1].endswith(b"content-length: 0\r\n\r\n")
    assert answers[2].endswith(b'\r\n\r\n{"data":{"ok":true}}')


async def test_a_streamed_answer_larger_than_the_hold_arrives_whole(server: int) -> None:
    got = await exchange(server, b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n", b"0\r\n\r\n")
    head, _, chunked = got.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    body, rest = b"", chunked
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    part = FLUSH_BYTES // 2 + 7
    assert body == b"A" * part + b"B" * part + b"C" * part + b"D" * part


async def test_connection_close_is_answered_then_closed(server: int) -> None:
    got = await exchange(server, b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", None)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert got.endswith(b'{"data":{"ok":true}}')  # all of it, then end of stream
