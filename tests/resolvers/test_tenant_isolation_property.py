"""Tenant isolation as a property (hypothesis): two tenants with generated data, random
queries over the main entry points as tenant A, and nothing of tenant B in any answer.

Every name, label, serial, metadata and shadow value of a tenant carries its own marker
(and B's readings are values A never has), so a leak shows as B's marker or values in A's
response text. An id of B that A sends must answer exactly as an unknown id does: the
same response once each such id is replaced by a fresh random one (null, or NOT_FOUND
with the id A sent echoed, never FORBIDDEN and nothing of B's).

Hypothesis drives synchronous code; it runs in a worker thread and sends each request to
the gateway in the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.auth.callers import create_tenant_with_admin_key
from gateway.stores import Stores
from gateway.stores.shadows import ShadowDoc
from tests.conftest import Gateway

T = TypeVar("T")
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=8)


@dataclass
class TenantData:
    marker: str  # in every name, serial, label and value of the tenant
    key: str = ""
    devices: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # what A may search for
    values: list[float] = field(default_factory=list)  # readings and shadow numbers


@st.composite
def plants(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A tenant's plant: assets (a root and children), devices on them with labels,
    metadata, shadows and readings."""
    return draw(st.lists(st.fixed_dictionaries({
        "name": WORD, "labels": st.lists(WORD, max_size=2), "asset": st.integers(0, 2),
        "shadow": st.booleans(), "readings": st.integers(0, 4), "status": st.sampled_from(
            ["ACTIVE", "PROVISIONED", "SUSPENDED"]),
    }), min_size=1, max_size=4))


async def _create(stores: Stores, name: str, plant: list[dict[str, Any]],
                  value_base: float) -> TenantData:
    tenant_id, key = await create_tenant_with_admin_key(stores.registry, name)
    data = TenantData(marker=uuid4().hex[:10], key=key)
    m = data.marker
    root = uuid4()
    await stores.assets.insert_asset(tenant_id, root, None, f"site {m}", "site", {"tag": m})
    assets = [root]
    for n in range(2):
        child = uuid4()
        await stores.assets.insert_asset(tenant_id, child, root, f"machine{n} {m}", "machine",
                                         {"tag": m})
        assets.append(child)
    data.assets = [str(a) for a in assets]
    now = datetime.now(UTC).replace(microsecond=0)
    await stores.telemetry.ensure_partitions(now - timedelta(hours=2), now + timedelta(days=1))
    readings = []
    for n, spec in enumerate(plant):
        row = await stores.registry.insert_device(
            tenant_id, serial=f"SN-{m}-{n}", name=f"{spec['name']} {m}", type="sensor",
            status=spec["status"], firmware_version=f"fw-{m}",
            labels=[f"{label.strip() or 'x'}-{m}" for label in spec["labels"]],
        )
        device: UUID = row["id"]
        data.devices.append(str(device))
        data.words += [spec["name"].strip() or "x", f"{spec['name']} {m}", *spec["labels"]]
        await stores.assets.upsert_profile(tenant_id, device, asset_id=assets[spec["asset"]],
                                           metadata={"owner": m},
                                           capabilities=[{"metric": "temperature",
                                                          "unit": f"u-{m}"}])
        for r in range(spec["readings"]):
            value = value_base + n * 10 + r + 0.123
            data.values.append(value)
            readings.append((tenant_id, device, "temperature",
                             now - timedelta(minutes=5 * r + 1), value))
        if spec["shadow"]:
            data.values.append(value_base + 0.5 + n)
            await stores.shadows.put(tenant_id, ShadowDoc(
                device_id=device, version=1, desired={"mode": f"run-{m}"},
                reported={"mode": f"idle-{m}", "level": value_base + 0.5 + n},
                metadata={}, updated_at=now))
    if readings:
        await stores.telemetry.insert_readings(readings)
    return data


DEVICE_FIELDS = """id name serial labels status firmwareVersion metadata
  capabilities { unit } shadow { reported desired delta version }
  latest { metric value } telemetry(metric: "temperature", bucket: "5m") {
    points { value } stats { count max } unit }
  asset { id name attributes parent { name } children { name } ancestors { name }
    devices { totalCount edges { node { name } } } }"""
ASSET_FIELDS = """id name attributes parent { id name } children { id name }
  ancestors { name } devices(first: 10) { totalCount edges { node { id name labels } } }
  telemetry(metric: "temperature", bucket: "15m") { deviceCount points { value }
    stats { count max } }"""


