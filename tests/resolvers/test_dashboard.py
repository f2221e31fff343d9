"""The dashboard query: real data from all four stores, in a fixed number of round trips."""

from __future__ import annotations

from bench.queries import DASHBOARD
from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant


async def _store_calls(gateway: Gateway, tenant: Tenant, first: int) -> dict[str, int]:
    body = await gateway.query(DASHBOARD, {"first": first}, key=tenant.key, trace=True)
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["devices"]["edges"]) == first
    calls: dict[str, int] = body["extensions"]["storeCalls"]
    return calls


async def test_round_trips_do_not_grow_with_devices(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=100, hours=2)
    at_10 = await _store_calls(gateway, tenant, 10)
    at_100 = await _store_calls(gateway, tenant, 100)
    # The first request also looked the key up; the second found it in the key cache.
    assert at_10 == {**at_100, "registry": at_100["registry"] + 1}
    assert sum(at_10.values()) <= 8
    # One call per store and field family: page, profiles with their assets and the
    # assets' parents, shadows, latest + series.
    assert at_100 == {"registry": 1, "assets": 1, "shadows": 1, "telemetry": 2}


async def test_dashboard_returns_every_store(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=12, hours=2)
    body = await gateway.query(DASHBOARD, {"first": 12}, key=tenant.key)
    assert "errors" not in body, body
    devices = body["data"]["devices"]
    assert devices["totalCount"] == 12
    active = {str(d) for d in fleet.active}
    for edge in devices["edges"]:
        node = edge["node"]
        assert node["asset"]["kind"] == "machine"
        assert node["asset"]["parent"]["name"].startswith("Line ")
        assert node["metadata"]["manufacturer"] in ("Acme", "Globex", "Initech")
        assert (node["shadow"] is not None) == (node["id"] in active)
        series = node["telemetry"]
        # 1 h default range in 5 min buckets: 12 or 13 buckets depending on alignment.
        assert len(series["points"]) in (12, 13)
        if any(m["metric"] == "temperature" for m in node["latest"]):
            assert series["stats"]["avg"] is not None
            assert 30 < series["stats"]["max"] < 80
