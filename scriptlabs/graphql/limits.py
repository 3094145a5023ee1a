"""Refuse operations that are too deep, too wide or too costly, before any SQL runs.

Strawberry's QueryDepthLimiter skips every `__` field and sets no code; this rule counts
introspection too, but always lets through the standard introspection query that GraphiQL
and code generators send (its depth is measured from graphql-core's own query).
"""

from __future__ import annotations

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
    max_cost: int = 50_000


@dataclass(slots=True)
class _Measure:
    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0


class _Walker:
    def __init__(self, context: ValidationContext) -> None:
        self.context = context
        self.measure = _Measure()

    def _fields(
        self, selection_set: SelectionSetNode | None, seen: frozenset[str]
    ) -> list[FieldNode]:
        out: list[FieldNode] = []
        if selection_set is None:
            return out
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                out.extend(self._fields(selection.selection_set, seen))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                if fragment is not None and name not in seen:
                    out.extend(self._fields(fragment.selection_set, seen | {name}))
        return out

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
            walker = _Walker(self.context)
            cost = walker.walk(node.selection_set, 1, frozenset())
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
