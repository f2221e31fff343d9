"""Device filters: and/or/not, time comparisons and "never", in/notIn, name prefix and
search, metadata JSON-path comparisons, mixed across the registry and the asset DB; each
answer checked against the same condition evaluated in Python over the fleet, in the
tenant only, in a constant number of round trips. Every test runs twice: with no
metadata path declared, and with the compared paths declared
(IOTSPHERE_METADATA_RANGE_PATHS: expression indexes, paths as constants), which must
change nothing in the answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.metadata_indexes import parse
from tests.conftest import Gateway, Tenant

PAGE = """query($filter: DeviceFilter, $first: Int, $last: Int) {
  devices(filter: $filter, first: $first, last: $last, orderBy: {field: NAME}) {
    totalCount edges { node { id name } } } }"""
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
DECLARED = "specs.maxTemp:number,specs.installed:time,rating:number"


@pytest.fixture(params=["undeclared", "declared"])
async def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    if request.param == "undeclared":
        return settings
    return replace(settings, metadata_range_paths=parse(DECLARED))


@pytest.fixture(autouse=True)
async def _range_indexes(stores: Stores) -> None:
    """The declared paths' indexes, as the gateway creates them after migrating."""
    async with stores.assets.pool.acquire() as conn:
        await stores.assets.migrated(conn)


@dataclass
class D:
    id: UUID
    name: str
    serial: str
    type: str
    status: str
    last_seen: datetime | None
    asset: str | None
    metadata: dict[str, Any]


SPECS = [
    # name, serial, type, status, last seen (hours before NOW), asset, metadata
    ("Boiler 1", "B-1", "thermal", "ACTIVE", 0.1, "line1",
     {"maker": "Acme", "specs": {"maxTemp": 85, "installed": "2025-01-10T00:00:00Z"}}),
    ("boiler 2", "B-2", "thermal", "ACTIVE", 3, "line1",
     {"maker": "Acme", "specs": {"maxTemp": 120.5, "installed": "2024-05-01T00:00:00+02:00"}}),
    ("Press_7", "P-7", "vibration", "SUSPENDED", None, "line2",
     {"maker": "Globex", "specs": {"maxTemp": "hot", "installed": "soon"}}),
    ("Press 8", "P-8", "vibration", "ACTIVE", 30, "line2",
     # no offset: not a comparable time (it would depend on the session's time zone)
     {"maker": "Globex", "specs": {"maxTemp": 60, "installed": "2024-01-01T00:00:00"}}),
    ("Meter 100%", "M-1", "power", "PROVISIONED", None, None, {}),
    ("meter 2", "x'; DROP TABLE devices; --", "power", "DECOMMISSIONED", 0.5, "site2",
     {"maker": "Initech", "tags": ["a"]}),
]


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> list[D]:
    site1, line1, line2, site2 = uuid4(), uuid4(), uuid4(), uuid4()
    assets = {"site1": site1, "line1": line1, "line2": line2, "site2": site2}
    await stores.assets.insert_asset(tenant.id, site1, None, "Site 1", "site", {})
    await stores.assets.insert_asset(tenant.id, line1, site1, "Line 1", "line", {})
    await stores.assets.insert_asset(tenant.id, line2, site1, "Line 2", "line", {})
    await stores.assets.insert_asset(tenant.id, site2, None, "Site 2", "site", {})
    devices = []
    for name, serial, type_, status, hours, asset, metadata in SPECS:
        row = await stores.registry.insert_device(tenant.id, serial=serial, name=name,
                                                  type=type_, status=status)
        seen = None if hours is None else NOW - hours * HOUR
        await stores.registry.execute(
            "UPDATE devices SET last_seen_at = $2 WHERE id = $1", row["id"], seen)
        if asset is not None:
            await stores.assets.upsert_profile(tenant.id, row["id"], asset_id=assets[asset],
                                               metadata=metadata, capabilities=[])
        devices.append(D(row["id"], name, serial, type_, status, seen, asset, metadata))
    return devices


def _at(d: D, *path: str) -> Any:
    value: Any = d.metadata
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _num(d: D, *path: str) -> float | None:
    value = _at(d, *path)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _time(d: D, *path: str) -> datetime | None:
    value = _at(d, *path)
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


