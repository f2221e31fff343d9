"""Point lists completed in one pass (resolvers/execution/flat_lists.py) answer exactly what
graphql-core's per-field completion answers, for every way a selection can be written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.stores import Stores
from resolvers.execution import flat_lists
from tests.conftest import AppClient, Tenant

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# Aliases, a repeated field, __typename, fragments (named and inline), @skip/@include with
# variables, gap-filled nulls: every shape field collection has to get right.
QUERY = """query($id: ID!, $with: Boolean!, $without: Boolean!) {
  device(id: $id) {
    gaps: telemetry(metric: "temperature", from: "2025-03-01T12:00:00Z",
                    to: "2025-03-01T13:00:00Z", bucket: "PT10M", aggregate: MAX) {
      points { t: time value v2: value __typename ...P ... on TelemetryPoint { time } }
    }
    raw: telemetry(metric: "temperature", from: "2025-03-01T12:00:00Z",
                   to: "2025-03-01T13:00:00Z", limit: 3) {
      points { value @include(if: $with) time @skip(if: $without) x: value @skip(if: $with) }
    }
  }
}
fragment P on TelemetryPoint { value }"""


@pytest.fixture
async def device(stores: Stores, tenant: Tenant) -> str:
    row = await stores.registry.insert_device(tenant.id, serial="F1", name="f", type="sensor")
    readings = [(tenant.id, row["id"], "temperature", T0 + timedelta(minutes=m), v)
                for m, v in {0: 1.5, 3: -2.0, 31: 1e30, 47: 0.0}.items()]
    await stores.telemetry.insert_readings(readings)
    return str(row["id"])


async def _answer(app_client: AppClient, tenant: Tenant, device: str,
                  variables: dict[str, Any]) -> dict[str, Any]:
    # graphql-core's path, where one-pass lists apply (planned queries build every
    # object in one pass anyway: tests/resolvers/test_planned_differential.py).
    async with app_client(planned_execution=False) as http:
        response = await http.post(
            "/graphql", headers={"Authorization": f"Bearer {tenant.key}"},
            json={"query": QUERY, "variables": {"id": device, **variables}})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


@pytest.mark.parametrize("switches", [{"with": True, "without": False},
                                      {"with": False, "without": True}])
async def test_one_pass_answers_what_graphql_core_answers(
    app_client: AppClient, tenant: Tenant, device: str, switches: dict[str, bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    completed: list[int] = []
    complete = flat_lists._Plan.complete

    def counting(plan: flat_lists._Plan, items: list[Any]) -> list[Any] | None:
        result = complete(plan, items)
        completed.append(result is not None)
        return result

    monkeypatch.setattr(flat_lists._Plan, "complete", counting)
    fast = await _answer(app_client, tenant, device, switches)
    assert completed == [True, True]  # both point lists took the one-pass path

    monkeypatch.setattr(flat_lists, "FLAT_TYPES", frozenset())
    slow = await _answer(app_client, tenant, device, switches)
    assert len(completed) == 2  # graphql-core's path this time
    assert fast == slow
    gaps = fast["data"]["device"]["gaps"]["points"]
    assert [p["value"] for p in gaps] == [1.5, None, None, 1e30, 0.0, None]
    assert gaps[0] == {"t": "2025-03-01T12:00:00+00:00", "value": 1.5, "v2": 1.5,
                       "__typename": "TelemetryPoint", "time": "2025-03-01T12:00:00+00:00"}
