"""Forecasts (least squares in SQL) and rollups over the asset tree, on hand-made data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

FORECAST = """query($id: ID!, $threshold: Float!, $window: Interval) {
  device(id: $id) { forecast(metric: "wear", threshold: $threshold, window: $window) {
    metric threshold slopePerHour crossesAt r2 sampleCount } } }"""


async def _device(stores: Stores, tenant: Tenant, serial: str) -> UUID:
    row = await stores.registry.insert_device(tenant.id, serial=serial, name=serial,
                                              type="sensor", status="ACTIVE")
    device_id: UUID = row["id"]
    return device_id


def _data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def test_forecast_finds_the_crossing_of_a_linear_trend(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await _device(stores, tenant, "F1")
    now = datetime.now(UTC)
    start = now - timedelta(hours=10)
    # wear = 10 + 2 per hour, one reading every 10 minutes over the last 10 hours.
    readings = [(tenant.id, device, "wear", start + timedelta(minutes=10 * k), 10 + k / 3)
                for k in range(60)]
    await stores.telemetry.insert_readings(readings)
    body = await gateway.query(FORECAST, {"id": str(device), "threshold": 50.0,
                                          "window": "12h"}, key=tenant.key)
    f = _data(body)["device"]["forecast"]
    assert f["sampleCount"] == 60
    assert f["slopePerHour"] == pytest.approx(2.0, rel=1e-9)
    assert f["r2"] == pytest.approx(1.0, abs=1e-9)
    # 10 + 2h = 50 at h = 20 after the first reading.
    expected = start + timedelta(hours=20)
    got = datetime.fromisoformat(f["crossesAt"])
    assert abs((got - expected).total_seconds()) < 1

    # A threshold the trend moves away from is never crossed.
    body = await gateway.query(FORECAST, {"id": str(device), "threshold": 0.0,
                                          "window": "12h"}, key=tenant.key)
    assert _data(body)["device"]["forecast"]["crossesAt"] is None
    # Only the readings inside the window count.
    body = await gateway.query(FORECAST, {"id": str(device), "threshold": 50.0,
                                          "window": "1h"}, key=tenant.key)
    assert _data(body)["device"]["forecast"]["sampleCount"] in (5, 6, 7)


async def test_forecast_needs_three_readings(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await _device(stores, tenant, "F2")
    now = datetime.now(UTC)
    await stores.telemetry.insert_readings(
        [(tenant.id, device, "wear", now - timedelta(minutes=m), float(m)) for m in (5, 10)])
    body = await gateway.query(FORECAST, {"id": str(device), "threshold": 1.0},
                               key=tenant.key)
    f = _data(body)["device"]["forecast"]
    assert f == {"metric": "wear", "threshold": 1.0, "slopePerHour": None,
                 "crossesAt": None, "r2": None, "sampleCount": 2}


async def test_forecast_rejects_bad_arguments(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await _device(stores, tenant, "F3")
    for variables, code in (({"window": "400d"}, "LIMIT_EXCEEDED"),
                            ({"window": "0s"}, "BAD_USER_INPUT")):
        body = await gateway.query(FORECAST, {"id": str(device), "threshold": 1.0,
                                              **variables}, key=tenant.key)
        assert body["errors"][0]["extensions"]["code"] == code, body


T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROLLUP = """query($id: ID!, $agg: Aggregate) { asset(id: $id) {
  telemetry(metric: "power", from: "2025-03-01T12:00:00Z", to: "2025-03-01T12:30:00Z",
            bucket: "10m", aggregate: $agg) {
    assetId metric bucket aggregate deviceCount points { time value } stats { count avg }
  } } }"""


@pytest.fixture
async def plant(stores: Stores, tenant: Tenant) -> dict[str, UUID]:
    """Site > Line > (Machine 1, Machine 2), and an empty Line 2. Devices: one on each
    machine, one on Line 1 itself, one with no readings on Machine 2."""
    ids: dict[str, UUID] = {}
    for name, kind, parent in (("Site", "site", None), ("Line", "line", "Site"),
                               ("M1", "machine", "Line"), ("M2", "machine", "Line"),
                               ("Line 2", "line", "Site")):
        ids[name] = uuid4()
        await stores.assets.insert_asset(tenant.id, ids[name], ids[parent] if parent else None,
                                         name, kind, {})
    readings = []
    for serial, asset, values in (("A", "M1", {0: 1.0, 5: 3.0, 25: 5.0}),
                                  ("B", "M2", {1: 10.0, 12: 20.0}),
                                  ("C", "Line", {2: 100.0}),
                                  ("D", "M2", {})):
        device = await _device(stores, tenant, serial)
        ids[serial] = device
        await stores.assets.upsert_profile(tenant.id, device, asset_id=ids[asset],
                                           metadata={}, capabilities=[])
        readings += [(tenant.id, device, "power", T0 + timedelta(minutes=m), v)
                     for m, v in values.items()]
    # Outside the range, and another metric: never counted.
    readings += [(tenant.id, ids["A"], "power", T0 - timedelta(minutes=1), 1e6),
                 (tenant.id, ids["A"], "heat", T0, 1e6)]
    await stores.telemetry.insert_readings(readings)
    return ids


async def _rollup(gateway: Gateway, tenant: Tenant, asset: UUID, agg: str) -> dict[str, Any]:
    body = await gateway.query(ROLLUP, {"id": str(asset), "agg": agg}, key=tenant.key)
    series: dict[str, Any] = _data(body)["asset"]["telemetry"]
    return series


async def test_rollup_aggregates_every_device_below_the_asset(
    gateway: Gateway, plant: dict[str, UUID], tenant: Tenant
) -> None:
    site = await _rollup(gateway, tenant, plant["Site"], "SUM")
    assert site["deviceCount"] == 3
    assert [p["value"] for p in site["points"]] == [1 + 3 + 10 + 100, 20, 5]
    assert site["stats"]["count"] == 6
    line = await _rollup(gateway, tenant, plant["Line"], "COUNT")
    assert [p["value"] for p in line["points"]] == [4, 1, 1]
    machine = await _rollup(gateway, tenant, plant["M2"], "MAX")
    assert machine["deviceCount"] == 1  # D has no readings: it does not contribute
    assert [p["value"] for p in machine["points"]] == [10.0, 20.0, None]
    empty = await _rollup(gateway, tenant, plant["Line 2"], "AVG")
    assert empty["deviceCount"] == 0 and empty["stats"]["count"] == 0
    assert [p["value"] for p in empty["points"]] == [None, None, None]
    assert [p["time"] for p in empty["points"]] == [
        "2025-03-01T12:00:00+00:00", "2025-03-01T12:10:00+00:00", "2025-03-01T12:20:00+00:00"]


async def test_rollups_of_many_assets_cost_two_round_trips(
    gateway: Gateway, plant: dict[str, UUID], tenant: Tenant
) -> None:
    q = """{ assets(first: 50) { edges { node { name telemetry(metric: "power",
      from: "2025-03-01T12:00:00Z", to: "2025-03-01T12:30:00Z", bucket: "10m") {
      deviceCount } } } } }"""
    body = await gateway.query(q, key=tenant.key, trace=True)
    counts = {e["node"]["name"]: e["node"]["telemetry"]["deviceCount"]
              for e in _data(body)["assets"]["edges"]}
    assert counts == {"Site": 3, "Line": 3, "M1": 1, "M2": 1, "Line 2": 0}
    assert body["extensions"]["storeCalls"] == {
        "registry": 1, "assets": 2, "telemetry": 1, "shadows": 0}