ISO = (NOW - HOUR).isoformat()
Case = tuple[dict[str, Any], Callable[[D], bool]]
CASES: list[Case] = [
    ({"lastSeenAt": {"lt": ISO}}, lambda d: d.last_seen is not None and d.last_seen < NOW - HOUR),
    # "devices not seen for an hour", never-seen ones included
    ({"or": [{"lastSeenAt": {"lt": ISO}}, {"lastSeenAt": {"never": True}}]},
     lambda d: d.last_seen is None or d.last_seen < NOW - HOUR),
    ({"lastSeenAt": {"never": False, "gte": ISO}},
     lambda d: d.last_seen is not None and d.last_seen >= NOW - HOUR),
    ({"not": {"lastSeenAt": {"lt": ISO}}},
     lambda d: not (d.last_seen is not None and d.last_seen < NOW - HOUR)),
    ({"createdAt": {"gt": "2000-01-01T00:00:00Z", "never": False}}, lambda d: True),
    ({"createdAt": {"never": True}}, lambda d: False),
    ({"statusNotIn": ["ACTIVE", "DECOMMISSIONED"]},
     lambda d: d.status not in ("ACTIVE", "DECOMMISSIONED")),
    ({"status": ["ACTIVE"], "typesNotIn": ["thermal"]},
     lambda d: d.status == "ACTIVE" and d.type != "thermal"),
    ({"types": ["power", "vibration"], "not": {"status": ["SUSPENDED"]}},
     lambda d: d.type in ("power", "vibration") and d.status != "SUSPENDED"),
    ({"namePrefix": "BOILER"}, lambda d: d.name.lower().startswith("boiler")),
    ({"namePrefix": "press_"}, lambda d: d.name.lower().startswith("press_")),
    ({"namePrefix": "meter 100%"}, lambda d: d.name.lower().startswith("meter 100%")),
    ({"search": "drop table"}, lambda d: "drop table" in (d.name + "|" + d.serial).lower()),
    ({"metadataPath": [{"path": ["maker"], "eq": "Acme"}]}, lambda d: _at(d, "maker") == "Acme"),
    ({"metadataPath": [{"path": ["specs", "maxTemp"], "gt": 70}]},
     lambda d: (_num(d, "specs", "maxTemp") or 0) > 70),
    ({"metadataPath": [{"path": ["specs", "maxTemp"], "gte": 60, "lte": 85}]},
     lambda d: 60 <= (_num(d, "specs", "maxTemp") or -1) <= 85),
    ({"metadataPath": [{"path": ["specs", "installed"], "timeLt": "2025-01-01T00:00:00Z"}]},
     lambda d: (_time(d, "specs", "installed") or NOW) < datetime(2025, 1, 1, tzinfo=UTC)),
    ({"metadataPath": [{"path": ["specs", "installed"], "timeGte": "2024-01-01T00:00:00Z"}]},
     lambda d: (_time(d, "specs", "installed") or datetime.min.replace(tzinfo=UTC))
     >= datetime(2024, 1, 1, tzinfo=UTC)),
    ({"metadataPath": [{"path": ["specs", "maxTemp"], "exists": True}]},
     lambda d: _at(d, "specs", "maxTemp") is not None),
    ({"metadataPath": [{"path": ["tags"], "exists": False}]}, lambda d: _at(d, "tags") is None),
    ({"metadataPath": [{"path": ["tags"], "eq": ["a"]}]}, lambda d: _at(d, "tags") == ["a"]),
    # asset DB conditions inside or/not, mixed with registry ones
    ({"or": [{"assetId": "@line2"}, {"status": ["PROVISIONED"]}]},
     lambda d: d.asset == "line2" or d.status == "PROVISIONED"),
    ({"not": {"metadata": {"maker": "Acme"}}}, lambda d: _at(d, "maker") != "Acme"),
    ({"assetId": "@site1", "not": {"or": [{"assetId": "@line1"}, {"namePrefix": "press 8"}]}},
     lambda d: d.asset in ("line1", "line2") and d.asset != "line1" and d.name != "Press 8"),
    ({"and": [{"or": [{"types": ["thermal"]}, {"lastSeenAt": {"never": True}}]},
              {"or": [{"metadataPath": [{"path": ["specs", "maxTemp"], "lt": 100}]},
                      {"status": ["PROVISIONED", "SUSPENDED"]}]}]},
     lambda d: (d.type == "thermal" or d.last_seen is None)
     and ((_num(d, "specs", "maxTemp") or 1e9) < 100
          or d.status in ("PROVISIONED", "SUSPENDED"))),
    ({"or": []}, lambda d: False),
    ({"and": []}, lambda d: True),
]


def _resolve(value: Any, assets: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, assets) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, assets) for v in value]
    if isinstance(value, str) and value.startswith("@"):
        return assets[value[1:]]
    return value


async def _asset_ids(gateway: Gateway, tenant: Tenant) -> dict[str, str]:
    body = await gateway.query("{ assets(first: 50) { edges { node { id name } } } }",
                               key=tenant.key)
    by_name = {e["node"]["name"]: e["node"]["id"] for e in body["data"]["assets"]["edges"]}
    return {"site1": by_name["Site 1"], "line1": by_name["Line 1"],
            "line2": by_name["Line 2"], "site2": by_name["Site 2"]}