def queries(a: TenantData, b: TenantData) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(document, variables) over the main entry points, ids and words from both tenants."""
    device_id = st.sampled_from(a.devices + b.devices)
    asset_id = st.sampled_from(a.assets + b.assets)
    word = st.sampled_from(a.words + b.words + [b.marker, a.marker])
    return st.one_of(
        st.builds(lambda i: (f"query($id: ID!) {{ device(id: $id) {{ {DEVICE_FIELDS} }} }}",
                             {"id": i}), device_id),
        st.builds(lambda i: ("query($id: ID!) { shadow(deviceId: $id) { reported version } }",
                             {"id": i}), device_id),
        st.builds(lambda i: (f"query($id: ID!) {{ asset(id: $id) {{ {ASSET_FIELDS} }} }}",
                             {"id": i}), asset_id),
        st.builds(lambda ids: ("""query($ids: [ID!]!) { telemetry(deviceIds: $ids,
            metric: "temperature") { deviceId points { value } stats { count } unit } }""",
                               {"ids": ids}), st.lists(device_id, min_size=1, max_size=3)),
        st.builds(lambda f, w: (f"""query($f: DeviceFilter) {{ devices(first: 20, filter: $f)
            {{ totalCount edges {{ node {{ {DEVICE_FIELDS} }} }} }} }}""", {"f": {f: w}}),
                  st.sampled_from(["search"]), word),
        st.builds(lambda w: ("""query($l: [String!]) { devices(filter: {labels: $l})
            { totalCount edges { node { id name labels } } } }""", {"l": [w]}), word),
        st.builds(lambda i: ("""query($a: ID) { devices(filter: {assetId: $a})
            { totalCount edges { node { id name } } } }""", {"a": i}), asset_id),
        st.builds(lambda w: (f"""query($w: String) {{ assets(filter: {{search: $w}})
            {{ totalCount edges {{ node {{ {ASSET_FIELDS} }} }} }} }}""", {"w": w}), word),
        st.builds(lambda i: ("""query($p: ID) { assets(filter: {parentId: $p})
            { totalCount edges { node { id name } } } }""", {"p": i}), asset_id),
        st.builds(lambda m: ("""query($m: JSON) { devices(filter: {metadata: $m})
            { totalCount edges { node { id metadata } } } }""", {"m": {"owner": m}}),
                  st.sampled_from([a.marker, b.marker])),
        st.just(("{ devices { totalCount } assets { totalCount } }", {})),
        st.builds(lambda i: ("""mutation($id: ID!) { updateShadow(deviceId: $id,
            desired: {probe: 1}) { version reported } }""", {"id": i}), device_id),
    )


def _replace_ids(text: str, ids: dict[str, str]) -> str:
    for old, new in ids.items():
        text = text.replace(old, new)
    return text


def _b_ids_in(variables: dict[str, Any], b: TenantData) -> list[str]:
    text = json.dumps(variables)
    return [i for i in b.devices + b.assets if i in text]


# Hundreds of generated operations: minutes on a busy 2-core machine, past the suite's
# 300 s default.
@pytest.mark.timeout(900)
async def test_tenant_a_never_sees_tenant_b(gateway: Gateway, stores: Stores) -> None:
    loop = asyncio.get_running_loop()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    counts = {"examples": 0, "queries": 0, "b_ids": 0}

    def check(a: TenantData, b: TenantData, document: str, variables: dict[str, Any]) -> None:
        body = run(gateway.query(document, variables, key=a.key))
        counts["queries"] += 1
        text = json.dumps(body)
        sent = _b_ids_in(variables, b)
        # Nothing of B: its marker, its values, its ids (except those A sent, echoed).
        assert b.marker not in text, (document, variables, body)
        for value in b.values:
            assert repr(value) not in text, (document, variables, value, body)
        for other in set(b.devices + b.assets) - set(sent):
            assert other not in text, (document, variables, other, body)
        codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}
        assert codes <= {"NOT_FOUND", "BAD_USER_INPUT", "LIMIT_EXCEEDED"}, body
        if sent:
            # Indistinguishable from unknown ids: the same answer with fresh ones.
            counts["b_ids"] += 1
            fresh = {i: str(uuid4()) for i in sent}
            unknown = run(gateway.query(
                document, json.loads(_replace_ids(json.dumps(variables), fresh)), key=a.key))
            assert _replace_ids(text, fresh) == json.dumps(unknown), (document, variables)

    @settings(max_examples=15, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(plant_a=plants(), plant_b=plants(), data=st.data())
    def property_holds(plant_a: list[dict[str, Any]], plant_b: list[dict[str, Any]],
                       data: st.DataObject) -> None:
        counts["examples"] += 1
        a = run(_create(stores, f"a-{uuid4().hex[:6]}", plant_a, 100.0))
        b = run(_create(stores, f"b-{uuid4().hex[:6]}", plant_b, 900_000.0))
        for document, variables in data.draw(st.lists(queries(a, b), min_size=25,
                                                       max_size=25)):
            check(a, b, document, variables)
        # And the other way round: B sees nothing of A.
        for document, variables in data.draw(st.lists(queries(b, a), min_size=10,
                                                       max_size=10)):
            check(b, a, document, variables)

    await asyncio.to_thread(property_holds)
    # Hypothesis may start an example it then discards (an invalid draw), so "at least".
    assert counts["examples"] >= 15 and counts["queries"] >= 15 * 35
    assert counts["b_ids"] > 0  # other tenants' ids were tried
    print(counts)

