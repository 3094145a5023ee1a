"""GraphQL over HTTP (POST JSON, GET for queries), per the GraphQL over HTTP specification.

Strawberry runs the operation (parse and validation caches, extensions); this module owns
the transport: body limits, the bearer token, content negotiation, status codes and JSON
encoding (orjson). Problems with the request itself are answered in the same
`{"errors": [...]}` shape, each with the contract's `extensions.code`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import asyncpg
import orjson
from graphql import GraphQLError, get_operation_ast, parse
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from scriptlabs.errors import AppError, Code
from scriptlabs.graphiql import graphiql_html
from scriptlabs.graphql.context import Context, Services
from scriptlabs.graphql.extensions import public_errors
from scriptlabs.graphql.planner import Planner
from scriptlabs.graphql.schema import Schema
from scriptlabs.http.client import claims_of, client_of

log = logging.getLogger("scriptlabs.http")

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"


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


@functools.lru_cache(maxsize=1024)
def operation_type(query: str, operation_name: str | None) -> OperationType | None:
    """The type of the operation a document names, or None when it does not parse."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operation = get_operation_ast(document, operation_name)
    return OperationType(operation.operation.value) if operation is not None else None


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
    raw_variables = request.query_params.get("variables")
    if raw_variables:
        try:
            params["variables"] = orjson.loads(raw_variables)
        except orjson.JSONDecodeError:
            raise RequestError(400, Code.BAD_USER_INPUT, "variables is not valid JSON") from None
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


def _check_shape(params: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    query, variables = params.get("query"), params.get("variables")
    name = params.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise RequestError(400, Code.BAD_USER_INPUT, "query must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise RequestError(400, Code.BAD_USER_INPUT, "variables must be an object")
    if name is not None and not isinstance(name, str):
        raise RequestError(400, Code.BAD_USER_INPUT, "operationName must be a string")
    return query, variables, name


class GraphQLEndpoint:
    """The ASGI endpoint for `GET`/`POST /graphql`."""

    def __init__(self, schema: Schema, services: Services) -> None:
        self.schema = schema
        self.services = services
        self.settings = services.settings
        self.verifier = services.verifier
        self.planner = (
            Planner(schema, schema.validation_rules) if self.settings.graphql_planner else None
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        media = _media_type(request)
        try:
            return await self._handle(request, media)
        except RequestError as exc:
            return Response(
                error_body(exc.code, exc.message), exc.status, exc.headers, media_type=media
            )
        except AppError as exc:  # the bearer token
            status = 401 if exc.code is Code.UNAUTHENTICATED else 400
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return Response(error_body(exc.code, exc.message), status, headers, media_type=media)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError, TimeoutError):
            # the database did not answer the session check: our fault, said in the same shape
            log.exception("database unavailable")
            body = error_body(Code.INTERNAL_SERVER_ERROR, "The database is unavailable")
            return Response(body, 503, {"Retry-After": "5"}, media_type=media)

    async def _execute(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Context,
        allowed: set[OperationType],
    ) -> ExecutionResult:
        try:
            return await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=allowed,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise RequestError(
                    400, Code.BAD_USER_INPUT, "Subscriptions run over the WebSocket at /graphql"
                ) from None
            raise RequestError(
                405, Code.BAD_USER_INPUT, "Mutations must be sent with POST", {"Allow": "POST"}
            ) from None
        except CannotGetOperationTypeError as exc:
            raise RequestError(400, Code.BAD_USER_INPUT, exc.as_http_error_reason()) from None
        except MissingQueryError:
            raise RequestError(400, Code.BAD_USER_INPUT, "query is missing") from None

    async def _handle(self, request: Request, media: str) -> Response:
        if request.method == "GET":
            if _wants_html(request):
                return HTMLResponse(graphiql_html("/graphql"))
            params = _params_from_get(request)
            allowed = {OperationType.QUERY}
        elif request.method == "POST":
            params = await _params_from_post(request, self.settings.max_body_bytes)
            allowed = {OperationType.QUERY, OperationType.MUTATION}
        else:
            raise RequestError(405, Code.BAD_USER_INPUT, "Use GET or POST", {"Allow": "GET, POST"})
        query, variables, operation_name = _check_shape(params)
        claims = claims_of(request, self.verifier)
        context = Context(
            services=self.services,
            claims=claims,
            client=client_of(request, self.settings.trusted_proxies),
        )
        plan = self.planner.plan(query, operation_name) if self.planner is not None else None
        if claims.session_id is not None:
            # the token's session must be live: checked in the transaction's set-up statement,
            # before anything runs, so an ended session gets 401 (contract)
            readonly = plan is not None or operation_type(query, operation_name) is not (
                OperationType.MUTATION
            )
            context.op = self.services.operation(claims, readonly=readonly)
            if not await context.op.begin():
                await context.op.finish(commit=False)
                raise AppError(Code.UNAUTHENTICATED, "This session has ended")
        try:
            if plan is not None:
                assert self.planner is not None
                planned = await self.planner.run(plan, variables, context)
                if planned is not None:
                    return Response(planned, 200, media_type=media)
            result = await self._execute(query, variables, operation_name, context, allowed)
        finally:
            if context.op is not None:
                await context.op.finish(commit=False)  # a no-op once the operation has ended

        body: dict[str, Any] = {}
        status = 200
        errors = public_errors(result.errors) if result.errors else []
        if errors:
            body["errors"] = [e.formatted for e in errors]
        # a request error: the document did not parse or validate, or variables did not coerce
        request_error = not context.executed or (
            result.data is None and all(e.path is None for e in errors)
        )
        if not request_error:
            body["data"] = result.data
        elif media == GRAPHQL_RESPONSE:
            status = 400  # as the GraphQL over HTTP specification says; application/json: 200
        if result.extensions:
            body["extensions"] = result.extensions
        return Response(orjson.dumps(body), status, media_type=media)
