"""GraphQL over WebSocket at /graphql: the graphql-transport-ws protocol, for labEvents.

One `GraphQLSocket` per connection:

- The client must offer the `graphql-transport-ws` subprotocol (else the handshake is refused)
  and send `connection_init` within WS_INIT_TIMEOUT_SECONDS (else close 4408). Its payload
  `{"Authorization": "Bearer <token>"}` is checked as the HTTP header is: a token that would
  get HTTP 401 (malformed, expired, badly signed, of an ended session) closes the socket with
  4403. Without a token the socket is acknowledged as `anon`, and subscribing then answers
  `error` with UNAUTHENTICATED, as any field but the public ones does over HTTP.
- `subscribe` goes through the runner (`Runner.subscribe`: the document cache, the token,
  depth and complexity limits). Only subscriptions run here; a query or mutation gets an
  `error` message (send them with POST). `complete` from the client ends one subscription.
  `ping` gets `pong`.
- Protocol faults close the socket: 4400 (a message that is not a JSON object of a known
  type, or over the request body limit), 4401 (subscribe before the acknowledgement), 4409
  (a subscription id already in use), 4429 (a second connection_init).
- Each subscription has a bounded inbox (realtime/listener.py) and one task that answers its
  events in order. A client that does not read (its inbox of 4,096 events fills up) is
  closed with 1013 (try again later); the others never wait for it.
- Limits: WS_MAX_SUBSCRIPTIONS_PER_SOCKET, and WS_MAX_SUBSCRIPTIONS_PER_USER on one worker;
  beyond them `subscribe` answers `error` with FORBIDDEN.
- Token lifetime: the socket closes with 4403 when the token expires, and when its session
  has ended, checked every WS_SESSION_CHECK_SECONDS (sockets of one session share a check
  for half that time) and at every event whose lab is read.
- The database going away: when the worker's LISTEN connection is lost, every socket with
  subscriptions is closed with 1013 (try again later), since events committed meanwhile are
  never delivered; a subscribe waits up to 5 s for the listener to be back, else `error`.
- Shut-down: every open socket is closed with 1001 (going away) when the app stops; uvicorn
  closes the ones it still holds with 1012 on SIGTERM before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import asyncpg
import orjson
from graphql import GraphQLError, OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from scriptlabs.auth.tokens import ANON, Claims
from scriptlabs.db.operation import PoolBusy, SessionEnded
from scriptlabs.errors import AppError, Code
from scriptlabs.graphql.context import Services
from scriptlabs.graphql.execution import Request, Runner
from scriptlabs.graphql.subscription import LabEventStream
from scriptlabs.http.client import client_of
from scriptlabs.realtime.listener import Listener, Subscriber
from scriptlabs.telemetry import metrics

log = logging.getLogger("scriptlabs.http")

SUBPROTOCOL = "graphql-transport-ws"
SUBSCRIPTIONS = frozenset({OperationType.SUBSCRIPTION})

# close codes (graphql-transport-ws, and RFC 6455 for the last ones)
BAD_MESSAGE = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
INIT_TIMEOUT = 4408
SUBSCRIBER_EXISTS = 4409
TOO_MANY_INITS = 4429
GOING_AWAY = 1001
INTERNAL = 1011
TRY_AGAIN_LATER = 1013

LISTEN_WAIT_SECONDS = 5.0  # a subscribe waits this long for the listener to be back

# the live-session check alone, as the login role (the function of every request's set-up)
SESSION_IS_LIVE = "select scriptlabs_private.session_is_live($1, $2)"

DATABASE_FAULTS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, PoolBusy)


class Close(Exception):
    """End the socket with this close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class GraphQLWebSockets:
    """The WebSocket endpoint of /graphql, and every socket it holds (for shut-down)."""

    def __init__(self, runner: Runner, services: Services, listener: Listener) -> None:
        self.runner = runner
        self.services = services
        self.listener = listener
        self.sockets: set[GraphQLSocket] = set()
        self._sessions: dict[uuid.UUID, tuple[float, bool]] = {}  # checked at, live
        self._reuse = services.settings.ws_session_check_seconds / 2
        listener.on_lost = self._events_interrupted

    def _events_interrupted(self) -> None:
        """The LISTEN connection was lost: events may be missed, so no subscription goes on
        as if none were (the clients subscribe again, and re-read what they show)."""
        for socket in list(self.sockets):
            if socket.subscriptions:
                socket.close_soon(TRY_AGAIN_LATER, "Events were interrupted: subscribe again")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        socket = GraphQLSocket(self, WebSocket(scope, receive, send))
        self.sockets.add(socket)
        metrics.WEBSOCKETS.inc()
        try:
            await socket.run()
        finally:
            self.sockets.discard(socket)
            metrics.WEBSOCKETS.dec()

    async def session_live(self, user_id: uuid.UUID, session_id: uuid.UUID, *, fresh: bool) -> bool:
        """Whether a session is live: one statement on a pooled connection (taking its turn
        like any request). The periodic checks of the sockets of one session share an answer
        for half the check interval (a session's end is still seen within 1.5 intervals);
        `fresh` (connection_init) always asks."""
        now = time.monotonic()
        kept = self._sessions.get(session_id)
        if not fresh and kept is not None and now - kept[0] < self._reuse:
            return kept[1]
        async with self.services.pool.connection() as conn:
            live = bool(await conn.fetchval(SESSION_IS_LIVE, user_id, session_id, timeout=5))
        if len(self._sessions) > 10_000:  # forget old answers rather than grow
            self._sessions = {k: v for k, v in self._sessions.items() if now - v[0] < self._reuse}
        self._sessions[session_id] = (now, live)
        return live

    async def close_all(self, code: int = GOING_AWAY, reason: str = "Server shutting down") -> None:
        """Close every open socket (app shut-down)."""
        sockets = list(self.sockets)
        await asyncio.gather(*(s.close(code, reason) for s in sockets), return_exceptions=True)


