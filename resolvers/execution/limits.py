"""Depth and alias limits that walk each fragment once.

Strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter`` re-walk a fragment at every
spread. Fragments that each spread the next one twice (``fragment F0 on Query { ...F1
...F1 }``, ``F1`` spreads ``F2`` twice, ...) make that walk exponential: 18 levels, a
few hundred bytes, measured 1.6 s (depth) and 0.7 s (aliases) of validation here, which
blocks the event loop; the 2,000-token limit allows ~160 levels. These rules give the
same answers (same messages, so ``resolvers.execution.extensions`` names the same limits) with one
walk per fragment: a fragment's depth and alias count do not depend on where it is spread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation import OverlappingFieldsCanBeMergedRule
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension


class _Walk:
    """Memoised per-fragment measures over one document; a fragment cycle counts 0 (the
    standard NoFragmentCycles rule reports it)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode],
                 measure: Callable[[_Walk, SelectionSetNode], int]) -> None:
        self.fragments = fragments
        self.measure = measure
        self.memo: dict[str, int] = {}
        self.visiting: set[str] = set()

    def fragment(self, name: str) -> int:
        if name in self.memo:
            return self.memo[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.visiting:
            return 0  # unknown (KnownFragmentNames reports it) or a cycle
        self.visiting.add(name)
        value = self.measure(self, definition.selection_set)
        self.visiting.discard(name)
        self.memo[name] = value
        return value


def _height(walk: _Walk, selections: SelectionSetNode) -> int:
    """How deep fields nest below this selection set, counted like Strawberry: a field
    with a selection set adds one level; introspection fields are not followed."""
    best = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.selection_set and not selection.name.value.startswith("__"):
                best = max(best, 1 + _height(walk, selection.selection_set))
        elif isinstance(selection, InlineFragmentNode):
            best = max(best, _height(walk, selection.selection_set))
        elif isinstance(selection, FragmentSpreadNode):
            best = max(best, walk.fragment(selection.name.value))
    return best


def _aliases(walk: _Walk, selections: SelectionSetNode) -> int:
    """Aliased fields below this selection set, a fragment counted at every spread."""
    count = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            count += 1 if selection.alias else 0
            if selection.selection_set:
                count += _aliases(walk, selection.selection_set)
        elif isinstance(selection, InlineFragmentNode):
            count += _aliases(walk, selection.selection_set)
        elif isinstance(selection, FragmentSpreadNode):
            count += walk.fragment(selection.name.value)
    return count


def _parts(context: ValidationContext) -> tuple[dict[str, FragmentDefinitionNode],
                                                 list[OperationDefinitionNode]]:
    definitions = context.document.definitions
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    return fragments, operations


def depth_rule(max_depth: int) -> type[ValidationRule]:
    class MaxDepth(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments, operations = _parts(context)
            walk = _Walk(fragments, _height)
            for operation in operations:
                if _height(walk, operation.selection_set) > max_depth:
                    name = operation.name.value if operation.name else "anonymous"
                    context.report_error(GraphQLError(
                        f"'{name}' exceeds maximum operation depth of {max_depth}",
                        [operation],
                    ))
    return MaxDepth


def aliases_rule(max_aliases: int) -> type[ValidationRule]:
    class MaxAliases(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments, operations = _parts(context)
            walk = _Walk(fragments, _aliases)
            total = sum(_aliases(walk, operation.selection_set) for operation in operations)
            if total > max_aliases:
                context.report_error(GraphQLError(
                    f"{total} aliases found. Allowed: {max_aliases}"))
    return MaxAliases


# Field comparisons graphql-core's overlap check may make per document. Its own budget,
# 500,000, measured 1.5-4.5 s of validation here (495 copies of `devices { totalCount }`,
# 2,000 tokens): the event loop stalls and concurrent requests hit store timeouts. Real
# documents spend ~0 (the dashboard: 0; 100 repeated fields: 24,750, ~0.1-0.3 s).
OVERLAP_BUDGET = 20_000


class _BudgetedOverlaps(OverlappingFieldsCanBeMergedRule):
    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.rule_context.remaining_complexity_budget = OVERLAP_BUDGET

    def enter_selection_set(self, *args: Any) -> None:
        try:
            super().enter_selection_set(*args)
        except ValidationAbortedError:
            raise ValidationAbortedError(
                f"Checking this document's repeated fields for conflicts takes more than "
                f"{OVERLAP_BUDGET} comparisons; repeat fewer fields",
                extensions={"code": "LIMIT_EXCEEDED", "limit": "maxValidationWork",
                            "maximum": OVERLAP_BUDGET},
            ) from None


class OverlapBudget(SchemaExtension):
    """Runs graphql-core's overlapping-fields rule with OVERLAP_BUDGET instead of its own."""

    def on_operation(self) -> Iterator[None]:
        ec = self.execution_context
        ec.validation_rules = tuple(
            _BudgetedOverlaps if rule is OverlappingFieldsCanBeMergedRule else rule
            for rule in ec.validation_rules
        )
        yield


__all__ = ["OverlapBudget", "aliases_rule", "depth_rule"]
