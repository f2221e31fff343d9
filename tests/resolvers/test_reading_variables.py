"""ingestTelemetry's readings coerced in one loop (resolvers.execution.reading_variables)
answer exactly what graphql-core's coercion answers: malformed readings of every kind give
the same errors (messages, paths, locations, codes) with the fast path on (planning
schema) and off (reference schema); valid batches give the same per-reading outcomes,
the same tenancy and role decisions, and no more store round trips."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from graphql import parse
from graphql.execution.values import get_variable_values

from gateway.auth.callers import Caller
from gateway.settings import Settings
from gateway.stores import Stores
from resolvers.execution.reading_variables import fast_readings, installed, variable_values
from resolvers.schema import build_schema
from tests.conftest import Tenant
from tests.support.planned_paths import Answer, Paths, assert_same, caller

INGEST = """mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r) {
    accepted duplicates rejected { index reason } } }"""
# A second variable beside the readings, and a nullable readings list.
INGEST_TWO = """mutation Two($r: [ReadingInput!], $n: Int!) {
    ingestTelemetry(readings: $r) { accepted duplicates rejected { index reason } } }"""

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def good(device: str, n: int, shift: timedelta = timedelta(0)) -> dict[str, Any]:
    return {"deviceId": device, "metric": "temp",
            "time": (START + shift + timedelta(seconds=n)).isoformat(), "value": float(n)}


def _with(device: str, **fields: Any) -> dict[str, Any]:
    reading = good(device, 0)
    for name, value in fields.items():
        if value is _DROP:
            del reading[name]
        else:
            reading[name] = value
    return reading


_DROP = object()


def malformed(device: str) -> dict[str, Any]:
    """Variable values graphql-core refuses, or that the fast loop leaves to it."""
    base = [good(device, n) for n in range(3)]
    cases: dict[str, Any] = {
        "readings missing": {},
        "readings null": {"r": None},
        "readings a string": {"r": "temp"},
        "readings a number": {"r": 5},
        "a reading null": {"r": [*base, None]},
        "a reading a list": {"r": [*base, [device, "temp"]]},
        "a reading a string": {"r": [*base, "reading"]},
        "deeply nested": {"r": [[[[[[[[[[[[good(device, 0)]]]]]]]]]]]]},
    }
    fields: dict[str, dict[str, Any]] = {
        "deviceId missing": {"deviceId": _DROP},
        "deviceId null": {"deviceId": None},
        "deviceId a float": {"deviceId": 1.5},
        "deviceId a boolean": {"deviceId": True},
        "deviceId an object": {"deviceId": {"id": device}},
        "metric missing": {"metric": _DROP},
        "metric a number": {"metric": 5},
        "metric null": {"metric": None},
        "time missing": {"time": _DROP},
        "time not a date": {"time": "yesterday"},
        "time a number": {"time": 1_764_183_600},
        "time with a bad offset": {"time": "2026-11-26T19:00:00+25:00"},
        "time null": {"time": None},
        "value a string": {"value": "1.5"},
        "value a boolean": {"value": True},
        "value null": {"value": None},
        "value nan": {"value": float("nan")},
        "value infinite": {"value": float("inf")},
        "value an int too large for a float": {"value": 10**400},
        "value an int a float rounds": {"value": 2**53 + 1},
        "value a list": {"value": [1.0]},
        "an extra field": {"unit": "C"},
        "a misspelled field": {"device_id": device, "deviceId": _DROP},
    }
    for name, change in fields.items():
        cases[name] = {"r": [*base, _with(device, **change)]}
        cases[f"{name}, first of many"] = {"r": [_with(device, **change),
                                                *(good(device, n) for n in range(200))]}
    return cases


def accepted_shapes(device: str) -> dict[str, Callable[[timedelta], dict[str, Any]]]:
    """Valid variable values, by the time shift that keeps each run's readings fresh."""
    return {
        "plain": lambda s: {"r": [good(device, n, s) for n in range(50)]},
        "empty": lambda s: {"r": []},
        "int values": lambda s: {"r": [{**good(device, n, s), "value": n} for n in range(5)]},
        "int values at 2**53": lambda s: {"r": [{**good(device, 0, s), "value": 2**53}]},
        "time without offset": lambda s: {"r": [{**good(device, 0, s), "time": (
            START + s).replace(tzinfo=None).isoformat()}]},
        "time with Z": lambda s: {"r": [{**good(device, 0, s), "time": (
            START + s).strftime("%Y-%m-%dT%H:%M:%SZ")}]},
        "keys in another order": lambda s: {"r": [dict(reversed(good(device, 0, s).items()))]},
        "one reading, not a list": lambda s: {"r": good(device, 0, s)},  # a list of one
        "an ID that is a number": lambda s: {"r": [{**good(device, 0, s), "deviceId": 7}]},
        "unknown device, bad metric, future time": lambda s: {"r": [
            good(str(uuid4()), 0, s), {**good(device, 1, s), "metric": "9bad"},
            {**good(device, 2, s), "time": (datetime.now(UTC) + timedelta(hours=1)
                                            ).isoformat()},
            {**good(device, 3, s), "value": 1e300}, good("not-a-uuid", 4, s)]},
        "the same reading twice": lambda s: {"r": [good(device, 999, s), good(device, 999, s)]},
    }