class _Subscription:
    def __init__(self, stream: LabEventStream, inbox: Subscriber) -> None:
        self.stream = stream
        self.inbox = inbox
        self.task: asyncio.Task[None] | None = None


class GraphQLSocket:
    """One graphql-transport-ws connection."""

    def __init__(self, endpoint: GraphQLWebSockets, ws: WebSocket) -> None:
        self.endpoint = endpoint
        self.ws = ws
        self.settings = endpoint.services.settings
        self.claims: Claims | None = None  # set by connection_init
        self.subscriptions: dict[str, _Subscription] = {}
        self._send_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._close: Close | None = None
        self._watch: asyncio.Task[None] | None = None

    # -- the connection

    async def run(self) -> None:
        if SUBPROTOCOL not in self.ws.scope.get("subprotocols", []):
            metrics.count_websocket_close(4406)
            await self.ws.close(4406, "Subprotocol not acceptable")  # refused handshake
            return
        await self.ws.accept(subprotocol=SUBPROTOCOL)
        reader = asyncio.create_task(self._read())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, closed):
                task.cancel()
            await self._end()

    async def _read(self) -> None:
        try:
            try:
                first = await asyncio.wait_for(
                    self._receive(), self.settings.ws_init_timeout_seconds
                )
            except TimeoutError:
                raise Close(INIT_TIMEOUT, "Connection initialisation timeout") from None
            await self._init(first)
            while True:
                await self._handle(await self._receive())
        except Close as close:
            self._close = close
        except (WebSocketDisconnect, _Disconnected):
            pass
        except Exception:
            log.exception("a WebSocket message failed")
            self._close = Close(INTERNAL, "Internal server error")

    async def _receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise _Disconnected
        text = message.get("text")
        if text is None:
            raise Close(BAD_MESSAGE, "Messages are JSON text")
        if len(text) > self.settings.max_body_bytes:
            raise Close(BAD_MESSAGE, "Message is too large")
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Close(BAD_MESSAGE, "Invalid message: not JSON") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
            raise Close(BAD_MESSAGE, "Invalid message: an object with a type")
        return parsed

    async def close(self, code: int, reason: str) -> None:
        """Close the socket from another task (shut-down, expiry, a full inbox)."""
        self.close_soon(code, reason)

    def close_soon(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = Close(code, reason)
        self._closed.set()

    async def _end(self) -> None:
        """Stop every subscription, then send the close frame (unless the client left)."""
        if self._watch is not None:
            self._watch.cancel()
        for sub in list(self.subscriptions.values()):
            self._stop(sub)
        self.subscriptions.clear()
        close = self._close
        if close is not None and self.ws.application_state is WebSocketState.CONNECTED:
            metrics.count_websocket_close(close.code)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(close.code, close.reason), 5)

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            try:
                await self.ws.send_text(orjson.dumps(message).decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._closed.set()
                raise _Disconnected from None

    # -- messages

    async def _init(self, message: dict[str, Any]) -> None:
        if message["type"] != "connection_init":
            if message["type"] == "subscribe":
                raise Close(UNAUTHORIZED, "Unauthorized")
            raise Close(BAD_MESSAGE, "Expected connection_init")
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise Close(BAD_MESSAGE, "connection_init payload must be an object")
        self.claims = await self._claims(payload or {})
        await self.send({"type": "connection_ack"})
        if self.claims.sub is not None:
            self._watch = asyncio.create_task(self._watch_token(self.claims))

    async def _claims(self, payload: dict[str, Any]) -> Claims:
        header = next(
            (v for k, v in payload.items() if isinstance(k, str) and k.lower() == "authorization"),
            None,
        )
        if header is None:
            return ANON
        if not isinstance(header, str):
            raise Close(FORBIDDEN, "Forbidden")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Close(FORBIDDEN, "Forbidden")
        try:
            claims = self.endpoint.services.verifier.verify(token.strip())
        except AppError:
            raise Close(FORBIDDEN, "Forbidden") from None
        if not await self._session_live(claims):
            raise Close(FORBIDDEN, "Forbidden")
        return claims

    async def _session_live(self, claims: Claims) -> bool:
        """Whether the token's session is live (True for a token without one). A database
        that does not answer at init closes the socket with 1013 (try again later: clients
        such as graphql-ws retry); later checks keep it."""
        if claims.session_id is None or claims.sub is None:
            return True
        try:
            return await self.endpoint.session_live(
                claims.sub, claims.session_id, fresh=self.claims is None
            )
        except DATABASE_FAULTS as exc:
            if self.claims is None:
                raise Close(TRY_AGAIN_LATER, "The database is unavailable") from exc
            return True

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "connection_init":
            raise Close(TOO_MANY_INITS, "Too many initialisation requests")
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            sub_id = message.get("id")
            if not isinstance(sub_id, str):
                raise Close(BAD_MESSAGE, "complete needs an id")
            sub = self.subscriptions.pop(sub_id, None)
            if sub is not None:
                self._stop(sub)
        else:
            raise Close(BAD_MESSAGE, "Unknown message type")

    async def _subscribe(self, message: dict[str, Any]) -> None:
        sub_id, payload = message.get("id"), message.get("payload")
        if not isinstance(sub_id, str) or not sub_id or len(sub_id) > 256:
            raise Close(BAD_MESSAGE, "subscribe needs an id")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise Close(BAD_MESSAGE, "subscribe needs a payload with a query")
        variables, name = payload.get("variables"), payload.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            raise Close(BAD_MESSAGE, "variables must be an object")
        if name is not None and not isinstance(name, str):
            raise Close(BAD_MESSAGE, "operationName must be a string")
        if sub_id in self.subscriptions:
            # (the id stays out of the reason: a close reason holds at most 123 bytes)
            raise Close(SUBSCRIBER_EXISTS, "Subscriber for this id already exists")
        claims = self.claims
        assert claims is not None
        settings = self.settings
        listener = self.endpoint.listener
        if claims.sub is not None and (
            len(self.subscriptions) >= settings.ws_max_subscriptions_per_socket
            or listener.count(claims.sub) >= settings.ws_max_subscriptions_per_user
        ):
            await self._error(sub_id, Code.FORBIDDEN, "Too many subscriptions")
            return
        if not await listener.wait_listening(LISTEN_WAIT_SECONDS):
            # accepted now, it would miss events until the listener is back
            await self._error(sub_id, Code.INTERNAL_SERVER_ERROR, "Events are unavailable")
            return
        accepted = await self.endpoint.runner.subscribe(
            Request(
                query=payload["query"],
                variables=variables,
                operation_name=name,
                claims=claims,
                client=client_of(self.ws, settings.trusted_proxies),
                allowed=SUBSCRIPTIONS,
            )
        )
        if isinstance(accepted, list):
            await self.send({"id": sub_id, "type": "error", "payload": _formatted(accepted)})
            return
        assert claims.sub is not None
        inbox = Subscriber(claims.sub, self._overflowed)
        sub = _Subscription(accepted, inbox)
        self.subscriptions[sub_id] = sub
        metrics.SUBSCRIPTIONS.inc()
        listener.add(inbox)
        sub.task = asyncio.create_task(self._pump(sub_id, sub))

    async def _error(self, sub_id: str, code: Code, message: str) -> None:
        payload = [{"message": message, "extensions": {"code": code.value}}]
        await self.send({"id": sub_id, "type": "error", "payload": payload})

    def _stop(self, sub: _Subscription) -> None:
        """End a subscription (each once: `complete` takes it out, `_end` ends the rest)."""
        metrics.SUBSCRIPTIONS.dec()
        self.endpoint.listener.remove(sub.inbox)
        if sub.task is not None:
            sub.task.cancel()

    def _overflowed(self) -> None:
        log.warning("a subscriber did not keep up with its events: closed")
        self._close = self._close or Close(TRY_AGAIN_LATER, "Too slow: events were dropped")
        self._closed.set()

    # -- events and the token's lifetime

    async def _pump(self, sub_id: str, sub: _Subscription) -> None:
        """Answer the subscription's events, in order, one at a time."""
        runner = self.endpoint.runner
        try:
            while True:
                note = await sub.inbox.queue.get()
                try:
                    payload = await runner.deliver(sub.stream, note)
                except SessionEnded:
                    await self.close(FORBIDDEN, "Session ended")
                    return
                await self.send({"id": sub_id, "type": "next", "payload": payload})
                metrics.EVENTS.inc()
        except _Disconnected:
            return
        except Exception:
            log.exception("a subscription failed")
            await self.close(INTERNAL, "Internal server error")

    async def _watch_token(self, claims: Claims) -> None:
        """Close with 4403 at the token's expiry, or once its session has ended."""
        interval = self.settings.ws_session_check_seconds
        try:
            while True:
                left = claims.exp - time.time()
                if left <= 0:
                    await self.close(FORBIDDEN, "Token expired")
                    return
                await asyncio.sleep(min(interval, left))
                if claims.exp - time.time() > 0 and not await self._session_live(claims):
                    await self.close(FORBIDDEN, "Session ended")
                    return
        except Exception:
            log.exception("the token watch of a socket failed")
            await self.close(INTERNAL, "Internal server error")


class _Disconnected(Exception):
    """The client has gone."""


def _formatted(errors: list[GraphQLError]) -> list[dict[str, Any]]:
    return [dict(e.formatted) for e in errors]
