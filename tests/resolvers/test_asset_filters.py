"""Asset filters: and/or/not over every field, kinds in/not in, name prefix, createdAt
comparisons; each answer checked against its Python twin, in the tenant only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

PAGE = """query($filter: AssetFilter) {
  assets(first: 100, filter: $filter, orderBy: {field: NAME}) { totalCount
    edges { node { name } } } }"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# name, kind, parent (by name), created (hours after T0), attributes
TREE = [
    ("North Site", "site", None, 0, {"region": "north"}),
    ("Line_1", "line", "North Site", 1, {"speed": 3}),
    ("Line 2", "line", "North Site", 2, {}),
    ("Press A", "machine", "Line_1", 3, {"vendor": "Acme"}),
    ("South Site", "site", None, 4, {"region": "south"}),
    ("press b", "machine", "South Site", 5, {"vendor": "Globex"}),
]
Twin = Callable[[dict[str, Any]], bool]
CASES: list[tuple[dict[str, Any], Twin]] = [
    ({"kinds": ["line", "machine"]}, lambda a: a["kind"] in ("line", "machine")),
    ({"kindsNotIn": ["site"]}, lambda a: a["kind"] != "site"),
    ({"namePrefix": "PRESS"}, lambda a: a["name"].lower().startswith("press")),
    ({"namePrefix": "line_"}, lambda a: a["name"].lower().startswith("line_")),
    ({"createdAt": {"gte": (T0 + timedelta(hours=3)).isoformat()}}, lambda a: a["h"] >= 3),
    ({"or": [{"roots": True}, {"attributes": {"vendor": "Acme"}}]},
     lambda a: a["parent"] is None or a["attributes"].get("vendor") == "Acme"),
    ({"not": {"or": [{"kind": "site"}, {"search": "2"}]}},
     lambda a: not (a["kind"] == "site" or "2" in a["name"])),
    ({"and": [{"kinds": ["machine", "line"]}, {"not": {"namePrefix": "press"}}]},
     lambda a: a["kind"] in ("machine", "line") and not a["name"].lower().startswith("press")),
    ({"or": []}, lambda a: False),
]


async def _tree(stores: Stores, tenant: Tenant) -> list[dict[str, Any]]:
    ids: dict[str, Any] = {}
    assets = []
    for name, kind, parent, hours, attributes in TREE:
        ids[name] = uuid4()
        await stores.assets.insert_asset(tenant.id, ids[name], ids.get(parent or ""), name,
                                         kind, attributes)
        await stores.assets.execute("UPDATE assets SET created_at = $2 WHERE id = $1",
                                    ids[name], T0 + timedelta(hours=hours))
        assets.append({"name": name, "kind": kind, "parent": parent, "h": hours,
                       "attributes": attributes})
    return assets


async def test_every_asset_filter_matches_its_python_twin(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    assets = await _tree(stores, tenant)
    await _tree(stores, other_tenant)  # the same tree elsewhere: never in our answers
    for filt, twin in CASES:
        expected = sorted(a["name"] for a in assets if twin(a))
        body = await gateway.query(PAGE, {"filter": filt}, key=tenant.key)
        assert "errors" not in body, (filt, body["errors"])
        conn = body["data"]["assets"]
        names = [e["node"]["name"] for e in conn["edges"]]
        assert sorted(names) == expected and conn["totalCount"] == len(expected), filt
    body = await gateway.query(PAGE, {"filter": {"or": [{"kind": "site"}] * 65}},
                               key=tenant.key)
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
