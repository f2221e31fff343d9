"""The telemetry store's latest values: one row of arrays answers any number of devices,
aligned with the keys as given, in metric order, within the tenant, times exact to the
microsecond (they travel as epochs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from gateway.stores import Stores


async def test_latest_is_aligned_ordered_exact_and_within_the_tenant(stores: Stores) -> None:
    tenant, other = uuid4(), uuid4()
    first, second, silent = uuid4(), uuid4(), uuid4()
    now = datetime.now(UTC).replace(microsecond=0)
    odd = now - timedelta(seconds=1, microseconds=999_999)  # every digit counts
    early = now - timedelta(minutes=5, microseconds=1)
    await stores.telemetry.insert_readings([
        (tenant, first, "vibration", early, 0.25),
        (tenant, first, "vibration", odd, 0.5),
        (tenant, first, "temperature", early, 21.5),
        (tenant, second, "temperature", now, -3.0),
        (tenant, second, "power", odd, 1e-9),
        (other, silent, "temperature", now, 99.0),  # another tenant's device
    ])

    found = await stores.telemetry.latest(tenant, [second, silent, first], None)
    assert [[(r.metric, r.time, r.value) for r in rows] for rows in found] == [
        [("power", odd, 1e-9), ("temperature", now, -3.0)],
        [],
        [("temperature", early, 21.5), ("vibration", odd, 0.5)],
    ]
    assert all(r.time.tzinfo is UTC for rows in found for r in rows)
    # Read as rows by name, as the live telemetry feed reads them.
    assert [r["metric"] for r in found[0]] == ["power", "temperature"]

    only = await stores.telemetry.latest(tenant, [first, second], ["vibration", "power"])
    assert [[(r.metric, r.value) for r in rows] for rows in only] == [
        [("vibration", 0.5)], [("power", 1e-9)]]
    assert await stores.telemetry.latest(tenant, [silent], None) == [[]]
    assert await stores.telemetry.latest(tenant, [], None) == []
