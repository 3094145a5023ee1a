"""Refuse operations that are too deep, too wide or too costly, before any SQL runs.

Strawberry's QueryDepthLimiter skips every `__` field and sets no code; this rule counts
introspection too, but always lets through the standard introspection query that GraphiQL
and code generators send (its depth is measured from graphql-core's own query).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_introspection_query,
    parse,
)

from scriptlabs.errors import Code

PAGED_FIELDS = frozenset({"labs", "searchLabs"})
DEFAULT_PAGE = 20
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 10
    max_aliases: int = 100
    max_fields: int = 500
    # rows × fields: a full page (100) of every Lab field, over both edges and nodes, costs
    # about 3,400; with 500 fields of at most 100 rows each, 50,000 could never be reached
    max_cost: int = 10_000


@dataclass(slots=True)
class _Measure:
    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0


class _TooLarge(Exception):
    """The walk gave up: the operation expands to more selections than its budget."""


class _Walker:
    def __init__(self, context: ValidationContext, budget: int) -> None:
        self.context = context
        self.measure = _Measure()
        # fragments can repeat a selection exponentially (F1 { ...F0 ...F0 }, F2 { ...F1 ...F1 }):
        # every selection visited (field, spread, inline fragment) spends one unit
        self.budget = budget

    def _fields(
        self, selection_set: SelectionSetNode | None, seen: frozenset[str]
    ) -> Iterator[FieldNode]:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            self.budget -= 1
            if self.budget < 0:
                raise _TooLarge
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                if fragment is not None and name not in seen:
                    yield from self._fields(fragment.selection_set, seen | {name})

    def walk(self, selection_set: SelectionSetNode | None, depth: int, seen: frozenset[str]) -> int:
        """Visit the fields below; return their cost."""
        cost = 0
        for node in self._fields(selection_set, seen):
            self.measure.fields += 1
            if node.alias is not None:
                self.measure.aliases += 1
            self.measure.depth = max(self.measure.depth, depth)
            children = self.walk(node.selection_set, depth + 1, seen)
            cost += 1 + _page_size(node) * children
        return cost


def _visit_budget(limits: Limits) -> int:
    """Selections the walk may visit: far more than any operation within the limits needs
    (the standard introspection query, exempt from max_fields, visits about 250)."""
    return 4 * max(limits.max_fields, 500)


def _page_size(node: FieldNode) -> int:
    if node.name.value not in PAGED_FIELDS:
        return 1
    size = DEFAULT_PAGE
    for argument in node.arguments or ():
        if argument.name.value in ("first", "last"):
            if isinstance(argument.value, IntValueNode):
                size = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                size = MAX_PAGE  # unknown until execution: assume the most
    return max(1, min(size, MAX_PAGE))


def _is_introspection(operation: OperationDefinitionNode) -> bool:
    return all(
        isinstance(s, FieldNode) and s.name.value.startswith("__")
        for s in operation.selection_set.selections
    )


@cache
def standard_introspection_depth() -> int:
    """The depth of the introspection query clients send, with every option on."""
    document: DocumentNode = parse(
        get_introspection_query(
            descriptions=True,
            specified_by_url=True,
            directive_is_repeatable=True,
            schema_description=True,
            input_value_deprecation=True,
        )
    )
    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }

    def depth(selection_set: SelectionSetNode | None, level: int) -> int:
        best = level - 1
        for s in selection_set.selections if selection_set else ():
            if isinstance(s, FieldNode):
                best = max(best, depth(s.selection_set, level + 1))
            elif isinstance(s, FragmentSpreadNode):
                best = max(best, depth(fragments[s.name.value], level))
            elif isinstance(s, InlineFragmentNode):
                best = max(best, depth(s.selection_set, level))
        return best

    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    # generous by a few levels: graphql-js and GraphiQL nest `ofType` a little deeper
    return depth(operation.selection_set, 1) + 4


def limits_rule(limits: Limits) -> type[ValidationRule]:
    """A validation rule class bound to `limits`."""

    class QueryLimits(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
            budget = _visit_budget(limits)
            walker = _Walker(self.context, budget)
            try:
                cost = walker.walk(node.selection_set, 1, frozenset())
            except _TooLarge:
                self.report_error(
                    GraphQLError(
                        f"Operation expands to more than {budget} selections",
                        node,
                        extensions={"code": Code.QUERY_TOO_COMPLEX.value},
                    )
                )
                return
            m = walker.measure
            max_depth = limits.max_depth
            if _is_introspection(node):
                max_depth = max(max_depth, standard_introspection_depth())
            problem = None
            if m.depth > max_depth:
                problem = f"Operation is {m.depth} levels deep; the limit is {max_depth}"
            elif m.aliases > limits.max_aliases:
                problem = f"Operation has {m.aliases} aliases; the limit is {limits.max_aliases}"
            elif m.fields > limits.max_fields and not _is_introspection(node):
                problem = f"Operation selects {m.fields} fields; the limit is {limits.max_fields}"
            elif cost > limits.max_cost:
                problem = f"Operation costs {cost}; the limit is {limits.max_cost}"
            if problem:
                self.report_error(
                    GraphQLError(problem, node, extensions={"code": Code.QUERY_TOO_COMPLEX.value})
                )

    return QueryLimits
