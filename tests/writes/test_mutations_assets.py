"""createAsset, updateAsset (patch, rename, move), deleteAsset, attachDevice, detachDevice."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

ASSET = "id name kind attributes parent { id } ancestors { id name } children { id }"
CREATE = f"""mutation($input: CreateAssetInput!) {{ createAsset(input: $input) {{ {ASSET} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: UpdateAssetInput!) {{
    updateAsset(id: $id, input: $input) {{ {ASSET} }} }}"""
DELETE = "mutation($id: ID!) { deleteAsset(id: $id) }"
ATTACH = """mutation($d: ID!, $a: ID!) { attachDevice(deviceId: $d, assetId: $a) {
    id asset { id name } } }"""
DETACH = "mutation($d: ID!) { detachDevice(deviceId: $d) { id asset { id } } }"
REGISTER = """mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) {
    device { id } } }"""
GET = f"query($id: ID!) {{ asset(id: $id) {{ {ASSET} }} }}"


def error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("errors") and len(body["errors"]) == 1, body
    err: dict[str, Any] = body["errors"][0]
    return err


async def create(gateway: Gateway, tenant: Tenant, name: str, parent: str | None = None,
                 **fields: Any) -> dict[str, Any]:
    data = {"name": name, "kind": "node", "parentId": parent, **fields}
    body = await gateway.query(CREATE, {"input": data}, key=tenant.key)
    assert "errors" not in body, body
    asset: dict[str, Any] = body["data"]["createAsset"]
    return asset


async def device(gateway: Gateway, tenant: Tenant, serial: str, asset: str | None) -> str:
    data = {"serial": serial, "name": f"Sensor {serial}", "type": "t", "assetId": asset}
    body = await gateway.query(REGISTER, {"input": data}, key=tenant.key)
    assert "errors" not in body, body
    return str(body["data"]["registerDevice"]["device"]["id"])


async def test_create_builds_the_tree(gateway: Gateway, tenant: Tenant) -> None:
    site = await create(gateway, tenant, " Site ", attributes={"city": "Lyon"})
    assert site["name"] == "Site" and site["attributes"] == {"city": "Lyon"}
    assert site["parent"] is None and site["ancestors"] == [] and site["children"] == []
    line = await create(gateway, tenant, "Line", site["id"])
    machine = await create(gateway, tenant, "Machine", line["id"])
    assert machine["parent"] == {"id": line["id"]} and machine["attributes"] == {}
    assert machine["ancestors"] == [{"id": site["id"], "name": "Site"},
                                    {"id": line["id"], "name": "Line"}]
    body = await gateway.query(GET, {"id": site["id"]}, key=tenant.key)
    assert body["data"]["asset"]["children"] == [{"id": line["id"]}]


async def test_create_validation(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await create(gateway, other_tenant, "Their site")
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"name": " "}, "BAD_USER_INPUT", "input.name"),
        ({"kind": ""}, "BAD_USER_INPUT", "input.kind"),
        ({"attributes": [1]}, "BAD_USER_INPUT", "input.attributes"),
        ({"attributes": 3}, "BAD_USER_INPUT", "input.attributes"),
        ({"parentId": "x"}, "BAD_USER_INPUT", "input.parentId"),
        ({"parentId": str(uuid4())}, "NOT_FOUND", "input.parentId"),
        ({"parentId": theirs["id"]}, "NOT_FOUND", "input.parentId"),
    ]
    for fields, code, argument in cases:
        data = {"name": "A", "kind": "site", **fields}
        err = error(await gateway.query(CREATE, {"input": data}, key=tenant.key))
        assert (err["extensions"]["code"], err["extensions"]["argument"]) == (
            code, argument), fields
    assert await stores.assets.pool.fetchval("SELECT count(*) FROM assets") == 1


async def test_update_patches_attributes_and_renames(gateway: Gateway, tenant: Tenant) -> None:
    asset = await create(gateway, tenant, "Press", attributes={
        "spec": {"power": 5, "voltage": 400}, "tags": ["a", "b"], "gone": True})
    body = await gateway.query(UPDATE, {"id": asset["id"], "input": {
        "name": "Press 2", "kind": "machine",
        "attributes": {"spec": {"voltage": None, "rpm": 900}, "tags": ["c"], "gone": None},
    }}, key=tenant.key)
    assert "errors" not in body, body
    updated = body["data"]["updateAsset"]
    assert updated["name"] == "Press 2" and updated["kind"] == "machine"
    assert updated["attributes"] == {"spec": {"power": 5, "rpm": 900}, "tags": ["c"]}
    body = await gateway.query(GET, {"id": asset["id"]}, key=tenant.key)
    assert body["data"]["asset"] == updated

    for fields, argument in [({"name": ""}, "input.name"), ({"kind": " "}, "input.kind"),
                             ({"attributes": "x"}, "input.attributes")]:
        err = error(await gateway.query(UPDATE, {"id": asset["id"], "input": fields},
                                        key=tenant.key))
        assert err["extensions"]["argument"] == argument
    # Attributes merged past the size limit: refused, and nothing of the patch is written.
    await gateway.query(UPDATE, {"id": asset["id"], "input": {"attributes": {"a": "x" * 40_000}}},
                        key=tenant.key)
    body = await gateway.query(UPDATE, {"id": asset["id"], "input": {
        "name": "Renamed?", "attributes": {"b": "y" * 40_000}}}, key=tenant.key)
    assert error(body)["extensions"]["code"] == "LIMIT_EXCEEDED"
    body = await gateway.query(GET, {"id": asset["id"]}, key=tenant.key)
    assert body["data"]["asset"]["name"] == "Press 2"
    assert "b" not in body["data"]["asset"]["attributes"]


async def test_move_carries_the_subtree(gateway: Gateway, tenant: Tenant) -> None:
    site1, site2 = await create(gateway, tenant, "Site 1"), await create(gateway, tenant, "Site 2")
    line = await create(gateway, tenant, "Line", site1["id"])
    machine = await create(gateway, tenant, "Machine", line["id"])
    part = await create(gateway, tenant, "Part", machine["id"])
    sensor = await device(gateway, tenant, "S1", part["id"])

    body = await gateway.query(
        """mutation($id: ID!, $p: ID!) { updateAsset(id: $id, input: {parentId: $p}) {
            parent { id } ancestors { id }
            children { ancestors { id } children { id ancestors { id } } } } }""",
        {"id": line["id"], "p": site2["id"]}, key=tenant.key,
    )
    assert "errors" not in body, body
    moved = body["data"]["updateAsset"]
    assert moved["parent"] == {"id": site2["id"]} and moved["ancestors"] == [{"id": site2["id"]}]
    assert moved["children"] == [{
        "ancestors": [{"id": site2["id"]}, {"id": line["id"]}],
        "children": [{"id": part["id"], "ancestors": [
            {"id": site2["id"]}, {"id": line["id"]}, {"id": machine["id"]}]}],
    }]
    body = await gateway.query(
        """query($s1: ID!, $s2: ID!, $part: ID!) {
            a: asset(id: $s1) { children { id } devices { totalCount } }
            b: asset(id: $s2) { children { id } devices { edges { node { id } } } }
            part: asset(id: $part) { ancestors { name } } }""",
        {"s1": site1["id"], "s2": site2["id"], "part": part["id"]}, key=tenant.key,
    )
    data = body["data"]
    assert data["a"] == {"children": [], "devices": {"totalCount": 0}}
    assert data["b"]["children"] == [{"id": line["id"]}]
    assert data["b"]["devices"]["edges"] == [{"node": {"id": sensor}}]
    assert [a["name"] for a in data["part"]["ancestors"]] == ["Site 2", "Line", "Machine"]


async def test_a_null_parent_moves_to_the_root_and_a_missing_one_keeps_it(
    gateway: Gateway, tenant: Tenant
) -> None:
    site = await create(gateway, tenant, "Site")
    line = await create(gateway, tenant, "Line", site["id"])
    machine = await create(gateway, tenant, "Machine", line["id"])
    renamed = await gateway.query(UPDATE, {"id": line["id"], "input": {"name": "Line A"}},
                                  key=tenant.key)
    assert renamed["data"]["updateAsset"]["parent"] == {"id": site["id"]}
    body = await gateway.query(UPDATE, {"id": line["id"], "input": {"parentId": None}},
                               key=tenant.key)
    assert "errors" not in body, body
    assert body["data"]["updateAsset"]["parent"] is None
    assert body["data"]["updateAsset"]["ancestors"] == []
    after = await gateway.query(GET, {"id": machine["id"]}, key=tenant.key)
    assert after["data"]["asset"]["ancestors"] == [{"id": line["id"], "name": "Line A"}]
    roots = await gateway.query("{ assets(filter: {roots: true}) { totalCount } }",
                                key=tenant.key)
    assert roots["data"]["assets"]["totalCount"] == 2


async def test_moves_that_would_make_a_cycle_are_refused(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    site = await create(gateway, tenant, "Site")
    line = await create(gateway, tenant, "Line", site["id"])
    machine = await create(gateway, tenant, "Machine", line["id"])
    theirs = await create(gateway, other_tenant, "Theirs")
    cases = [
        (line["id"], machine["id"], "BAD_USER_INPUT"),  # under its own child
        (site["id"], machine["id"], "BAD_USER_INPUT"),  # under its own grandchild
        (line["id"], line["id"], "BAD_USER_INPUT"),  # under itself
        (line["id"], str(uuid4()), "NOT_FOUND"),
        (line["id"], theirs["id"], "NOT_FOUND"),
    ]
    for asset_id, parent_id, code in cases:
        body = await gateway.query(UPDATE, {"id": asset_id, "input": {"parentId": parent_id}},
                                   key=tenant.key)
        err = error(body)
        assert err["extensions"]["code"] == code, (asset_id, parent_id, body)
        assert err["extensions"]["argument"] == "input.parentId"
    body = await gateway.query(GET, {"id": machine["id"]}, key=tenant.key)
    assert body["data"]["asset"]["ancestors"] == [
        {"id": site["id"], "name": "Site"}, {"id": line["id"], "name": "Line"}]


async def test_delete_is_refused_while_children_or_devices_remain(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    site = await create(gateway, tenant, "Site")
    line = await create(gateway, tenant, "Line A", site["id"])
    sensor = await device(gateway, tenant, "SN-7", line["id"])

    err = error(await gateway.query(DELETE, {"id": site["id"]}, key=tenant.key))
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and "Line A" in err["message"]
    assert err["extensions"]["children"] == [line["id"]]
    err = error(await gateway.query(DELETE, {"id": line["id"]}, key=tenant.key))
    assert err["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Sensor SN-7" in err["message"] and "SN-7" in err["message"]
    assert err["extensions"]["devices"] == [sensor]

    body = await gateway.query(DETACH, {"d": sensor}, key=tenant.key)
    assert body["data"]["detachDevice"] == {"id": sensor, "asset": None}
    assert await gateway.query(DELETE, {"id": line["id"]}, key=tenant.key) == {
        "data": {"deleteAsset": True}}
    assert await gateway.query(DELETE, {"id": site["id"]}, key=tenant.key) == {
        "data": {"deleteAsset": True}}
    body = await gateway.query(GET, {"id": site["id"]}, key=tenant.key)
    assert body["data"]["asset"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await stores.assets.pool.fetchval("SELECT count(*) FROM assets") == 0
    # The device stays, unattached; deleting again is NOT_FOUND.
    body = await gateway.query("query($d: ID!) { device(id: $d) { asset { id } } }",
                               {"d": sensor}, key=tenant.key)
    assert body["data"]["device"] == {"asset": None}
    err = error(await gateway.query(DELETE, {"id": site["id"]}, key=tenant.key))
    assert err["extensions"]["code"] == "NOT_FOUND"


async def test_attach_and_detach(gateway: Gateway, tenant: Tenant) -> None:
    a, b = await create(gateway, tenant, "A"), await create(gateway, tenant, "B")
    sensor = await device(gateway, tenant, "SN-1", None)
    body = await gateway.query(ATTACH, {"d": sensor, "a": a["id"]}, key=tenant.key)
    assert body["data"]["attachDevice"] == {"id": sensor, "asset": {"id": a["id"], "name": "A"}}
    body = await gateway.query(
        """mutation($d: ID!, $b: ID!) {
            move: attachDevice(deviceId: $d, assetId: $b) { asset { name } }
            off: detachDevice(deviceId: $d) { asset { name } }
            again: detachDevice(deviceId: $d) { asset { name } } }""",
        {"d": sensor, "b": b["id"]}, key=tenant.key,
    )
    assert body["data"] == {"move": {"asset": {"name": "B"}}, "off": {"asset": None},
                            "again": {"asset": None}}
    await gateway.query(ATTACH, {"d": sensor, "a": b["id"]}, key=tenant.key)
    body = await gateway.query(
        "query($a: ID!, $b: ID!) { a: asset(id: $a) { devices { totalCount } } "
        "b: asset(id: $b) { devices { edges { node { id } } } } }",
        {"a": a["id"], "b": b["id"]}, key=tenant.key,
    )
    assert body["data"]["a"]["devices"]["totalCount"] == 0
    assert body["data"]["b"]["devices"]["edges"] == [{"node": {"id": sensor}}]


async def test_later_fields_of_one_document_see_earlier_writes(
    gateway: Gateway, tenant: Tenant
) -> None:
    site = await create(gateway, tenant, "Site")
    sensor = await device(gateway, tenant, "SN-1", None)
    body = await gateway.query(
        """mutation($s: ID!, $d: ID!) {
            a: createAsset(input: {name: "L1", kind: "line", parentId: $s}) { id }
            b: attachDevice(deviceId: $d, assetId: $s) { asset { children { name } } }
            c: createAsset(input: {name: "L2", kind: "line", parentId: $s}) {
                id parent { children { name } } } }""",
        {"s": site["id"], "d": sensor}, key=tenant.key,
    )
    data = body["data"]
    assert data["b"]["asset"]["children"] == [{"name": "L1"}]
    assert data["c"]["parent"]["children"] == [{"name": "L1"}, {"name": "L2"}]
    body = await gateway.query(
        """mutation($s: ID!, $d: ID!, $l: ID!) {
            a: attachDevice(deviceId: $d, assetId: $s) { asset { children { name } } }
            gone: deleteAsset(id: $l)
            b: attachDevice(deviceId: $d, assetId: $s) { asset { children { name } } } }""",
        {"s": site["id"], "d": sensor, "l": data["a"]["id"]}, key=tenant.key,
    )
    assert body["data"] == {"a": {"asset": {"children": [{"name": "L1"}, {"name": "L2"}]}},
                            "gone": True, "b": {"asset": {"children": [{"name": "L2"}]}}}


async def test_asset_mutations_on_another_tenants_objects_are_not_found(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await create(gateway, tenant, "Mine")
    my_device = await device(gateway, tenant, "SN-M", None)
    theirs = await create(gateway, other_tenant, "Theirs", attributes={"x": 1})
    their_device = await device(gateway, other_tenant, "SN-T", theirs["id"])
    attempts = [
        (UPDATE, {"id": theirs["id"], "input": {"name": "taken"}}),
        (UPDATE, {"id": theirs["id"], "input": {"parentId": mine["id"]}}),
        (DELETE, {"id": theirs["id"]}),
        (ATTACH, {"d": my_device, "a": theirs["id"]}),
        (ATTACH, {"d": their_device, "a": mine["id"]}),
        (DETACH, {"d": their_device}),
    ]
    for query, variables in attempts:
        err = error(await gateway.query(query, variables, key=tenant.key))
        assert err["extensions"]["code"] == "NOT_FOUND", (query, variables)
    body = await gateway.query(
        "query($id: ID!) { asset(id: $id) { name attributes devices { totalCount } } }",
        {"id": theirs["id"]}, key=other_tenant.key,
    )
    assert body["data"]["asset"] == {"name": "Theirs", "attributes": {"x": 1},
                                     "devices": {"totalCount": 1}}
