"""The query cost estimate, checked before a request executes.

Cost is the number of field resolutions the operation may make: every field counts once
per time it can be reached, and a list multiplies what is selected under it by its
estimated length. Execution time tracks that number (the dashboard for 100 devices makes
~5,000 field resolutions in ~120 ms here, `bench/RESULTS.md`), and it depends only on the
document and its variables, so an expensive request is refused before any store work.

List lengths, from the arguments that bound them:
- a connection's ``edges`` (any list under a field taking ``first``): ``first``, else
  ``last``, else 50 (what ``resolvers.pagination.page_window`` answers to neither); a
  ``first`` or ``last`` over the page size maximum is refused here already
  (``maxPageSize``);
- a series' ``points`` (under a field whose type has ``points``): the buckets of the
  range when ``bucket`` is given (default range 1 h), else ``limit``, else the point
  maximum (a raw series may hold that many); never more than the point maximum, which
  the resolvers enforce;
- a list field taking a list argument (``telemetry(deviceIds)``, ``latest(metrics)``):
  one item per element;
- any other list (``children``, ``capabilities``, ``latest`` without metrics): 10.

Introspection fields (``__schema``, ``__type``) cost nothing: they are bounded by the
schema, not by data; ``__typename`` counts like any field.
Fragments are walked once per (fragment, page size) (``resolvers.execution.fragments``),
so a spread fan-out costs its multiplied value without being walked exponentially; a
fragment cycle (refused by validation anyway) counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    GraphQLType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    get_named_type,
    get_operation_ast,
)
from graphql.execution.values import (
    VariableValues,
    get_argument_values,
    get_directive_values,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.errors import LimitExceeded
from resolvers.execution.fragments import SKIP, SelectionWalk, Skip
from resolvers.execution.reading_variables import variable_values

DEFAULT_PAGE = 50
UNKNOWN_LIST = 10
DEFAULT_RANGE = timedelta(hours=1)  # resolvers.telemetry.DEFAULT_RANGE
# Estimates are reported in extensions and messages: keep them integers every JSON
# encoder and client takes (orjson refuses integers beyond 64 bits; JavaScript loses
# precision beyond 2**53). A fragment fan-out reaches 2**150 within the token limit.
COST_CAP = 2**53 - 1


@dataclass(frozen=True)
class CostLimits:
    max_cost: int
    max_page_size: int
    max_points: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# What a selection set is measured in: its parent type, and the length of the list
# fields directly in it (a connection's edges, a series' points), None when not a list.
_Where = tuple[GraphQLType, int | None]


class _Estimate:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode,
                 variables: VariableValues, limits: CostLimits, now: datetime) -> None:
        self.schema = schema
        self.variables = variables
        self.limits = limits
        self.now = now
        # Whether the estimate read the clock (a range ending or starting "now"): such an
        # estimate holds for this request only, not for the next one with equal variables.
        self.used_now = False
        # A fragment's target type is its type condition, so its cost depends on the page
        # only: memoised per (fragment, page).
        self.walk: SelectionWalk[_Where, int] = SelectionWalk(
            document, field=self.field, combine=sum, empty=0, inline=self._inline,
            spread=self._spread, include=self._included, memo_key=lambda where: where[1])

    def _inline(self, node: InlineFragmentNode, where: _Where) -> _Where | Skip:
        condition = node.type_condition
        target = self.schema.get_type(condition.name.value) if condition else where[0]
        return SKIP if target is None else (target, where[1])

    def _spread(self, definition: FragmentDefinitionNode, where: _Where) -> _Where | Skip:
        target = self.schema.get_type(definition.type_condition.name.value)
        return SKIP if target is None else (target, where[1])

    def field(self, node: FieldNode, where: _Where) -> int:
        parent, page = where
        name = node.name.value
        if name == "__typename":
            return 1
        if name.startswith("__") or not isinstance(
            parent, GraphQLObjectType | GraphQLInterfaceType
        ):
            return 0
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        args = self._arguments(definition, node)
        self._check_page_size(definition, args)
        if node.selection_set is None:
            return 1
        named = get_named_type(definition.type)
        size = self._list_size(args, page) if _is_list(definition.type) else 1
        inner = self.walk.selections(node.selection_set,
                                     (named, self._child_page(definition, args)))
        return 1 + size * inner

    def _arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        try:
            return get_argument_values(definition, node, self.variables)
        except GraphQLError:
            return {}  # an invalid argument fails the field itself; estimate with defaults

    def _check_page_size(self, definition: GraphQLField, args: dict[str, Any]) -> None:
        maximum = self.limits.max_page_size
        for name in ("first", "last"):
            size = args.get(name)
            if name in definition.args and isinstance(size, int) and size > maximum:
                # The same answer as resolvers.pagination.check_page_size, before any work.
                raise LimitExceeded(
                    f"{name}={size} exceeds the maximum page size of {maximum}",
                    limit="maxPageSize", maximum=maximum,
                )

    def _list_size(self, args: dict[str, Any], page: int | None) -> int:
        if page is not None:
            return page
        for value in args.values():
            if isinstance(value, list):
                return len(value)
        return UNKNOWN_LIST

    def _child_page(self, definition: GraphQLField, args: dict[str, Any]) -> int | None:
        if "first" in definition.args:
            # Relay: first, else last, else the default page (resolvers.pagination).
            size = args.get("first")
            if size is None:
                size = args.get("last")
            return DEFAULT_PAGE if size is None else max(0, int(size))
        named = get_named_type(definition.type)
        if isinstance(named, GraphQLObjectType) and "points" in named.fields:
            return self._points(args)
        return None

    def _points(self, args: dict[str, Any]) -> int:
        maximum = self.limits.max_points
        bucket, limit = args.get("bucket"), args.get("limit")
        if not isinstance(bucket, timedelta):
            return min(limit, maximum) if isinstance(limit, int) and limit > 0 else maximum
        if not args.get("to"):
            self.used_now = True
        try:
            end = _utc(args.get("to") or self.now)
            start = _utc(args.get("from") or end - DEFAULT_RANGE)
            buckets = math.ceil((end - start) / bucket) + 1
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            return maximum  # the resolver refuses such a range; assume the worst
        return max(1, min(buckets, maximum))

    def _included(self, node: SelectionNode) -> bool:
        try:
            skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
            include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        except GraphQLError:
            return True
        return not (skip and skip.get("if") is True) and not (
            include and include.get("if") is False)


def _is_list(type_: GraphQLType) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def _root(schema: GraphQLSchema, operation: OperationDefinitionNode) -> GraphQLObjectType | None:
    return {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]


def estimate_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None,
    raw_variables: Mapping[str, Any] | None, limits: CostLimits, now: datetime | None = None,
) -> int | None:
    """The estimated cost of a validated operation; None when there is no such operation
    or its variables do not coerce (execution reports either). Raises LimitExceeded
    (maxPageSize) for a ``first`` over the page size maximum."""
    return estimate(schema, document, operation_name, raw_variables, limits, now)[0]


def estimate(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None,
    raw_variables: Mapping[str, Any] | None, limits: CostLimits, now: datetime | None = None,
) -> tuple[int | None, bool]:
    """``estimate_cost``, and whether the same document and variables always give that
    estimate (False when it read the clock: a series range relative to now)."""
    operation = get_operation_ast(document, operation_name)
    root = _root(schema, operation) if operation else None
    if operation is None or root is None:
        return None, True
    # Readings variables coerced in one loop (resolvers.execution.reading_variables).
    variables = variable_values(schema, operation, raw_variables)
    if isinstance(variables, list):
        return None, True
    walk = _Estimate(schema, document, variables, limits, now or datetime.now(UTC))
    cost = min(walk.walk.selections(operation.selection_set, (root, None)), COST_CAP)
    return cost, not walk.used_now


def check_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None,
    raw_variables: Mapping[str, Any] | None, limits: CostLimits,
) -> int | None:
    """The estimate when within the limits; raises LimitExceeded (maxPageSize or maxCost)
    otherwise."""
    cost = estimate_cost(schema, document, operation_name, raw_variables, limits)
    check_maximum(cost, limits)
    return cost


def check_maximum(cost: int | None, limits: CostLimits) -> None:
    """Raises LimitExceeded (maxCost) for an estimate over the maximum."""
    if cost is not None and cost > limits.max_cost:
        raise LimitExceeded(
            f"The query's estimated cost {cost} exceeds the maximum of {limits.max_cost}; "
            "ask for smaller pages, fewer points or less nesting",
            limit="maxCost", cost=cost, maximum=limits.max_cost,
        )


class QueryCost(SchemaExtension):
    """Refuses an operation over the cost or page size limits after validation, before
    execution; with ``X-IoTSphere-Trace: 1`` the answer carries ``extensions.cost``."""

    def __init__(self, *, limits: CostLimits) -> None:
        self.limits = limits
        self.cost: int | None = None

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        assert ec.graphql_document is not None
        if ec.pre_execution_errors is None:  # no earlier extension validated: do it now
            ec.pre_execution_errors = validate_document(
                ec.schema._schema, ec.graphql_document, ec.validation_rules)
        if not ec.pre_execution_errors:
            try:
                self.cost = check_cost(ec.schema._schema, ec.graphql_document,
                                       ec.operation_name, ec.variables, self.limits)
            except LimitExceeded as error:
                ec.pre_execution_errors = [error]
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is not None and getattr(self.execution_context.context, "trace", False):
            return {"cost": {"estimated": self.cost, "maximum": self.limits.max_cost}}
        return {}
