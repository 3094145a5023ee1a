"""The operation runner: one GraphQL operation, from verified claims to its outcome.

`Runner.run` owns a GraphQL operation whole, and nothing else begins, commits or rolls it
back (the streamed endpoints, export and import, get theirs from `Runner.streamed`, which
begins and ends it for them, with a deadline of its own: http/export.py, http/imports.py):

1. The document, parsed under the token limit and validated once (`Documents`, cached).
2. The operation chosen, its type allowed by the transport (GET: queries only), read-only
   decided once (a query), the variables coerced once.
3. Root fields collected (fragments, @skip/@include); each plannable one shaped by the planner,
   the others left to Strawberry.
4. The preparers of mutation fields (password hashing, bookkeeping that outlives a refusal)
   run before the transaction takes its connection.
5. The database work: a read made only of planned fields is one statement (set-up, session
   check and query together); anything else is one transaction, begun at once when the token
   names a session (an ended session gets 401 before anything runs), the planned fields in one
   statement, then Strawberry for the rest. It commits only when nothing failed.
6. The outcome: the response body and what the transport needs to choose the HTTP status.

A read made only of planned fields is kept with its document for the next request: without
variables, its statement and values (`_FastRead`: it runs again as it is); with variables but
no directive, its roots and their shapes (`_VariableRead`: each request compiles them with its
own values, and the planner keeps each page's text by what it depends on).

With a read replica (db.replica), a query runs on the pool `Replica.choose` gives; a query
the replica answered 503 (gone, or no connection in time) is run again on the primary. A
mutation of a signed-in caller that wrote stamps the caller just before its commit, so that
every worker sends the caller's reads to the primary for REPLICA_READ_AFTER_WRITE seconds.

Subscriptions (over the WebSocket) take the same first steps in `subscribe`: the document
from the same cache under the same limits, the operation chosen, the variables coerced, the
caller checked; what is kept is a `LabEventStream` (graphql/subscription.py), and `deliver`
answers each event in an operation of its own. Queries and mutations sent over the socket
are refused there: they go to POST /graphql.

One deadline bounds the operation's database time (db.operation); a planned field that fails
is answered as it failed, never run again down the other path.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute,
)
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from scriptlabs.auth.accounts import Client
from scriptlabs.auth.tokens import Claims
from scriptlabs.db.operation import (
    CUSTOM_PLAN,
    LOGIN_ROLE,
    Isolation,
    Operation,
    Pool,
    PoolBusy,
    SessionEnded,
)
from scriptlabs.db.outage import RETRY_AFTER, DatabaseUnavailable
from scriptlabs.db.replica import NOTE_WRITE
from scriptlabs.db.sql import JsonParams
from scriptlabs.errors import AppError, Code, from_db_error
from scriptlabs.graphql.answer import Outcome, answer, error_outcome, internal, request_errors
from scriptlabs.graphql.context import Context, Preparation, Preparer, Services
from scriptlabs.graphql.document import Document, Documents
from scriptlabs.graphql.masking import public_errors
from scriptlabs.graphql.planner import NotPlannable, Out, Planner, collect, field_error
from scriptlabs.graphql.subscription import LabEventStream, stream_of
from scriptlabs.graphql.subscription import answer as answer_event
from scriptlabs.labs.columns import DB_FIELDS
from scriptlabs.ops.usage import SearchCounts, found_nothing
from scriptlabs.realtime.listener import LabEventNote

log = logging.getLogger("scriptlabs.graphql")


@dataclass(frozen=True, slots=True)
class Request:
    """One GraphQL request, as the transport read it."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    claims: Claims
    client: Client
    allowed: frozenset[OperationType]


@dataclass(slots=True)
class _Root:
    key: str
    nodes: list[FieldNode]
    nullable: bool
    shape: Out | None = None  # planned
    memo: dict[Any, Any] | None = None  # SQL kept for this root of its document (planner)
    sql: str | None = None
    custom: bool = False  # its SQL names the caller: planned with its values at every run
    error: GraphQLError | None = None
    # a searchLabs first page, counted for `scriptlabs report`: the keys of its totalCount
    # and (when a page is asked for) edges, that say whether it found nothing
    search: tuple[str | None, str | None] | None = None


@dataclass(frozen=True, slots=True)
class _FastRead:
    """A read of planned fields only, with no variables: the same statement every time."""

    statement: str
    args: str
    keys: tuple[str, ...]
    planned: list[_Root]


