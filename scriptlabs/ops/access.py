"""The access middleware: a request id for every HTTP request, its access line, its metrics.

Each request gets an id (32 hex digits), set in `telemetry.logs.REQUEST_ID` while it is handled and
returned as `X-Request-Id`. When the answer has gone, one INFO line on `scriptlabs.access`
says what happened: method, path, operationName, outcome, status, durationMs, client. The
GraphQL transport leaves the operation's label and outcome in the ASGI scope (`OPERATION`,
`OUTCOME`, `CLIENT`); only such requests are counted in the GraphQL metrics. The line never
holds the query, its variables, a header or a body: nothing a client sends as a secret.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from scriptlabs.telemetry import metrics
from scriptlabs.telemetry.logs import REQUEST_ID, JsonLines

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPERATION = "scriptlabs.operation"  # the client's operation name, None, or UNKNOWN
UNKNOWN = metrics.UNKNOWN  # refused before an operation was read
OUTCOME = "scriptlabs.outcome"  # ok or the first error's code
CLIENT = "scriptlabs.client"  # the client's address as TRUSTED_PROXIES vouch for it

ACCESS_LOGGER = "scriptlabs.access"
log = logging.getLogger(ACCESS_LOGGER)
LINES = JsonLines()  # the process's access lines, when the logs are JSON (telemetry/logs.py)


class AccessMiddleware:
    """ASGI middleware around the whole app (HTTP only; WebSockets pass through)."""

    def __init__(self, app: ASGIApp, recorder: metrics.Recorder, *, access_log: bool) -> None:
        self.app = app
        self.recorder = recorder
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = f"{random.getrandbits(128):032x}"  # an id, not a secret: no system call
        token = REQUEST_ID.set(rid)
        start = time.perf_counter()
        status = 500  # unless a response starts
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            operation: str | None = None
            if OPERATION in scope:
                operation = self.recorder.operation(scope[OPERATION])
                outcome = scope.get(OUTCOME) or metrics.OTHER
                self.recorder.observe(operation, outcome, status, seconds)
            else:
                outcome = None
            if self.access_log:
                method, path = scope.get("method"), scope.get("path")
                fields = {
                    "method": method,
                    "path": path,
                    "operationName": operation,
                    "outcome": outcome,
                    "status": status,
                    "durationMs": round(seconds * 1000, 3),
                    "client": scope.get(CLIENT) or (scope.get("client") or ("",))[0],
                }
                message = f"{method} {path} {status}"
                if not LINES.write(log, message, fields) and log.isEnabledFor(logging.INFO):
                    # the record made here: Logger.info would look for its caller on the
                    # stack and check every extra key, a tenth of the line's cost
                    record = logging.LogRecord(
                        ACCESS_LOGGER, logging.INFO, __file__, 0, message, None, None
                    )
                    record.__dict__.update(fields)
                    log.handle(record)
            REQUEST_ID.reset(token)
