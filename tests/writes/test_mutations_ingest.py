"""ingestTelemetry: per-reading outcomes, idempotent re-sends, limits, lastSeenAt and latest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

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
