"""The planned path: plannable root fields compiled to SQL that returns their JSON.

graphql-core resolves and completes every field of every node in Python; for a page of 20
labs that is most of a request's time (bench/RESULTS.md). For the root fields this module
knows (`labs`, `lab`, `labStats`), the selection is compiled, as Hasura and pg_graphql do, into
one SQL expression that builds the field's JSON in PostgreSQL, compactly and with the keys in
the selection's order, so the text passes into the response untouched and the answer is byte for
byte what Strawberry would give.

It is a shaper over the same loaders the resolvers use: `labs` checks its arguments and reads
its rows with `scriptlabs.labs.store` (`PageQuery`: `bind`, `rows_sql`), `lab` with `get_sql`,
`labStats` with `scriptlabs.labs.stats` (the selected parts, from the kept figures or the
filtered labs).
What it adds is only the shape: which keys, in which order, and each leaf's JSON, derived from
the GraphQL schema (a field's scalar or enum type says how it is written; Lab's columns come
from `scriptlabs.labs.columns`).

Planning is per root field: a document that mixes plannable and other root fields plans what
it can, and the runner sends the rest through Strawberry. A root field that cannot be planned
(a name too long for a SQL alias, a type the shaper does not know) is logged at WARNING with
its reason and runs through Strawberry.

Values reach the SQL only as placeholders into the statement's one JSON parameter. `labs` binds
all of its values before it writes any text, so the text depends on them only through their
placeholders (which encode position and type), the order and whether the page is empty: for a
document the runner keeps, the planner keeps that text per root under that signature (at most
MEMO_MAX), and the next deep page, for any cursor, only binds its values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values
from strawberry.types.arguments import convert_arguments

from scriptlabs.db.sql import JsonParams
from scriptlabs.errors import AppError, Code
from scriptlabs.graphql.fields import FIELD_COLUMNS, columns_for
from scriptlabs.graphql.resolvers.labs import lab_page_query
from scriptlabs.graphql.resolvers.search import search_labs_query
from scriptlabs.graphql.resolvers.stats import STATS_PARTS, lab_stats_query
from scriptlabs.labs import search, store
from scriptlabs.labs.stats import FIGURES, category_order, ratings_sql

log = logging.getLogger("scriptlabs.planner")

_KEY = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,62}$")  # a SQL alias keeps 63 bytes
_STORED = re.compile(r"^[a-z_]+$")

# how a leaf of each scalar type is written as JSON by PostgreSQL (the column's own JSON
# otherwise: text as a string, integers as numbers, uuid as its text)
_SCALAR_SQL: dict[str, Callable[[str], str]] = {
    # DateTime: ISO 8601, UTC, six fractional digits, as scalars.serialize_datetime writes it
    "DateTime": lambda c: (
        f"to_char({c} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    ),
    "UUID": lambda c: c,
    "String": lambda c: c,
    "Int": lambda c: c,
    "Boolean": lambda c: c,
    # Float: as orjson writes a Python float, the shortest text that reads back the same
    # double; a whole number keeps its ".0"
    "Float": lambda c: (
        f"(case when ({c})::float8 = trunc(({c})::float8) "
        f"then trunc(({c})::float8)::int8::text || '.0' else ({c})::float8::text end)::json"
    ),
}


class NotPlannable(Exception):
    """A root field the planner leaves to Strawberry; the message says why."""


@dataclass(frozen=True, slots=True)
class _Compiling:
    """What a root's builder writes into: the statement's values (`params`), the SQL of the
    caller's id (`caller()`), and the texts kept for this root of its document (`memo`)."""

    params: JsonParams
    caller: Callable[[], str]
    memo: dict[Any, Any] | None


@dataclass(frozen=True, slots=True)
class Out:
    """One field of the response: its key (alias or name), its field name, its children."""

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
class RootSql:
    """A planned root field: the SQL expression of its JSON text, and its arguments."""

    key: str
    sql: str


