"""A malformed metric name in a query is BAD_USER_INPUT naming the argument, as ingest
refuses it, on every field that takes one (not an empty series)."""

from __future__ import annotations

from uuid import uuid4

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant


async def test_malformed_metric_names_are_refused_everywhere(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await stores.registry.insert_device(tenant.id, serial="M-1", name="m",
                                                 type="meter", status="ACTIVE")
    asset = uuid4()
    await stores.assets.insert_asset(tenant.id, asset, None, "site", "site", {})
    d, a = str(device["id"]), str(asset)
    cases = [
        (f'{{ device(id: "{d}") {{ telemetry(metric: "temp erature") {{ metric }} }} }}',
         "metric"),
        (f'{{ device(id: "{d}") {{ latest(metrics: ["ok", "9lives"]) {{ metric }} }} }}',
         "metrics"),
        (f'{{ telemetry(deviceIds: ["{d}"], metric: "") {{ metric }} }}', "metric"),
        (f'{{ asset(id: "{a}") {{ telemetry(metric: "a;b", bucket: "1h") {{ metric }} }} }}',
         "metric"),
        (f'{{ device(id: "{d}") {{ forecast(metric: "x y", threshold: 1) {{ metric }} }} }}',
         "metric"),
    ]
    for query, argument in cases:
        body = await gateway.query(query, key=tenant.key)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", query
        assert body["errors"][0]["extensions"]["argument"] == argument, query
