"""Prepared queries: a planned query runs again without Strawberry's per-request pipeline.

Strawberry's ``schema.execute`` is the reference pipeline: parse, operation type, the
validation rules and request limits, the cost check, execution, error logging and
masking, the request log and ``extensions``. Around a planned run of the issue-13 subset
it measured ~13% of the request's CPU (extension hooks entered as context managers on
every request, the document parsed again, the cost walked again, graphql-core's executor
built). Here a query document the reference pipeline has accepted once is remembered
(``PreparedCapture``, an extension whose ``on_execute`` only runs after parsing,
validation and the cost check passed), and a later request with the same text and
operation name runs from that entry: variables coerced by graphql-core, the cost looked
up for these variables, the plan run, errors logged and masked as ``ErrorCodes`` does,
``extensions`` as ``StoreCallTrace`` and ``QueryCost`` give them, and the request log and
metrics of ``RequestLog``.

What an entry holds depends on the document alone (its parse, that it validated, its
operation); nothing in it depends on the caller: the tenant's loaders, the field
permissions (checked as each field runs) and the variables are the request's own. Cost
verdicts are kept per variables, and only when the estimate did not read the clock.
Everything else goes through Strawberry: a document not seen yet, one that did not
validate or whose cost check refused it, variables that do not coerce, mutations,
subscriptions, and queries the planner does not cover. Entries live on the schema, so a
schema built for other settings (limits, planning off) starts empty.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway import tracing
from gateway.errors import LimitExceeded
from resolvers.execution.cost import CostLimits, check_maximum, estimate
from resolvers.execution.extensions import client_errors, record_operation
from resolvers.execution.planned import PlannedExecutionContext

log = logging.getLogger("gateway.errors")

MAX_DOCUMENTS = 512  # as the validation cache and the plans
MAX_COSTS = 64  # cost verdicts per document (variables seen)
MAX_VARIABLES_KEY = 1024  # bytes; larger variables are estimated per request

_REFUSED = object()


@dataclass
class _Entry:
    document: DocumentNode
    operation_name: str | None  # as requests give it (None: the document's only one)
    logged_name: str | None  # the name the request log and metrics use
    costs: dict[bytes, int | None] = field(default_factory=dict)
    unplanned: bool = False  # the planner refuses it whatever the variables


class PreparedQueries:
    """The prepared queries of one schema (``schema.prepared``), by (text, operation name)."""

    served = 0  # answers served from an entry in this process (tests read it)

    def __init__(self, schema: Any, limits: CostLimits) -> None:
        self._schema = schema  # strawberry.Schema
        self._limits = limits
        self._entries: dict[tuple[str, str | None], _Entry] = {}
        executor = schema.execution_context_class
        # Resolver middleware (an extension with a resolve hook) would wrap every field:
        # the planner does not reproduce it, so such a schema prepares nothing.
        self.enabled = (
            isinstance(executor, type) and issubclass(executor, PlannedExecutionContext)
            and executor.planned_execution
            and not any(extension._implements_resolve()
                        for extension in schema.get_extensions())
        )

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, query: str, operation_name: str | None, document: DocumentNode,
                 logged_name: str | None) -> None:
        """Called by the reference pipeline for a query it validated and is executing."""
        if not self.enabled:
            return
        key = (query, operation_name)
        if key in self._entries:
            return
        if len(self._entries) >= MAX_DOCUMENTS:
            self._entries.clear()
        self._entries[key] = _Entry(document, operation_name, logged_name)

    async def execute(self, query: str, operation_name: str | None,
                      variables: dict[str, Any] | None, context: Any,
                      operation_extensions: dict[str, Any] | None = None,
                      ) -> ExecutionResult | None:
        """The result of a prepared planned query; None when the reference pipeline must
        answer this request (then nothing has been run, logged or counted)."""
        entry = self._entries.get((query, operation_name))
        if entry is None or entry.unplanned:
            return None
        started = time.perf_counter()
        cost = self._cost(entry, variables)
        if cost is _REFUSED:
            return None  # Strawberry refuses it, with the same message
        executor = self._schema.execution_context_class.build(
            self._schema._schema, entry.document, None, context, variables,
            entry.operation_name, is_awaitable=optimized_is_awaitable,
            operation_extensions=operation_extensions)
        if isinstance(executor, list):
            return None  # variables that do not coerce: Strawberry reports them
        plan = executor.operation_plan()
        if plan is None:
            entry.unplanned = executor.plan_refused_for_every_request()
            return None
        span = tracing.start_operation()
        try:
            result = await executor.run_plan(plan)
            data, errors = result.data, list(result.errors or ())
        except Exception as exc:  # noqa: BLE001 - a bug in the run: masked, logged
            data, errors = None, [_unexpected(exc)]
        if errors:
            self._schema._process_errors(errors)  # Strawberry's error log, as it does
            errors = client_errors(errors)
        record_operation(context, entry.logged_name, errors, started, span)
        PreparedQueries.served += 1
        return ExecutionResult(data=data, errors=errors or None,
                               extensions=self._extensions(context, cost))

    def _cost(self, entry: _Entry, variables: Mapping[str, Any] | None) -> Any:
        """This request's estimate (None when it has none), or _REFUSED over a limit."""
        key = _variables_key(variables)
        if key is not None and key in entry.costs:
            return entry.costs[key]
        schema = self._schema._schema
        try:
            cost, reusable = estimate(schema, entry.document, entry.operation_name,
                                      variables, self._limits)
            check_maximum(cost, self._limits)
        except LimitExceeded:
            return _REFUSED
        if key is not None and reusable:
            if len(entry.costs) >= MAX_COSTS:
                entry.costs.clear()
            entry.costs[key] = cost
        return cost

    def _extensions(self, context: Any, cost: int | None) -> dict[str, Any]:
        """What StoreCallTrace and QueryCost add (in their order), for a traced request."""
        if not getattr(context, "trace", False):
            return {}
        found: dict[str, Any] = {"storeCalls": context.calls.as_dict()}
        if cost is not None:
            found["cost"] = {"estimated": cost, "maximum": self._limits.max_cost}
        return found


def _variables_key(variables: Mapping[str, Any] | None) -> bytes | None:
    if not variables:
        return b""
    try:
        key = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: not from JSON; estimate per request
        return None
    return key if len(key) <= MAX_VARIABLES_KEY else None


def _unexpected(exc: Exception) -> GraphQLError:
    """What ErrorCodes makes of an error without a code: INTERNAL, the cause logged."""
    log.error("unexpected error in a prepared query", exc_info=exc)
    error = GraphQLError("Internal server error")
    error.extensions = {"code": "INTERNAL"}
    return error


class PreparedCapture(SchemaExtension):
    """Remembers a query the reference pipeline accepted: ``on_execute`` runs after
    parsing, the operation type check, validation (every rule and limit) and the cost
    check passed."""

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        prepared: PreparedQueries | None = getattr(ec.schema, "prepared", None)
        if (prepared is not None and ec.query and ec.graphql_document is not None
                and not ec.pre_execution_errors
                and ec.operation_type is OperationType.QUERY):
            prepared.remember(ec.query, getattr(ec, "_provided_operation_name", None),
                              ec.graphql_document, ec.operation_name)
        yield
