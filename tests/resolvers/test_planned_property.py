"""Planned execution against graphql-core as a property (hypothesis): random valid
documents over the schema (aliases, named and inline fragments, @skip/@include with
variables, nested connections, arguments that fail some fields, a store outage, every
role) answer the same on both paths over the same seeded stores.

Hypothesis drives synchronous code; it runs in a worker thread and runs each pair of
executions in the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from graphql import (
    GraphQLNonNull,
    GraphQLObjectType,
    Undefined,
    get_named_type,
    is_leaf_type,
    is_object_type,
)
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.auth.callers import create_tenant_with_admin_key
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.support.planned_paths import NOW, Paths, caller

T = TypeVar("T")
MAX_DEPTH = 4
# Root fields worth generating (api keys are admin bookkeeping with no nesting).
ROOTS = ("device", "devices", "asset", "assets", "shadow", "telemetry")


class Pools:
    """Argument values by argument name: valid ones, ones that fail the field (unknown,
    malformed, over a limit), and ids of another tenant."""

    def __init__(self, fleet: Fleet, other: Fleet) -> None:
        device, decommissioned = str(fleet.devices[1]), str(fleet.devices[0])
        asset = str(next(iter(fleet.assets.values())))
        leaf_asset = str(list(fleet.assets.values())[-1])
        foreign = str(other.devices[0])
        self.literals: dict[str, list[str]] = {
            "id": [f'"{device}"', f'"{asset}"', f'"{leaf_asset}"', f'"{foreign}"', '"nope"'],
            "deviceId": [f'"{device}"', f'"{decommissioned}"', f'"{foreign}"', '"nope"'],
            "deviceIds": [f'["{device}"]', f'["{device}", "{fleet.devices[2]}"]',
                          f'["{foreign}"]', "[]"],
            "first": ["0", "1", "2", "3", "null", "-1", "501"],
            "after": ["null", '"bad-cursor"'],
            "metric": ['"temperature"', '"power"', '""'],
            "bucket": ['"10m"', '"1h"', '"1s"'],
            "from": ["null", f'"{(NOW - timedelta(hours=1)).isoformat()}"',
                     f'"{(NOW + timedelta(hours=1)).isoformat()}"'],
            "to": ["null", f'"{NOW.isoformat()}"'],
            "aggregate": ["AVG", "MAX", "COUNT"],
            "limit": ["null", "2", "0"],
            "order": ["OLDEST_FIRST", "NEWEST_FIRST"],
            "metrics": ["null", '["temperature"]', "[]"],
            "threshold": ["60.0"],
            "window": ["null", '"2h"', '"400d"'],
        }


@st.composite
def documents(draw: st.DrawFn, query_type: GraphQLObjectType, literals: dict[str, list[str]],
              roots: tuple[str, ...] | None = ROOTS) -> tuple[str, dict[str, bool]]:
    """A valid query over ``query_type`` (from ``roots``), argument values from
    ``literals`` by argument name, and values for the Boolean variables it uses."""
    fragments: list[str] = []

    def selection(type_: GraphQLObjectType, depth: int, roots: tuple[str, ...] | None
                  ) -> str:
        names = [n for n in (roots or type_.fields) if _selectable(type_, n, depth)]
        picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
        parts = []
        for name in picked:
            parts.append(field(type_, name, depth))
            if draw(st.integers(0, 9)) == 0:
                parts.append("__typename")
        body = " ".join(parts)
        wrap = draw(st.integers(0, 5))
        if wrap == 0:
            return f"... on {type_.name} {{ {body} }}"
        if wrap == 1:
            directive = draw(st.sampled_from(["@include(if: $a)", "@skip(if: $b)"]))
            return f"{body} ... {directive} {{ {body} }}"
        if wrap == 2:
            name = f"F{len(fragments)}"
            fragments.append(f"fragment {name} on {type_.name} {{ {body} }}")
            return f"...{name}"
        return body

    def field(type_: GraphQLObjectType, name: str, depth: int) -> str:
        definition = type_.fields[name]
        alias = draw(st.sampled_from(["", "", f"{name}A: ", f"{name}B: "]))
        args = []
        for arg_name, arg in definition.args.items():
            required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
            pool = literals.get(arg_name)
            if pool is None:
                continue
            if required or draw(st.booleans()):
                args.append(f"{arg_name}: {draw(st.sampled_from(pool))}")
        text = alias + name + (f"({', '.join(args)})" if args else "")
        if draw(st.integers(0, 7)) == 0:
            text += draw(st.sampled_from([" @include(if: $a)", " @skip(if: $b)"]))
        named = get_named_type(definition.type)
        if is_object_type(named):
            assert isinstance(named, GraphQLObjectType)
            text += " { " + selection(named, depth + 1, None) + " }"
        return text

    body = selection(query_type, 1, roots)
    text = body + " ".join(fragments)
    used = [name for name in ("a", "b") if f"${name}" in text]
    variables = {name: draw(st.booleans()) for name in used}
    declared = ", ".join(f"${name}: Boolean!" for name in used)
    text = (f"query Q({declared}) " if used else "query Q ") + "{ " + body + " }\n"
    return text + "\n".join(fragments), variables


def _selectable(type_: GraphQLObjectType, name: str, depth: int) -> bool:
    if name.startswith("__"):
        return False
    definition = type_.fields[name]
    for arg_name, arg in definition.args.items():
        if isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined \
                and arg_name not in _KNOWN_ARGS:
            return False
    named = get_named_type(definition.type)
    return is_leaf_type(named) or depth < MAX_DEPTH


_KNOWN_ARGS = frozenset({"id", "deviceId", "deviceIds", "metric", "bucket", "threshold"})


# Hundreds of generated operations: minutes on a busy 2-core machine, past the suite's
# 300 s default.
@pytest.mark.timeout(900)
async def test_random_documents_answer_the_same_on_both_paths(
    stores: Stores, settings: Settings,
) -> None:
    tenant_id, _ = await create_tenant_with_admin_key(stores.registry, "planned")
    other_id, _ = await create_tenant_with_admin_key(stores.registry, "elsewhere")
    fleet = await seed_fleet(stores, tenant_id, devices=6, hours=2,
                             every=timedelta(minutes=10), now=NOW, sites=1, lines=2,
                             machines=1)
    other = await seed_fleet(stores, other_id, devices=1, hours=1,
                             every=timedelta(minutes=30), now=NOW, sites=1, lines=1,
                             machines=1)
    paths = Paths.over(stores, settings)
    pools = Pools(fleet, other)
    query_type = paths.planned._schema.query_type
    assert query_type is not None
    loop = asyncio.get_running_loop()
    callers = [caller(tenant_id, "admin"), caller(tenant_id, "viewer"),
               caller(tenant_id, "device", fleet.devices[1])]
    outages = [None, None, None, "assets", "telemetry", "registry"]
    planned: list[bool] = []
    invalid: list[str] = []  # documents refused before execution (both paths alike)

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    async def compare(text: str, variables: dict[str, bool], who: int, outage: str | None
                      ) -> None:
        store = getattr(stores, outage) if outage else None
        if store is not None:
            store.held = "down for the test"
        try:
            answer = await paths.compare(callers[who], text, variables,
                                         f"as {callers[who].role}, {outage} down: {text} "
                                         f"{variables}")
        finally:
            if store is not None:
                store.held = None
        if answer.errors and answer.data is None and "path" not in answer.errors[0]:
            invalid.append(answer.errors[0]["message"])
        planned.append(answer.planned)

    @hypothesis_settings(max_examples=120, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(document=documents(query_type, pools.literals), who=st.integers(0, 2),
           outage=st.sampled_from(outages))
    def property_holds(document: tuple[str, dict[str, bool]], who: int,
                       outage: str | None) -> None:
        run(compare(document[0], document[1], who, outage))

    await asyncio.to_thread(property_holds)
    assert len(planned) >= 100, len(planned)
    assert len(invalid) <= len(planned) * 0.3, invalid  # refused before execution
    assert sum(planned) >= len(planned) * 0.6, (sum(planned), len(planned))
    # Every planned answer was given again from its prepared entry, the same.
    assert paths.prepared_runs >= sum(planned), (paths.prepared_runs, sum(planned))
