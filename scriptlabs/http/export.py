"""GET /export/labs.csv and /export/labs.json: the caller's catalogue, streamed.

The rows and their format are scriptlabs.labs.export's; this module owns the HTTP side:

- Who: a bearer token of a signed-in user. None: 401; a bad, expired or revoked one: 401
  with the contract's JSON body. A `service_role` or `anon` key (Supabase's API keys) is not
  a user with a catalogue of their own: 403 FORBIDDEN and 401 respectively.
- How many: exports hold a connection for a long time, so they may take only a share of the
  pool. EXPORT_MAX_PER_USER (default 1) at a time per user: more get 429 (RATE_LIMITED) with
  Retry-After; EXPORT_MAX_CONCURRENT (default a quarter of DB_POOL_MAX) in the process: more
  get 503 with Retry-After, as a full pool does. Both are counted per process (per worker).
- How long: EXPORT_TIMEOUT_S (default 300) bounds the whole export, database time and the
  client's reading alike, so a client that reads a byte a second cannot hold a connection
  for ever. An export cut short (deadline, lost database) ends the response without its last
  chunk: the client sees a truncated transfer, never a complete-looking file.
- A client that goes away mid-stream: the export stops and its connection is given back at
  once (the `http.disconnect` message, or a failed send).
- Status and errors are decided before the first byte: the transaction is begun (the live
  session check), the cursor declared and the first batch read before the 200 is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from scriptlabs.auth.tokens import Claims
from scriptlabs.db.operation import PoolBusy, SessionEnded
from scriptlabs.errors import AppError, Code
from scriptlabs.graphql.context import Services
from scriptlabs.graphql.execution import Runner, StreamedOperation
from scriptlabs.http.client import claims_of
from scriptlabs.http.graphql import DATABASE_GONE, database_gone, error_body, fault
from scriptlabs.labs.export import MEDIA_TYPES, Format, export_chunks, open_cursor

log = logging.getLogger("scriptlabs.export")

JSON = "application/json"
RETRY_AFTER = 5  # seconds: an export of a large catalogue takes a while


class Busy(Exception):
    """No room for another export now: an HTTP status with Retry-After."""

    def __init__(self, status: int, code: Code, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ExportSlots:
    """How many exports run now, in all and per user (this process)."""

    def __init__(self, at_once: int, per_user: int) -> None:
        self.at_once = at_once
        self.per_user = per_user
        self.running: Counter[uuid.UUID] = Counter()

    def take(self, user_id: uuid.UUID) -> Slot:
        """A slot for one export of `user_id`'s labs; Busy when there is none."""
        if self.running[user_id] >= self.per_user:
            raise Busy(429, Code.RATE_LIMITED, "An export of your labs is already running")
        if self.running.total() >= self.at_once:
            raise Busy(
                503,
                Code.INTERNAL_SERVER_ERROR,
                "The service is busy: too many exports are running; try again shortly",
            )
        self.running[user_id] += 1
        return Slot(self, user_id)


class Slot:
    """One running export's place; `release` may be called more than once."""

    def __init__(self, slots: ExportSlots, user_id: uuid.UUID) -> None:
        self._slots: ExportSlots | None = slots
        self._user_id = user_id

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.running[self._user_id] -= 1
            if not slots.running[self._user_id]:
                del slots.running[self._user_id]


def _error(
    status: int, code: Code, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body(code, message), status, headers, media_type=JSON)


def _fault() -> Response:
    """A fault of ours before the first byte: logged with a request id, answered as GraphQL
    answers one (500, the contract's JSON shape)."""
    return fault(JSON)


