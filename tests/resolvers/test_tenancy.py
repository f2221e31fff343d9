"""Tenant A never sees tenant B's data: by id, through nested fields, or in lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant


async def test_ids_of_another_tenant_are_invisible(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    theirs = await seed_fleet(stores, other_tenant.id, devices=4, hours=1, now=now,
                              sites=1, lines=1, machines=1)
    await seed_fleet(stores, tenant.id, devices=4, hours=1, now=now, sites=1, lines=1,
                     machines=1)
    device = str(theirs.active[0])
    asset = str(theirs.assets["Machine 1.1.1"])

    body = await gateway.query(
        "query($d: ID!, $a: ID!) { device(id: $d) { id } asset(id: $a) { id } }",
        {"d": device, "a": asset}, key=tenant.key,
    )
    assert body["data"] == {"device": None, "asset": None}
    # Unknown to this tenant, exactly as an id no tenant has.
    assert sorted((e["path"][0], e["extensions"]["code"]) for e in body["errors"]) == [
        ("asset", "NOT_FOUND"), ("device", "NOT_FOUND")]
    assert all("tenant" not in e["message"].lower() for e in body["errors"])

    body = await gateway.query(
        "query($d: ID!) { shadow(deviceId: $d) { version } }", {"d": device}, key=tenant.key
    )
    assert body["data"]["shadow"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "tenant" not in body["errors"][0]["message"].lower()

    body = await gateway.query(
        'query($d: ID!) { telemetry(deviceIds: [$d], metric: "temperature") { points { value } } }',
        {"d": device}, key=tenant.key,
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    # Filters naming another tenant's asset match nothing.
    body = await gateway.query(
        "query($a: ID!) { devices(filter: {assetId: $a}) { totalCount } }", {"a": asset},
        key=tenant.key,
    )
    assert body["data"]["devices"]["totalCount"] == 0


async def test_lists_and_nested_fields_hold_only_the_callers_data(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    mine = await seed_fleet(stores, tenant.id, devices=6, hours=1, now=now, sites=1, lines=1,
                            machines=2)
    theirs = await seed_fleet(stores, other_tenant.id, devices=9, hours=1, now=now, sites=1,
                              lines=1, machines=3)
    # Stitch a cross-tenant reference into the asset store: tenant B's profile pointing at
    # tenant A's device id must not leak B's metadata into A's view.
    await stores.assets.upsert_profile(
        other_tenant.id, theirs.devices[0], asset_id=theirs.assets["Machine 1.1.1"],
        metadata={"secret": "tenant-b"}, capabilities=[],
    )
    query = """
    query { devices(first: 100) { totalCount edges { node {
        id metadata asset { id ancestors { id } children { id } }
        shadow { deviceId } latest { metric }
        telemetry(metric: "temperature", bucket: "10m") { stats { count } }
    } } }
    assets(first: 100) { totalCount edges { node { id devices { totalCount } } } } }
    """
    body = await gateway.query(query, key=tenant.key)
    assert "errors" not in body, body
    text = str(body)
    for foreign in [*theirs.devices, *theirs.assets.values()]:
        assert str(foreign) not in text
    assert "tenant-b" not in text
    assert body["data"]["devices"]["totalCount"] == len(mine.devices)
    assert body["data"]["assets"]["totalCount"] == len(mine.assets)
    ids = {e["node"]["id"] for e in body["data"]["devices"]["edges"]}
    assert ids == {str(d) for d in mine.devices}
    # And the other way round, with counts that differ so a mix-up shows.
    body = await gateway.query(query, key=other_tenant.key)
    assert body["data"]["devices"]["totalCount"] == len(theirs.devices)
    assert not any(str(d) in str(body) for d in mine.devices)


async def test_telemetry_rows_are_scoped_by_tenant_even_for_a_known_device_id(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    mine = await seed_fleet(stores, tenant.id, devices=1, hours=1, now=now, sites=1,
                            lines=1, machines=1)
    device = mine.devices[0]
    # Readings written under tenant B for tenant A's device id must never show up for A.
    await stores.telemetry.insert_readings(
        [(other_tenant.id, device, "temperature", now - timedelta(seconds=30), 999.0)]
    )
    body = await gateway.query(
        """query($d: ID!) { device(id: $d) {
            telemetry(metric: "temperature") { stats { max } } latest { value } } }""",
        {"d": str(device)}, key=tenant.key,
    )
    node = body["data"]["device"]
    assert node["telemetry"]["stats"]["max"] < 999.0
    assert all(r["value"] != 999.0 for r in node["latest"])
