"""The execution context that runs planned operations (``resolvers.execution.plan``,
``plan_run``) and leaves everything else to graphql-core.

Strawberry runs its whole pipeline around this class (parse, the validation cache, the
request limits and the cost check before; error masking, the request log and
``extensions.storeCalls`` after), so a planned operation keeps every one of them; only the
field-by-field execution is replaced. Whether an operation is planned is decided when its
plan is built: queries whose every field the planner covers; mutations (serial),
subscriptions, introspection and the shapes ``plan.build`` refuses run through
graphql-core, as does everything when planning is switched off
(``IOTSPHERE_PLANNED_EXECUTION=false``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    ExecutionResult,
    OperationType,
    VariableNode,
    visit,
)
from graphql.execution.collect_fields import collect_fields
from graphql.language import Visitor

from resolvers.execution import plan as plans
from resolvers.execution.flat_lists import FlatListExecutionContext
from resolvers.execution.plan_run import PlanRun

MAX_PLANS = 512


class _Switches(Visitor):
    """The variables deciding @skip/@include anywhere in a document: with their values
    they pick which fields are collected, so they are part of a plan's key."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
        if node.name.value in ("skip", "include"):
            for argument in node.arguments or ():
                value = argument.value
                if isinstance(value, VariableNode):
                    self.names.append(value.name.value)
                elif not isinstance(value, BooleanValueNode):
                    self.names.append("")  # unusual: plan per request, never cached


def _switches(executor: Any) -> tuple[str, ...] | None:
    visitor = _Switches()
    visit(executor.operation, visitor)
    for fragment in executor.fragment_definitions.values():
        visit(fragment, visitor)
    if "" in visitor.names:
        return None
    return tuple(dict.fromkeys(visitor.names))


class _Plans:
    """Plans per (schema, document text, operation name), then per switch values."""

    def __init__(self) -> None:
        self._documents: dict[tuple[Any, str, str | None],
                              tuple[tuple[str, ...] | None, dict[Any, Any]]] = {}

    def entry(self, executor: Any, body: str, name: str | None
              ) -> tuple[tuple[str, ...] | None, dict[Any, Any]]:
        key = (executor.schema, body, name)
        found = self._documents.get(key)
        if found is None:
            if len(self._documents) >= MAX_PLANS:
                self._documents.clear()
            found = self._documents[key] = (_switches(executor), {})
        return found


_PLANS = _Plans()
_UNPLANNED = object()


class PlannedExecutionContext(FlatListExecutionContext):
    """graphql-core's executor with planned execution of the queries a plan covers."""

    planned_execution = True
    plans_run = 0  # planned executions in this process (tests read it)

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self.operation_plan()
        if plan is None:
            return super().execute_operation(serially)
        return self.run_plan(plan)

    def operation_plan(self) -> plans.Selection | None:
        """The plan of this request's operation (with its @skip/@include values); None when
        graphql-core executes it."""
        return self._operation_plan() if self.planned_execution else None

    def plan_refused_for_every_request(self) -> bool:
        """After ``operation_plan`` answered None: whether it answers None to every request
        of this document (no variable decides @skip/@include, or planning is off)."""
        if not self.planned_execution or self.operation.operation is not OperationType.QUERY:
            return True
        loc = self.operation.loc
        if loc is None:
            return True
        switches, _ = _PLANS.entry(
            self, loc.source.body, self.operation.name.value if self.operation.name else None)
        return not switches

    def run_plan(self, plan: plans.Selection) -> Awaitable[ExecutionResult]:
        PlannedExecutionContext.plans_run += 1  # one count for every subclass
        return self._run(plan)

    async def _run(self, plan: plans.Selection) -> ExecutionResult:
        run = PlanRun(self, plan)
        data = await run.run(self.root_value)
        self.run_async_work_finished_hook()
        return ExecutionResult(data, run.errors or None)

    def _operation_plan(self) -> plans.Selection | None:
        operation = self.operation
        if operation.operation is not OperationType.QUERY or serially_needed(self):
            return None
        loc = operation.loc
        if loc is None:
            return None
        switches, by_values = _PLANS.entry(
            self, loc.source.body, operation.name.value if operation.name else None)
        if switches is None:
            return None
        coerced = self.variable_values.coerced
        values = tuple(coerced.get(name, Undefined_) for name in switches)
        found = by_values.get(values)
        if found is None:
            found = self._build_plan() or _UNPLANNED
            by_values[values] = found
        return None if found is _UNPLANNED else found  # type: ignore[return-value]

    def _build_plan(self) -> plans.Selection | None:
        root_type = self.schema.query_type
        if root_type is None:
            return None
        try:
            grouped, defers, *_ = collect_fields(
                self.schema, self.fragments, self.variable_values, root_type,
                self.operation, self.hide_suggestions)
            if defers:
                return None
            return plans.build(root_type, grouped, self._collect)
        except (plans.Unplannable, RecursionError):
            return None
        except Exception:  # noqa: BLE001 - graphql-core reports it (e.g. a bad @skip value)
            return None

    def _collect(self, type_: Any, details: Any) -> Any:
        return self.collect_subfields(type_, details)


Undefined_ = object()


def serially_needed(executor: Any) -> bool:
    """What the planner does not reproduce: resolver middleware (an extension that wraps
    every field), an abort signal, and error propagation switched off."""
    manager = executor.middleware_manager
    return bool(
        (manager is not None and getattr(manager, "middlewares", None))
        or executor.abort_signal is not None
        or not executor.error_propagation
    )

