"""node(id:) / nodes(ids:) over the Node interface (Device, Asset), and the cache keys a
client needs: Shadow.id is its device's id, in a query and in updateShadow's result."""

from __future__ import annotations

from uuid import uuid4

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

NODES = """query($ids: [ID!]!) { nodes(ids: $ids) { __typename id
  ... on Device { serial } ... on Asset { kind } } }"""


async def test_node_and_nodes_find_devices_and_assets_in_one_trip_each(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    device = await stores.registry.insert_device(tenant.id, serial="N-1", name="n",
                                                 type="meter")
    asset = uuid4()
    await stores.assets.insert_asset(tenant.id, asset, None, "site", "site", {})
    theirs = await stores.registry.insert_device(other_tenant.id, serial="N-1", name="n",
                                                 type="meter")
    ids = [str(asset), str(uuid4()), str(device["id"]), str(theirs["id"])]
    await gateway.query("{ __typename }", key=tenant.key)  # the key is verified and cached
    body = await gateway.query(NODES, {"ids": ids}, key=tenant.key, trace=True)
    assert body["data"]["nodes"] == [
        {"__typename": "Asset", "id": str(asset), "kind": "site"}, None,
        {"__typename": "Device", "id": str(device["id"]), "serial": "N-1"}, None]
    assert body["extensions"]["storeCalls"] == {
        "registry": 1, "assets": 1, "telemetry": 0, "shadows": 0}
    one = """query($id: ID!) { node(id: $id) { __typename id } }"""
    body = await gateway.query(one, {"id": str(device["id"])}, key=tenant.key)
    assert body["data"]["node"] == {"__typename": "Device", "id": str(device["id"])}
    # Another tenant's device is nothing here, and ours is nothing there.
    body = await gateway.query(one, {"id": str(theirs["id"])}, key=tenant.key)
    assert body["data"]["node"] is None
    body = await gateway.query(NODES, {"ids": ids}, key=other_tenant.key)
    assert [n and n["id"] for n in body["data"]["nodes"]] == [None, None, None,
                                                              str(theirs["id"])]


async def test_node_arguments_answer_their_codes(gateway: Gateway, tenant: Tenant) -> None:
    body = await gateway.query("{ node(id: \"nope\") { id } }", key=tenant.key)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await gateway.query(NODES, {"ids": [str(uuid4()) for _ in range(501)]},
                               key=tenant.key)
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


async def test_shadow_id_is_the_device_id_everywhere(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await stores.registry.insert_device(tenant.id, serial="S-1", name="s",
                                                 type="meter", status="ACTIVE")
    device_id = str(device["id"])
    update = """mutation($d: ID!) { updateShadow(deviceId: $d, desired: {on: true}) {
      id deviceId version } }"""
    body = await gateway.query(update, {"d": device_id}, key=tenant.key)
    assert body["data"]["updateShadow"]["id"] == device_id
    read = """query($d: ID!) { device(id: $d) { shadow { id deviceId } }
      shadow(deviceId: $d) { id } }"""
    body = await gateway.query(read, {"d": device_id}, key=tenant.key)
    assert body["data"] == {"device": {"shadow": {"id": device_id, "deviceId": device_id}},
                            "shadow": {"id": device_id}}
