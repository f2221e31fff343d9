"""Device reads: every scalar field, the devices connection with each filter, the profile
fields from the Asset DB, and shadows with their AWS-style delta."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.stores import Stores
from gateway.stores.shadows import ShadowDoc
from tests.conftest import Gateway, Tenant

PAGE = """query($first: Int, $after: String, $filter: DeviceFilter) {
  devices(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
SHADOW_FIELDS = "deviceId version reported desired delta metadata updatedAt"
LAST_SEEN = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@dataclass
class Plant:
    assets: dict[str, UUID]
    devices: list[UUID]  # in creation order: d0..d4
    rows: list[Any]


async def _asset(stores: Stores, tenant: Tenant, parent: UUID | None, name: str) -> UUID:
    asset_id = uuid4()
    await stores.assets.insert_asset(tenant.id, asset_id, parent, name, name.split()[0].lower(),
                                     {})
    return asset_id


@pytest.fixture
async def plant(stores: Stores, tenant: Tenant) -> Plant:
    """Site 1 > Line 1 > Machine 1, Machine 2; Site 2 > Machine 3; five devices, d4 with no
    profile. Only d1 has an underscore (serial) and only d2 a percent sign (name)."""
    a: dict[str, UUID] = {}
    a["s1"] = await _asset(stores, tenant, None, "Site 1")
    a["l1"] = await _asset(stores, tenant, a["s1"], "Line 1")
    a["m1"] = await _asset(stores, tenant, a["l1"], "Machine 1")
    a["m2"] = await _asset(stores, tenant, a["l1"], "Machine 2")
    a["s2"] = await _asset(stores, tenant, None, "Site 2")
    a["m3"] = await _asset(stores, tenant, a["s2"], "Machine 3")
    specs: list[tuple[str, str, str, str, list[str], str | None, dict[str, Any]]] = [
        # serial, name, type, status, labels, installed on, metadata
        ("TS-001", "Boiler Thermo", "thermal-sensor", "ACTIVE", ["north", "critical"], "m1",
         {"manufacturer": "Acme", "specs": {"ip": "IP67", "maxTemp": 85}}),
        ("VS_002", "Press Vibration", "vibration-sensor", "ACTIVE", ["north"], "m2",
         {"manufacturer": "Globex", "specs": {"ip": "IP54"}}),
        ("PM-003", "Line 50% Meter", "power-meter", "SUSPENDED", ["south", "critical"], "l1",
         {"manufacturer": "Acme"}),
        ("TS-004", "boiler backup", "thermal-sensor", "PROVISIONED", ["south"], "m3",
         {"manufacturer": "Initech"}),
        ("GW-005", "Edge Gateway", "edge-controller", "DECOMMISSIONED", [], None, {}),
    ]
    ids, rows = [], []
    for n, (serial, name, type_, status, labels, asset, metadata) in enumerate(specs):
        row = await stores.registry.insert_device(
            tenant.id, serial=serial, name=name, type=type_, status=status,
            firmware_version=f"2.{n}.1" if n != 3 else None, labels=labels,
        )
        ids.append(row["id"])
        rows.append(row)
        if asset is not None:
            caps: list[dict[str, Any]] = [
                {"metric": "temperature", "unit": "celsius", "min": -20, "max": 120.5,
                 "description": "Core temperature"},
                {"metric": "status"},
            ]
            await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=a[asset],
                                               metadata=metadata, capabilities=caps)
    await stores.registry.execute(
        "UPDATE devices SET last_seen_at = $2 WHERE id = $1", ids[0], LAST_SEEN)
    return Plant(a, ids, rows)


def _data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def _page(gateway: Gateway, tenant: Tenant, **variables: Any) -> dict[str, Any]:
    conn: dict[str, Any] = _data(await gateway.query(PAGE, variables, key=tenant.key))["devices"]
    return conn


def _node_ids(conn: dict[str, Any]) -> list[str]:
    return [e["node"]["id"] for e in conn["edges"]]


async def test_device_returns_every_scalar_field(
    gateway: Gateway, plant: Plant, tenant: Tenant
) -> None:
    q = """query($id: ID!) { device(id: $id) { id serial name type status firmwareVersion
      labels createdAt updatedAt lastSeenAt } }"""
    for n in (0, 3):
        device = _data(await gateway.query(q, {"id": str(plant.devices[n])},
                                           key=tenant.key))["device"]
        row = plant.rows[n]
        assert datetime.fromisoformat(device.pop("createdAt")) == row["created_at"]
        assert datetime.fromisoformat(device.pop("updatedAt")) == row["updated_at"]
        last_seen = device.pop("lastSeenAt")
        assert (datetime.fromisoformat(last_seen) if last_seen else None) == (
            LAST_SEEN if n == 0 else None)
        assert device == {
            "id": str(row["id"]), "serial": row["serial"], "name": row["name"],
            "type": row["type"], "status": row["status"],
            "firmwareVersion": "2.0.1" if n == 0 else None, "labels": list(row["labels"]),
        }


async def test_unknown_or_foreign_device_is_not_found(
    gateway: Gateway, plant: Plant, other_tenant: Tenant
) -> None:
    for asked in (str(plant.devices[0]), str(uuid4())):
        body = await gateway.query("query($id: ID!) { device(id: $id) { id } }",
                                   {"id": asked}, key=other_tenant.key)
        assert body["data"] == {"device": None}
        [error] = body["errors"]
        assert error["extensions"] == {"code": "NOT_FOUND", "argument": "id"}
        assert error["message"] == f"No device {asked}"


async def test_pagination_walks_every_page_once(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    ids = [str((await stores.registry.insert_device(
        tenant.id, serial=f"P-{n}", name=f"pump {n}", type="pump",
        status="ACTIVE" if n % 2 else "PROVISIONED"))["id"]) for n in range(11)]
    for filt, expected in ((None, ids), ({"status": ["ACTIVE"]}, ids[1::2])):
        seen: list[str] = []
        after = None
        while True:
            conn = await _page(gateway, tenant, first=2, after=after, filter=filt)
            assert conn["totalCount"] == len(expected)
            page = _node_ids(conn)
            info = conn["pageInfo"]
            assert info["hasPreviousPage"] == (after is not None)
            assert info["startCursor"] == conn["edges"][0]["cursor"]
            assert info["endCursor"] == conn["edges"][-1]["cursor"]
            seen += page
            assert info["hasNextPage"] == (len(seen) < len(expected))
            if not info["hasNextPage"]:
                break
            after = info["endCursor"]
        assert seen == expected
        past = await _page(gateway, tenant, first=2, after=info["endCursor"], filter=filt)
        assert past["edges"] == [] and past["totalCount"] == len(expected)
        assert past["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True,
                                    "startCursor": None, "endCursor": None}
    empty = await _page(gateway, tenant, first=0)
    assert empty["edges"] == [] and empty["totalCount"] == 11
    assert empty["pageInfo"]["hasNextPage"] is True


FILTERS: list[tuple[dict[str, Any], list[int]]] = [  # filter, the devices (by index) it matches
    ({"status": ["ACTIVE"]}, [0, 1]),
    ({"status": ["SUSPENDED", "PROVISIONED"]}, [2, 3]),
    ({"types": ["thermal-sensor"]}, [0, 3]),
    ({"types": ["power-meter", "edge-controller"]}, [2, 4]),
    ({"labels": ["critical"]}, [0, 2]),
    ({"labels": ["north", "critical"]}, [0]),
    ({"labels": ["south", "north"]}, []),
    ({"assetId": "s1"}, [0, 1, 2]),
    ({"assetId": "l1"}, [0, 1, 2]),
    ({"assetId": "m1"}, [0]),
    ({"assetId": "s2"}, [3]),
    ({"search": "BOILER"}, [0, 3]),
    ({"search": "ts-00"}, [0, 3]),
    ({"search": "vs_0"}, [1]),
    ({"search": "%"}, [2]),
    ({"search": "_"}, [1]),
    ({"search": "50%"}, [2]),
    ({"search": "T%O"}, []),
    ({"metadata": {"manufacturer": "Acme"}}, [0, 2]),
    ({"metadata": {"specs": {"ip": "IP67"}}}, [0]),
    ({"metadata": {"manufacturer": "Nobody"}}, []),
    ({"status": ["ACTIVE"], "labels": ["north"], "metadata": {"manufacturer": "Acme"}}, [0]),
    ({"assetId": "s1", "types": ["power-meter"], "search": "meter"}, [2]),
    ({"assetId": "s1", "metadata": {"manufacturer": "Globex"}}, [1]),
    ({"assetId": "s2", "status": ["ACTIVE"]}, []),
]


async def test_devices_filters_alone_and_combined(
    gateway: Gateway, plant: Plant, tenant: Tenant
) -> None:
    wrong = []
    for filt, expected in FILTERS:
        if "assetId" in filt:
            filt = {**filt, "assetId": str(plant.assets[filt["assetId"]])}
        conn = await _page(gateway, tenant, filter=filt)
        want = [str(plant.devices[n]) for n in expected]
        if _node_ids(conn) != want or conn["totalCount"] != len(want):
            got = [plant.devices.index(UUID(i)) for i in _node_ids(conn)]
            wrong.append((filt, expected, got, conn["totalCount"]))
    assert wrong == []


async def test_profile_fields(gateway: Gateway, plant: Plant, tenant: Tenant) -> None:
    q = """query($id: ID!) { device(id: $id) { metadata asset { id name }
      capabilities { metric unit min max description } } }"""
    device = _data(await gateway.query(q, {"id": str(plant.devices[0])}, key=tenant.key))
    assert device["device"] == {
        "metadata": {"manufacturer": "Acme", "specs": {"ip": "IP67", "maxTemp": 85}},
        "asset": {"id": str(plant.assets["m1"]), "name": "Machine 1"},
        "capabilities": [
            {"metric": "temperature", "unit": "celsius", "min": -20.0, "max": 120.5,
             "description": "Core temperature"},
            {"metric": "status", "unit": None, "min": None, "max": None, "description": None},
        ],
    }
    bare = _data(await gateway.query(q, {"id": str(plant.devices[4])}, key=tenant.key))
    assert bare["device"] == {"metadata": None, "asset": None, "capabilities": None}


async def test_shadow_delta_follows_aws_rules(
    gateway: Gateway, stores: Stores, plant: Plant, tenant: Tenant
) -> None:
    desired = {"mode": "run", "rate": 5, "flag": True, "missing": "x", "same": [1, 2],
               "order": [1, 2, 3], "cfg": {"a": 1, "b": {"c": 2, "d": 3}},
               "whole": {"k": 1}, "n": 1}
    reported = {"mode": "run", "rate": 10, "flag": 1, "same": [1, 2], "order": [1, 2],
                "cfg": {"a": 1, "b": {"c": 2, "d": 4}, "extra": 0}, "whole": "scalar",
                "n": 1.0, "onlyReported": True}
    metadata = {"desired": {"mode": {"timestamp": 1700000000}}}
    updated = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    device = plant.devices[0]
    await stores.shadows.put(tenant.id, ShadowDoc(device, 7, desired, reported, metadata,
                                                  updated))
    q = f"""query($id: ID!) {{ device(id: $id) {{ shadow {{ {SHADOW_FIELDS} }} }}
      shadow(deviceId: $id) {{ {SHADOW_FIELDS} }} }}"""
    data = _data(await gateway.query(q, {"id": str(device)}, key=tenant.key))
    shadow = data["shadow"]
    assert data["device"]["shadow"] == shadow
    assert datetime.fromisoformat(shadow.pop("updatedAt")) == updated
    assert shadow == {
        "deviceId": str(device), "version": 7, "desired": desired, "reported": reported,
        "metadata": metadata,
        "delta": {"rate": 5, "flag": True, "missing": "x", "order": [1, 2, 3],
                  "cfg": {"b": {"d": 3}}, "whole": {"k": 1}},
    }


async def test_shadow_is_null_when_device_has_none(
    gateway: Gateway, plant: Plant, tenant: Tenant
) -> None:
    q = """query($id: ID!) { device(id: $id) { id shadow { version } }
      shadow(deviceId: $id) { version } }"""
    data = _data(await gateway.query(q, {"id": str(plant.devices[1])}, key=tenant.key))
    assert data == {"device": {"id": str(plant.devices[1]), "shadow": None}, "shadow": None}
