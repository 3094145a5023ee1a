"""Cross-cutting parts of every operation, as Strawberry schema extensions.

- OperationTransaction: one transaction per operation; commit only when nothing failed.
- OperationChoice: a document of several operations needs `operationName`.
- public_errors(): every error gets the contract's `extensions.code`; nothing internal leaks.
  The transports apply it to every result (some errors, such as a syntax error found by the
  parser cache, arise outside the extension hooks).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from scriptlabs.db.operation import Skipped
from scriptlabs.errors import INTERNAL_MESSAGE, AppError, Code, from_db_error
from scriptlabs.graphql.context import Context

log = logging.getLogger("scriptlabs.graphql")


class OperationTransaction(SchemaExtension):
    """Opens the operation's transaction (lazily, on its first statement) and ends it."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx: Context = self.execution_context.context
        services = ctx.services
        readonly = self.execution_context.operation_type is OperationType.QUERY
        op = ctx.op or services.operation(ctx.claims, readonly=readonly)
        ctx.op = op
        ctx.executed = True
        commit = False
        try:
            yield
            result = self.execution_context.result
            failed = bool(result is not None and result.errors) or op.failed
            commit = not failed
            if failed and not readonly and result is not None:
                result.data = None  # contract: a mutation that failed anywhere wrote nothing
        finally:
            await op.finish(commit=commit)


class OperationChoice(SchemaExtension):
    """Refuse a document of several operations sent without `operationName`.

    The GraphQL specification (GetOperation) makes that a request error; Strawberry would run
    the first operation instead. Installed after the validation cache, whose list it copies.
    """

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        # Strawberry keeps the operationName the client sent only in this attribute
        named = getattr(ctx, "_provided_operation_name", None) is not None
        if document is not None and not named:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                error = GraphQLError(
                    "Must provide operationName if the document contains several operations",
                    extensions={"code": Code.BAD_USER_INPUT.value},
                )
                ctx.pre_execution_errors = [*(ctx.pre_execution_errors or []), error]
        yield


def _public(error: GraphQLError) -> GraphQLError | None:
    original = error.original_error
    if isinstance(original, (Skipped, asyncpg.InFailedSQLTransactionError)):
        return None  # a consequence of an earlier error, reported already
    if isinstance(original, AppError):
        return error
    if isinstance(original, asyncpg.PostgresError):
        mapped = from_db_error(original)
        if mapped.code is Code.INTERNAL_SERVER_ERROR:
            log.error("database error in %s", error.path, exc_info=original)
        return GraphQLError(
            mapped.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions=mapped.extensions,
        )
    if original is None or error.path is None:
        # parse, validation and variable errors: the request is at fault
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
    log.error("unexpected error in %s", error.path, exc_info=original)
    return GraphQLError(
        INTERNAL_MESSAGE,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        extensions={"code": Code.INTERNAL_SERVER_ERROR.value},
    )


def public_errors(errors: list[GraphQLError]) -> list[GraphQLError]:
    kept = [e for e in map(_public, errors) if e is not None]
    # keep at least one error if all were consequences (cannot happen, but never lose the fact)
    return kept or [_public_fallback()]


def _public_fallback() -> GraphQLError:
    return GraphQLError(INTERNAL_MESSAGE, extensions={"code": Code.INTERNAL_SERVER_ERROR.value})
