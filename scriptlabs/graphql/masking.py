"""Public errors: every error gets the contract's `extensions.code`; nothing internal leaks.

The runner applies `public_errors()` to every error list it answers with, from the parser,
validation, variable coercion, the planner and Strawberry's resolvers alike.
"""

from __future__ import annotations

import logging

import asyncpg
from graphql import GraphQLError

from scriptlabs.db.operation import Skipped
from scriptlabs.db.outage import DatabaseUnavailable
from scriptlabs.errors import INTERNAL_MESSAGE, AppError, Code, from_db_error
from scriptlabs.graphql.fields import graphql_name
from scriptlabs.labs.columns import DB_FIELDS
from scriptlabs.telemetry import logs

log = logging.getLogger("scriptlabs.graphql")


def _public(error: GraphQLError) -> GraphQLError | None:
    original = error.original_error
    if isinstance(original, (Skipped, asyncpg.InFailedSQLTransactionError)):
        return None  # a consequence of an earlier error, reported already
    if isinstance(original, DatabaseUnavailable):
        # the runner answers the whole operation with a 503 (db.outage logs the outage)
        return GraphQLError(
            "The database is unavailable",
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions={"code": Code.INTERNAL_SERVER_ERROR.value},
        )
    if isinstance(original, AppError):
        named = original.named(graphql_name)  # a lab field as clients know it
        if named.code is Code.INTERNAL_SERVER_ERROR and "requestId" not in named.extensions:
            # a fault mapped by the domain (from_db_error): logged with its cause, and the
            # request's id given to the client to find it
            log.error("internal error in %s", error.path, exc_info=original)
            extensions = {**named.extensions, "requestId": logs.request_id()}
            return GraphQLError(
                named.message,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                extensions=extensions,
            )
        if named is original:
            return error
        return GraphQLError(
            named.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions=named.extensions,
        )
    if isinstance(original, asyncpg.PostgresError):
        mapped = from_db_error(original, DB_FIELDS).named(graphql_name)
        extensions = mapped.extensions
        if mapped.code is Code.INTERNAL_SERVER_ERROR:
            log.error("database error in %s", error.path, exc_info=original)
            # the id the log line carries (X-Request-Id), so the cause can be found
            extensions = {**extensions, "requestId": logs.request_id()}
        return GraphQLError(
            mapped.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions=extensions,
        )
    if original is None or error.path is None:
        # parse, validation and variable errors: the request is at fault (a fault outside
        # any field, such as a commit lost with its connection, never comes this way: the
        # runner answers it as INTERNAL_SERVER_ERROR with a request id)
        if error.extensions and "code" in error.extensions:
            return error
        return GraphQLError(
            error.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions={**(error.extensions or {}), "code": Code.BAD_USER_INPUT.value},
        )
    return _internal(error, original)


def _internal(error: GraphQLError, original: BaseException | None) -> GraphQLError:
    request_id = logs.request_id()  # the request's X-Request-Id
    log.error("unexpected error in %s (request %s)", error.path, request_id, exc_info=original)
    return GraphQLError(
        INTERNAL_MESSAGE,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        extensions={"code": Code.INTERNAL_SERVER_ERROR.value, "requestId": request_id},
    )


def public_errors(errors: list[GraphQLError]) -> list[GraphQLError]:
    kept = [e for e in map(_public, errors) if e is not None]
    # keep at least one error if all were consequences (cannot happen, but never lose the fact)
    return kept or [_public_fallback()]


def _public_fallback() -> GraphQLError:
    return _internal(GraphQLError(INTERNAL_MESSAGE), None)