# Cases the fast loop takes itself (the rest it leaves to graphql-core).
FAST = {"plain", "empty", "int values", "int values at 2**53", "time without offset",
        "time with Z", "keys in another order", "unknown device, bad metric, future time",
        "the same reading twice"}


async def _device(stores: Stores, tenant: Tenant) -> str:
    row = await stores.registry.insert_device(
        tenant.id, serial=f"SN-{uuid4().hex[:8]}", name="Meter", type="meter", status="ACTIVE")
    return str(row["id"])


def _caller(tenant: Tenant, role: str, device: str | None = None) -> Caller:
    return caller(tenant.id, role, UUID(device) if device else None)


async def _both(paths: Paths, who: Caller, query: str,
                variables: Callable[[timedelta], dict[str, Any]]) -> tuple[Answer, Answer]:
    """Reference then planned, each writing readings of its own hour so neither sees the
    other's as duplicates."""
    reference = await paths.answer(paths.reference, who, query, variables(timedelta(0)))
    planned = await paths.answer(paths.planned, who, query, variables(timedelta(hours=1)))
    return reference, planned


def test_the_fast_path_is_on_when_planning_is(settings: Settings) -> None:
    on = build_schema(dataclasses.replace(settings, planned_execution=True))
    off = build_schema(dataclasses.replace(settings, planned_execution=False))
    assert installed(on._schema)
    assert not installed(off._schema)


def test_variables_coerce_as_graphql_core_coerces_them(settings: Settings) -> None:
    schema = build_schema(dataclasses.replace(settings, planned_execution=True))._schema
    device = str(uuid4())
    cases = {**malformed(device),
             **{name: make(timedelta(0)) for name, make in accepted_shapes(device).items()}}
    for query in (INGEST, INGEST_TWO):
        operation = parse(query).definitions[0]
        definitions = operation.variable_definitions  # type: ignore[attr-defined]
        for name, variables in cases.items():
            variables = {**variables, "n": 1} if query is INGEST_TWO else variables
            ours = variable_values(schema, operation, variables)  # type: ignore[arg-type]
            theirs = get_variable_values(schema, definitions, variables)
            if isinstance(theirs, list):
                assert isinstance(ours, list), name
                assert [e.formatted for e in ours] == [e.formatted for e in theirs], name
            else:
                assert not isinstance(ours, list), (name, ours)
                assert ours.coerced == theirs.coerced, name
                assert {k: s.value for k, s in ours.sources.items()} == {
                    k: s.value for k, s in theirs.sources.items()}, name
            taken = fast_readings(schema, definitions, variables) is not None
            assert taken == (name in FAST), name


