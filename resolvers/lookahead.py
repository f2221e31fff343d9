"""Whether a field's selection asks for a given subfield: lets a batch fetch, in the same
round trip, what the level below will ask for (Grafast's lookahead, in its simplest form).

Fragments (named and inline, of any type condition) are followed; @skip/@include are not
evaluated, so a conditional subfield counts as asked for: fetching it anyway costs a few
columns, while missing it would cost the round trip this exists to save.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from graphql import FieldNode, FragmentDefinitionNode, FragmentSpreadNode, SelectionSetNode
from strawberry.types import Info


def asks_for(info: Info, name: str) -> bool:
    """``name`` is selected (at any alias) directly under the field ``info`` resolves."""
    raw = info._raw_info
    return _selects((node.selection_set for node in raw.field_nodes), name, raw.fragments,
                    set())


def _selects(selection_sets: Iterable[SelectionSetNode | None], name: str,
             fragments: Mapping[str, FragmentDefinitionNode], seen: set[str]) -> bool:
    for selection_set in selection_sets:
        if selection_set is None:
            continue
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value == name:
                    return True
            elif isinstance(selection, FragmentSpreadNode):
                fragment_name = selection.name.value
                fragment = fragments.get(fragment_name)
                if fragment is not None and fragment_name not in seen:
                    seen.add(fragment_name)  # validation forbids cycles; this guards anyway
                    if _selects((fragment.selection_set,), name, fragments, seen):
                        return True
            elif _selects((selection.selection_set,), name, fragments, seen):  # inline
                return True
    return False
