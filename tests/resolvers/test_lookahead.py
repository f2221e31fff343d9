"""A device's asset and that asset's parent arrive in the profiles' one round trip when the
query asks for the parent, however it asks (alias, named or inline fragment, a directive);
the parent never crosses tenants."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

ASKED = {
    "plain": "{ devices(first: 20) { edges { node { asset { name parent { name } } } } } }",
    "alias": "{ devices(first: 20) { edges { node { asset { name up: parent { name } } } } } }",
    "named fragment": """{ devices(first: 20) { edges { node { asset { ...Place } } } } }
        fragment Place on Asset { name parent { name } }""",
    "inline fragment": """{ devices(first: 20) { edges { node {
        asset { name ... on Asset { parent { name } } } } } } }""",
    "directive": """query($on: Boolean!) { devices(first: 20) { edges { node {
        asset { name parent @include(if: $on) { name } } } } } }""",
}


async def _answer(gateway: Gateway, tenant: Tenant, query: str) -> tuple[Any, dict[str, int]]:
    body = await gateway.query(query, {"on": True} if "$on" in query else None,
                               key=tenant.key, trace=True)
    assert "errors" not in body, body["errors"]
    calls: dict[str, int] = body["extensions"]["storeCalls"]
    return body["data"], calls


def _parents(data: Any) -> list[str | None]:
    parents = []
    for edge in data["devices"]["edges"]:
        asset = edge["node"]["asset"]
        parent = asset.get("parent", asset.get("up"))
        parents.append(parent["name"] if parent else None)
    return parents


@pytest.mark.parametrize("form", ASKED)
async def test_parents_ride_with_the_profiles(
    gateway: Gateway, stores: Stores, tenant: Tenant, form: str
) -> None:
    await seed_fleet(stores, tenant.id, devices=20, hours=0.1, sites=2, lines=2, machines=2)
    await gateway.query("{ devices(first: 1) { totalCount } }", key=tenant.key)  # key cached
    data, calls = await _answer(gateway, tenant, ASKED[form])
    parents = _parents(data)
    assert len(parents) == 20 and all(p is not None and p.startswith("Line ") for p in parents)
    # The page, then the profiles with their assets and the assets' parents: without the
    # lookahead the parents were a second assets round trip.
    assert calls == {"registry": 1, "assets": 1, "telemetry": 0, "shadows": 0}


async def test_without_the_parent_the_profiles_come_alone(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    await seed_fleet(stores, tenant.id, devices=6, hours=0.1, sites=1, lines=1, machines=2)
    data, calls = await _answer(
        gateway, tenant, "{ devices(first: 6) { edges { node { asset { name } } } } }")
    assert all(e["node"]["asset"]["name"].startswith("Machine ")
               for e in data["devices"]["edges"])
    assert calls["assets"] == 1


async def test_a_parent_of_another_tenant_is_never_joined(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    ours = await seed_fleet(stores, tenant.id, devices=4, hours=0.1, sites=1, lines=1,
                            machines=1)
    theirs = await seed_fleet(stores, other_tenant.id, devices=4, hours=0.1, sites=1,
                              lines=1, machines=1)
    # A row no write of the gateway makes: our machine pointing at their line.
    await stores.assets.execute("UPDATE assets SET parent_id = $2 WHERE id = $1",
                                ours.assets["Machine 1.1.1"], theirs.assets["Line 1.1"])
    data, _ = await _answer(gateway, tenant, ASKED["plain"])
    edges = data["devices"]["edges"]
    assert len(edges) == 4
    assert [e["node"]["asset"] for e in edges] == [{"name": "Machine 1.1.1", "parent": None}] * 4


FIELDS = ("id serial name type status firmwareVersion labels createdAt updatedAt lastSeenAt")


async def test_a_page_reads_the_device_fields_asked_for_however_asked(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    """The page fetches only the columns its Device fields read: each field, asked through
    an alias, a named fragment on the interface, an inline fragment or under a directive,
    answers what a lookup by id (every column) answers."""
    await seed_fleet(stores, tenant.id, devices=5, hours=0.1, sites=1, lines=1, machines=1)
    query = """query($on: Boolean!) { devices(first: 5) { edges { node {
        id  s: serial ...Named ... on Device { type labels @include(if: $on) }
        firmwareVersion @skip(if: false) createdAt updatedAt lastSeenAt status } } } }
        fragment Named on Node { ... on Device { name } }"""
    body = await gateway.query(query, {"on": True}, key=tenant.key)
    assert "errors" not in body, body["errors"]
    for edge in body["data"]["devices"]["edges"]:
        node = edge["node"]
        full = await gateway.query(f'{{ device(id: "{node["id"]}") {{ {FIELDS} }} }}',
                                   key=tenant.key)
        expected = full["data"]["device"]
        expected["s"] = expected.pop("serial")
        assert node == expected


@pytest.mark.parametrize("order", ["NAME", "LAST_SEEN_AT", "TYPE"])
async def test_pages_walk_by_a_key_they_do_not_select(
    gateway: Gateway, stores: Stores, tenant: Tenant, order: str
) -> None:
    """Cursors come from the order's key, which every page row has, selected or not."""
    fleet = await seed_fleet(stores, tenant.id, devices=7, hours=0.1, sites=1, lines=1,
                             machines=1)
    seen: list[str] = []
    after = None
    while True:
        body = await gateway.query(
            """query($after: String, $order: DeviceOrderField!) {
                 devices(first: 3, after: $after, orderBy: {field: $order}) {
                   edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }""",
            {"after": after, "order": order}, key=tenant.key)
        assert "errors" not in body, body["errors"]
        page = body["data"]["devices"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(str(d) for d in fleet.devices)
