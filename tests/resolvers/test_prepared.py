"""Prepared queries (resolvers/execution/prepared.py): a query Strawberry's pipeline accepted
once is served again from its entry, over HTTP, with every check the pipeline makes that
depends on the request still made per request: the caller's tenant and role, the cost of
these variables, the settings of this schema. The answers of both paths are compared
(the differential and property tests compare many more documents)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from graphql import parse

from bench.queries import DASHBOARD, SUBSET
from gateway.auth.api_keys import create
from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from resolvers.execution.cost import CostLimits, estimate
from resolvers.execution.prepared import PreparedQueries
from resolvers.schema import schema
from tests.conftest import AppClient, Gateway, Tenant


def _served() -> int:
    return PreparedQueries.served


async def _post(http: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any],
                operation_name: str | None = None, trace: bool = True) -> httpx.Response:
    body: dict[str, Any] = {"query": query, "variables": variables}
    if operation_name is not None:
        body["operationName"] = operation_name
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/graphql-response+json"}
    if trace:
        headers["X-IoTSphere-Trace"] = "1"
    return await http.post("/graphql", json=body, headers=headers)


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_a_repeated_query_is_served_prepared_with_the_same_answer(
    gateway: Gateway, stores: Stores, tenant: Tenant,
) -> None:
    await seed_fleet(stores, tenant.id, devices=6, hours=0, sites=1, lines=1, machines=2)
    # Another document first: the key's lookup (a registry call) is then cached.
    await _post(gateway.http, tenant.key, "{ devices(first: 1) { totalCount } }", {})
    first = await _post(gateway.http, tenant.key, SUBSET, {"first": 5})
    before = _served()
    again = [await _post(gateway.http, tenant.key, SUBSET, {"first": 5}) for _ in range(3)]
    assert _served() == before + 3
    for response in again:
        assert response.status_code == first.status_code == 200
        # Data, storeCalls and the cost in extensions: byte for byte (key order included).
        assert response.content == first.content
    body = first.json()
    assert len(body["data"]["devices"]["edges"]) == 5
    assert body["extensions"]["cost"] == {"estimated": 3 + 5 * 10, "maximum": 100_000}
    # Without the trace header, no extensions, as Strawberry answers.
    plain = await _post(gateway.http, tenant.key, SUBSET, {"first": 5}, trace=False)
    assert "extensions" not in plain.json()


async def test_a_prepared_entry_serves_each_tenant_its_own_devices(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant,
) -> None:
    ours = await seed_fleet(stores, tenant.id, devices=3, hours=0, sites=1, lines=1,
                            machines=1)
    theirs = await seed_fleet(stores, other_tenant.id, devices=4, hours=0, sites=1, lines=1,
                              machines=1)
    for key, fleet in [(tenant.key, ours), (other_tenant.key, theirs)] * 2:
        body = (await _post(gateway.http, key, SUBSET, {"first": 10})).json()
        ids = {e["node"]["id"] for e in body["data"]["devices"]["edges"]}
        assert ids == {str(d) for d in fleet.devices}
        assert body["data"]["devices"]["totalCount"] == len(fleet.devices)


async def test_a_prepared_entry_checks_each_callers_role(
    gateway: Gateway, stores: Stores, tenant: Tenant,
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=3, hours=0, sites=1, lines=1,
                             machines=1)
    device_key = (await create(stores.registry, tenant.id, name="d", role="device",
                               device_id=fleet.devices[0])).secret
    viewer_key = (await create(stores.registry, tenant.id, name="v", role="viewer",
                               device_id=None)).secret
    # The device first (its refusal happens at the field, after the document was
    # accepted), then the readers, then the device again from the entry: each its own.
    answers = []
    for key in (device_key, tenant.key, viewer_key, device_key, tenant.key):
        before = _served()
        response = await _post(gateway.http, key, SUBSET, {"first": 10})
        answers.append((response.status_code, response.json(), _served() - before))
    refused, admin, viewer, refused_again, admin_again = answers
    assert refused[2] == 0 and all(a[2] == 1 for a in answers[1:])
    assert refused[1]["data"] == {"devices": None} and _codes(refused[1]) == ["FORBIDDEN"]
    # (storeCalls differ: the first request of each key looked the key up.)
    assert [refused_again[1][k] for k in ("data", "errors")] == [
        refused[1][k] for k in ("data", "errors")]
    assert admin[1]["data"]["devices"]["totalCount"] == 3
    assert viewer[1]["data"] == admin[1]["data"] == admin_again[1]["data"]


async def test_variables_are_costed_per_request(
    app_client: AppClient, stores: Stores, tenant: Tenant,
) -> None:
    await seed_fleet(stores, tenant.id, devices=3, hours=0, sites=1, lines=1, machines=1)
    # The subset costs 3 + 10 per device asked for.
    async with app_client(max_cost=200, max_page_size=50) as http:
        for first, codes in [(10, []), (10, []), (30, ["LIMIT_EXCEEDED"]), (10, []),
                             (60, ["LIMIT_EXCEEDED"]), (19, []), (20, ["LIMIT_EXCEEDED"])]:
            body = (await _post(http, tenant.key, SUBSET, {"first": first})).json()
            assert _codes(body) == codes, (first, body)
            if codes:
                limit = "maxPageSize" if first > 50 else "maxCost"
                assert body["errors"][0]["extensions"]["limit"] == limit
                assert "data" not in body
            else:
                assert body["extensions"]["cost"]["estimated"] == 3 + 10 * first


async def test_each_schema_keeps_its_own_entries(
    app_client: AppClient, stores: Stores, tenant: Tenant,
) -> None:
    """Settings are the schema's: an entry made under one maximum never answers under
    another, and a gateway with planning off serves nothing prepared."""
    await seed_fleet(stores, tenant.id, devices=3, hours=0, sites=1, lines=1, machines=1)
    async with app_client() as http:
        for _ in range(2):
            assert _codes((await _post(http, tenant.key, SUBSET, {"first": 20})).json()) == []
    async with app_client(max_cost=100) as http:
        for _ in range(2):
            body = (await _post(http, tenant.key, SUBSET, {"first": 20})).json()
            assert _codes(body) == ["LIMIT_EXCEEDED"]
    before = _served()
    async with app_client(planned_execution=False) as http:
        for _ in range(2):
            body = (await _post(http, tenant.key, SUBSET, {"first": 2})).json()
            assert len(body["data"]["devices"]["edges"]) == 2
    assert _served() == before


async def test_several_operations_need_a_name_every_time(
    gateway: Gateway, stores: Stores, tenant: Tenant,
) -> None:
    await seed_fleet(stores, tenant.id, devices=2, hours=0, sites=1, lines=1, machines=1)
    two = "query A { devices(first: 1) { totalCount } } query B { assets(first: 1) { totalCount } }"
    for _ in range(2):
        response = await _post(gateway.http, tenant.key, two, {})
        assert response.status_code == 400 and _codes(response.json()) == ["BAD_USER_INPUT"]
    for _ in range(2):
        a = (await _post(gateway.http, tenant.key, two, {}, "A")).json()
        b = (await _post(gateway.http, tenant.key, two, {}, "B")).json()
        assert a["data"] == {"devices": {"totalCount": 2}}
        assert list(b["data"]) == ["assets"]
    response = await _post(gateway.http, tenant.key, two, {})
    assert response.status_code == 400  # still refused after both names were prepared


async def test_get_serves_prepared_queries_and_still_refuses_mutations(
    gateway: Gateway, stores: Stores, tenant: Tenant,
) -> None:
    await seed_fleet(stores, tenant.id, devices=2, hours=0, sites=1, lines=1, machines=1)
    query = "query Count { devices(first: 1) { totalCount } }"
    params = {"query": query}
    headers = {"Authorization": f"Bearer {tenant.key}"}
    before = _served()
    for _ in range(2):
        response = await gateway.http.get("/graphql", params=params, headers=headers)
        assert response.json() == {"data": {"devices": {"totalCount": 2}}}
    assert _served() == before + 1
    mutation = 'mutation { revokeApiKey(id: "00000000-0000-0000-0000-000000000000") { id } }'
    for _ in range(2):
        response = await gateway.http.get("/graphql", params={"query": mutation},
                                          headers=headers)
        assert response.status_code == 405


async def test_store_outages_and_the_request_log_on_the_prepared_path(
    gateway: Gateway, stores: Stores, tenant: Tenant, caplog: pytest.LogCaptureFixture,
) -> None:
    await seed_fleet(stores, tenant.id, devices=2, hours=0, sites=1, lines=1, machines=1)
    stores.assets.held = "down for the test"
    try:
        answers = []
        for _ in range(2):
            before = _served()
            with caplog.at_level(logging.INFO, logger="gateway.requests"):
                caplog.clear()
                response = await _post(gateway.http, tenant.key, SUBSET, {"first": 2},
                                       "Subset", trace=False)
            answers.append(response.content)
            [line] = [orjson.loads(r.getMessage()) for r in caplog.records
                      if r.name == "gateway.requests"]
            assert line["operation"] == "Subset"
            assert line["tenant"] == str(tenant.id)
            assert set(line["errors"]) == {"STORE_UNAVAILABLE"}
        assert _served() == before + 1  # the second answer was the prepared one
        assert answers[0] == answers[1]
        assert "STORE_UNAVAILABLE" in _codes(orjson.loads(answers[1]))
    finally:
        stores.assets.held = None


def test_an_estimate_that_reads_the_clock_is_not_reused() -> None:
    limits = CostLimits(max_cost=10**9, max_page_size=500, max_points=10_000)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    document = parse(DASHBOARD)  # a series over the last hour: relative to now
    assert estimate(schema._schema, document, None, {"first": 5}, limits, now)[1] is False
    fixed = parse("""query($first: Int!) { devices(first: $first) { edges { node {
      telemetry(metric: "t", bucket: "5m", from: "2026-01-01T00:00:00Z",
                to: "2026-01-01T01:00:00Z") { points { value } } } } } }""")
    assert estimate(schema._schema, fixed, None, {"first": 5}, limits, now)[1] is True
    assert estimate(schema._schema, parse(SUBSET), None, {"first": 5}, limits, now) == (
        53, True)
