"""POST /import/labs.csv: a signed-in user brings their catalogue in (`?skipBad=true` to
import the good rows and report the bad ones).

The rows and rules are scriptlabs.labs.imports'; this module owns the HTTP side:

- Who: as the export endpoints: no token or an `anon` key 401, a bad, expired or revoked
  token 401 with the contract's JSON body, a `service_role` key 403.
- What: the body is read as it arrives (UTF-8 CSV, any media type), fed to the import a piece
  at a time and never held whole. IMPORT_MAX_BYTES (default 50 MiB) bounds it: a larger
  Content-Length is refused at once, a body that grows past it mid-way gets 413 and nothing
  is imported.
- How many and how long: an import holds a connection while its body arrives, so it may
  take only a share of the pool: IMPORT_MAX_PER_USER (default 1) at a time per user (429
  with Retry-After beyond), IMPORT_MAX_CONCURRENT (default a quarter of DB_POOL_MAX) in the
  process (503 with Retry-After). IMPORT_TIMEOUT_S (default 300) bounds the whole import,
  reading the body included, so a client that sends a byte a second cannot hold a
  connection for ever: 408 TIMEOUT, nothing imported.
- The answer: 200 `{"inserted": N, "errors": [...], "errorCount": E, "rows": R}`; 400 with
  the same body (inserted 0) when a row is bad and skipBad is not set, or when the file
  cannot be read (not UTF-8, an unterminated quote, no header).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter

import asyncpg
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from scriptlabs.db.operation import PoolBusy, SessionEnded
from scriptlabs.errors import AppError, Code
from scriptlabs.graphql.context import Services
from scriptlabs.graphql.execution import Runner
from scriptlabs.http.client import claims_of
from scriptlabs.http.graphql import DATABASE_GONE, database_gone, error_body, fault
from scriptlabs.labs.imports import LabImport

log = logging.getLogger("scriptlabs.import")

JSON = "application/json"
RETRY_AFTER = 5


class TooLarge(Exception):
    """The body went past IMPORT_MAX_BYTES."""


class ImportSlots:
    """How many imports run now, in all and per user (this process)."""

    def __init__(self, at_once: int, per_user: int) -> None:
        self.at_once = at_once
        self.per_user = per_user
        self.running: Counter[uuid.UUID] = Counter()

    def refusal(self, user_id: uuid.UUID) -> Response | None:
        """None when there is room (and the place is taken), else the answer."""
        headers = {"Retry-After": str(RETRY_AFTER)}
        if self.running[user_id] >= self.per_user:
            message = "An import into your labs is already running"
            return _error(429, Code.RATE_LIMITED, message, headers)
        if self.running.total() >= self.at_once:
            message = "The service is busy: too many imports are running; try again shortly"
            return _error(503, Code.INTERNAL_SERVER_ERROR, message, headers)
        self.running[user_id] += 1
        return None

    def release(self, user_id: uuid.UUID) -> None:
        self.running[user_id] -= 1
        if not self.running[user_id]:
            del self.running[user_id]


def _error(
    status: int, code: Code, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body(code, message), status, headers, media_type=JSON)


def _unauthenticated(message: str) -> Response:
    return _error(401, Code.UNAUTHENTICATED, message, {"WWW-Authenticate": "Bearer"})


async def import_labs_csv(request: Request) -> Response:
    """The endpoint (POST only)."""
    services: Services = request.app.state.services
    settings = services.settings
    state = request.app.state
    if not hasattr(state, "import_slots"):
        state.import_slots = ImportSlots(settings.imports_at_once, settings.import_max_per_user)
    slots: ImportSlots = state.import_slots
    if request.method != "POST":
        return _error(405, Code.BAD_USER_INPUT, "Use POST", {"Allow": "POST"})
    try:
        claims = claims_of(request, services.verifier)
    except AppError as exc:
        return _unauthenticated(exc.message)
    if claims.role == "anon":
        return _unauthenticated("Authentication required")
    if claims.role != "authenticated" or claims.sub is None:
        return _error(403, Code.FORBIDDEN, "Only a signed-in user can import labs")
    skip = request.query_params.get("skipBad", "false").strip().lower()
    if skip not in ("true", "false"):
        return _error(400, Code.BAD_USER_INPUT, "skipBad must be true or false")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.import_max_bytes:
        return _too_large(settings.import_max_bytes)
    refused = slots.refusal(claims.sub)
    if refused is not None:
        return refused
    runner: Runner = request.app.state.runner
    stream = runner.streamed(claims, readonly=False, timeout_s=settings.import_timeout_s)
    commit = False
    job = LabImport(stream.op, skip_bad=skip == "true")
    try:
        async with asyncio.timeout(settings.import_timeout_s):
            await stream.start()  # the live-session check before any byte is read
            await _read_body(request, job, settings.import_max_bytes)
            report = await job.close()
        # outside the deadline: a commit cut short could not say whether it happened
        commit = job.imported
        await stream.close(commit=commit)
        body = orjson.dumps(report.as_json(imported=commit))
        return Response(body, 200 if commit else 400, media_type=JSON)
    except SessionEnded:
        return _unauthenticated("Session has ended")
    except PoolBusy as busy:
        headers = {"Retry-After": str(busy.retry_after)}
        return _error(503, Code.INTERNAL_SERVER_ERROR, "Every database connection is busy", headers)
    except TooLarge:
        return _too_large(settings.import_max_bytes)
    except TimeoutError:
        log.warning("import cut short: IMPORT_TIMEOUT_S reached")
        message = "The import took too long and was cancelled; nothing was imported"
        return _error(408, Code.TIMEOUT, message)
    except AppError as exc:  # the operation's deadline, inside the database
        return _error(408 if exc.code is Code.TIMEOUT else 400, exc.code, exc.message)
    except ClientDisconnect:
        log.info("import: the client went away")
        return Response(status_code=400)
    except (*DATABASE_GONE, asyncpg.InterfaceError) as exc:
        if not database_gone(exc):
            return fault(JSON)
        log.exception("import: database unavailable")
        headers = {"Retry-After": "5"}
        return _error(503, Code.INTERNAL_SERVER_ERROR, "The database is unavailable", headers)
    except Exception:
        return fault(JSON)
    finally:
        if not stream.ended:
            await job.cancel()
            await stream.close()
        slots.release(claims.sub)


async def _read_body(request: Request, job: LabImport, limit: int) -> None:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        if not await job.feed_bytes(chunk):
            return  # the file cannot be read on: the answer says why
    await job.feed_bytes(b"", final=True)


def _too_large(limit: int) -> Response:
    message = f"The file is larger than {limit:,} bytes (IMPORT_MAX_BYTES)"
    return _error(413, Code.BAD_USER_INPUT, message)
