"""Both execution paths side by side, for the differential and property tests: one
schema that plans queries, one that leaves every field to graphql-core, run over the same
seeded stores with the same caller and the same "now". The planning schema answers each
document twice: through Strawberry's pipeline, then (when that accepted it as a planned
query) from its prepared entry (resolvers.execution.prepared), as a repeated request
would be served."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
import strawberry

from gateway.auth.callers import Caller
from gateway.context import new_context
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.base import StoreCalls, begin_counting
from resolvers.execution.planned import PlannedExecutionContext
from resolvers.schema import build_schema

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@dataclass
class Answer:
    data: Any
    errors: list[dict[str, Any]]
    calls: StoreCalls
    planned: bool

    def comparable(self) -> tuple[bytes, list[bytes]]:
        """The data as bytes (key order included) and the errors as a sorted list: the
        spec gives errors no order, and graphql-core's follows task timing."""
        return (orjson.dumps(self.data),
                sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in self.errors))


@dataclass
class Paths:
    stores: Stores
    planned: strawberry.Schema
    reference: strawberry.Schema
    settings: Settings
    prepared_runs: int = 0  # answers that came from a prepared entry

    @classmethod
    def over(cls, stores: Stores, settings: Settings) -> Paths:
        return cls(stores, build_schema(dataclasses.replace(settings, planned_execution=True)),
                   build_schema(dataclasses.replace(settings, planned_execution=False)),
                   settings)

    async def answer(self, schema: strawberry.Schema, caller: Caller, query: str,
                     variables: dict[str, Any] | None) -> Answer:
        calls = begin_counting()
        context = new_context(self.stores, self.settings, caller, calls=calls)
        context.now = NOW
        before = PlannedExecutionContext.plans_run
        result = await schema.execute(query, variable_values=variables, context_value=context)
        return Answer(result.data, [e.formatted for e in result.errors or []], calls,
                      PlannedExecutionContext.plans_run > before)

    async def from_prepared(self, caller: Caller, query: str,
                            variables: dict[str, Any] | None) -> Answer | None:
        """The planning schema's answer from its prepared entry; None when it leaves the
        request to Strawberry's pipeline."""
        prepared = getattr(self.planned, "prepared", None)
        assert prepared is not None and prepared.enabled
        calls = begin_counting()
        context = new_context(self.stores, self.settings, caller, calls=calls)
        context.now = NOW
        before = PlannedExecutionContext.plans_run
        result = await prepared.execute(query, None, variables, context)
        if result is None:
            return None
        self.prepared_runs += 1
        return Answer(result.data, [e.formatted for e in result.errors or []], calls,
                      PlannedExecutionContext.plans_run > before)

    async def both(self, caller: Caller, query: str, variables: dict[str, Any] | None
                   ) -> tuple[Answer, Answer]:
        reference = await self.answer(self.reference, caller, query, variables)
        planned = await self.answer(self.planned, caller, query, variables)
        return reference, planned


    async def compare(self, caller: Caller, query: str, variables: dict[str, Any] | None,
                      what: str) -> Answer:
        """Both paths; the same answer, and no more round trips on the planned one.

        Round trips are counted per loop-iteration batch in both executors, so when root
        fields reach the same store after chains of different lengths (``shadow`` and
        ``devices { edges { node { shadow } } }``), whether their loads meet in one batch
        depends on which store answered first, on either path. A pair with more planned
        round trips is run again (up to 4 times): a planner that really needs more shows
        on every run."""
        for _ in range(4):
            reference, planned = await self.both(caller, query, variables)
            assert_same(reference, planned, what)
            prepared = await self.from_prepared(caller, query, variables)
            if prepared is not None:
                assert prepared.planned, "a prepared query runs its plan"
                assert_same(reference, prepared, f"(prepared) {what}")
            over = {store: (count, getattr(reference.calls, store))
                    for answer in (planned, prepared) if answer is not None
                    for store, count in answer.calls.as_dict().items()
                    if count > getattr(reference.calls, store)}
            if not over:
                return planned
        raise AssertionError(f"more round trips when planned {over}: {what}")


def assert_same(reference: Answer, planned: Answer, what: str) -> None:
    assert not reference.planned, "the reference path must not plan"
    assert planned.comparable() == reference.comparable(), (
        f"{what}\nreference: {reference.data!r} {reference.errors!r}\n"
        f"planned:   {planned.data!r} {planned.errors!r}")


def caller(tenant_id: UUID, role: str, device_id: UUID | None = None) -> Caller:
    return Caller(tenant_id, role, uuid4(), device_id)
