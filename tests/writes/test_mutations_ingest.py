"""ingestTelemetry: per-reading outcomes, idempotent re-sends, limits, lastSeenAt and latest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.support.telemetry_mode import stored_days

INGEST = """mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r) {
    accepted duplicates rejected { index reason } } }"""
STATE = """query($d: ID!, $from: DateTime!, $to: DateTime!) { device(id: $d) {
    lastSeenAt latest { metric time value }
    telemetry(metric: "temp", from: $from, to: $to) { stats { count } } } }"""


async def new_device(stores: Stores, tenant: Tenant, status: str = "ACTIVE") -> str:
    row = await stores.registry.insert_device(
        tenant.id, serial=f"SN-{uuid4().hex[:8]}", name="Meter", type="meter", status=status
    )
    return str(row["id"])


def reading(device: str, time: datetime, value: float, metric: str = "temp") -> dict[str, Any]:
    return {"deviceId": device, "metric": metric, "time": time.isoformat(), "value": value}


async def ingest(gateway: Gateway, tenant: Tenant, readings: list[dict[str, Any]]
                 ) -> dict[str, Any]:
    body = await gateway.query(INGEST, {"r": readings}, key=tenant.key)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["ingestTelemetry"]
    return result


async def state(gateway: Gateway, tenant: Tenant, device: str, now: datetime) -> dict[str, Any]:
    body = await gateway.query(STATE, {
        "d": device, "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat()}, key=tenant.key)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["device"]
    return result


async def test_each_reading_is_accepted_duplicate_or_rejected_with_a_reason(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    a, b = await new_device(stores, tenant), await new_device(stores, tenant)
    theirs = await new_device(stores, other_tenant)
    retired = await new_device(stores, tenant, status="DECOMMISSIONED")
    batch = [
        reading(a, now - timedelta(minutes=3), 1.0),
        reading(a, now - timedelta(minutes=2), 2.0),
        reading(str(uuid4()), now, 3.0),
        reading(theirs, now, 4.0),
        reading(a, now, 5.0, metric="9bad"),
        reading(a, now + timedelta(minutes=10), 6.0),
        reading(b, now + timedelta(minutes=1), 7.0, metric="power.kw"),
        reading(a, now - timedelta(minutes=3), 1.0),  # the same as the first
        reading("not-a-uuid", now, 8.0),
        reading(retired, now, 9.0),
        reading(b, now, -1e300),  # the rollup's sum of squares would overflow
    ]
    first = await ingest(gateway, tenant, batch)
    assert (first["accepted"], first["duplicates"]) == (3, 1)
    reasons = {r["index"]: r["reason"] for r in first["rejected"]}
    assert sorted(reasons) == [2, 3, 4, 5, 8, 9, 10]
    assert reasons[10] == "value is beyond 1e+100 in magnitude"
    # Another tenant's device reads exactly like one that does not exist.
    assert reasons[2] == reasons[3] == reasons[8] == "unknown device"
    assert "9bad" in reasons[4] and "metric" in reasons[4]
    assert "future" in reasons[5] and "decommissioned" in reasons[9]

    again = await ingest(gateway, tenant, batch)
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert again["rejected"] == first["rejected"]
    assert await stores.telemetry.pool.fetchval("SELECT count(*) FROM readings") == 3
    assert (await state(gateway, tenant, a, now))["telemetry"]["stats"]["count"] == 2
    body = await gateway.query("query($d: ID!) { device(id: $d) { latest { value } } }",
                               {"d": theirs}, key=other_tenant.key)
    assert body["data"]["device"]["latest"] == []

    assert await ingest(gateway, tenant, []) == {"accepted": 0, "duplicates": 0, "rejected": []}
    only_bad = await ingest(gateway, tenant, [reading(theirs, now, 1.0)])
    assert only_bad == {"accepted": 0, "duplicates": 0,
                        "rejected": [{"index": 0, "reason": "unknown device"}]}


async def test_last_seen_and_latest_move_forward_only(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    device = await new_device(stores, tenant)
    assert (await state(gateway, tenant, device, now))["lastSeenAt"] is None
    t1, t2, t3 = (now - timedelta(minutes=m) for m in (30, 20, 10))

    await ingest(gateway, tenant, [reading(device, t1, 1.0), reading(device, t2, 2.0),
                                   reading(device, t1, 0.5, metric="power")])
    seen = await state(gateway, tenant, device, now)
    assert datetime.fromisoformat(seen["lastSeenAt"]) == t2
    assert [(r["metric"], datetime.fromisoformat(r["time"]), r["value"])
            for r in seen["latest"]] == [("power", t1, 0.5), ("temp", t2, 2.0)]

    # An older reading arriving late changes neither lastSeenAt nor latest.
    await ingest(gateway, tenant, [reading(device, t1 - timedelta(minutes=5), 9.0)])
    assert await state(gateway, tenant, device, now) == {
        **seen, "telemetry": {"stats": {"count": 3}}}

    # Within one document, fields after the ingest see it (nothing cached before it sticks).
    body = await gateway.query(
        """mutation($r: [ReadingInput!]!, $d: ID!) {
            before: updateDevice(id: $d, input: {}) { latest(metrics: ["temp"]) { value }
                telemetry(metric: "temp") { stats { count } } }
            ingestTelemetry(readings: $r) { accepted }
            after: updateDevice(id: $d, input: {}) { lastSeenAt
                latest(metrics: ["temp"]) { value } telemetry(metric: "temp") { stats { count } } }
        }""", {"r": [reading(device, t3, 3.0)], "d": device}, key=tenant.key,
    )
    data = body["data"]
    assert data["before"] == {"latest": [{"value": 2.0}], "telemetry": {"stats": {"count": 3}}}
    assert data["ingestTelemetry"] == {"accepted": 1}
    assert datetime.fromisoformat(data["after"].pop("lastSeenAt")) == t3
    assert data["after"] == {"latest": [{"value": 3.0}], "telemetry": {"stats": {"count": 4}}}


async def test_batch_size_limit(gateway: Gateway, stores: Stores, tenant: Tenant) -> None:
    device = await new_device(stores, tenant)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
    readings = [reading(device, start + timedelta(seconds=n), float(n)) for n in range(10_001)]
    body = await gateway.query(INGEST, {"r": readings}, key=tenant.key)
    assert body["data"] is None
    err = body["errors"][0]
    assert err["extensions"]["code"] == "LIMIT_EXCEEDED" and "10000" in err["message"]
    assert await stores.telemetry.pool.fetchval("SELECT count(*) FROM readings") == 0
    row = (await stores.registry.devices_by_ids(tenant.id, [UUID(device)]))[0]
    assert row is not None and row["last_seen_at"] is None

    result = await ingest(gateway, tenant, readings[:10_000])
    assert result == {"accepted": 10_000, "duplicates": 0, "rejected": []}


class _EveryCopyMeetsADuplicate(asyncpg.Connection):  # type: ignore[misc]
    """A COPY into readings fails as one meeting a stored reading does, so every batch
    takes the insert skipping duplicates (TelemetryStore.ingest_sorted)."""

    async def copy_records_to_table(self, table_name: str, **kwargs: Any) -> str:
        raise asyncpg.UniqueViolationError("duplicate key value violates unique constraint")


@pytest.fixture(params=["copy", "insert skipping duplicates"])
async def write_path(request: pytest.FixtureRequest, stores: Stores) -> AsyncIterator[str]:
    if request.param == "copy":
        yield request.param
        return
    await stores.telemetry.aclose()
    stores.telemetry.connection_class = _EveryCopyMeetsADuplicate
    await stores.telemetry.connect()
    try:
        yield request.param
    finally:
        await stores.telemetry.aclose()
        stores.telemetry.connection_class = asyncpg.Connection
        await stores.telemetry.connect()


async def test_both_ways_of_writing_a_batch_answer_and_store_alike(
    gateway: Gateway, stores: Stores, tenant: Tenant, write_path: str
) -> None:
    """The binary COPY of a batch and the insert skipping duplicates (a batch holding a
    duplicate, or every batch here when the COPY is made to fail): the same answer, the
    same readings, last values, rollup and lastSeenAt. The batch is out of order, across
    devices and metrics whose byte order and the collation's differ ("B" < "a" < "b")."""
    now = datetime.now(UTC).replace(microsecond=0)
    a, b = sorted([await new_device(stores, tenant), await new_device(stores, tenant)])
    batch = [
        reading(b, now - timedelta(minutes=1), 4.0, metric="b"),
        reading(a, now - timedelta(minutes=2), 2.0),
        reading(b, now - timedelta(minutes=1), 5.0, metric="B"),
        reading(a, now - timedelta(minutes=3), 1.0),
        reading(str(uuid4()), now, 9.0),
        reading(a, now - timedelta(minutes=1), 3.0, metric="a"),
        reading(a, now - timedelta(minutes=2), 8.0, metric="9bad"),
        reading(b, now - timedelta(minutes=7), 6.0, metric="b"),
    ]
    first = await ingest(gateway, tenant, batch)
    assert (first["accepted"], first["duplicates"]) == (6, 0)
    assert [(r["index"], r["reason"]) for r in first["rejected"]] == [
        (4, "unknown device"), (6, "metric '9bad' is not a metric name")]

    async def stored() -> tuple[list[tuple[Any, ...]], ...]:
        pool = stores.telemetry.pool
        return (
            [tuple(r) for r in await pool.fetch(
                "SELECT device_id::text, metric, time, value FROM readings ORDER BY 1, 2, 3")],
            [tuple(r) for r in await pool.fetch(
                "SELECT device_id::text, metric, time, value FROM latest_readings"
                " ORDER BY 1, 2")],
            [tuple(r) for r in await pool.fetch(
                "SELECT device_id::text, metric, sum(n), sum(total) FROM readings_5m"
                " GROUP BY 1, 2 ORDER BY 1, 2")],
        )

    minutes = [now - timedelta(minutes=m) for m in range(8)]
    readings, latest, rolled = await stored()
    assert readings == [
        (a, "a", minutes[1], 3.0), (a, "temp", minutes[3], 1.0), (a, "temp", minutes[2], 2.0),
        (b, "B", minutes[1], 5.0), (b, "b", minutes[7], 6.0), (b, "b", minutes[1], 4.0)]
    assert latest == [(a, "a", minutes[1], 3.0), (a, "temp", minutes[2], 2.0),
                      (b, "B", minutes[1], 5.0), (b, "b", minutes[1], 4.0)]
    assert rolled == [(a, "a", 1, 3.0), (a, "temp", 2, 3.0), (b, "B", 1, 5.0),
                      (b, "b", 2, 10.0)]
    state_a = await state(gateway, tenant, a, now)
    assert datetime.fromisoformat(state_a["lastSeenAt"]) == minutes[1]

    # A retry with two new readings, one of them given twice: duplicates skipped.
    again = await ingest(gateway, tenant, [*batch, reading(a, now, 7.0), reading(a, now, 7.0)])
    assert (again["accepted"], again["duplicates"]) == (1, 7)
    assert again["rejected"] == first["rejected"]
    readings, latest, rolled = await stored()
    assert len(readings) == 7 and (a, "temp", now, 7.0) in readings
    assert (a, "temp", now, 7.0) in latest and len(latest) == 4
    assert (a, "temp", 3, 10.0) in rolled
    assert datetime.fromisoformat((await state(gateway, tenant, a, now))["lastSeenAt"]) == now


async def test_a_batch_years_apart_is_stored_with_the_days_it_holds_only(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    # Partitions were asked for every day between the batch's first and last reading:
    # 9,800 days for a reading of 2000 beside today's, past the store timeout.
    now = datetime.now(UTC).replace(microsecond=0)
    device = await new_device(stores, tenant)
    old = datetime(2000, 1, 1, 12, tzinfo=UTC)
    result = await ingest(gateway, tenant, [reading(device, old, 1.0),
                                            reading(device, now - timedelta(minutes=1), 2.0)])
    assert (result["accepted"], result["rejected"]) == (2, [])
    days = await stored_days(stores)
    assert {old.date(), now.date()} <= days
    assert not {d for d in days if date(2000, 1, 2) <= d <= date(2020, 1, 1)}