@dataclass(frozen=True, slots=True)
class _VariableRead:
    """A read of planned fields only, whose document has variables but no directive: its
    root fields and their shapes do not depend on the variables, so each request only
    compiles them with its own values (a deep page's cursor, a lab's id)."""

    # key, nodes, nullable, shape, and the planner's texts kept for the root
    roots: tuple[tuple[str, list[FieldNode], bool, Out, dict[Any, Any]], ...]

    def fresh(self) -> list[_Root]:
        return [
            _Root(key, nodes, nullable, shape, memo=memo)
            for key, nodes, nullable, shape, memo in self.roots
        ]


class StreamedOperation:
    """The one operation of a streamed endpoint (export, import), owned by the runner like
    any other: `start` begins its transaction (the token's session checked first), `close`
    commits it only when asked and nothing failed, else rolls it back; closing twice is a
    no-op, so the endpoint's clean-up can always close it. Between the two, the endpoint reads
    and writes through `op`, under the operation's own deadline."""

    def __init__(self, op: Operation) -> None:
        self.op = op

    @property
    def ended(self) -> bool:
        return self.op.ended

    async def start(self) -> None:
        await self.op.begin()

    async def close(self, *, commit: bool = False) -> None:
        if not self.op.ended:
            await self.op.end(commit=commit)