async def test_every_filter_matches_its_python_twin(
    gateway: Gateway, fleet: list[D], tenant: Tenant
) -> None:
    assets = await _asset_ids(gateway, tenant)
    for filt, twin in CASES:
        expected = sorted((d for d in fleet if twin(d)), key=lambda d: (d.name, d.id))
        for paging in ({"first": 50}, {"last": 50}):
            body = await gateway.query(PAGE, {"filter": _resolve(filt, assets), **paging},
                                       key=tenant.key)
            assert "errors" not in body, (filt, body["errors"])
            conn = body["data"]["devices"]
            assert [e["node"]["name"] for e in conn["edges"]] == [d.name for d in expected], filt
            assert conn["totalCount"] == len(expected), filt


async def test_filters_stay_in_the_tenant(
    gateway: Gateway, stores: Stores, fleet: list[D], tenant: Tenant, other_tenant: Tenant
) -> None:
    # The other tenant's twin of Boiler 1: same name, metadata, status, last seen.
    row = await stores.registry.insert_device(other_tenant.id, serial="B-1", name="Boiler 1",
                                              type="thermal", status="ACTIVE")
    await stores.assets.upsert_profile(other_tenant.id, row["id"], asset_id=None,
                                       metadata=fleet[0].metadata, capabilities=[])
    assets = await _asset_ids(gateway, tenant)
    for filt, _ in CASES:
        body = await gateway.query(PAGE, {"filter": _resolve(filt, assets), "first": 50},
                                   key=other_tenant.key)
        if "errors" in body:  # only our asset ids are foreign there: empty, not an error
            raise AssertionError((filt, body["errors"]))
        names = [e["node"]["name"] for e in body["data"]["devices"]["edges"]]
        assert set(names) <= {"Boiler 1"}, filt
    mine = {str(d.id) for d in fleet}
    body = await gateway.query(PAGE, {"filter": {"or": [
        {"metadataPath": [{"path": ["maker"], "eq": "Acme"}]}, {"assetId": assets["site1"]}]},
        "first": 50}, key=other_tenant.key)
    ids = {e["node"]["id"] for e in body["data"]["devices"]["edges"]}
    assert ids == {str(row["id"])} and not ids & mine


async def test_filtered_pages_cost_constant_round_trips(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    site = uuid4()
    await stores.assets.insert_asset(tenant.id, site, None, "site", "site", {})
    ids = [uuid4() for _ in range(150)]
    await stores.registry.pool.executemany(
        "INSERT INTO devices (tenant_id, id, serial, name, type, status, last_seen_at) "
        "VALUES ($1, $2, $3, $4, 'meter', 'ACTIVE', $5)",
        [(tenant.id, i, f"S-{n}", f"m{n}", NOW - n * HOUR if n % 3 else None)
         for n, i in enumerate(ids)])
    await stores.assets.pool.executemany(
        "INSERT INTO device_profiles (tenant_id, device_id, asset_id, metadata) "
        "VALUES ($1, $2, $3, $4)",
        [(tenant.id, i, site, {"rating": n}) for n, i in enumerate(ids)])
    await gateway.query("{ __typename }", key=tenant.key)  # the key is verified and cached
    filt = {"assetId": str(site), "or": [
        {"lastSeenAt": {"never": True}},
        {"metadataPath": [{"path": ["rating"], "gte": 10}]}]}
    calls = []
    for size in (10, 100):
        body = await gateway.query(PAGE, {"filter": filt, "first": size}, key=tenant.key,
                                   trace=True)
        assert len(body["data"]["devices"]["edges"]) == size
        calls.append(body["extensions"]["storeCalls"])
    assert calls[0] == calls[1] == {"registry": 1, "assets": 1, "telemetry": 0, "shadows": 0}


async def test_bad_filters_answer_their_code(gateway: Gateway, tenant: Tenant) -> None:
    cases = [
        ({"metadataPath": [{"path": ["a"]}]}, "BAD_USER_INPUT", "filter.metadataPath[0]"),
        ({"metadataPath": [{"path": [], "gt": 1}]}, "BAD_USER_INPUT",
         "filter.metadataPath[0].path"),
        ({"or": [{"metadataPath": [{"path": ["a", ""], "eq": 1}]}]}, "BAD_USER_INPUT",
         "filter.or[0].metadataPath[0].path"),
        ({"not": {"metadata": [1]}}, "BAD_USER_INPUT", "filter.not.metadata"),
        ({"or": [{"status": ["ACTIVE"]}] * 65}, "LIMIT_EXCEEDED", "filter"),
    ]
    for filt, code, argument in cases:
        body = await gateway.query(PAGE, {"filter": filt}, key=tenant.key)
        error = body["errors"][0]
        assert error["extensions"]["code"] == code, filt
        assert error["extensions"]["argument"] == argument, filt
