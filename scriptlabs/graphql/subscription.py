"""A subscription's document, kept once it was accepted, and the answer to each of its events.

`Runner.subscribe` (graphql/execution.py) checks the document like any request (parsed under
the token limit, validated with the depth and complexity limits, cached) and keeps what each
event needs: the operation alone, its coerced variables, the caller's claims, and the Lab
columns its selection under `lab` names (none: no read at all). `answer` is one event's
`next` payload: the lab read in an operation of its own under the subscriber's role and claims
(one connection, one deadline, the live-session check: `SessionEnded` once the session is
gone), then the document executed with the event as its root value. A subscription holds no
transaction open between events.

The read is one round trip (`Operation.read_statement`: read-only, session check, role and
claims, then the select, in one statement), where BEGIN, set-up, select and ROLLBACK took
four: each event is read once per subscriber of its user. The row comes back as JSON and is
turned into the values the Lab type serialises (timestamps, ids, the status enum).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLSchema,
    OperationDefinitionNode,
    execute,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from scriptlabs.auth.tokens import Claims
from scriptlabs.db.operation import PoolBusy
from scriptlabs.errors import AppError, Code, from_db_error
from scriptlabs.graphql.context import Services
from scriptlabs.graphql.fields import columns_for
from scriptlabs.graphql.masking import public_errors
from scriptlabs.graphql.planner import collect
from scriptlabs.graphql.resolvers.events import LabEvent, LabEventType
from scriptlabs.graphql.types import Lab
from scriptlabs.labs.columns import DB_FIELDS, LAB_FIELDS, select_list
from scriptlabs.realtime.listener import LabEventNote

log = logging.getLogger("scriptlabs.graphql")

# one lab as one JSON object, RLS deciding whether there is one (read_statement's $1: [id])
LAB_JSON = (
    "select row_to_json(l)::text from "
    "(select {columns} from public.labs where id = ($1::jsonb->>0)::uuid) l"
)
# columns whose JSON is not the Python value the Lab type expects
_CONVERTED: dict[str, Callable[[Any], Any]] = {
    f.column: (uuid.UUID if f.sql_type == "uuid" else dt.datetime.fromisoformat)
    for f in LAB_FIELDS
    if f.sql_type in ("uuid", "timestamptz")
}

# what may stop an event's read: answered in the event's place, the subscription goes on
READ_FAILURES = (AppError, PoolBusy, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True, slots=True)
class LabEventStream:
    """An accepted labEvents subscription: what each of its events needs."""

    document: DocumentNode  # the operation alone, with the document's fragments
    variables: dict[str, Any] | None
    claims: Claims
    lab_columns: list[str] | None  # None: `lab` is not selected, nothing is read
    lab_sql: str | None  # the read of those columns, one JSON row, its one value the lab id


def stream_of(
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: dict[str, Any] | None,
    coerced: Any,
    claims: Claims,
) -> LabEventStream:
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    lab_fields: set[str] = set()
    lab_selected = False
    for root in collect(operation.selection_set, "Subscription", fragments, coerced):
        for node in collect(root.selection_set, "LabEvent", fragments, coerced):
            if node.name.value == "lab":
                lab_selected = True
                lab_fields.update(
                    f.name.value for f in collect(node.selection_set, "Lab", fragments, coerced)
                )
    alone = DocumentNode(definitions=(operation, *fragments.values()))
    columns = columns_for(lab_fields) if lab_selected else None
    sql = LAB_JSON.format(columns=select_list(columns)) if columns is not None else None
    return LabEventStream(alone, variables, claims, columns, sql)


async def answer(
    schema: GraphQLSchema, services: Services, stream: LabEventStream, note: LabEventNote
) -> dict[str, Any]:
    """The `next` payload of one event (raises SessionEnded when the session is gone)."""
    lab: Lab | None = None
    if note.type != "DELETED" and stream.lab_sql is not None:
        op = services.operation(stream.claims, readonly=True)
        try:
            text = await op.read_statement(
                stream.lab_sql, orjson.dumps([str(note.lab_id)]).decode()
            )
        except (*READ_FAILURES,) as exc:
            return _failed(exc)
        lab = Lab.from_row(_typed(orjson.loads(text))) if text is not None else None
    event = LabEvent(type=LabEventType[note.type], id=note.lab_id, lab=lab)
    result = execute(
        schema,
        stream.document,
        root_value=event,
        variable_values=stream.variables,
        executor_class=StrawberryGraphQLCoreExecutionContext,
    )
    if not isinstance(result, ExecutionResult):  # plain values: it never awaits, but may
        result = await result
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in public_errors(list(result.errors))]
    return payload


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """A row read as JSON, its values as the driver would give them."""
    for column, kind in _CONVERTED.items():
        value = row.get(column)
        if value is not None:
            row[column] = kind(value)
    return row


def _failed(exc: BaseException) -> dict[str, Any]:
    """An event whose lab could not be read: its error, in the event's place."""
    if isinstance(exc, PoolBusy):
        error = AppError(Code.INTERNAL_SERVER_ERROR, "The service is busy")
    elif isinstance(exc, AppError):
        error = exc
    elif isinstance(exc, asyncpg.PostgresError):
        error = from_db_error(exc, DB_FIELDS)
    else:
        error = AppError(Code.INTERNAL_SERVER_ERROR, "The database is unavailable")
    if error.code is Code.INTERNAL_SERVER_ERROR:
        log.warning("a lab event could not be read: %s", exc)
    return {
        "data": None,
        "errors": [
            {"message": error.message, "extensions": error.extensions, "path": ["labEvents"]}
        ],
    }
