"""fleetOverview: counts by status, type and asset subtree for every filter of
test_filters, checked against Python over the same fleet; one round trip per store; only
the caller's tenant counted."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.resolvers.test_filters import CASES, D, _asset_ids, _resolve, fleet

__all__ = ["fleet"]  # the fixture, used by name

OVERVIEW = """query($filter: DeviceFilter, $parent: ID) {
  fleetOverview(filter: $filter, assetParentId: $parent) {
    total byStatus { status count } byType { type count } byAsset { asset { id name } count }
  } }"""
STATUSES = ["PROVISIONED", "ACTIVE", "SUSPENDED", "DECOMMISSIONED"]
SUBTREES = {  # asset -> the assets at or below it, in the fleet fixture
    None: {"Site 1": {"line1", "line2"}, "Site 2": {"site2"}},
    "site1": {"Line 1": {"line1"}, "Line 2": {"line2"}},
}


def _expected(matching: list[D], parent: str | None) -> dict[str, Any]:
    statuses = Counter(d.status for d in matching)
    types = Counter(d.type for d in matching)
    return {
        "total": len(matching),
        "byStatus": [{"status": s, "count": statuses[s]} for s in STATUSES],
        "byType": [{"type": t, "count": n} for t, n in sorted(types.items())],
        "byAsset": [(name, sum(1 for d in matching if d.asset in below))
                    for name, below in sorted(SUBTREES[parent].items())],
    }


async def test_overview_counts_every_filter(
    gateway: Gateway, fleet: list[D], tenant: Tenant
) -> None:
    assets = await _asset_ids(gateway, tenant)
    await gateway.query("{ __typename }", key=tenant.key)  # the key is verified and cached
    for filt, twin in [({}, lambda d: True), *CASES]:
        for parent in (None, "site1"):
            variables = {"filter": _resolve(filt, assets),
                         "parent": assets[parent] if parent else None}
            body = await gateway.query(OVERVIEW, variables, key=tenant.key, trace=True)
            assert "errors" not in body, (filt, body["errors"])
            got = body["data"]["fleetOverview"]
            got["byAsset"] = [(a["asset"]["name"], a["count"]) for a in got["byAsset"]]
            assert got == _expected([d for d in fleet if twin(d)], parent), (filt, parent)
            assert body["extensions"]["storeCalls"] == {
                "registry": 1, "assets": 1, "telemetry": 0, "shadows": 0}


async def test_overview_counts_only_the_tenant(
    gateway: Gateway, stores: Stores, fleet: list[D], tenant: Tenant, other_tenant: Tenant
) -> None:
    assets = await _asset_ids(gateway, tenant)
    await stores.registry.insert_device(other_tenant.id, serial="O-1", name="theirs",
                                        type="thermal", status="ACTIVE")
    body = await gateway.query(OVERVIEW, {}, key=other_tenant.key)
    got = body["data"]["fleetOverview"]
    assert got["total"] == 1 and got["byAsset"] == []
    assert got["byType"] == [{"type": "thermal", "count": 1}]
    body = await gateway.query(OVERVIEW, {"parent": assets["site1"],
                                          "filter": {"assetId": assets["site1"]}},
                               key=other_tenant.key)
    assert body["data"]["fleetOverview"]["total"] == 0
    assert body["data"]["fleetOverview"]["byAsset"] == []
