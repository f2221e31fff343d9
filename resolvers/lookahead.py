"""What a field's selection asks for below it: lets a store call fetch, in the same round
trip, what the level below will read, and skip what nothing reads (Grafast's lookahead,
in its simplest form).

Fragments (named and inline, of any type condition) are followed; @skip/@include are not
evaluated, so a conditional subfield counts as asked for: fetching it anyway costs a few
columns, while missing it would cost a round trip or fail the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry.types import Info


def asks_for(info: Info, name: str) -> bool:
    """``name`` is selected (at any alias) directly under the field ``info`` resolves."""
    return name in names_under(info, ())


def names_under(info: Info, path: tuple[str, ...]) -> set[str]:
    """The names of the fields selected at ``path`` (field names, any alias) below the
    field ``info`` resolves, e.g. ``("edges", "node")`` under a connection."""
    raw = info._raw_info
    sets: list[SelectionSetNode] = [n.selection_set for n in raw.field_nodes
                                    if n.selection_set is not None]
    for step in path:
        sets = [field.selection_set for field in _fields(sets, raw.fragments)
                if field.name.value == step and field.selection_set is not None]
    return {field.name.value for field in _fields(sets, raw.fragments)}


def _fields(selection_sets: Iterable[SelectionSetNode],
            fragments: Mapping[str, FragmentDefinitionNode]) -> list[FieldNode]:
    """The fields of these selection sets, fragments (any type condition) flattened."""
    found: list[FieldNode] = []
    pending = list(selection_sets)
    seen: set[str] = set()
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in seen:
                    seen.add(selection.name.value)
                    pending.append(fragment.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
    return found
