"""The one walk over a GraphQL document's selections that every measure uses (depth,
aliases, cost, a subscription's root field), so fragments are followed the same way
everywhere.

A measure is a fold: ``field`` gives a field's value (recursing into its own selection
set through ``SelectionWalk.selections``), ``combine`` folds the values of one selection
set. Inline fragments and spreads are followed here, each fragment measured once per
context (``memo_key``): a fragment's value does not depend on where it is spread, so
fragments that each spread the next one twice (``fragment F0 on Query { ...F1 ...F1 }``,
...) cost one walk per fragment instead of an exponential one. An unknown fragment or a
fragment cycle counts ``empty`` (validation reports both).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
    SelectionSetNode,
)

C = TypeVar("C")  # what a selection set is measured in (e.g. its parent type and page)
V = TypeVar("V")  # the measure


def fragment_definitions(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)}


class Skip:
    """Returned by ``inline`` or ``spread`` to leave a fragment out (None is a context)."""


SKIP = Skip()


def _same(node: object, context: C) -> C | Skip:
    return context


def _whole(context: object) -> Hashable:
    return context  # type: ignore[return-value]


class SelectionWalk(Generic[C, V]):
    """A memoised fold over one document's selection sets.

    ``inline`` and ``spread`` give the context of an inline fragment's or a fragment's
    selections (``SKIP`` leaves it out; by default the context is kept); ``include``, when
    given, filters selections (e.g. on @skip/@include)."""

    def __init__(
        self, document: DocumentNode, *,
        field: Callable[[FieldNode, C], V],
        combine: Callable[[Iterable[V]], V],
        empty: V,
        inline: Callable[[InlineFragmentNode, C], C | Skip] = _same,
        spread: Callable[[FragmentDefinitionNode, C], C | Skip] = _same,
        include: Callable[[SelectionNode], bool] | None = None,
        memo_key: Callable[[C], Hashable] = _whole,
    ) -> None:
        self.fragments = fragment_definitions(document)
        self._field, self._combine, self._empty = field, combine, empty
        self._inline, self._spread, self._include = inline, spread, include
        self._memo_key = memo_key
        self._memo: dict[tuple[str, Hashable], V] = {}
        self._visiting: set[str] = set()

    def selections(self, selection_set: SelectionSetNode, context: C) -> V:
        """The measure of one selection set. Runs for every selection of every request
        (cost, depth, aliases), so it is a plain loop: fed by a generator, the three
        measures of the dashboard query took 1.12x the time of the separate walkers they
        replaced; as a loop 0.92x (side by side, load ~12 on 2 cores)."""
        values: list[V] = []
        append, include = values.append, self._include
        for selection in selection_set.selections:
            if include is not None and not include(selection):
                continue
            if isinstance(selection, FieldNode):
                append(self._field(selection, context))
            elif isinstance(selection, InlineFragmentNode):
                inner = self._inline(selection, context)
                if not isinstance(inner, Skip):
                    append(self.selections(selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                append(self.fragment(selection.name.value, context))
        return self._combine(values)

    def fragment(self, name: str, context: C) -> V:
        key = (name, self._memo_key(context))
        if key in self._memo:
            return self._memo[key]
        definition = self.fragments.get(name)
        if definition is None or name in self._visiting:
            return self._empty  # unknown or a cycle: validation refuses both
        inner = self._spread(definition, context)
        if isinstance(inner, Skip):
            return self._empty
        self._visiting.add(name)
        try:
            value = self.selections(definition.selection_set, inner)
        finally:
            self._visiting.discard(name)
        self._memo[key] = value
        return value


__all__ = ["SKIP", "SelectionWalk", "Skip", "fragment_definitions"]