class Runner:
    """Runs operations for one schema and one set of services."""

    def __init__(
        self,
        strawberry_schema: Any,
        services: Services,
        rules: list[Any],
        preparers: dict[str, Preparer],
        *,
        plan: bool = True,
    ) -> None:
        self.schema = strawberry_schema._schema
        self.services = services
        settings = services.settings
        self.documents = Documents(self.schema, rules, max_tokens=settings.max_tokens)
        self.planner = Planner(self.schema, strawberry_schema) if plan else None
        self.preparers = preparers
        self.planned_fields = 0  # root fields answered by the planner, for tests and metrics

    async def run(self, request: Request) -> Outcome:
        document = await self.documents.get(request.query)
        if document.node is None:
            return request_errors(document.errors)
        operation = document.operation(request.operation_name)
        if isinstance(operation, GraphQLError):
            return request_errors([operation])
        kind = operation.operation
        if kind not in request.allowed:
            if kind is OperationType.SUBSCRIPTION:
                return error_outcome(
                    Code.BAD_USER_INPUT, "Subscriptions run over the WebSocket at /graphql", 400
                )
            return error_outcome(
                Code.BAD_USER_INPUT, "Mutations must be sent with POST", 405, {"Allow": "POST"}
            )
        replica = self.services.replica
        if kind is OperationType.QUERY and replica is not None:
            claims = request.claims
            pool = await replica.choose(claims.sub, claims.raw.get("iat"))
            if pool is replica.pool:
                outcome = await self._run_on(request, document, operation, pool)
                if outcome.status != 503:
                    return outcome
                # the replica is gone or busy: a read is safe to run again, on the primary
                replica.lost()
        return await self._run_on(request, document, operation, self.services.pool)

    async def _run_on(
        self, request: Request, document: Document, operation: OperationDefinitionNode, pool: Pool
    ) -> Outcome:
        """The operation, its database work on `pool` (the primary's, or the replica's)."""
        assert document.node is not None
        kind = operation.operation
        # a read planned before (kept with the document by _query, for queries only)
        fast = document.plans.get(request.operation_name)
        if isinstance(fast, _FastRead) and request.claims.role != "anon":
            return await self._refusing(self._fast_read(fast, request.claims, pool))
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), request.variables or {}
        )
        if isinstance(coerced, list):
            return request_errors(coerced)
        if isinstance(fast, _VariableRead) and request.claims.role != "anon":
            return await self._refusing(
                self._variable_read(fast.fresh(), coerced, request.claims, pool)
            )
        fragments = {
            d.name.value: d
            for d in document.node.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        root_type = (
            self.schema.query_type if kind is OperationType.QUERY else self.schema.mutation_type
        )
        assert root_type is not None
        roots = self._roots(operation.selection_set, root_type, fragments, coerced)
        claims = request.claims
        op = self.services.operation(claims, readonly=kind is OperationType.QUERY, pool=pool)
        ctx = Context(self.services, claims, request.client, op)
        try:
            if kind is OperationType.QUERY:
                # no directive, no variable in the shape: it is kept with the document
                shapes = None if "@" in request.query else document.shapes(request.operation_name)
                self._plan(roots, fragments, coerced, claims, shapes)
                run = self._query(request, document, operation, roots, ctx, coerced)
            else:
                run = self._mutation(request, document.node, operation, roots, ctx, coerced)
            outcome = await self._refusing(run)
        finally:
            if not op.ended:
                await op.end(commit=False)
        if op.lost is not None:
            # a field met a database that had gone (its error, masked, would be a 200): the
            # operation as a whole is refused, with the 503 of an outage; nothing committed
            return _unavailable()
        return outcome

    def streamed(
        self,
        claims: Claims,
        *,
        readonly: bool,
        timeout_s: float,
        isolation: Isolation | None = None,
    ) -> StreamedOperation:
        """The operation of a streamed export or import, on the pool's turns kept for streams
        (a long stream never holds a request's turn), with a deadline of its own."""
        services = self.services
        op = services.operation(
            claims,
            readonly=readonly,
            pool=services.streams,
            isolation=isolation,
            timeout_ms=int(timeout_s * 1000),
        )
        return StreamedOperation(op)

    # -- subscriptions (the WebSocket)

    async def subscribe(self, request: Request) -> LabEventStream | list[GraphQLError]:
        """A subscription accepted, or the errors that refuse it (the `error` message)."""
        document = await self.documents.get(request.query)
        if document.node is None:
            return public_errors(document.errors)
        operation = document.operation(request.operation_name)
        if isinstance(operation, GraphQLError):
            return [operation]
        if operation.operation is not OperationType.SUBSCRIPTION:
            error = AppError(
                Code.BAD_USER_INPUT, "Only subscriptions run over the WebSocket: POST the rest"
            )
            return [GraphQLError(error.message, extensions=error.extensions)]
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), request.variables or {}
        )
        if isinstance(coerced, list):
            return public_errors(coerced)
        if request.claims.role == "anon" or request.claims.sub is None:
            error = AppError(Code.UNAUTHENTICATED, "Authentication required")
            return [GraphQLError(error.message, path=["labEvents"], extensions=error.extensions)]
        return stream_of(document.node, operation, request.variables, coerced, request.claims)

    async def deliver(self, stream: LabEventStream, note: LabEventNote) -> dict[str, Any]:
        """One event's `next` payload; SessionEnded when the subscriber's session is gone."""
        return await answer_event(self.schema, self.services, stream, note)

    @staticmethod
    async def _refusing(run: Awaitable[Outcome]) -> Outcome:
        """The outcome of `run`, or the refusal of an ended session or a busy pool."""
        try:
            return await run
        except SessionEnded:
            return error_outcome(
                Code.UNAUTHENTICATED, "This session has ended", 401, {"WWW-Authenticate": "Bearer"}
            )
        except DatabaseUnavailable:
            return _unavailable()
        except PoolBusy as busy:
            log.warning("every database connection stayed busy: answered 503")
            return error_outcome(
                Code.INTERNAL_SERVER_ERROR,
                "The service is busy; try again shortly",
                503,
                {"Retry-After": str(busy.retry_after)},
            )

    # -- root fields

    def _roots(
        self,
        selection_set: SelectionSetNode,
        root_type: GraphQLObjectType,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Any,
    ) -> list[_Root]:
        grouped: dict[str, list[FieldNode]] = {}
        for node in collect(selection_set, root_type.name, fragments, variables):
            key = node.alias.value if node.alias else node.name.value
            grouped.setdefault(key, []).append(node)
        roots = []
        for key, nodes in grouped.items():
            field = root_type.fields.get(nodes[0].name.value)
            nullable = field is None or not isinstance(field.type, GraphQLNonNull)
            roots.append(_Root(key, nodes, nullable))
        return roots

    def _plan(
        self,
        roots: list[_Root],
        fragments: dict[str, FragmentDefinitionNode],
        variables: Any,
        claims: Claims,
        shapes: dict[str, Out] | None,
    ) -> None:
        """Shape the plannable roots; `shapes`, when given, keeps the shapes of a document
        without directives (they do not depend on the variables) for its next requests."""
        planner = self.planner
        if planner is None:
            return
        for root in roots:
            name = root.nodes[0].name.value
            if not planner.plannable(name):
                continue
            if claims.role == "anon":  # as the resolvers answer (Context.user_operation)
                self.planned_fields += 1
                error = AppError(Code.UNAUTHENTICATED, "Authentication required")
                root.shape = Out(root.key, name)
                root.error = field_error(error, root.nodes, root.key)
                continue
            kept = shapes.get(root.key) if shapes is not None else None
            if kept is not None:
                root.shape = kept
                continue
            try:
                root.shape = planner.shape(root.nodes, fragments, variables)
                if shapes is not None:
                    shapes[root.key] = root.shape
            except NotPlannable as reason:
                log.warning("%s runs through Strawberry: %s", root.key, reason)

    def _compile(
        self, roots: list[_Root], variables: Any, user: uuid.UUID | None, *, alone: bool
    ) -> JsonParams:
        """The planned roots' SQL. A root that names the caller's id gets it from `caller`:
        when the statement is the whole operation (`alone`), run by read_statement, the id is
        bound there as $2, so that one statement, kept with its document, serves every
        caller; otherwise it is one of the statement's values. Such a statement is planned
        with its values at every run (`_Root.custom`)."""
        assert self.planner is not None
        params = JsonParams()
        named: list[str] = []
        used = False

        def caller() -> str:
            nonlocal used
            used = True
            if not named:
                named.append(
                    "$2::uuid" if alone else params.add(user) if user is not None else "null::uuid"
                )
            return named[0]

        for root in roots:
            if root.shape is None or root.error is not None:
                continue
            self.planned_fields += 1
            used = False
            try:
                root.sql = self.planner.compile(
                    root.shape, root.nodes[0], variables, params, caller, root.memo
                )
                root.custom = used
            except AppError as exc:
                root.error = field_error(exc, root.nodes, root.key)
                continue
            if root.shape.name == "searchLabs":
                root.search = self._search_keys(root, variables)
        return params

    def _search_keys(self, root: _Root, variables: Any) -> tuple[str | None, str | None] | None:
        """What says whether a planned search found nothing (ops/usage.py); None: not counted
        (a later page, or a blank query)."""
        assert self.schema.query_type is not None and root.shape is not None
        field = self.schema.query_type.fields["searchLabs"]
        args = get_argument_values(field, root.nodes[0], variables)
        if args.get("after") is not None or not str(args.get("query") or "").strip():
            return None
        count_key = edges_key = None
        for child in root.shape.children:
            if child.name == "totalCount" and count_key is None:
                count_key = child.key
            elif child.name == "edges" and edges_key is None and args.get("first") != 0:
                edges_key = child.key
        return count_key, edges_key

    # -- queries

    async def _query(
        self,
        request: Request,
        document: Document,
        operation: OperationDefinitionNode,
        roots: list[_Root],
        ctx: Context,
        variables: Any,
    ) -> Outcome:
        op = ctx.op
        planned = [r for r in roots if r.shape is not None]
        rest = [r for r in roots if r.shape is None]
        params = (
            self._compile(planned, variables, op.user_id, alone=not rest)
            if planned
            else JsonParams()
        )
        values: dict[str, bytes] = {}
        errors = _root_errors(planned)
        null_data = any(r.error is not None and not r.nullable for r in planned)
        statement = self._statement(planned) if not null_data else None
        if not rest:
            if statement is not None and not operation.variable_definitions:
                if not errors and not null_data:
                    # the same statement answers this document for every caller (RLS does
                    # the rest): kept with the document, it skips planning next time
                    keys = tuple(r.key for r in roots)
                    fast = _FastRead(statement, params.json(), keys, [r for r in planned if r.sql])
                    document.plans[request.operation_name] = fast
            elif "@" not in request.query and ctx.claims.role != "anon":
                # the roots and shapes hold for any variables: next time only compiling is left
                kept: tuple[tuple[str, list[FieldNode], bool, Out, dict[Any, Any]], ...] = tuple(
                    (r.key, r.nodes, r.nullable, r.shape, {}) for r in planned if r.shape
                )
                document.plans[request.operation_name] = _VariableRead(kept)
            return await self._read_planned(op, planned, statement, params, errors, null_data)
        if op.session_id is not None:
            await op.begin()  # the token's session must be live before anything runs
        if statement is not None:
            try:
                if statement.startswith(CUSTOM_PLAN):
                    await op.plan_each_run()
                # its one parameter only when it reads it: a field may collect values that
                # its SQL then needs none of (the suggestion of an empty search)
                extra = (params.json(),) if "$1" in statement else ()
                text = await op.fetchval(statement, *extra)
                values.update(_split(planned, text))
                _count_searches(self.services.searches, planned, values)
            except (AppError, asyncpg.PostgresError) as exc:
                null_data |= self._statement_failed(exc, planned, errors)
        assert document.node is not None
        result_data, result_errors = await self._strawberry(
            request, document.node, operation, rest, ctx
        )
        errors.extend(result_errors)
        if result_data is None:
            null_data = True
        else:
            values.update({k: orjson.dumps(v) for k, v in result_data.items()})
        await op.end(commit=False)  # a query writes nothing
        return answer([r.key for r in roots], values, errors, null_data)

    def _statement(self, planned: list[_Root]) -> str | None:
        """One statement answering every planned field: its columns are the fields' JSON;
        marked to be planned with its values when a field needs that."""
        columns = [f'{r.sql} as "{r.key}"' for r in planned if r.sql is not None]
        if not columns or self.planner is None:
            return None
        statement = f"select row_to_json(d_)::text from (select {', '.join(columns)}) d_"
        if any(r.custom for r in planned if r.sql is not None):
            return CUSTOM_PLAN + statement
        return statement

    async def _variable_read(
        self, roots: list[_Root], variables: Any, claims: Claims, pool: Pool
    ) -> Outcome:
        """A document of planned fields whose shapes are kept, compiled with these variables."""
        op = self.services.operation(claims, readonly=True, pool=pool)
        params = self._compile(roots, variables, op.user_id, alone=True)
        errors = _root_errors(roots)
        null_data = any(r.error is not None and not r.nullable for r in roots)
        statement = self._statement(roots) if not null_data else None
        return await self._read_planned(op, roots, statement, params, errors, null_data)

    async def _read_planned(
        self,
        op: Operation,
        planned: list[_Root],
        statement: str | None,
        params: JsonParams,
        errors: list[GraphQLError],
        null_data: bool,
    ) -> Outcome:
        """A read made only of planned fields: their one statement (when any is left to run)
        in the operation's one transaction, and the answer."""
        values: dict[str, bytes] = {}
        if statement is not None:
            try:
                text = await op.read_statement(statement, params.json())
                values.update(_split(planned, text))
                _count_searches(self.services.searches, planned, values)
            except (AppError, asyncpg.PostgresError) as exc:
                null_data |= self._statement_failed(exc, planned, errors)
        return answer([r.key for r in planned], values, errors, null_data)

    async def _fast_read(self, fast: _FastRead, claims: Claims, pool: Pool) -> Outcome:
        """A document planned before, without variables: its statement, run again."""
        self.planned_fields += len(fast.planned)
        op = self.services.operation(claims, readonly=True, pool=pool)
        values: dict[str, bytes] = {}
        errors: list[GraphQLError] = []
        null_data = False
        try:
            text = await op.read_statement(fast.statement, fast.args)
            values.update(_split(fast.planned, text))
            _count_searches(self.services.searches, fast.planned, values)
        except (AppError, asyncpg.PostgresError) as exc:
            null_data = self._statement_failed(exc, fast.planned, errors)
        return answer(fast.keys, values, errors, null_data)

    @staticmethod
    def _statement_failed(
        exc: AppError | asyncpg.PostgresError, planned: list[_Root], errors: list[GraphQLError]
    ) -> bool:
        """The error of the planned statement, placed on its first field; True when the
        answer's data must be null (a non-null field among those it would have answered)."""
        mapped = exc if isinstance(exc, AppError) else from_db_error(exc, DB_FIELDS)
        if mapped.code is Code.INTERNAL_SERVER_ERROR:
            log.error("planned statement failed", exc_info=exc)
        first = next(r for r in planned if r.sql is not None)
        errors.append(field_error(mapped, first.nodes, first.key))
        return any(not r.nullable for r in planned if r.sql is not None)

    # -- mutations

    async def _mutation(
        self,
        request: Request,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        roots: list[_Root],
        ctx: Context,
        variables: Any,
    ) -> Outcome:
        await self._prepare(roots, ctx, variables)
        op = ctx.op
        if op.session_id is not None:
            await op.begin()
        data, errors = await self._strawberry(request, document, operation, roots, ctx)
        failed = bool(errors) or op.failed
        replica = self.services.replica
        # a write by a signed-in caller, with a replica: stamped, so that every worker sends
        # the caller's reads to the primary for a while (db.replica)
        stamp = not failed and replica is not None and op.started and op.user_id is not None
        try:
            if stamp:
                async with op.as_role(LOGIN_ROLE) as conn:
                    await conn.execute(NOTE_WRITE, op.user_id)
            await op.end(commit=not failed)
        except (
            AppError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            TimeoutError,
        ) as exc:
            return internal(exc)
        if stamp and replica is not None and op.user_id is not None:
            replica.wrote(op.user_id)
        if failed:  # contract: a failed mutation wrote nothing, and its data is null
            return answer([r.key for r in roots], {}, errors, True)
        values = {k: orjson.dumps(v) for k, v in (data or {}).items()}
        return answer([r.key for r in roots], values, errors, data is None)

    async def _prepare(self, roots: list[_Root], ctx: Context, variables: Any) -> None:
        """Run the preparers of the mutation's fields, in order, before the transaction."""
        mutation_type = self.schema.mutation_type
        assert mutation_type is not None
        preparation = Preparation(self.services, ctx.claims, ctx.client, ctx.op)
        for root in roots:
            name = root.nodes[0].name.value
            preparer = self.preparers.get(name)
            if preparer is None:
                continue
            field = mutation_type.fields[name]
            try:
                args = get_argument_values(field, root.nodes[0], variables)
            except GraphQLError:
                continue  # Strawberry reports the argument error itself
            try:
                ctx.prepared[root.key] = await preparer(preparation, args)
            except (AppError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                ctx.prepared[root.key] = exc  # the field's error, raised by its resolver
                # mutation fields are non-null and run in order: none after it will run, so
                # none is prepared (no password hashed, no attempt counted for nothing)
                break

    # -- Strawberry for the rest

    async def _strawberry(
        self,
        request: Request,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        roots: list[_Root],
        ctx: Context,
    ) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
        nodes = [node for root in roots for node in root.nodes]
        selected = OperationDefinitionNode(
            operation=operation.operation,
            name=operation.name,
            variable_definitions=operation.variable_definitions,
            directives=operation.directives,
            selection_set=SelectionSetNode(selections=tuple(nodes)),
        )
        fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
        result = execute(
            self.schema,
            DocumentNode(definitions=(selected, *fragments)),
            context_value=ctx,
            variable_values=request.variables,
            executor_class=StrawberryGraphQLCoreExecutionContext,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        )
        if optimized_is_awaitable(result):
            result = await result  # type: ignore[misc]
        errors = public_errors(result.errors) if result.errors else []  # type: ignore[union-attr]
        return result.data, errors  # type: ignore[union-attr]

    # -- the answer


def _unavailable() -> Outcome:
    """The answer while the database cannot be reached (contract: 503 with Retry-After)."""
    return error_outcome(
        Code.INTERNAL_SERVER_ERROR,
        "The database is unavailable",
        503,
        {"Retry-After": str(RETRY_AFTER)},
    )


def _root_errors(planned: list[_Root]) -> list[GraphQLError]:
    """The errors of the planned roots, in their order, as graphql-core reports them: once a
    non-null field has failed (the data is null), the errors of the non-null fields after it
    are not reported; those of nullable fields still are."""
    errors: list[GraphQLError] = []
    failed = False
    for root in planned:
        if root.error is None:
            continue
        if not root.nullable:
            if failed:
                continue
            failed = True
        errors.append(root.error)
    return errors


def _count_searches(counts: SearchCounts, planned: list[_Root], values: dict[str, bytes]) -> None:
    """The planned searches answered, for `scriptlabs report` (counted in the process)."""
    for root in planned:
        if root.search is not None:
            value = values.get(root.key)
            if value is not None:
                counts.record(found_nothing(value, *root.search))


def _split(planned: list[_Root], text: str | None) -> dict[str, bytes]:
    """The planned fields' JSON, by key, from the statement's object (compact, in order)."""
    if text is None:
        return {}
    keys = [r.key for r in planned if r.sql is not None]
    if len(keys) == 1:
        prefix = orjson.dumps(keys[0]) + b":"
        raw = text.encode()
        # {"key":VALUE}: cut the value out without parsing it
        return {keys[0]: raw[1 + len(prefix) : -1]}
    parsed = orjson.loads(text)
    return {k: orjson.dumps(parsed[k]) for k in keys}
