"""orderBy and both-way paging on devices, assets and Asset.devices: every order walked
forward and backward gives the same rows as sorting in Python, pageInfo follows the Relay
spec, cursors are bound to their order, and a page costs the same round trips at 10 or
100 rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

DEVICES = """query($first: Int, $after: String, $last: Int, $before: String,
                   $orderBy: DeviceOrder, $filter: DeviceFilter) {
  devices(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy,
          filter: $filter) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
ASSETS = """query($first: Int, $after: String, $last: Int, $before: String,
                  $orderBy: AssetOrder) {
  assets(first: $first, after: $after, last: $last, before: $before, orderBy: $orderBy) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# name, type, status, created (minutes after T0), last seen (minutes, None = never).
# Equal keys on purpose in every column: the id must break the ties.
SPECS = [
    ("delta", "meter", "ACTIVE", 0, 5),
    ("alpha", "pump", "SUSPENDED", 1, None),
    ("delta", "valve", "ACTIVE", 1, 5),
    ("bravo", "meter", "PROVISIONED", 2, 1),
    ("alpha", "pump", "ACTIVE", 3, None),
    ("echo", "valve", "DECOMMISSIONED", 3, 9),
    ("charlie", "meter", "ACTIVE", 4, 1),
]
FIELDS = {"NAME": "name", "TYPE": "type", "STATUS": "status", "CREATED_AT": "created_at",
          "LAST_SEEN_AT": "last_seen_at"}


async def _fleet(stores: Stores, tenant: Tenant, prefix: str = "D") -> list[dict[str, Any]]:
    rows = []
    for n, (name, type_, status, created, seen) in enumerate(SPECS):
        row = await stores.registry.insert_device(
            tenant.id, serial=f"{prefix}-{n}", name=name, type=type_, status=status)
        rows.append({"id": row["id"], "name": name, "type": type_, "status": status,
                     "created_at": T0 + timedelta(minutes=created),
                     "last_seen_at": None if seen is None else T0 + timedelta(minutes=seen)})
    await stores.registry.pool.executemany(
        "UPDATE devices SET created_at = $2, last_seen_at = $3 WHERE id = $1",
        [(r["id"], r["created_at"], r["last_seen_at"]) for r in rows])
    return rows


def _expected(rows: list[dict[str, Any]], column: str, descending: bool) -> list[str]:
    def key(r: dict[str, Any]) -> tuple[Any, UUID]:
        value = r[column]
        if column == "last_seen_at" and value is None:
            value = datetime.min.replace(tzinfo=UTC)  # never seen sorts earliest
        return value, r["id"]
    return [str(r["id"]) for r in sorted(rows, key=key, reverse=descending)]


def _ok(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    conn: dict[str, Any] = body["data"][field]
    return conn


async def _walk(gateway: Gateway, query: str, field: str, key: str, order: dict[str, str],
                backward: bool, size: int = 2) -> list[str]:
    """Every page in turn (forward with first/after, backward with last/before), checking
    each page's pageInfo on the way; the ids in the connection's order."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        variables: dict[str, Any] = {"orderBy": order}
        variables.update({"last": size, "before": cursor} if backward
                         else {"first": size, "after": cursor})
        conn = _ok(await gateway.query(query, variables, key=key), field)
        ids = [e["node"]["id"] for e in conn["edges"]]
        info = conn["pageInfo"]
        more, beyond = ((info["hasPreviousPage"], info["hasNextPage"]) if backward
                        else (info["hasNextPage"], info["hasPreviousPage"]))
        assert beyond == (cursor is not None), (order, backward, info)
        assert info["startCursor"] == (conn["edges"][0]["cursor"] if ids else None)
        assert info["endCursor"] == (conn["edges"][-1]["cursor"] if ids else None)
        pages.append(ids)
        if not more:
            break
        assert len(ids) == size
        cursor = info["startCursor"] if backward else info["endCursor"]
    if backward:
        pages.reverse()
    return [i for page in pages for i in page]


async def test_every_device_order_walks_the_same_rows_both_ways(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    rows = await _fleet(stores, tenant)
    for field, column in FIELDS.items():
        for direction in ("ASC", "DESC"):
            order = {"field": field, "direction": direction}
            expected = _expected(rows, column, direction == "DESC")
            for backward in (False, True):
                got = await _walk(gateway, DEVICES, "devices", tenant.key, order, backward)
                assert got == expected, (order, backward)


async def test_a_forward_cursor_pages_back_and_first_last_together(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    rows = await _fleet(stores, tenant)
    order = {"field": "NAME", "direction": "DESC"}
    expected = _expected(rows, "name", True)
    middle = _ok(await gateway.query(DEVICES, {"orderBy": order, "first": 3, "after": None},
                                     key=tenant.key), "devices")
    after_third = middle["pageInfo"]["endCursor"]
    back = _ok(await gateway.query(DEVICES, {"orderBy": order, "last": 2,
                                             "before": after_third}, key=tenant.key), "devices")
    assert [e["node"]["id"] for e in back["edges"]] == expected[0:2]
    # Rows exist at and after `before` (the spec's optional flag, which we compute).
    assert back["pageInfo"] == {**back["pageInfo"], "hasNextPage": True,
                                "hasPreviousPage": False}
    # Between two cursors, from both ends.
    start = middle["edges"][0]["cursor"]
    between = {"orderBy": order, "after": start, "before": after_third}
    fwd = _ok(await gateway.query(DEVICES, {**between, "first": 5}, key=tenant.key), "devices")
    bwd = _ok(await gateway.query(DEVICES, {**between, "last": 5}, key=tenant.key), "devices")
    assert [e["node"]["id"] for e in fwd["edges"]] == expected[1:2]
    assert [e["node"]["id"] for e in bwd["edges"]] == expected[1:2]
    both = _ok(await gateway.query(DEVICES, {"orderBy": order, "first": 4, "last": 2},
                                   key=tenant.key), "devices")
    assert [e["node"]["id"] for e in both["edges"]] == expected[2:4]
    assert both["pageInfo"]["hasPreviousPage"] and both["pageInfo"]["hasNextPage"]
    assert both["totalCount"] == len(rows)


async def test_cursors_belong_to_their_order(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    await _fleet(stores, tenant)
    by_name = _ok(await gateway.query(DEVICES, {"orderBy": {"field": "NAME"}, "first": 1},
                                      key=tenant.key), "devices")
    default = _ok(await gateway.query(DEVICES, {"first": 1}, key=tenant.key), "devices")
    cases = [
        ({"orderBy": {"field": "NAME", "direction": "DESC"},
          "after": by_name["pageInfo"]["endCursor"]}, "after"),
        ({"orderBy": {"field": "TYPE"}, "before": by_name["pageInfo"]["endCursor"],
          "last": 1}, "before"),
        ({"orderBy": {"field": "NAME"}, "after": default["pageInfo"]["endCursor"]}, "after"),
        ({"after": by_name["pageInfo"]["endCursor"]}, "after"),
        ({"before": "not-a-cursor", "last": 1}, "before"),
    ]
    for variables, argument in cases:
        body = await gateway.query(DEVICES, {"first": None, **variables}, key=tenant.key)
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", variables
        assert error["extensions"]["argument"] == argument
    for variables, code in (({"last": 5000}, "LIMIT_EXCEEDED"), ({"last": -1},
                                                                  "BAD_USER_INPUT")):
        body = await gateway.query(DEVICES, variables, key=tenant.key)
        assert body["errors"][0]["extensions"]["code"] == code


async def test_assets_order_both_ways(gateway: Gateway, stores: Stores, tenant: Tenant) -> None:
    specs = [("plant b", "site"), ("line a", "line"), ("plant a", "site"), ("line a", "line"),
             ("machine", "machine")]
    rows = []
    for name, kind in specs:
        asset_id = uuid4()
        row = await stores.assets.insert_asset(tenant.id, asset_id, None, name, kind, {})
        rows.append(dict(row))
    for field, column in (("NAME", "name"), ("KIND", "kind"), ("CREATED_AT", "created_at")):
        for direction in ("ASC", "DESC"):
            order = {"field": field, "direction": direction}
            expected = _expected(rows, column, direction == "DESC")
            for backward in (False, True):
                got = await _walk(gateway, ASSETS, "assets", tenant.key, order, backward)
                assert got == expected, (order, backward)


NESTED = """query($orderBy: DeviceOrder, $last: Int, $first: Int, $filter: DeviceFilter) {
  assets(first: 10, orderBy: {field: NAME}) { edges { node { name
    devices(last: $last, first: $first, orderBy: $orderBy, filter: $filter) {
      totalCount edges { node { id } } pageInfo { hasNextPage hasPreviousPage } } } } }
}"""


async def test_asset_devices_order_and_page_backward_in_two_round_trips(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    rows = await _fleet(stores, tenant)
    site_a, site_b = uuid4(), uuid4()
    await stores.assets.insert_asset(tenant.id, site_a, None, "a", "site", {})
    await stores.assets.insert_asset(tenant.id, site_b, None, "b", "site", {})
    for n, row in enumerate(rows):
        await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=(site_a, site_b)[n % 2],
                                           metadata={}, capabilities=[])
    await gateway.query("{ __typename }", key=tenant.key)  # the key is verified and cached
    body = await gateway.query(NESTED, {"orderBy": {"field": "LAST_SEEN_AT",
                                                    "direction": "DESC"}, "last": 2},
                               key=tenant.key, trace=True)
    sites = [e["node"] for e in _ok(body, "assets")["edges"]]
    for n, site in enumerate(sites):
        mine = [r for i, r in enumerate(rows) if i % 2 == n]
        expected = _expected(mine, "last_seen_at", True)
        conn = site["devices"]
        assert [e["node"]["id"] for e in conn["edges"]] == expected[-2:]
        assert conn["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True}
        assert conn["totalCount"] == len(mine)
    # Every page; the assets page + every subtree.
    assert body["extensions"]["storeCalls"] == {
        "registry": 1, "assets": 2, "telemetry": 0, "shadows": 0}


@pytest.mark.parametrize("field", ["devices", "nested"])
async def test_round_trips_equal_for_10_and_100_rows(
    gateway: Gateway, stores: Stores, tenant: Tenant, field: str
) -> None:
    site = uuid4()
    await stores.assets.insert_asset(tenant.id, site, None, "site", "site", {})
    ids = [uuid4() for _ in range(150)]
    await stores.registry.pool.executemany(
        "INSERT INTO devices (tenant_id, id, serial, name, type, status, last_seen_at) "
        "VALUES ($1, $2, $3, $4, 'meter', $5, $6)",
        [(tenant.id, i, f"S-{n}", f"meter {n % 37}", ("ACTIVE", "SUSPENDED")[n % 5 == 0],
          T0 + timedelta(seconds=n % 11)) for n, i in enumerate(ids)])
    await stores.assets.pool.executemany(
        "INSERT INTO device_profiles (tenant_id, device_id, asset_id) VALUES ($1, $2, $3)",
        [(tenant.id, i, site) for i in ids])
    await gateway.query("{ __typename }", key=tenant.key)  # the key is verified and cached
    calls = []
    for size in (10, 100):
        for paging in ({"first": size}, {"last": size}):
            variables = {**paging, "orderBy": {"field": "LAST_SEEN_AT", "direction": "DESC"},
                         "filter": {"status": ["ACTIVE"]}}
            query = DEVICES if field == "devices" else NESTED
            body = await gateway.query(query, variables, key=tenant.key, trace=True)
            assert "errors" not in body, body["errors"]
            if field == "devices":
                assert len(body["data"]["devices"]["edges"]) == size
            else:
                edges = body["data"]["assets"]["edges"][0]["node"]["devices"]["edges"]
                assert len(edges) == size
            calls.append(body["extensions"]["storeCalls"])
    assert all(c == calls[0] for c in calls), calls
    assert calls[0]["registry"] == 1


async def test_ordered_pages_stay_in_the_tenant(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await _fleet(stores, tenant, "A")
    theirs = await _fleet(stores, other_tenant, "B")
    order = {"field": "NAME", "direction": "ASC"}
    for who, rows in ((tenant, mine), (other_tenant, theirs)):
        for backward in (False, True):
            got = await _walk(gateway, DEVICES, "devices", who.key, order, backward, size=3)
            assert got == _expected(rows, "name", False)
    # A cursor made by one tenant pages the other's devices only.
    page = _ok(await gateway.query(DEVICES, {"orderBy": order, "first": 2}, key=tenant.key),
               "devices")
    other = _ok(await gateway.query(DEVICES, {"orderBy": order, "first": 50,
                                              "after": page["pageInfo"]["endCursor"]},
                                    key=other_tenant.key), "devices")
    assert {e["node"]["id"] for e in other["edges"]} <= {str(r["id"]) for r in theirs}
    assert other["totalCount"] == len(theirs)