class ExportEndpoint:
    """The ASGI endpoint of one format; the services are the app's (made at start-up)."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        state = request.app.state
        services: Services = state.services
        if not hasattr(state, "export_slots"):  # one count for both formats
            settings = services.settings
            state.export_slots = ExportSlots(settings.exports_at_once, settings.export_max_per_user)
        slots: ExportSlots = state.export_slots
        if request.method not in ("GET", "HEAD"):
            await _error(405, Code.BAD_USER_INPUT, "Use GET", {"Allow": "GET"})(
                scope, receive, send
            )
            return
        try:
            claims = claims_of(request, services.verifier)
        except AppError as exc:
            await _error(401, Code.UNAUTHENTICATED, exc.message, {"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
            return
        if claims.role == "anon":
            await _error(
                401, Code.UNAUTHENTICATED, "Authentication required", {"WWW-Authenticate": "Bearer"}
            )(scope, receive, send)
            return
        if claims.role != "authenticated" or claims.sub is None:
            await _error(403, Code.FORBIDDEN, "Only a signed-in user can export their labs")(
                scope, receive, send
            )
            return
        try:
            slot = slots.take(claims.sub)
        except Busy as busy:
            headers = {"Retry-After": str(RETRY_AFTER)}
            await _error(busy.status, busy.code, busy.message, headers)(scope, receive, send)
            return
        try:
            await self._export(services, claims, slot, scope, receive, send)
        finally:
            slot.release()

    async def _export(
        self, services: Services, claims: Claims, slot: Slot, scope: Any, receive: Any, send: Any
    ) -> None:
        settings = services.settings
        runner: Runner = scope["app"].state.runner
        stream = runner.streamed(
            claims,
            readonly=True,
            isolation="repeatable_read",
            timeout_s=settings.export_timeout_s,
        )
        deadline = time.monotonic() + settings.export_timeout_s
        rest: AsyncGenerator[tuple[bytes, int], None] | None = None

        async def finish() -> None:
            """Give the connection and the slot back (again: a no-op). The stream calls it
            before its last message, so a client that starts its next export as soon as this
            one has arrived finds them free."""
            if rest is not None:
                await rest.aclose()
            await stream.close()
            slot.release()

        try:
            started = await self._first(stream, scope, receive, send)
            if started is None:
                return
            first, rest = started
            await _until_disconnect(
                self._stream(first, rest, send, finish, head=scope["method"] == "HEAD"),
                receive,
                deadline,
            )
        finally:
            await finish()

    async def _first(
        self, stream: StreamedOperation, scope: Any, receive: Any, send: Any
    ) -> tuple[bytes, AsyncGenerator[tuple[bytes, int], None]] | None:
        """The first chunk and the rest, or None once an error has been answered."""
        try:
            await stream.start()
            await open_cursor(stream.op, self.fmt)
            chunks = export_chunks(stream.op, self.fmt)
            first, _ = await anext(chunks)
        except SessionEnded:
            response = _error(
                401, Code.UNAUTHENTICATED, "Session has ended", {"WWW-Authenticate": "Bearer"}
            )
        except PoolBusy as busy:
            response = _error(
                503,
                Code.INTERNAL_SERVER_ERROR,
                "Every database connection is busy",
                {"Retry-After": str(busy.retry_after)},
            )
        except AppError as exc:  # the deadline
            response = _error(503, exc.extensions["code"], exc.message)
        except (*DATABASE_GONE, asyncpg.InterfaceError) as exc:
            if not database_gone(exc):
                response = _fault()
            else:
                log.exception("export: database unavailable")
                response = _error(
                    503,
                    Code.INTERNAL_SERVER_ERROR,
                    "The database is unavailable",
                    {"Retry-After": "5"},
                )
        except Exception:
            response = _fault()
        else:
            return first, chunks
        await response(scope, receive, send)
        return None

    async def _stream(
        self,
        first: bytes,
        rest: AsyncIterator[tuple[bytes, int]],
        send: Any,
        finish: Callable[[], Awaitable[None]],
        *,
        head: bool,
    ) -> None:
        name = f"labs.{self.fmt}"
        headers = [
            (b"content-type", MEDIA_TYPES[self.fmt].encode()),
            (b"content-disposition", f'attachment; filename="{name}"'.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if not head:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk, _ in rest:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await finish()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(
    stream: Coroutine[Any, Any, None], receive: Any, deadline: float
) -> None:
    """Run `stream` until it ends, the client disconnects or the deadline passes; whatever
    stops it, it is over (cancelled) when this returns. An export cut short is logged."""
    sending = asyncio.ensure_future(stream)
    watching = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait(
            {sending, watching},
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for task in (sending, watching):
            task.cancel()
        await asyncio.gather(sending, watching, return_exceptions=True)
    if sending in done and not sending.cancelled():
        exc = sending.exception()
        if exc is None:
            return
        if isinstance(exc, OSError):
            log.info("export: the client went away")
            return
        log.error("export cut short", exc_info=exc)
    elif watching in done:
        log.info("export: the client went away")
    else:
        log.warning("export cut short: EXPORT_TIMEOUT_S reached")


async def _disconnected(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
