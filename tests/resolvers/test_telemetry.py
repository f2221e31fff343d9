"""Telemetry reads on hand-made series: raw points and stats, every aggregate over fixed
buckets, gap filling, latest values, the multi-device root field and units."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # 13,235,760 minutes after 2000-01-01T00:00Z
SERIES = """query($id: ID!, $metric: String!, $from: DateTime, $to: DateTime,
  $bucket: Interval, $aggregate: Aggregate, $limit: Int) {
  device(id: $id) { telemetry(metric: $metric, from: $from, to: $to, bucket: $bucket,
      aggregate: $aggregate, limit: $limit) {
    deviceId metric unit from to bucket aggregate points { time value }
    stats { count min max avg stddev first last } } } }"""
# Minutes after T0 -> value; the first and last of each lie outside [T0, T0 + 5m) and
# [T0, T0 + 40m) respectively. Inserted out of time order on purpose.
TEMPERATURE = {3: 15.0, 0: 10.0, 4: 14.0, 1: 12.0, 2: 9.0, -1: 100.0, 5: 100.0}
POWER = {7: 7.0, 1: 4.0, 3: 1.0, 25: 10.0, 21: 2.0, 39: -3.0, -1: 100.0, 40: 100.0}


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@dataclass
class Devices:
    main: UUID
    other: UUID
    bare: UUID  # no profile, no readings


@pytest.fixture
async def devices(stores: Stores, tenant: Tenant) -> Devices:
    ids = [(await stores.registry.insert_device(tenant.id, serial=f"T{n}", name=f"t{n}",
                                                type="sensor"))["id"] for n in range(3)]
    for device_id in ids[:2]:
        await stores.assets.upsert_profile(
            tenant.id, device_id, asset_id=None, metadata={},
            capabilities=[{"metric": "temperature", "unit": "celsius"},
                          {"metric": "power", "unit": "W"}])
    readings = [(tenant.id, ids[0], "temperature", T0 + timedelta(minutes=m), v)
                for m, v in TEMPERATURE.items()]
    readings += [(tenant.id, ids[0], "power", T0 + timedelta(minutes=m), v)
                 for m, v in POWER.items()]
    readings += [(tenant.id, ids[0], "humidity", T0 + timedelta(minutes=2), 40.0),
                 (tenant.id, ids[1], "temperature", T0 + timedelta(minutes=2), 20.0),
                 (tenant.id, ids[1], "temperature", T0 + timedelta(minutes=3), 22.0)]
    await stores.telemetry.insert_readings(readings)
    return Devices(*ids)


async def _series(gateway: Gateway, tenant: Tenant, device: UUID, metric: str,
                  **variables: Any) -> dict[str, Any]:
    body = await gateway.query(SERIES, {"id": str(device), "metric": metric, **variables},
                               key=tenant.key)
    assert "errors" not in body, body["errors"]
    series: dict[str, Any] = body["data"]["device"]["telemetry"]
    return series


def _points(series: dict[str, Any]) -> list[tuple[datetime, float | None]]:
    return [(datetime.fromisoformat(p["time"]), p["value"]) for p in series["points"]]


async def test_raw_points_in_time_order_with_exact_stats(
    gateway: Gateway, devices: Devices, tenant: Tenant
) -> None:
    series = await _series(gateway, tenant, devices.main, "temperature", **{
        "from": _at(0), "to": _at(5)})
    stats = series.pop("stats")
    assert _points(series) == [(T0 + timedelta(minutes=m), v) for m, v in
                                             ((0, 10.0), (1, 12.0), (2, 9.0), (3, 15.0),
                                              (4, 14.0))]
    del series["points"]
    assert datetime.fromisoformat(series.pop("from")) == T0
    assert datetime.fromisoformat(series.pop("to")) == T0 + timedelta(minutes=5)
    assert series == {"deviceId": str(devices.main), "metric": "temperature",
                      "unit": "celsius", "bucket": None, "aggregate": None}
    assert stats.pop("stddev") == pytest.approx(math.sqrt(6.5))  # (4+0+9+9+4) / 4
    assert stats == {"count": 5, "min": 9.0, "max": 15.0, "avg": 12.0, "first": 10.0,
                     "last": 14.0}


async def test_raw_limit_and_range_bounds(
    gateway: Gateway, devices: Devices, tenant: Tenant
) -> None:
    limited = await _series(gateway, tenant, devices.main, "temperature", limit=2, **{
        "from": _at(0), "to": _at(5)})
    assert [v for _, v in _points(limited)] == [10.0, 12.0]
    assert limited["stats"]["count"] == 5  # stats cover the whole range, not the page
    inner = await _series(gateway, tenant, devices.main, "temperature", **{
        "from": _at(1), "to": _at(3)})  # from inclusive, to exclusive
    assert [v for _, v in _points(inner)] == [12.0, 9.0]
    assert (inner["stats"]["first"], inner["stats"]["last"]) == (12.0, 9.0)
    empty = await _series(gateway, tenant, devices.bare, "temperature", **{
        "from": _at(0), "to": _at(5)})
    assert empty["points"] == [] and empty["unit"] is None
    assert empty["stats"] == {"count": 0, "min": None, "max": None, "avg": None,
                              "stddev": None, "first": None, "last": None}


BUCKETS = {  # aggregate -> values of the 10 min buckets at T0, +10, +20, +30 (+10 is empty)
    "AVG": [4.0, None, 6.0, -3.0],
    "MIN": [1.0, None, 2.0, -3.0],
    "MAX": [7.0, None, 10.0, -3.0],
    "SUM": [12.0, None, 12.0, -3.0],
    "COUNT": [3.0, None, 2.0, 1.0],
    "FIRST": [4.0, None, 2.0, -3.0],
    "LAST": [7.0, None, 10.0, -3.0],
}


async def test_every_aggregate_over_gap_filled_buckets(
    gateway: Gateway, devices: Devices, tenant: Tenant
) -> None:
    times = [T0 + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    for aggregate, values in BUCKETS.items():
        series = await _series(gateway, tenant, devices.main, "power", bucket="10m",
                               aggregate=aggregate, **{"from": _at(0), "to": _at(40)})
        assert _points(series) == list(zip(times, values, strict=True)), aggregate
        assert (series["bucket"], series["aggregate"], series["unit"]) == (
            "10m", aggregate, "W")
        stats = series["stats"]
        assert stats.pop("stddev") == pytest.approx(
            math.sqrt(sum((v - 3.5) ** 2 for v in (4, 1, 7, 2, 10, -3)) / 5))
        assert stats == {"count": 6, "min": -3.0, "max": 10.0, "avg": 3.5, "first": 4.0,
                         "last": -3.0}


async def test_buckets_align_to_the_fixed_origin(
    gateway: Gateway, devices: Devices, tenant: Tenant
) -> None:
    # 12:05..12:35 in 10 min buckets: boundaries stay on :00, :10..., not on `from`.
    series = await _series(gateway, tenant, devices.main, "power", bucket="10m", **{
        "from": _at(5), "to": _at(35)})
    assert _points(series) == [(T0, 7.0), (T0 + timedelta(minutes=10), None),
                               (T0 + timedelta(minutes=20), 6.0),
                               (T0 + timedelta(minutes=30), None)]
    # 13,235,760 = 7 * 1,890,822 + 6: the 7 min bucket holding 12:00 starts at 11:54.
    series = await _series(gateway, tenant, devices.main, "power", bucket="PT7M",
                           aggregate="SUM", **{"from": _at(0), "to": _at(22)})
    assert _points(series) == [(T0 + timedelta(minutes=m), v) for m, v in
                               ((-6, None), (1, 12.0), (8, None), (15, 2.0))]
    assert series["bucket"] == "7m"
    day = await _series(gateway, tenant, devices.main, "power", bucket="24h",
                        aggregate="COUNT", **{"from": _at(0), "to": _at(60)})
    assert _points(day) == [(datetime(2025, 3, 1, tzinfo=UTC), 7.0)]  # 12:40 is in range


async def test_default_range_is_the_last_hour(
    gateway: Gateway, stores: Stores, devices: Devices, tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    await stores.telemetry.insert_readings([
        (tenant.id, devices.bare, "pressure", now - timedelta(minutes=30), 1.5),
        (tenant.id, devices.bare, "pressure", now - timedelta(hours=2), 9.0)])
    series = await _series(gateway, tenant, devices.bare, "pressure")
    start, end = datetime.fromisoformat(series["from"]), datetime.fromisoformat(series["to"])
    assert end - start == timedelta(hours=1)
    assert [v for _, v in _points(series)] == [1.5]


async def test_latest_per_metric(
    gateway: Gateway, stores: Stores, devices: Devices, tenant: Tenant
) -> None:
    # An older batch arriving late must not replace the newest value.
    await stores.telemetry.insert_readings(
        [(tenant.id, devices.main, "temperature", T0 + timedelta(minutes=4, seconds=30), -1.0)])
    q = """query($id: ID!, $metrics: [String!]) { device(id: $id) {
      some: latest(metrics: $metrics) { metric time value } all: latest { metric value } } }"""
    body = await gateway.query(q, {"id": str(devices.main), "metrics": ["temperature"]},
                               key=tenant.key)
    assert "errors" not in body, body["errors"]
    device = body["data"]["device"]
    assert device["some"] == [{"metric": "temperature", "time": _at(5), "value": 100.0}]
    assert device["all"] == [{"metric": "humidity", "value": 40.0},
                             {"metric": "power", "value": 100.0},
                             {"metric": "temperature", "value": 100.0}]
    bare = await gateway.query(q, {"id": str(devices.bare), "metrics": None}, key=tenant.key)
    assert bare["data"]["device"] == {"some": [], "all": []}


async def test_root_telemetry_keeps_the_order_given_in_one_round_trip(
    gateway: Gateway, devices: Devices, tenant: Tenant
) -> None:
    q = """query($ids: [ID!]!) { telemetry(deviceIds: $ids, metric: "temperature",
      from: "2025-03-01T12:00:00Z", to: "2025-03-01T12:05:00Z", bucket: "5m", aggregate: MAX)
      { deviceId unit points { value } stats { count } } }"""
    order = [devices.bare, devices.main, devices.other]
    body = await gateway.query(q, {"ids": [str(d) for d in order]}, key=tenant.key,
                               trace=True)
    assert "errors" not in body, body["errors"]
    assert body["data"]["telemetry"] == [
        {"deviceId": str(devices.bare), "unit": None, "points": [{"value": None}],
         "stats": {"count": 0}},
        {"deviceId": str(devices.main), "unit": "celsius", "points": [{"value": 15.0}],
         "stats": {"count": 5}},
        {"deviceId": str(devices.other), "unit": "celsius", "points": [{"value": 22.0}],
         "stats": {"count": 2}},
    ]
    assert body["extensions"]["storeCalls"]["telemetry"] == 1


async def test_a_raw_range_over_the_maximum_is_refused_not_truncated(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    row = await stores.registry.insert_device(tenant.id, serial="BIG", name="big",
                                              type="sensor", status="ACTIVE")
    await stores.telemetry.insert_readings([
        (tenant.id, row["id"], "hz", T0 + timedelta(seconds=s), float(s))
        for s in range(10_001)])
    q = """query($id: ID!, $limit: Int) { device(id: $id) {
      telemetry(metric: "hz", from: "2025-03-01T12:00:00Z", to: "2025-03-01T15:00:00Z",
                limit: $limit) { points { value } stats { count } } } }"""
    body = await gateway.query(q, {"id": str(row["id"])}, key=tenant.key)
    assert body["data"]["device"]["telemetry"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert error["extensions"]["maximum"] == 10_000
    # Asking for a page is not truncation: the first 10,000 points, and every stat.
    body = await gateway.query(q, {"id": str(row["id"]), "limit": 10_000}, key=tenant.key)
    series = body["data"]["device"]["telemetry"]
    assert len(series["points"]) == 10_000 and series["stats"]["count"] == 10_001


async def test_raw_points_newest_first(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    row = await stores.registry.insert_device(tenant.id, serial="ORD", name="ord",
                                              type="sensor", status="ACTIVE")
    await stores.telemetry.insert_readings([
        (tenant.id, row["id"], "t", T0 + timedelta(minutes=m), float(m)) for m in range(10)])
    q = """query($id: ID!, $order: TimeOrder) { device(id: $id) {
      telemetry(metric: "t", from: "2025-03-01T12:00:00Z", to: "2025-03-01T13:00:00Z",
                limit: 3, order: $order) { points { value } stats { count } } } }"""
    newest = await gateway.query(q, {"id": str(row["id"]), "order": "NEWEST_FIRST"},
                                 key=tenant.key)
    series = newest["data"]["device"]["telemetry"]
    assert [p["value"] for p in series["points"]] == [9.0, 8.0, 7.0]
    assert series["stats"]["count"] == 10
    oldest = await gateway.query(q, {"id": str(row["id"])}, key=tenant.key)
    assert [p["value"] for p in oldest["data"]["device"]["telemetry"]["points"]] == [
        0.0, 1.0, 2.0]


async def test_a_misspelled_metric_is_refused_with_the_known_ones(
    gateway: Gateway, tenant: Tenant, devices: Devices
) -> None:
    body = await gateway.query(SERIES, {"id": str(devices.main), "metric": "temprature",
                                        "from": _at(0), "to": _at(5)}, key=tenant.key)
    assert body["data"] == {"device": {"telemetry": None}}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "metric"}
    assert error["message"] == (
        f"Device {devices.main} has no metric 'temprature' (did you mean 'temperature'?); "
        "its metrics: humidity, power, temperature")


async def test_a_known_metric_without_readings_in_range_is_empty_not_an_error(
    gateway: Gateway, tenant: Tenant, devices: Devices
) -> None:
    # power is a capability of `other` and humidity a reading of `main`; a device with
    # nothing at all (`bare`) has no metrics to hint at: an empty series.
    for device, metric in ((devices.other, "power"), (devices.main, "humidity"),
                           (devices.bare, "temperature")):
        series = await _series(gateway, tenant, device, metric, **{"from": _at(30),
                                                                   "to": _at(35)})
        assert series["points"] == [] and series["stats"]["count"] == 0


async def test_a_metric_that_is_not_a_metric_name_is_refused_as_ingest_refuses_it(
    gateway: Gateway, tenant: Tenant, devices: Devices
) -> None:
    body = await gateway.query(SERIES, {"id": str(devices.main), "metric": "temp erature"},
                               key=tenant.key)
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "metric"}
    assert "is not a metric name" in body["errors"][0]["message"]


FLEET_SERIES = """query($from: DateTime, $to: DateTime) { devices(first: 10) { edges { node {
  name telemetry(metric: "power", from: $from, to: $to, bucket: "5m") {
    points { time value } stats { count first last } } } } } }"""


async def test_five_minute_buckets_of_a_page_over_edges_off_the_grid(
    gateway: Gateway, devices: Devices, tenant: Tenant
) -> None:
    # 5-minute buckets come from the rollup on the range's grid (series_rolled_5m), the
    # partial buckets at its edges from readings: every bucket of the range, nulls where
    # empty, for the device with power readings and for those without (all nulls).
    cases = [
        # 12:02:30..12:37: 12:00 holds only minute 3 (minute 1 is before the range), 39 is
        # after it; 12:10, 12:15, 12:30 and 12:35 are empty.
        (_at(2.5), _at(37), [1.0, 7.0, None, None, 2.0, 10.0, None, None], (4, 1.0, 10.0)),
        # 12:00..12:40:00.000001: a ninth bucket holding the reading at 12:40 exactly.
        (_at(0), (T0 + timedelta(minutes=40, microseconds=1)).isoformat(),
         [2.5, 7.0, None, None, 2.0, 10.0, None, -3.0, 100.0], (7, 4.0, 100.0)),
    ]
    for start, end, values, (count, first, last) in cases:
        body = await gateway.query(FLEET_SERIES, {"from": start, "to": end}, key=tenant.key)
        assert "errors" not in body, body["errors"]
        series = {e["node"]["name"]: e["node"]["telemetry"]
                  for e in body["data"]["devices"]["edges"]}
        times = [T0 + timedelta(minutes=5 * n) for n in range(len(values))]
        assert _points(series["t0"]) == list(zip(times, values, strict=True)), start
        assert series["t0"]["stats"] == {"count": count, "first": first, "last": last}
        for name in ("t1", "t2"):
            assert _points(series[name]) == [(t, None) for t in times], (start, name)
            assert series[name]["stats"] == {"count": 0, "first": None, "last": None}
