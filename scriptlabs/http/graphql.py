"""GraphQL over HTTP (POST JSON, GET for queries), per the GraphQL over HTTP specification.

The runner (graphql/execution.py) runs the operation; this module owns the transport: body
limits, the bearer token, persisted queries (a hash resolved to its document before the
runner sees the request: http/persisted.py), content negotiation, status codes, the caching
headers of GET answers and JSON encoding (orjson). Problems with the request itself are
answered in the same `{"errors": [...]}` shape, each with the contract's `extensions.code`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import orjson
from graphql import OperationType
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from scriptlabs.db.operation import PoolBusy
from scriptlabs.db.outage import RETRY_AFTER, DatabaseUnavailable
from scriptlabs.errors import AppError, Code
from scriptlabs.graphiql import graphiql_html
from scriptlabs.graphql.context import Services
from scriptlabs.graphql.execution import Request as Operation
from scriptlabs.graphql.execution import Runner
from scriptlabs.http.client import claims_of, client_of
from scriptlabs.http.persisted import PersistedError, persisted_queries
from scriptlabs.ops import access
from scriptlabs.telemetry import logs, metrics
from scriptlabs.telemetry.metrics import outcome_of

# What says the database is not there (refused, lost, restarting, out of connections, the pool
# or connection closed under us): 503 and Retry-After. Any other driver or server error that
# reaches the transport is a fault of ours, such as a statement the driver refuses, and is
# answered as one, with a request id.
DATABASE_GONE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)


def fault(media: str) -> Response:
    """A fault of ours, while its exception is handled: logged whole with the request's id
    (X-Request-Id), and answered in the contract's shape, never as text."""
    request_id = logs.request_id()
    log.exception("request failed (request %s)", request_id)
    body = orjson.dumps(
        {
            "errors": [
                {
                    "message": "Internal server error",
                    "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                }
            ]
        }
    )
    return Response(body, 500, media_type=media)


def database_gone(exc: BaseException) -> bool:
    # the driver says "pool is closed" and "connection is closed" as plain InterfaceErrors
    return isinstance(exc, DATABASE_GONE) or "is closed" in str(exc)


log = logging.getLogger("scriptlabs.http")

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
QUERIES = frozenset({OperationType.QUERY})
QUERIES_AND_MUTATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


class RequestError(Exception):
    """A request refused before GraphQL runs: an HTTP status and one error."""

    def __init__(
        self, status: int, code: Code, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: Code | str, message: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": str(code)}}]})


def _media_type(request: Request) -> str:
    """application/graphql-response+json when the client prefers it, else application/json."""
    accept = request.headers.get("accept", "")
    best, best_q = JSON, -1.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media == GRAPHQL_RESPONSE and q > best_q:
            best, best_q = GRAPHQL_RESPONSE, q
        elif media in (JSON, "application/*", "*/*") and q > best_q:
            best, best_q = JSON, q
    return best


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "query" not in request.query_params


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, Code.BAD_USER_INPUT, "Request body is larger than 1 MiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, Code.BAD_USER_INPUT, "Request body is larger than 1 MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _params_from_get(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {
        "query": request.query_params.get("query"),
        "operationName": request.query_params.get("operationName"),
    }
    for name in ("variables", "extensions"):  # JSON in the query string
        raw = request.query_params.get(name)
        if raw:
            try:
                params[name] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise RequestError(400, Code.BAD_USER_INPUT, f"{name} is not valid JSON") from None
    return params


async def _params_from_post(request: Request, limit: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, GRAPHQL_RESPONSE) and not content_type.endswith("+json"):
        raise RequestError(415, Code.BAD_USER_INPUT, "Send the operation as application/json")
    body = await _read_body(request, limit)
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, Code.BAD_USER_INPUT, "Request body is not valid JSON") from None
    if not isinstance(params, dict):
        raise RequestError(
            400, Code.BAD_USER_INPUT, "The body must be a JSON object (batching is not supported)"
        )
    return params


# the name of a document's first operation, for a request without operationName (the
# metrics' label; a document of several operations needs operationName anyway)
FIRST_NAME = re.compile(r"\s*(?:query|mutation|subscription)\s+([A-Za-z_][A-Za-z0-9_]*)")


def _first_name(query: str) -> str | None:
    found = FIRST_NAME.match(query)
    return found.group(1) if found else None


def _check_shape(
    params: dict[str, Any],
) -> tuple[str | None, dict[str, Any] | None, str | None, dict[str, Any] | None]:
    """query (None only when a persisted query names the document), variables, operation name
    and extensions, their types checked."""
    query, variables = params.get("query"), params.get("variables")
    extensions = params.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError(400, Code.BAD_USER_INPUT, "extensions must be an object")
    name = params.get("operationName")
    hashed = query is None and extensions is not None and "persistedQuery" in extensions
    if not hashed and (not isinstance(query, str) or not query.strip()):
        raise RequestError(400, Code.BAD_USER_INPUT, "query must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise RequestError(400, Code.BAD_USER_INPUT, "variables must be an object")
    if name is not None and not isinstance(name, str):
        raise RequestError(400, Code.BAD_USER_INPUT, "operationName must be a string")
    return query, variables, name, extensions


# Caching of GET answers (README, "Persisted queries"). Answers depend on the bearer token and
# on the media type asked for: shared caches key on both (Vary). Only an anonymous answer
# without errors may be kept by a shared cache, briefly; anything for a signed-in caller is
# `private, no-store`, so no CDN or proxy ever hands one user's data to another.
PUBLIC_MAX_AGE = 60
VARY = "Accept, Authorization"
NO_STORE = {"Cache-Control": "private, no-store", "Vary": VARY}
CACHE_PUBLIC = {"Cache-Control": f"public, max-age={PUBLIC_MAX_AGE}", "Vary": VARY}
# what Apollo Server sends with PERSISTED_QUERY_NOT_FOUND: never kept, or the client that sends
# the document next would keep getting the refusal from a cache
NOT_FOUND_HEADERS = {"Cache-Control": "private, no-cache, must-revalidate", "Vary": VARY}


def _cache_headers(request: Request, status: int, body: bytes) -> dict[str, str]:
    anonymous = "authorization" not in request.headers
    if anonymous and status == 200 and not body.startswith(b'{"errors"'):
        return CACHE_PUBLIC
    return NO_STORE


class GraphQLEndpoint:
    """The ASGI endpoint for `GET`/`POST /graphql`: reads the request, hands it to the runner,
    and turns the runner's outcome into HTTP."""

    def __init__(self, runner: Runner, services: Services) -> None:
        self.runner = runner
        self.settings = services.settings
        self.verifier = services.verifier
        self.persisted = persisted_queries(services.settings, services.pool)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        media = _media_type(request)
        response = await self._answer(request, media)
        refused_get = request.method == "GET" and "cache-control" not in response.headers
        if refused_get and not isinstance(response, HTMLResponse):  # never kept by a cache
            response.headers.update(NO_STORE)
        return response

    async def _answer(self, request: Request, media: str) -> Response:
        request.scope[access.OPERATION] = access.UNKNOWN  # for the metrics and the access line
        try:
            response = await self._handle(request, media)
            request.scope[access.OUTCOME] = outcome_of(response.body)
            return response
        except RequestError as exc:
            request.scope[access.OUTCOME] = exc.code.value
            return Response(
                error_body(exc.code, exc.message), exc.status, exc.headers, media_type=media
            )
        except AppError as exc:  # the bearer token
            request.scope[access.OUTCOME] = exc.code.value
            status = 401 if exc.code is Code.UNAUTHENTICATED else 400
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return Response(error_body(exc.code, exc.message), status, headers, media_type=media)
        except (*DATABASE_GONE, asyncpg.InterfaceError) as exc:
            request.scope[access.OUTCOME] = Code.INTERNAL_SERVER_ERROR.value
            if not database_gone(exc):
                return fault(media)
            # the database did not answer: our fault, said in the same shape (an outage is
            # logged where it is found, db.outage, not once per refused request)
            metrics.count_db_unavailable()
            if not isinstance(exc, DatabaseUnavailable):
                log.warning("database unavailable: %s", exc)
            body = error_body(Code.INTERNAL_SERVER_ERROR, "The database is unavailable")
            return Response(body, 503, {"Retry-After": str(RETRY_AFTER)}, media_type=media)
        except PoolBusy as busy:  # the registered documents could not be read in time
            request.scope[access.OUTCOME] = Code.INTERNAL_SERVER_ERROR.value
            body = error_body(Code.INTERNAL_SERVER_ERROR, "The service is busy; try again shortly")
            return Response(body, 503, {"Retry-After": str(busy.retry_after)}, media_type=media)
        except Exception:
            request.scope[access.OUTCOME] = Code.INTERNAL_SERVER_ERROR.value
            return fault(media)

    async def _handle(self, request: Request, media: str) -> Response:
        if request.method == "GET":
            if _wants_html(request):
                del request.scope[access.OPERATION]  # the explorer's page: no operation
                return HTMLResponse(graphiql_html("/graphql"))
            params = _params_from_get(request)
            allowed = QUERIES
        elif request.method == "POST":
            params = await _params_from_post(request, self.settings.max_body_bytes)
            allowed = QUERIES_AND_MUTATIONS
        else:
            raise RequestError(405, Code.BAD_USER_INPUT, "Use GET or POST", {"Allow": "GET, POST"})
        query, variables, operation_name, extensions = _check_shape(params)
        claims = claims_of(request, self.verifier)
        try:
            resolved = await self.persisted.resolve(query, extensions)
        except PersistedError as exc:
            return self._refused(exc, media)
        request.scope[access.OPERATION] = operation_name or _first_name(resolved.query)
        client = client_of(request, self.settings.trusted_proxies)
        request.scope[access.CLIENT] = client.ip_address
        outcome = await self.runner.run(
            Operation(
                query=resolved.query,
                variables=variables,
                operation_name=operation_name,
                claims=claims,
                client=client,
                allowed=allowed,
            )
        )
        if resolved.register is not None and not outcome.request_error:
            # it parsed and validated (and ran): from now on its hash alone will do
            self.persisted.keep(resolved.register, resolved.query)
        status = outcome.status
        if status is None:
            # a request error: as the GraphQL over HTTP specification says for
            # application/graphql-response+json; application/json: 200
            status = 400 if outcome.request_error and media == GRAPHQL_RESPONSE else 200
        headers = outcome.headers
        if request.method == "GET":
            headers = {**(headers or {}), **_cache_headers(request, status, outcome.body)}
        return Response(outcome.body, status, headers, media_type=media)

    @staticmethod
    def _refused(exc: PersistedError, media: str) -> Response:
        """A persisted query that cannot run. PERSISTED_QUERY_NOT_FOUND is HTTP 200 whatever
        the media type, as Apollo Server answers it (Apollo Client then sends the document);
        the others are request errors: 400 (403 for FORBIDDEN) with
        application/graphql-response+json, 200 with application/json."""
        body = error_body(exc.code, exc.message)
        if exc.code is Code.PERSISTED_QUERY_NOT_FOUND:
            return Response(body, 200, NOT_FOUND_HEADERS, media_type=media)
        status = 200
        if media == GRAPHQL_RESPONSE:
            status = 403 if exc.code is Code.FORBIDDEN else 400
        return Response(body, status, NO_STORE, media_type=media)
