"""What the client selected, read from the operation's syntax tree (fragments followed)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry.types import Info


def _fields(
    selection_sets: Iterable[SelectionSetNode | None], raw: GraphQLResolveInfo[Any]
) -> Iterator[FieldNode]:
    for selection_set in selection_sets:
        if selection_set is None:
            continue
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from _fields([selection.selection_set], raw)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = raw.fragments.get(selection.name.value)
                if fragment is not None:
                    yield from _fields([fragment.selection_set], raw)


def children(info: Info, path: tuple[str, ...] = ()) -> set[str]:
    """Names of the fields selected below the current field, at `path` (e.g. ("edges", "node"))."""
    raw = info._raw_info
    level: list[SelectionSetNode | None] = [node.selection_set for node in raw.field_nodes]
    for name in path:
        level = [f.selection_set for f in _fields(level, raw) if f.name.value == name]
    return {f.name.value for f in _fields(level, raw)}
