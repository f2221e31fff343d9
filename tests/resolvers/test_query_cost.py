"""The query cost estimate (resolvers/execution/cost.py): the estimator alone, then through the
gateway, where an operation over the maximum is refused before any store work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import parse

from bench.queries import DASHBOARD
from gateway.errors import LimitExceeded
from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from resolvers.execution.cost import CostLimits, estimate_cost
from resolvers.schema import schema
from tests.conftest import AppClient, Gateway, Tenant

LIMITS = CostLimits(max_cost=10**9, max_page_size=500, max_points=10_000)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# Three nested pages of 100: a million devices.
NESTED = """{ devices(first: 100) { edges { node { asset {
  devices(first: 100) { edges { node { asset {
    devices(first: 100) { edges { node { id name } } } } } } } } } } } }"""


def cost(query: str, variables: dict[str, Any] | None = None,
         limits: CostLimits = LIMITS) -> int:
    value = estimate_cost(schema._schema, parse(query), None, variables, limits, NOW)
    assert value is not None
    return value


def test_the_dashboard_costs_its_field_resolutions() -> None:
    # Below each node: id name status labels (4), asset + name kind parent name (5),
    # metadata (1), shadow + 4 (5), latest + 2 x 3 (7), telemetry + points + 13 x 2 (1 h in
    # 5 min buckets, both ends) + stats + 2 (31): 53, with the node 54 a device; the page
    # itself (devices, totalCount, edges) 3.
    assert cost(DASHBOARD, {"first": 10}) == 3 + 10 * 54
    assert cost(DASHBOARD, {"first": 100}) == 5_403
    assert cost(DASHBOARD, {"first": 500}) == 27_003
    assert cost(DASHBOARD, {"first": 500}) <= Settings().max_cost


def test_nested_pages_multiply() -> None:
    # devices + edges + 100 x (node + asset + devices + edges + 100 x (node + asset +
    # devices + edges + 100 x (node + id + name)))
    assert cost(NESTED) == 2 + 100 * (4 + 100 * (4 + 100 * 3)) == 3_040_402
    assert cost(NESTED) > Settings().max_cost


def test_page_sizes_come_from_first_its_default_and_variables() -> None:
    one_field = "{ devices%s { edges { node { id } } } }"
    assert cost(one_field % "") == 2 + 50 * 2  # the schema's default, 50
    assert cost(one_field % "(first: null)") == 2 + 50 * 2  # what check_page_size answers
    assert cost(one_field % "(first: 7)") == 2 + 7 * 2
    assert cost("query($n: Int) { devices(first: $n) { edges { node { id } } } }",
                {"n": 7}) == 2 + 7 * 2
    assert cost(one_field % "(first: 0)") == 2


def test_fragments_cost_what_their_fields_cost() -> None:
    inline = "{ devices(first: 5) { edges { node { id name } } } }"
    spread = """{ devices(first: 5) { ...Page } }
      fragment Page on DeviceConnection { edges { node { ...Node } } }
      fragment Node on Device { id ... on Device { name } }"""
    assert cost(spread) == cost(inline) == 2 + 5 * 3
    twice = "{ devices(first: 5) { ...P ...P } } fragment P on DeviceConnection { totalCount }"
    assert cost(twice) == 1 + 2


def fan_out(levels: int, leaf: str = "__typename") -> str:
    """F0 spreads F1 twice, F1 spreads F2 twice...: 2**levels copies of ``leaf``."""
    return "{ ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    ) + f" fragment F{levels} on Query {{ {leaf} }}"


def test_a_fragment_fan_out_is_estimated_without_walking_it() -> None:
    # Walking every spread would never end; the estimator walks each fragment once.
    assert cost(fan_out(40)) == 2**40
    # 150 levels fit in the token limit: reported capped, as an integer every JSON encoder
    # and client takes.
    assert cost(fan_out(150)) == 2**53 - 1


def test_a_fragment_cycle_does_not_loop() -> None:
    cyclic = """{ device(id: "x") { ...A } }
      fragment A on Device { name asset { ...B } }
      fragment B on Asset { name devices { edges { node { ...A } } } }"""
    # device name asset name devices edges + 50 x node; the second A counts nothing
    assert cost(cyclic) == 6 + 50 * 1


def test_series_points_from_bucket_range_and_limit() -> None:
    def points(args: str) -> int:
        query = '{ device(id: "x") { telemetry(metric: "t"ARGS) { points { value } } } }'
        return cost(query.replace("ARGS", args)) - 3  # device, telemetry, points
    assert points(', bucket: "5m"') == 13  # default range: one hour
    assert points(', from: "2025-01-01T00:00:00Z", to: "2025-01-02T00:00:00Z", '
                  'bucket: "1h"') == 25
    assert points(', limit: 100') == 100
    assert points("") == 10_000  # a raw series may hold the point maximum
    assert points(', from: "2020-01-01T00:00:00Z", bucket: "1m"') == 10_000  # capped
    rollup = '{ asset(id: "x") { telemetry(metric: "t", bucket: "30m") { points { time } } } }'
    assert cost(rollup) == 3 + 3  # 1 h in 30 min buckets, both ends


def test_list_arguments_size_their_lists() -> None:
    series = """{ telemetry(deviceIds: ["a", "b", "c"], metric: "t", bucket: "1h") {
      stats { avg } } }"""
    assert cost(series) == 1 + 3 * 2
    latest = '{ device(id: "x") { latest(metrics: ["t", "v"]) { value } } }'
    assert cost(latest) == 2 + 2
    assert cost('{ device(id: "x") { latest { value } } }') == 2 + 10  # unknown: 10
    assert cost('{ asset(id: "x") { children { name } } }') == 2 + 10


def test_skipped_fields_and_introspection_cost_nothing() -> None:
    assert cost("""query($no: Boolean!) { devices(first: 5) {
      totalCount edges @include(if: $no) { node { id } } } }""", {"no": False}) == 2
    assert cost("{ devices(first: 5) { totalCount edges @skip(if: true) { cursor } } }") == 2
    assert cost("{ __schema { types { name fields { name } } } }") == 0
    assert cost("{ __typename }") == 1


def test_a_page_over_the_maximum_is_refused_wherever_it_is() -> None:
    with pytest.raises(LimitExceeded) as raised:
        cost('{ asset(id: "x") { devices(first: 501) { totalCount } } }')
    assert raised.value.extensions == {"code": "LIMIT_EXCEEDED", "limit": "maxPageSize",
                                       "maximum": 500}


def test_variables_that_do_not_coerce_are_left_to_execution() -> None:
    document = parse("query($n: Int) { devices(first: $n) { totalCount } }")
    assert estimate_cost(schema._schema, document, None, {"n": "many"}, LIMITS) is None
    assert estimate_cost(schema._schema, document, "Missing", {}, LIMITS) is None


# Through the gateway.

def _error(body: dict[str, Any]) -> dict[str, Any]:
    [error] = body["errors"]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED", body
    return error


async def test_the_dashboard_passes_and_traces_its_cost(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=100, hours=1)
    body = await gateway.query(DASHBOARD, {"first": 100}, key=tenant.key, trace=True)
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["devices"]["edges"]) == 100
    assert body["extensions"]["cost"] == {"estimated": 5_403, "maximum": 100_000}
    untraced = await gateway.query(DASHBOARD, {"first": 1}, key=tenant.key)
    assert "cost" not in untraced.get("extensions", {})


async def test_an_expensive_query_is_refused_before_store_work(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=3, hours=1)
    # Within the depth limit, unlike NESTED: two nested pages of 500.
    query = """{ devices(first: 500) { edges { node { asset {
      devices(first: 500) { edges { node { id name } } } } } } } }"""
    body = await gateway.query(query, key=tenant.key, trace=True)
    error = _error(body)
    assert error["extensions"] == {"code": "LIMIT_EXCEEDED", "limit": "maxCost",
                                   "cost": 752_002, "maximum": 100_000}
    assert "752002" in error["message"] and "100000" in error["message"]
    assert body.get("data") is None
    # Only the API key lookup ran: nothing was executed.
    calls = body["extensions"]["storeCalls"]
    assert calls["assets"] == calls["telemetry"] == calls["shadows"] == 0


async def test_the_cost_follows_variables(
    app_client: AppClient, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=5, hours=1)
    query = "query($n: Int) { devices(first: $n) { edges { node { id name } } } }"
    async with app_client(max_cost=100) as http:
        async def post(n: int) -> dict[str, Any]:
            response = await http.post("/graphql", json={"query": query, "variables": {"n": n}},
                                       headers={"Authorization": f"Bearer {tenant.key}"})
            body: dict[str, Any] = response.json()
            return body
        assert len((await post(5))["data"]["devices"]["edges"]) == 5  # 1 + 1 + 5 * 3 = 17
        assert _error(await post(40))["extensions"]["cost"] == 2 + 40 * 3


async def test_a_nested_page_over_the_maximum_is_refused_before_store_work(
    gateway: Gateway, tenant: Tenant
) -> None:
    body = await gateway.query(
        "{ assets { edges { node { devices(first: 100000) { totalCount } } } } }",
        key=tenant.key, trace=True)
    assert _error(body)["extensions"] == {"code": "LIMIT_EXCEEDED", "limit": "maxPageSize",
                                          "maximum": 500}
    assert body["extensions"]["storeCalls"]["assets"] == 0
