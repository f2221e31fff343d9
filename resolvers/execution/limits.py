"""Depth and alias limits that walk each fragment once.

Strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter`` re-walk a fragment at every
spread. Fragments that each spread the next one twice (``fragment F0 on Query { ...F1
...F1 }``, ``F1`` spreads ``F2`` twice, ...) make that walk exponential: 18 levels, a
few hundred bytes, measured 1.6 s (depth) and 0.7 s (aliases) of validation here, which
blocks the event loop; the 2,000-token limit allows ~160 levels. These rules give the
same answers (same messages, so ``resolvers.execution.extensions`` names the same limits)
with one walk per fragment (``resolvers.execution.fragments``): a fragment's depth and
alias count do not depend on where it is spread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation import OverlappingFieldsCanBeMergedRule
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension

from resolvers.execution.fragments import SelectionWalk


def _depth_walk(document: DocumentNode) -> SelectionWalk[None, int]:
    """How deep fields nest below a selection set, counted like Strawberry: a field with a
    selection set adds one level; introspection fields are not followed."""
    def field(node: FieldNode, _: None) -> int:
        if node.selection_set and not node.name.value.startswith("__"):
            return 1 + walk.selections(node.selection_set, None)
        return 0

    walk: SelectionWalk[None, int] = SelectionWalk(
        document, field=field, combine=lambda values: max(values, default=0), empty=0)
    return walk


def _alias_walk(document: DocumentNode) -> SelectionWalk[None, int]:
    """Aliased fields below a selection set, a fragment counted at every spread."""
    def field(node: FieldNode, _: None) -> int:
        own = 1 if node.alias else 0
        return own + (walk.selections(node.selection_set, None) if node.selection_set else 0)

    walk: SelectionWalk[None, int] = SelectionWalk(document, field=field, combine=sum, empty=0)
    return walk


def _operations(context: ValidationContext) -> list[OperationDefinitionNode]:
    return [d for d in context.document.definitions if isinstance(d, OperationDefinitionNode)]


def depth_rule(max_depth: int) -> type[ValidationRule]:
    class MaxDepth(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            walk = _depth_walk(context.document)
            for operation in _operations(context):
                if walk.selections(operation.selection_set, None) > max_depth:
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
            walk = _alias_walk(context.document)
            total = sum(walk.selections(operation.selection_set, None)
                        for operation in _operations(context))
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