def test_a_request_coerces_its_readings_once(settings: Settings) -> None:
    """The cost check and the executor's build each ask for the variables of one request:
    the second gets the first's readings (the same list), and then it is let go; another
    request's list, equal or not, is coerced on its own."""
    schema = build_schema(dataclasses.replace(settings, planned_execution=True))._schema
    definitions = parse(INGEST).definitions[0].variable_definitions  # type: ignore[attr-defined]
    device = str(uuid4())
    variables = {"r": [good(device, n) for n in range(3)]}
    first = fast_readings(schema, definitions, variables)
    second = fast_readings(schema, definitions, variables)
    assert first is not None and second is not None and first["r"] is second["r"]
    third = fast_readings(schema, definitions, variables)
    assert third is not None and third["r"] is not first["r"] and third["r"] == first["r"]
    other = fast_readings(schema, definitions, {"r": list(variables["r"])})
    assert other is not None and other["r"] is not third["r"] and other["r"] == third["r"]


async def test_malformed_readings_answer_the_same_on_both_paths(
    stores: Stores, settings: Settings, tenant: Tenant,
) -> None:
    paths = Paths.over(stores, settings)
    device = await _device(stores, tenant)
    who = _caller(tenant, "admin")
    for name, variables in malformed(device).items():
        reference, planned = await _both(paths, who, INGEST, lambda _s, v=variables: v)
        assert_same(reference, planned, name)
        assert reference.errors and reference.data is None, name
        assert planned.calls.as_dict() == reference.calls.as_dict(), name


async def test_accepted_readings_answer_the_same_with_no_more_round_trips(
    stores: Stores, settings: Settings, tenant: Tenant,
) -> None:
    paths = Paths.over(stores, settings)
    device = await _device(stores, tenant)
    who = _caller(tenant, "admin")
    # Both paths' readings (START and an hour later, plus up to 999 s) may fall on two
    # days; the first write of a day this process has not seen pays a partition call,
    # which is housekeeping, not the path's round trips: ensured here for both.
    await stores.telemetry.ensure_days(START, START + timedelta(hours=2))
    outcomes = {}
    for name, make in accepted_shapes(device).items():
        reference, planned = await _both(paths, who, INGEST, make)
        assert_same(reference, planned, name)
        assert not reference.errors, (name, reference.errors)
        for store, count in planned.calls.as_dict().items():
            assert count <= getattr(reference.calls, store), (name, store)
        outcomes[name] = planned.data["ingestTelemetry"]
    assert outcomes["plain"]["accepted"] == 50
    assert outcomes["the same reading twice"] == {
        "accepted": 1, "duplicates": 1, "rejected": []}
    assert [r["index"] for r in outcomes["unknown device, bad metric, future time"][
        "rejected"]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("role", ["admin", "operator", "viewer", "own device",
                                  "another device"])
async def test_tenancy_and_roles_answer_the_same(
    stores: Stores, settings: Settings, tenant: Tenant, other_tenant: Tenant, role: str,
) -> None:
    paths = Paths.over(stores, settings)
    mine, second = await _device(stores, tenant), await _device(stores, tenant)
    theirs = await _device(stores, other_tenant)
    who = {"own device": _caller(tenant, "device", mine),
           "another device": _caller(tenant, "device", second)}.get(role) or _caller(
        tenant, role)

    device_caller = role.endswith("device")

    def variables(shift: timedelta) -> dict[str, Any]:
        # A device may write only its own readings: it sends no other tenant's.
        extra = [] if device_caller else [good(theirs, 9, shift)]
        return {"r": [good(mine, n, shift) for n in range(3)] + extra}

    reference, planned = await _both(paths, who, INGEST, variables)
    assert_same(reference, planned, role)
    if role in ("viewer", "another device"):
        assert [e["extensions"]["code"] for e in planned.errors] == ["FORBIDDEN"]
        return
    result = planned.data["ingestTelemetry"]
    assert result["accepted"] == 3
    # Another tenant's device reads like an unknown one; nothing of it is written.
    assert result["rejected"] == ([] if device_caller else [
        {"index": 3, "reason": "unknown device"}])
