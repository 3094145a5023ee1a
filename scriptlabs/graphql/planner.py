"""Planned execution: read-only operations made only of plannable fields skip graphql-core.

graphql-core resolves and completes every field of every node in Python; for a page of
20 labs that is most of a request's time (bench/RESULTS.md). An operation whose fields are
all known here (`labs`, `lab`, their connection, edge, page-info and Lab fields, and
`__typename`) is planned once per document: parsed, validated with the same rules as the
Strawberry path, and reduced to the tree of response keys. Each request then coerces its
variables with graphql-core, runs the same domain calls as the resolvers, and builds the
response dict straight from the rows.

Anything else, or anything that goes wrong (a refused argument, a missing token, a bad
variable), falls back to the Strawberry path, which runs the operation again and reports
the error the usual way: a planned answer is never an error answer, so errors look the
same whichever path a document takes. Only queries are planned, so running again is safe.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.values import (
    VariableValues,
    get_argument_values,
    get_variable_values,
)
from strawberry.types.arguments import convert_arguments

from scriptlabs.db.operation import Operation
from scriptlabs.graphql.context import Context
from scriptlabs.graphql.resolvers.labs import load_lab_page
from scriptlabs.graphql.scalars import serialize_datetime
from scriptlabs.labs import store
from scriptlabs.labs.columns import FIELD_COLUMNS, ReadingStatus

log = logging.getLogger("scriptlabs.planner")

# parent type → {field: child type (None for a leaf)}
PLANNABLE: dict[str, dict[str, str | None]] = {
    "Query": {"labs": "LabConnection", "lab": "Lab"},
    "LabConnection": {
        "edges": "LabEdge",
        "nodes": "Lab",
        "pageInfo": "PageInfo",
        "totalCount": None,
    },
    "LabEdge": {"cursor": None, "node": "Lab"},
    "PageInfo": {
        "hasNextPage": None,
        "hasPreviousPage": None,
        "startCursor": None,
        "endCursor": None,
    },
    "Lab": dict.fromkeys(FIELD_COLUMNS),
}

_STATUS_NAMES = {s.value: s.name for s in ReadingStatus}


def _identity(value: Any) -> Any:
    return value


def _text(value: Any) -> Any:
    return str(value)


def _time(value: Any) -> Any:
    return serialize_datetime(value)


def _status(value: Any) -> Any:
    return _STATUS_NAMES[value]


LAB_SERIALIZERS: dict[str, Callable[[Any], Any]] = {
    "id": _text,
    "readingStatus": _status,
    "createdAt": _time,
    "updatedAt": _time,
}


@dataclass(frozen=True, slots=True)
class Out:
    """One field of the response: its key (alias or name), name, and what is below it."""

    key: str
    name: str
    children: tuple[Out, ...] = ()

    def names(self, *path: str) -> set[str]:
        """Field names selected at `path` below this field."""
        level: tuple[Out, ...] = (self,)
        for name in path:
            level = tuple(c for o in level for c in o.children if c.name == name)
        return {c.name for o in level for c in o.children}


@dataclass(frozen=True, slots=True)
class Root:
    out: Out
    node: FieldNode
    field: GraphQLField


@dataclass(frozen=True, slots=True)
class Plan:
    operation: OperationDefinitionNode
    roots: tuple[Root, ...]


class _NotPlannable(Exception):
    pass


class Planner:
    """Plans documents (cached by text and operation name) and runs the plans."""

    def __init__(
        self, schema: Any, rules: list[type[ValidationRule]], *, maxsize: int = 1024
    ) -> None:
        self.schema = schema
        self.graphql_schema = schema._schema
        self.rules = [*specified_rules, *rules]
        self._cache: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()
        self._maxsize = maxsize
        query_type = self.graphql_schema.query_type
        assert query_type is not None
        self._root_fields = query_type.fields
        self._arguments = {
            name: schema.get_field_for_type(name, "Query").arguments for name in PLANNABLE["Query"]
        }

    # -- planning

    def plan(self, query: str, operation_name: str | None) -> Plan | None:
        key = (query, operation_name)
        try:
            self._cache.move_to_end(key)
            return self._cache[key]
        except KeyError:
            pass
        plan = self._make_plan(query, operation_name)
        self._cache[key] = plan
        if len(self._cache) > self._maxsize:
            self._cache.popitem(last=False)
        return plan

    def _make_plan(self, query: str, operation_name: str | None) -> Plan | None:
        try:
            document = parse(query)
        except GraphQLError:
            return None
        if validate(self.graphql_schema, document, self.rules):
            return None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [o for o in operations if o.name and o.name.value == operation_name]
        if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
            return None
        operation = operations[0]
        if operation.directives:
            return None
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        try:
            nodes = _field_nodes(operation.selection_set, "Query", fragments)
            roots = tuple(
                Root(
                    out=Out(_key(node), node.name.value, _outs(node, "Query", fragments)),
                    node=node,
                    field=self._root_fields[node.name.value],
                )
                for node in nodes
            )
        except _NotPlannable:
            return None
        return Plan(operation, roots) if roots else None

    # -- running

    async def run(self, plan: Plan, variables: dict[str, Any] | None, ctx: Context) -> bytes | None:
        """The response body, or None: then the Strawberry path answers."""
        if ctx.claims.role == "anon":
            return None  # labs and lab need a signed-in caller: the usual error path says so
        coerced = get_variable_values(
            self.graphql_schema, plan.operation.variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            return None
        services = ctx.services
        op = ctx.op or services.operation(ctx.claims, readonly=True)
        data: dict[str, Any] = {}
        ok = False
        try:
            for root in plan.roots:
                data[root.out.key] = await self._root(root, coerced, op)
            ok = True
        except Exception:  # any failure: the Strawberry path answers instead
            log.debug("planned path fell back", exc_info=True)
            return None
        finally:
            await op.finish(commit=ok)
        return orjson.dumps({"data": data})

    def _kwargs(self, root: Root, variables: VariableValues) -> dict[str, Any]:
        raw = get_argument_values(root.field, root.node, variables)
        return convert_arguments(
            raw,
            self._arguments[root.out.name],
            self.schema.schema_converter.scalar_registry,
            self.schema.config,
        )

    async def _root(self, root: Root, variables: VariableValues, op: Operation) -> Any:
        kwargs = self._kwargs(root, variables)
        out = root.out
        if out.name == "lab":
            row = await store.get_lab(op, kwargs["id"], store.columns_for(out.names()))
            return _lab(out.children, row) if row is not None else None
        args = {k: kwargs.get(k) for k in ("filter", "order_by", "first", "after", "last")}
        args["before"] = kwargs.get("before")
        fields = out.names("edges", "node") | out.names("nodes")
        page = await load_lab_page(op, **args, top=out.names(), fields=fields)
        result: dict[str, Any] = {}
        for child in out.children:
            if child.name == "edges":
                result[child.key] = [
                    _edge(child.children, cursor, row)
                    for cursor, row in zip(page.cursors, page.rows, strict=True)
                ]
            elif child.name == "nodes":
                result[child.key] = [_lab(child.children, row) for row in page.rows]
            elif child.name == "pageInfo":
                result[child.key] = _page_info(child.children, page.cursors, page)
            elif child.name == "totalCount":
                result[child.key] = await store.count_labs(op, page.where)
            else:
                result[child.key] = "LabConnection"
        return result


def _lab(outs: tuple[Out, ...], row: Any) -> dict[str, Any]:
    lab: dict[str, Any] = {}
    for out in outs:
        if out.name == "__typename":
            lab[out.key] = "Lab"
            continue
        value = row[FIELD_COLUMNS[out.name]]
        if value is not None:
            value = LAB_SERIALIZERS.get(out.name, _identity)(value)
        lab[out.key] = value
    return lab


def _edge(outs: tuple[Out, ...], cursor: str, row: Any) -> dict[str, Any]:
    edge: dict[str, Any] = {}
    for out in outs:
        if out.name == "cursor":
            edge[out.key] = cursor
        elif out.name == "node":
            edge[out.key] = _lab(out.children, row)
        else:
            edge[out.key] = "LabEdge"
    return edge


def _page_info(outs: tuple[Out, ...], cursors: list[str], page: Any) -> dict[str, Any]:
    values = {
        "hasNextPage": page.has_next,
        "hasPreviousPage": page.has_previous,
        "startCursor": cursors[0] if cursors else None,
        "endCursor": cursors[-1] if cursors else None,
        "__typename": "PageInfo",
    }
    return {out.key: values[out.name] for out in outs}


def _key(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def _field_nodes(
    selection_set: SelectionSetNode | None,
    parent: str,
    fragments: dict[str, FragmentDefinitionNode],
) -> list[FieldNode]:
    """The fields of a selection set with fragments inlined; refuses directives and
    repeated response keys (field merging is left to graphql-core)."""
    out: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if selection.directives:
            raise _NotPlannable
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name != "__typename" and name not in PLANNABLE[parent]:
                raise _NotPlannable
            if parent == "Query" and name == "__typename":
                raise _NotPlannable
            out.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is not None and condition.name.value != parent:
                raise _NotPlannable
            out.extend(_field_nodes(selection.selection_set, parent, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments[selection.name.value]
            if fragment.type_condition.name.value != parent:
                raise _NotPlannable
            out.extend(_field_nodes(fragment.selection_set, parent, fragments))
    keys = [_key(n) for n in out]
    if len(keys) != len(set(keys)):
        raise _NotPlannable
    return out


def _outs(
    node: FieldNode, parent: str, fragments: dict[str, FragmentDefinitionNode]
) -> tuple[Out, ...]:
    child_type = PLANNABLE[parent].get(node.name.value)
    if child_type is None:
        return ()
    return tuple(
        Out(_key(child), child.name.value, _outs(child, child_type, fragments))
        for child in _field_nodes(node.selection_set, child_type, fragments)
    )
