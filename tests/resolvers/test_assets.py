"""Asset reads: the tree (parent, children, ancestors), the assets connection with each
filter, devices below an asset, batching of tree fields, and the unbuilt rollup field."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

TREE: list[tuple[str, str, str | None, dict[str, Any]]] = [  # name, kind, parent, attributes
    ("Site A", "site", None, {"city": "Lyon", "tier": 1}),
    ("Line A1", "line", "Site A", {"shift": "24/7"}),
    ("Machine A1-x", "machine", "Line A1", {"model": "CNC-101", "criticality": "high"}),
    ("Machine A1-y", "machine", "Line A1", {"model": "CNC-102", "criticality": "low"}),
    ("Line A2", "line", "Site A", {"shift": "day"}),
    ("Site B", "site", None, {"city": "Porto"}),
    ("Machine B-z", "machine", "Site B",
     {"model": "CNC-101", "criticality": "low", "dims": {"w": 2, "h": 3}}),
    ("Bay 50%_b", "bay", "Site B", {}),
]
NAMES = [t[0] for t in TREE]
PAGE = """query($first: Int, $after: String, $filter: AssetFilter) {
  assets(first: $first, after: $after, filter: $filter) {
    totalCount edges { cursor node { name } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def _insert_tree(stores: Stores, tenant: Tenant, prefix: str = "") -> dict[str, UUID]:
    ids: dict[str, UUID] = {}
    for name, kind, parent, attributes in TREE:
        ids[prefix + name] = uuid4()
        await stores.assets.insert_asset(
            tenant.id, ids[prefix + name], ids[prefix + parent] if parent else None,
            prefix + name, kind, attributes)
    return ids


@pytest.fixture
async def tree(stores: Stores, tenant: Tenant) -> dict[str, UUID]:
    return await _insert_tree(stores, tenant)


def _data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def _names(conn: dict[str, Any]) -> list[str]:
    return [e["node"]["name"] for e in conn["edges"]]


async def test_asset_with_parent_children_and_ancestors(
    gateway: Gateway, stores: Stores, tree: dict[str, UUID], tenant: Tenant
) -> None:
    q = """query($id: ID!) { asset(id: $id) { id name kind attributes createdAt updatedAt
      parent { name } children { name } ancestors { name } } }"""
    [row] = await stores.assets.assets_by_ids(tenant.id, [tree["Machine A1-x"]])
    assert row is not None
    asset = _data(await gateway.query(q, {"id": str(tree["Machine A1-x"])},
                                      key=tenant.key))["asset"]
    assert datetime.fromisoformat(asset.pop("createdAt")) == row["created_at"]
    assert datetime.fromisoformat(asset.pop("updatedAt")) == row["updated_at"]
    assert asset == {
        "id": str(tree["Machine A1-x"]), "name": "Machine A1-x", "kind": "machine",
        "attributes": {"model": "CNC-101", "criticality": "high"}, "parent": {"name": "Line A1"},
        "children": [], "ancestors": [{"name": "Site A"}, {"name": "Line A1"}],
    }
    site = _data(await gateway.query(q, {"id": str(tree["Site A"])}, key=tenant.key))["asset"]
    assert (site["parent"], site["ancestors"]) == (None, [])
    assert site["children"] == [{"name": "Line A1"}, {"name": "Line A2"}]
    site_b = _data(await gateway.query(q, {"id": str(tree["Site B"])}, key=tenant.key))["asset"]
    assert site_b["children"] == [{"name": "Bay 50%_b"}, {"name": "Machine B-z"}]


async def test_unknown_or_foreign_asset_is_not_found(
    gateway: Gateway, tree: dict[str, UUID], other_tenant: Tenant, tenant: Tenant
) -> None:
    q = "query($id: ID!) { asset(id: $id) { id } }"
    unknown = str(uuid4())
    for body, asked in ((await gateway.query(q, {"id": unknown}, key=tenant.key), unknown),
                        (await gateway.query(q, {"id": str(tree["Site A"])},
                                             key=other_tenant.key), str(tree["Site A"]))):
        assert body["data"] == {"asset": None}
        [error] = body["errors"]
        assert error["extensions"] == {"code": "NOT_FOUND", "argument": "id"}
        assert error["message"] == f"No asset {asked}"


FILTERS: list[tuple[dict[str, Any], list[str]]] = [  # filter, names matched in creation order
    ({"kind": "machine"}, ["Machine A1-x", "Machine A1-y", "Machine B-z"]),
    ({"kind": "plant"}, []),
    ({"parentId": "Line A1"}, ["Machine A1-x", "Machine A1-y"]),
    ({"parentId": "Machine B-z"}, []),
    ({"roots": True}, ["Site A", "Site B"]),
    ({"roots": False}, [n for n in NAMES if not n.startswith("Site")]),
    ({"search": "LINE a"}, ["Line A1", "Line A2"]),
    ({"search": "%"}, ["Bay 50%_b"]),
    ({"search": "_"}, ["Bay 50%_b"]),
    ({"search": "M%x"}, []),
    ({"attributes": {"criticality": "low"}}, ["Machine A1-y", "Machine B-z"]),
    ({"attributes": {"dims": {"w": 2}}}, ["Machine B-z"]),
    ({"attributes": {"tier": 1}}, ["Site A"]),
    ({"kind": "machine", "attributes": {"model": "CNC-101"}}, ["Machine A1-x", "Machine B-z"]),
    ({"parentId": "Site B", "kind": "bay", "search": "bay"}, ["Bay 50%_b"]),
    ({"roots": True, "kind": "line"}, []),
]


async def test_assets_filters_alone_and_combined(
    gateway: Gateway, tree: dict[str, UUID], tenant: Tenant
) -> None:
    wrong = []
    for filt, expected in FILTERS:
        if "parentId" in filt:
            filt = {**filt, "parentId": str(tree[filt["parentId"]])}
        body = await gateway.query(PAGE, {"filter": filt}, key=tenant.key)
        conn = _data(body)["assets"]
        if _names(conn) != expected or conn["totalCount"] != len(expected):
            wrong.append((filt, expected, _names(conn), conn["totalCount"]))
    assert wrong == []


async def test_assets_pagination_walks_every_page_once(
    gateway: Gateway, tree: dict[str, UUID], tenant: Tenant
) -> None:
    seen: list[str] = []
    after = None
    for page in range(3):  # 8 assets, 3 per page
        conn = _data(await gateway.query(PAGE, {"first": 3, "after": after},
                                         key=tenant.key))["assets"]
        assert conn["totalCount"] == 8
        seen += _names(conn)
        info = conn["pageInfo"]
        assert (info["hasNextPage"], info["hasPreviousPage"]) == (page < 2, page > 0)
        assert info["endCursor"] == conn["edges"][-1]["cursor"]
        after = info["endCursor"]
    assert seen == NAMES
    past = _data(await gateway.query(PAGE, {"first": 3, "after": after},
                                     key=tenant.key))["assets"]
    assert (past["edges"], past["totalCount"], past["pageInfo"]["hasNextPage"]) == ([], 8, False)


async def test_asset_devices_cover_the_subtree(
    gateway: Gateway, stores: Stores, tree: dict[str, UUID], tenant: Tenant
) -> None:
    installed = [("Machine A1-x", "ACTIVE"), ("Machine A1-y", "SUSPENDED"),
                 ("Line A2", "ACTIVE"), ("Machine B-z", "ACTIVE"), (None, "ACTIVE")]
    device_ids = []
    for n, (asset, status) in enumerate(installed):
        row = await stores.registry.insert_device(tenant.id, serial=f"D{n}", name=f"d{n}",
                                                  type="sensor", status=status)
        device_ids.append(str(row["id"]))
        if asset is not None:
            await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=tree[asset],
                                               metadata={"n": n}, capabilities=[])
    q = """query($id: ID!, $first: Int, $after: String, $filter: DeviceFilter) {
      asset(id: $id) { devices(first: $first, after: $after, filter: $filter) {
        totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } } }"""

    async def devices(asset: str, **variables: Any) -> tuple[list[int], int, bool, str | None]:
        body = await gateway.query(q, {"id": str(tree[asset]), **variables}, key=tenant.key)
        conn = _data(body)["asset"]["devices"]
        ids = [device_ids.index(e["node"]["id"]) for e in conn["edges"]]
        return ids, conn["totalCount"], conn["pageInfo"]["hasNextPage"], \
            conn["pageInfo"]["endCursor"]

    assert (await devices("Site A"))[:3] == ([0, 1, 2], 3, False)
    assert (await devices("Line A1"))[:3] == ([0, 1], 2, False)
    assert (await devices("Machine B-z"))[:3] == ([3], 1, False)
    assert (await devices("Bay 50%_b"))[:3] == ([], 0, False)
    assert (await devices("Site A", filter={"status": ["ACTIVE"]}))[:2] == ([0, 2], 2)
    assert (await devices("Site A", filter={"metadata": {"n": 1}}))[:2] == ([1], 1)
    inner = {"assetId": str(tree["Line A1"])}
    assert (await devices("Site A", filter=inner))[:2] == ([0, 1], 2)
    outside = {"assetId": str(tree["Site B"])}
    assert (await devices("Site A", filter=outside))[:2] == ([], 0)
    first_page = await devices("Site A", first=2)
    assert first_page[:3] == ([0, 1], 3, True)
    assert (await devices("Site A", first=2, after=first_page[3]))[:3] == ([2], 3, False)


async def _tree_calls(gateway: Gateway, tenant: Tenant, expected_assets: int) -> dict[str, int]:
    q = """{ assets(first: 500) { edges { node { name parent { name }
      children { name children { name } } ancestors { name } } } } }"""
    body = await gateway.query(q, key=tenant.key, trace=True)
    assert len(_data(body)["assets"]["edges"]) == expected_assets
    calls: dict[str, int] = body["extensions"]["storeCalls"]
    return calls


async def test_tree_fields_batch_whatever_the_number_of_assets(
    gateway: Gateway, stores: Stores, tree: dict[str, UUID], tenant: Tenant
) -> None:
    small = await _tree_calls(gateway, tenant, 8)
    for n in range(10):
        await _insert_tree(stores, tenant, prefix=f"{n}/")
    # The first request also looked the key up; later ones find it in the key cache.
    assert await _tree_calls(gateway, tenant, 88) == {**small, "registry": 0}
    # auth; page + one lookup for parents and ancestors + one for children (the nested
    # children are all on the page, so the per-request loader already holds them).
    assert small == {"registry": 1, "assets": 3, "telemetry": 0, "shadows": 0}


async def test_asset_devices_batch_across_assets(
    gateway: Gateway, stores: Stores, tree: dict[str, UUID], tenant: Tenant
) -> None:
    q = """{ assets(first: 500) { edges { node { name
      devices(first: 2, filter: {status: [ACTIVE]}) { totalCount edges { node { name } } }
    } } } }"""

    async def calls_and_totals() -> tuple[dict[str, int], dict[str, int]]:
        body = await gateway.query(q, key=tenant.key, trace=True)
        edges = _data(body)["assets"]["edges"]
        totals = {e["node"]["name"]: e["node"]["devices"]["totalCount"] for e in edges}
        return body["extensions"]["storeCalls"], totals

    for n, asset in enumerate(["Machine A1-x", "Machine A1-x", "Machine A1-y", "Line A2"]):
        row = await stores.registry.insert_device(tenant.id, serial=f"S{n}", name=f"s{n}",
                                                  type="sensor", status="ACTIVE")
        await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=tree[asset],
                                           metadata={}, capabilities=[])
    small, totals = await calls_and_totals()
    assert totals["Site A"] == 4 and totals["Line A1"] == 3 and totals["Site B"] == 0
    for n in range(10):
        await _insert_tree(stores, tenant, prefix=f"{n}/")
    large, _ = await calls_and_totals()
    # small paid the key's lookup too; large found it in the key cache.
    assert small == {"registry": 2, "assets": 2, "telemetry": 0, "shadows": 0}
    assert large == {**small, "registry": 1}


async def test_device_assets_read_twice_with_different_fields_share_one_load(
    gateway: Gateway, stores: Stores, tree: dict[str, UUID], tenant: Tenant
) -> None:
    """Device.asset loads and builds each distinct asset once for a level: two selections
    of it in one request (a dashboard's name and kind, a detail's attributes, times and
    ancestors) both answer every device right, with the profile round trip shared."""
    installed = ["Machine A1-x", "Machine A1-x", "Machine B-z", "Machine A1-x", "Line A2",
                 "Site B", None, "Machine A1-y"]
    for n, asset in enumerate(installed):
        row = await stores.registry.insert_device(tenant.id, serial=f"D{n}", name=f"d{n}",
                                                  type="sensor", status="ACTIVE")
        if asset is not None:
            await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=tree[asset],
                                               metadata={"n": n}, capabilities=[])
    q = """{ devices(first: 20, orderBy: {field: NAME}) { edges { node { name metadata
      brief: asset { name kind parent { name } }
      detail: asset { id attributes createdAt ancestors { name }
                      parent { id attributes parent { name } } } } } } }"""
    body = await gateway.query(q, key=tenant.key, trace=True)
    nodes = [e["node"] for e in _data(body)["devices"]["edges"]]
    assert [n["name"] for n in nodes] == [f"d{n}" for n in range(len(installed))]
    rows = {name: await stores.assets.assets_by_ids(tenant.id, [tree[name]])
            for name in NAMES}
    parent_of = {t[0]: t[2] for t in TREE}
    attributes = {t[0]: t[3] for t in TREE}
    kinds = {t[0]: t[1] for t in TREE}
    for n, (node, asset) in enumerate(zip(nodes, installed, strict=True)):
        if asset is None:
            assert node["brief"] is None and node["detail"] is None and \
                node["metadata"] is None, node
            continue
        assert node["metadata"] == {"n": n}
        parent = parent_of[asset]
        grandparent = parent_of[parent] if parent else None
        assert node["brief"] == {"name": asset, "kind": kinds[asset],
                                 "parent": {"name": parent} if parent else None}, node
        [row] = rows[asset]
        assert node["detail"] == {
            "id": str(tree[asset]), "attributes": attributes[asset],
            "createdAt": row["created_at"].isoformat(),
            "ancestors": [{"name": a} for a in _chain(parent_of, parent)],
            "parent": {"id": str(tree[parent]), "attributes": attributes[parent],
                       "parent": {"name": grandparent} if grandparent else None}
            if parent else None,
        }, node
    # The key and the page; the profiles with the installed assets and their parents,
    # which here are every ancestor and grandparent too (Site A is Line A2's parent).
    assert body["extensions"]["storeCalls"] == {
        "registry": 2, "assets": 1, "telemetry": 0, "shadows": 0}


def _chain(parent_of: dict[str, str | None], name: str | None) -> list[str]:
    """``name`` and its ancestors, from the root down."""
    chain: list[str] = []
    while name is not None:
        chain.insert(0, name)
        name = parent_of[name]
    return chain