class Planner:
    """Shapes the plannable root fields of the schema."""

    def __init__(self, schema: GraphQLSchema, strawberry_schema: Any) -> None:
        self.schema = schema
        self.strawberry_schema = strawberry_schema
        query_type = schema.query_type
        assert query_type is not None
        self.query_type = query_type
        self._roots: dict[str, Callable[..., str]] = {
            "labs": self._labs,
            "lab": self._lab,
            "searchLabs": self._search_labs,
            "labStats": self._lab_stats,
        }
        self._arguments = {
            name: strawberry_schema.get_field_for_type(name, "Query").arguments
            for name in self._roots
        }
        # GraphQL argument name → Python name, and the arguments Strawberry must convert
        # (input objects, lists of them) rather than pass through
        self._python_names = {
            root: {a.graphql_name or a.python_name: a.python_name for a in arguments}
            for root, arguments in self._arguments.items()
        }
        self._input_objects = {
            name
            for root in self._roots
            for name, argument in query_type.fields[root].args.items()
            if not isinstance(get_named_type(argument.type), (GraphQLScalarType, GraphQLEnumType))
        }
        # per object type: how each scalar field is written, from which column of its row
        # (labStats' lists are built by _lab_stats, its figures come from labs/stats.py's row)
        figures = {f: part for f, part in STATS_PARTS.items() if part in FIGURES}
        self._leaves: dict[str, tuple[dict[str, Callable[[str], str]], dict[str, str]]] = {
            name: (_type_leaves(schema, name, columns), columns)
            for name, columns in (
                ("Lab", FIELD_COLUMNS),
                ("LabStats", figures),
                ("CategoryCount", {"category": "category", "count": "count"}),
                ("RatingCount", {"rating": "rating", "count": "count"}),
            )
        }

    def plannable(self, name: str) -> bool:
        return name in self._roots

    # -- shaping

    def shape(
        self,
        nodes: list[FieldNode],
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> Out:
        """The response tree of one root field (its field nodes merged), directives applied."""
        first = nodes[0]
        key = first.alias.value if first.alias else first.name.value
        if not _KEY.match(key):
            raise NotPlannable(f"the response key {key!r} is not a SQL alias")
        field = self.query_type.fields[first.name.value]
        return Out(key, first.name.value, self._children(nodes, field, fragments, variables))

    def _children(
        self,
        nodes: list[FieldNode],
        field: GraphQLField,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> tuple[Out, ...]:
        parent = get_named_type(field.type)
        if not isinstance(parent, GraphQLObjectType):
            return ()
        grouped: dict[str, list[FieldNode]] = {}
        for node in nodes:
            for child in collect(node.selection_set, parent.name, fragments, variables):
                key = child.alias.value if child.alias else child.name.value
                grouped.setdefault(key, []).append(child)
        outs = []
        for key, children in grouped.items():
            if not _KEY.match(key):
                raise NotPlannable(f"the response key {key!r} is not a SQL alias")
            name = children[0].name.value
            if name == "__typename":
                outs.append(Out(key, name))
                continue
            child_field = parent.fields[name]
            outs.append(Out(key, name, self._children(children, child_field, fragments, variables)))
        return tuple(outs)

    # -- compiling

    def compile(
        self,
        out: Out,
        node: FieldNode,
        variables: VariableValues,
        params: JsonParams,
        caller: Callable[[], str],
        memo: dict[Any, Any] | None = None,
    ) -> str:
        """The SQL expression (json) of one root field. AppError for a refused argument.
        `caller()` gives the SQL of the caller's id, for a root that names it: then the
        statement is planned with its values at every run. `memo`, when given, keeps texts
        made for this root of this document, by what they depend on (`labs`: the filter's
        SQL and its page's placeholders; `lab`: its id's), for the next request to reuse."""
        field = self.query_type.fields[out.name]
        raw = _arguments(field, node, variables, memo)
        names = self._python_names[out.name]
        if any(name in self._input_objects for name in raw):
            kwargs = convert_arguments(
                raw,
                self._arguments[out.name],
                self.strawberry_schema.schema_converter.scalar_registry,
                self.strawberry_schema.config,
            )
        else:  # scalars only (first, after, id...): Strawberry would pass them through
            kwargs = {names[name]: value for name, value in raw.items()}
        return self._roots[out.name](out, kwargs, _Compiling(params, caller, memo))

    def _lab(self, out: Out, kwargs: dict[str, Any], at: _Compiling) -> str:
        params, memo = at.params, at.memo
        placeholder = params.add(kwargs["id"])
        kept: str | None = memo.get(placeholder) if memo is not None else None
        if kept is not None:
            return kept
        columns = columns_for(out.names())
        rows = store.get_sql(columns, placeholder)
        fields = self._fields(out.children, "f", "Lab")
        sql = f"(select row_to_json(o_) from ({rows}) f cross join lateral ({fields}) o_)"
        _keep(memo, placeholder, sql)
        return sql

    def _labs(self, out: Out, kwargs: dict[str, Any], at: _Compiling) -> str:
        params, memo = at.params, at.memo
        query = lab_page_query(
            filter=kwargs.get("filter"),
            order_by=kwargs.get("order_by"),
            first=kwargs.get("first"),
            after=kwargs.get("after"),
            last=kwargs.get("last"),
            before=kwargs.get("before"),
        )
        # every value bound first, in one order: the text below depends on them only
        # through these placeholders (with the order and the page's emptiness)
        where = query.where_sql(params)
        slots = query.bind(params)
        limit = params.add(query.page.limit)
        signature = (where, query.keys, query.page.backward, query.page.limit == 0, slots, limit)
        kept: str | None = memo.get(signature) if memo is not None else None
        if kept is not None:
            return kept
        fields = out.names("edges", "node") | out.names("nodes")
        page = _Page(query, where, columns_for(fields, query.keys), slots, limit)
        parts: list[str] = []
        for child in out.children:
            if child.name == "totalCount":
                expr = f"(select count(*) from public.labs where {where})"
            elif child.name == "nodes":
                expr = page.array(self._fields(child.children, "f", "Lab"))
            elif child.name == "edges":
                cursor = {"cursor": lambda: query.cursor_sql("f")}
                expr = page.array(self._edge(child.children, cursor, "LabEdge"))
            elif child.name == "pageInfo":
                expr = self._page_info(child.children, page)
            else:  # __typename
                expr = "'LabConnection'"
            parts.append(f"{expr} as {_alias(child.key)}")
        sql = f"(select row_to_json(c_) from (select {', '.join(parts)}) c_)"
        _keep(memo, signature, sql)
        return sql

    def _lab_stats(self, out: Out, kwargs: dict[str, Any], at: _Compiling) -> str:
        params, caller = at.params, at.caller
        query = lab_stats_query(filter=kwargs.get("filter"), fields=out.names())
        where = query.where_sql(params)
        leaves, columns = self._leaves["LabStats"]
        parts: list[str] = []
        for child in out.children:
            if child.name == "byCategory":
                element = self._fields(child.children, "f", "CategoryCount")
                expr = _json_array(query.categories_sql(), element, category_order("f"))
            elif child.name == "ratingDistribution":
                element = self._fields(child.children, "f", "RatingCount")
                expr = _json_array(ratings_sql("s_"), element, "f.rating")
            elif child.name == "__typename":
                expr = "'LabStats'"
            else:
                expr = leaves[child.name](f"s_.{columns[child.name]}")
            parts.append(f"{expr} as {_alias(child.key)}")
        figures = query.figures_sql()
        statement = (
            f"select row_to_json(c_) from (select {', '.join(parts)} from ({figures}) s_) c_"
        )
        return f"({query.with_rows(statement, where, caller() if query.filtered else '')})"

    def _edge(
        self, outs: tuple[Out, ...], leaves: dict[str, Callable[[], str]], typename: str
    ) -> str:
        """Lateral joins over a page's row `f` ending in `e_`, the edge's object: its node,
        and its other fields' SQL from `leaves` (made only for the fields selected)."""
        parts = []
        nodes: list[str] = []  # one join per node selected (aliases may select it twice)
        for out in outs:
            if out.name == "node":
                alias = f"n{len(nodes)}_"
                fields = self._fields(out.children, "f", "Lab")
                nodes.append(f"cross join lateral ({fields}) {alias} ")
                expr = f"row_to_json({alias})"
            elif out.name == "__typename":
                expr = f"'{typename}'"
            else:
                expr = leaves[out.name]()
            parts.append(f"{expr} as {_alias(out.key)}")
        # a lateral subquery of expressions only is pulled up: no plan per row
        return f"{''.join(nodes)}cross join lateral (select {', '.join(parts)}) e_"

    def _page_info(self, outs: tuple[Out, ...], page: _Page) -> str:
        query = page.query
        more = page.more()
        backward = query.page.backward
        has_next = ("true" if query.page.before is not None else "false") if backward else more
        has_previous = more if backward else ("true" if query.page.after is not None else "false")
        if query.page.limit == 0:  # an empty page, as store.list_labs answers it
            has_next = has_previous = "false"
        return _page_info(outs, has_next, has_previous, lambda last: page.cursor(last=last))

    def _search_labs(self, out: Out, kwargs: dict[str, Any], at: _Compiling) -> str:
        params, caller = at.params, at.caller
        query = search_labs_query(
            query=kwargs["query"],
            filter=kwargs.get("filter"),
            first=kwargs.get("first"),
            after=kwargs.get("after"),
            prefix=kwargs.get("prefix"),
        )
        user = caller()
        limit = query.limit
        selected = {c.name for c in out.children}
        # read once, shared by the fields below: the page's rows (p_: limit + 1 of them, best
        # first) for edges and pageInfo; every match (m_) for the facets and the count
        ctes: list[str] = []
        if limit > 0 and selected & {"edges", "pageInfo"}:
            columns = columns_for(out.names("edges", "node"))
            if "snippet" in out.names("edges"):
                columns.append("notes")
            ctes.append(f"p_ as materialized ({query.rows_sql(columns, params, user)})")
        if "facets" in selected:
            matches = query.matches_sql(search.FACET_COLUMNS, params, user)
            ctes.append(f"m_ as materialized ({matches})")
        order = "d_, created_at desc, id desc"
        page = f"(select * from p_ order by {order} limit {params.add(limit)})"
        parts: list[str] = []
        for child in out.children:
            if child.name == "totalCount":
                count = (
                    "select count(*) from m_"
                    if "facets" in selected
                    else query.count_sql(params, user)
                )
                expr = f"({count})"
            elif child.name == "edges":
                expr = "'[]'::json"
                if limit > 0:
                    leaves: dict[str, Callable[[], str]] = {
                        "cursor": lambda: search.cursor_sql("f"),
                        "rank": lambda: _SCALAR_SQL["Float"](query.rank_sql("f")),
                        "snippet": lambda: query.snippet_sql("f", params),
                    }
                    edge = self._edge(child.children, leaves, "LabSearchEdge")
                    items = (
                        f"array(select row_to_json(e_)::text from {page} f {edge} "
                        f"order by f.d_, f.created_at desc, f.id desc)"
                    )
                    expr = f"('[' || array_to_string({items}, ',') || ']')::json"
            elif child.name == "pageInfo":
                expr = self._search_page_info(child.children, query, page, params)
            elif child.name == "facets":
                expr = self._facets(child.children)
            elif child.name == "suggestion":
                expr = query.suggestion_sql(params, user) if query.words else "null::text"
            else:
                expr = "'LabSearchConnection'"
            parts.append(f"{expr} as {_alias(child.key)}")
        select = f"select row_to_json(c_) from (select {', '.join(parts)}) c_"
        return f"(with {', '.join(ctes)} {select})" if ctes else f"({select})"

    def _search_page_info(
        self, outs: tuple[Out, ...], query: search.SearchQuery, page: str, params: JsonParams
    ) -> str:
        limit = query.limit
        if not limit:
            return _page_info(outs, "false", "false", lambda last: "null")
        has_next = f"((select count(*) from p_) > {params.add(limit)})"
        has_previous = "true" if query.after is not None else "false"

        def cursor(last: bool) -> str:
            order = (
                "f.d_ desc, f.created_at, f.id" if last else "f.d_, f.created_at desc, f.id desc"
            )
            return f"(select {search.cursor_sql('f')} from {page} f order by {order} limit 1)"

        return _page_info(outs, has_next, has_previous, cursor)

    def _facets(self, outs: tuple[Out, ...]) -> str:
        """The facets over the matches `m_`."""
        leaves: dict[str, Callable[[str], str]] = {
            "category": lambda c: c,
            "status": self._leaves["Lab"][0]["readingStatus"],
            "rating": lambda c: c,
            "count": lambda c: c,
        }
        facets = {
            "byCategory": ("by_category", "CategoryCount"),
            "byStatus": ("by_status", "StatusCount"),
            "byRating": ("by_rating", "RatingCount"),
        }
        parts = []
        for out in outs:
            if out.name == "__typename":
                parts.append(f"'SearchFacets' as {_alias(out.key)}")
                continue
            facet, typename = facets[out.name]
            fields = []
            for leaf in out.children:
                if leaf.name == "__typename":
                    value = f"'{typename}'"
                else:
                    value = leaves[leaf.name]("f.n_" if leaf.name == "count" else "f.v_")
                fields.append(f"{value} as {_alias(leaf.key)}")
            rows = search.facet_sql(facet, "m_")
            expr = _json_array(rows, f"select {', '.join(fields)}", "f.r_")
            parts.append(f"{expr} as {_alias(out.key)}")
        return f"(select row_to_json(x_) from (select {', '.join(parts)}) x_)"

    def _fields(self, outs: tuple[Out, ...], row: str, type_name: str) -> str:
        """`select <each field's JSON> as "key", ...` over the columns of `row`."""
        leaves, columns = self._leaves[type_name]
        parts = []
        for out in outs:
            if out.name == "__typename":
                expr = f"'{type_name}'"
            else:
                expr = leaves[out.name](f"{row}.{columns[out.name]}")
            parts.append(f"{expr} as {_alias(out.key)}")
        return f"select {', '.join(parts)}"


@dataclass(slots=True)
class _Page:
    """The SQL of one page's rows, and what is built over them."""

    query: store.PageQuery
    where: str
    columns: list[str]
    slots: store.PageSlots
    limit: str  # the placeholder of the page's size

    def rows(self) -> str:
        """The page's rows (at most `limit`), as the loader reads them, in scan order."""
        fetched = self.query.rows_sql(self.columns, self.slots, where=self.where)
        scan = ", ".join(k.sql_in("r_") for k in self.query.scan)
        return f"select * from ({fetched}) r_ order by {scan} limit {self.limit}"

    def order(self, alias: str, *, reverse: bool = False) -> str:
        """The page's own order (the scan's, reversed when paging backward)."""
        keys = self.query.keys
        return ", ".join((k.reversed() if reverse else k).sql_in(alias) for k in keys)

    def array(self, element: str) -> str:
        """A JSON array of one object per row, in the page's order. `element` is a select list
        over `f` (nodes) or lateral joins ending in `e_` (edges)."""
        if self.query.page.limit == 0:
            return "'[]'::json"
        if element.startswith("select "):
            element, alias = f"cross join lateral ({element}) o_", "o_"
        else:
            alias = "e_"
        items = (
            f"array(select row_to_json({alias})::text from ({self.rows()}) f {element} "
            f"order by {self.order('f')})"
        )
        return f"('[' || array_to_string({items}, ',') || ']')::json"

    def more(self) -> str:
        """Whether rows follow the page in its scan (the loader's `limit + 1` read)."""
        fetched = self.query.rows_sql(["id"], self.slots, where=self.where)
        return f"((select count(*) from ({fetched}) m_) > {self.limit})"

    def cursor(self, *, last: bool) -> str:
        if self.query.page.limit == 0:
            return "null"
        return (
            f"(select {self.query.cursor_sql('f')} from ({self.rows()}) f "
            f"order by {self.order('f', reverse=last)} limit 1)"
        )


MEMO_MAX = 32  # texts kept for one root of one document: a client cannot grow it further


_NO_VARIABLES = VariableValues({}, {})
_ARGUMENTS = object()  # the memo's key of a root's argument plan


def _arguments(
    field: GraphQLField, node: FieldNode, variables: VariableValues, memo: dict[Any, Any] | None
) -> dict[str, Any]:
    """The field's coerced arguments, as get_argument_values gives them. With a memo, when
    every argument is a literal without variables or a variable given to a nullable argument,
    what the literals and defaults give is kept (computed as if no variable had a value) and
    each request only adds the variables it has values for, as graphql-core would."""
    if memo is None:
        return get_argument_values(field, node, variables)
    plan = memo.get(_ARGUMENTS)
    if plan is None:
        plan = memo[_ARGUMENTS] = _argument_plan(field, node)
    if plan is False:
        return get_argument_values(field, node, variables)
    static, from_variables = plan
    raw = dict(static)
    given = variables.coerced
    for out_name, variable in from_variables:
        if variable in given:
            raw[out_name] = given[variable]
    return raw


def _argument_plan(field: GraphQLField, node: FieldNode) -> Any:
    """(static values, (argument, variable) pairs), or False when a request needs graphql-core
    (a variable given to a non-null argument, or inside a literal)."""
    from_variables: list[tuple[str, str]] = []
    for argument in node.arguments or ():
        name = argument.name.value
        definition = field.args.get(name)
        if definition is None:
            return False
        value = argument.value
        if isinstance(value, VariableNode):
            if isinstance(definition.type, GraphQLNonNull):
                return False
            out_name = getattr(definition, "out_name", None) or name
            from_variables.append((out_name, value.name.value))
        elif _has_variable(value):
            return False
    return get_argument_values(field, node, _NO_VARIABLES), tuple(from_variables)


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


def _keep(memo: dict[Any, Any] | None, signature: Any, sql: str) -> None:
    if memo is not None and len(memo) < MEMO_MAX:
        memo[signature] = sql


def _page_info(
    outs: tuple[Out, ...], has_next: str, has_previous: str, cursor: Callable[[bool], str]
) -> str:
    """PageInfo's object: its fields' SQL given, `cursor(last)` the start or end cursor."""
    parts = []
    for out in outs:
        if out.name == "hasNextPage":
            expr = has_next
        elif out.name == "hasPreviousPage":
            expr = has_previous
        elif out.name in ("startCursor", "endCursor"):
            expr = cursor(out.name == "endCursor")
        else:
            expr = "'PageInfo'"
        parts.append(f"{expr} as {_alias(out.key)}")
    return f"(select row_to_json(i_) from (select {', '.join(parts)}) i_)"


def _json_array(rows: str, element: str, order: str) -> str:
    """A JSON array of one object per row of `rows` (as `f`), in `order`; `element` is the
    select list of an object over `f`."""
    items = (
        f"array(select row_to_json(o_)::text from ({rows}) f "
        f"cross join lateral ({element}) o_ order by {order})"
    )
    return f"('[' || array_to_string({items}, ',') || ']')::json"


def _alias(key: str) -> str:
    return f'"{key}"'  # _KEY guarantees a plain name that needs no escaping


def _type_leaves(
    schema: GraphQLSchema, type_name: str, columns: dict[str, str]
) -> dict[str, Callable[[str], str]]:
    """For each field of `type_name`, how its column is written as JSON: by the field's
    scalar type, or for an enum by its values (stored value → GraphQL name)."""
    graphql_type = schema.get_type(type_name)
    assert isinstance(graphql_type, GraphQLObjectType)
    leaves: dict[str, Callable[[str], str]] = {}
    for name in columns:
        field_type = graphql_type.fields[name].type
        named = get_named_type(field_type)
        if isinstance(field_type, GraphQLNonNull) and isinstance(field_type.of_type, GraphQLList):
            raise NotPlannable(f"{type_name}.{name}: lists are not planned")
        if isinstance(named, GraphQLEnumType):
            leaves[name] = _enum_sql(named)
        elif isinstance(named, GraphQLScalarType) and named.name in _SCALAR_SQL:
            leaves[name] = _SCALAR_SQL[named.name]
        else:
            raise NotPlannable(f"{type_name}.{name}: no SQL for {named}")
    return leaves


def _enum_sql(enum_type: GraphQLEnumType) -> Callable[[str], str]:
    cases = []
    for name, value in enum_type.values.items():
        stored = getattr(value.value, "value", value.value)
        if not isinstance(stored, str) or not _STORED.match(stored):
            raise NotPlannable(f"{enum_type.name}: stored value {stored!r}")
        cases.append(f"when '{stored}' then '{name}'")
    body = " ".join(cases)
    return lambda c: f"(case {c} {body} end)"


def collect(
    selection_set: SelectionSetNode | None,
    type_name: str,
    fragments: dict[str, FragmentDefinitionNode],
    variables: VariableValues,
) -> list[FieldNode]:
    """The fields of a selection set on `type_name`, fragments inlined, @skip/@include
    applied (validation has checked that every fragment applies to this type)."""
    out: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if not _included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            out.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            out.extend(collect(selection.selection_set, type_name, fragments, variables))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments[selection.name.value]
            out.extend(collect(fragment.selection_set, type_name, fragments, variables))
    return out


def _included(node: Any, variables: VariableValues) -> bool:
    if not node.directives:
        return True
    skip = get_directive_values(GraphQLSkipDirective, node, variables)
    if skip is not None and skip.get("if") is True:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, variables)
    return not (include is not None and include.get("if") is False)


def field_error(exc: BaseException, nodes: list[FieldNode], key: str) -> GraphQLError:
    """An error of a planned root field, placed as graphql-core places a resolver's."""
    extensions = exc.extensions if isinstance(exc, AppError) else None
    return GraphQLError(
        str(exc.message if isinstance(exc, AppError) else exc),
        nodes,
        path=[key],
        original_error=exc if isinstance(exc, Exception) else None,
        extensions=extensions,
    )


__all__ = ["Code", "NotPlannable", "Out", "Planner", "collect", "field_error"]
