"""Multi-store mutations with a store failing mid-write: the caller sees STORE_UNAVAILABLE
(or success, where the leftover is invisible), no half-state shows, the gateway keeps
serving, and the reconciler repairs what was left behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

import gateway.app
from gateway.errors import StoreUnavailable
from gateway.jobs.reconciler import Repairs, reconcile
from gateway.stores import Stores
from gateway.stores.shadows import version_key
from tests.conftest import Gateway, Tenant

REGISTER = """mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) {
    device { id metadata } } }"""
UPDATE = """mutation($id: ID!, $input: UpdateDeviceInput!) { updateDevice(id: $id, input: $input)
    { name metadata capabilities { metric } } }"""
DEVICE = """query($id: ID!) { device(id: $id) { name status metadata capabilities { metric }
    lastSeenAt latest { time } shadow { version } } }"""
INGEST = """mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r) {
    accepted duplicates rejected { index } } }"""


@pytest.fixture(autouse=True)
def no_background_reconciler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app reconciles once at start-up; these tests run the reconciler themselves, at a
    known point, so a background pass must not repair a leftover before they look at it."""
    async def idle(*args: Any) -> None:
        return None

    monkeypatch.setattr(gateway.app, "reconcile_periodically", idle)


def failing(store: str, seen: list[Any] | None = None) -> Any:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        if seen is not None:
            seen.append(args)
        raise StoreUnavailable(store)
    return fail


def unavailable(body: dict[str, Any], store: str) -> None:
    assert body["data"] is None and len(body["errors"]) == 1, body
    assert body["errors"][0]["extensions"] == {"code": "STORE_UNAVAILABLE", "store": store}


async def count(stores: Stores, store: str, table: str) -> int:
    n: int = await getattr(stores, store).pool.fetchval(f"SELECT count(*) FROM {table}")
    return n


async def register(gateway: Gateway, tenant: Tenant, serial: str, **fields: Any) -> str:
    data = {"serial": serial, "name": "Pump", "type": "pump", **fields}
    body = await gateway.query(REGISTER, {"input": data}, key=tenant.key)
    assert "errors" not in body, body
    return str(body["data"]["registerDevice"]["device"]["id"])


async def test_register_fails_at_the_registry_and_the_reconciler_removes_the_profile(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure without an answer may have hidden a commit, so the profile is not deleted
    at once (the statement could still commit after a check): it is invisible, and the
    reconciler deletes it once older than its grace with no registry row."""
    seen: list[Any] = []
    monkeypatch.setattr(stores.registry, "register_device", failing("registry", seen))
    data = {"serial": "SN-1", "name": "Pump", "type": "pump", "metadata": {"k": 1}}
    unavailable(await gateway.query(REGISTER, {"input": data}, key=tenant.key), "registry")
    (_, device_id), = seen
    assert await count(stores, "registry", "devices") == 0

    monkeypatch.undo()
    body = await gateway.query("{ devices(filter: {metadata: {k: 1}}) { totalCount } }",
                               key=tenant.key)
    assert body["data"]["devices"]["totalCount"] == 0
    assert await register(gateway, tenant, "SN-1") != str(device_id)
    assert await reconcile(stores, grace=timedelta(0)) == Repairs(orphan_profiles=1)
    assert await stores.assets.profiles_by_device(tenant.id, [device_id]) == [None]


async def test_a_commit_hidden_by_a_timeout_keeps_its_profile(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = stores.registry.register_device

    async def commit_then_time_out(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)
        raise StoreUnavailable("registry")

    monkeypatch.setattr(stores.registry, "register_device", commit_then_time_out)
    data = {"serial": "SN-1", "name": "Pump", "type": "pump", "metadata": {"k": 1}}
    unavailable(await gateway.query(REGISTER, {"input": data}, key=tenant.key), "registry")
    monkeypatch.undo()
    # The device did get registered, so it must be whole: its profile was not compensated.
    body = await gateway.query("{ devices { edges { node { serial metadata } } } }",
                               key=tenant.key)
    assert body["data"]["devices"]["edges"] == [{"node": {"serial": "SN-1", "metadata": {"k": 1}}}]
    body = await gateway.query(REGISTER, {"input": data}, key=tenant.key)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await reconcile(stores, grace=timedelta(0)) == Repairs()


async def test_register_fails_before_anything_is_written(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stores.assets, "upsert_profile", failing("assets"))
    data = {"serial": "SN-1", "name": "Pump", "type": "pump"}
    unavailable(await gateway.query(REGISTER, {"input": data}, key=tenant.key), "assets")
    assert await count(stores, "registry", "devices") == 0
    assert await count(stores, "assets", "device_profiles") == 0


async def test_failed_compensation_leaves_an_invisible_orphan_for_the_reconciler(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = await gateway.query('mutation { createAsset(input: {name: "Press", kind: "m"}) { id } }',
                               key=tenant.key)
    asset = body["data"]["createAsset"]["id"]
    seen: list[Any] = []
    monkeypatch.setattr(stores.registry, "register_device", failing("registry", seen))
    monkeypatch.setattr(stores.assets, "delete_profiles", failing("assets"))
    data = {"serial": "SN-1", "name": "Pump", "type": "pump", "assetId": asset,
            "metadata": {"vendor": "Acme"}}
    unavailable(await gateway.query(REGISTER, {"input": data}, key=tenant.key), "registry")
    (_, orphan), = seen
    assert (await stores.assets.profiles_by_device(tenant.id, [orphan]))[0] is not None

    monkeypatch.undo()
    body = await gateway.query(
        """query($id: ID!, $a: ID!) { device(id: $id) { id }
            devices { totalCount } byMeta: devices(filter: {metadata: {vendor: "Acme"}}) {
                totalCount edges { node { id } } }
            asset(id: $a) { devices { totalCount } } }""",
        {"id": str(orphan), "a": asset}, key=tenant.key,
    )
    assert body["data"] == {"device": None, "devices": {"totalCount": 0},
                            "byMeta": {"totalCount": 0, "edges": []},
                            "asset": {"devices": {"totalCount": 0}}}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    # The gateway keeps serving, the same serial included; the new device is not the orphan.
    mine = await register(gateway, tenant, "SN-1", metadata={"vendor": "Acme"})

    # Younger than the default grace, it could be a registration in flight: kept.
    assert (await reconcile(stores)).orphan_profiles == 0
    assert (await reconcile(stores, grace=timedelta(0))).orphan_profiles == 1
    gone, kept = await stores.assets.profiles_by_device(tenant.id, [orphan, UUID(mine)])
    assert gone is None and kept is not None and kept["metadata"] == {"vendor": "Acme"}
    assert (await reconcile(stores, grace=timedelta(0))).orphan_profiles == 0
    assert await count(stores, "assets", "device_profiles") == 1


async def test_update_fails_at_the_registry_and_nothing_changes(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry is the commit point and the profile part is applied only after it:
    a registry that refuses leaves both stores as they were, with nothing to undo."""
    device = await register(gateway, tenant, "SN-1", metadata={"a": 1, "n": {"x": 1}},
                            capabilities=[{"metric": "temp"}])
    before = await gateway.query(DEVICE, {"id": device}, key=tenant.key)
    monkeypatch.setattr(stores.registry, "update_device_with_profile", failing("registry"))
    body = await gateway.query(UPDATE, {"id": device, "input": {
        "name": "New", "metadata": {"a": None, "n": {"y": 2}},
        "capabilities": [{"metric": "power"}]}}, key=tenant.key)
    unavailable(body, "registry")
    assert await gateway.query(DEVICE, {"id": device}, key=tenant.key) == before

    monkeypatch.undo()
    body = await gateway.query(UPDATE, {"id": device, "input": {"name": "New",
                                                                 "metadata": {"a": 2}}},
                               key=tenant.key)
    assert body["data"]["updateDevice"]["metadata"] == {"a": 2, "n": {"x": 1}}
    assert await reconcile(stores, grace=timedelta(0)) == Repairs()


async def test_update_with_the_asset_db_failing_after_the_commit_is_completed_later(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await register(gateway, tenant, "SN-1", metadata={"a": 1})
    monkeypatch.setattr(stores.assets, "apply_profile_intent", failing("assets"))
    unavailable(await gateway.query(UPDATE, {"id": device, "input": {
        "name": "New", "metadata": {"a": 2}}}, key=tenant.key), "assets")
    monkeypatch.undo()
    assert (await reconcile(stores, grace=timedelta(0))).profile_intents == 1
    state = (await gateway.query(DEVICE, {"id": device}, key=tenant.key))["data"]["device"]
    assert (state["name"], state["metadata"]) == ("New", {"a": 2})


async def test_decommission_with_the_shadow_store_failing(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await register(gateway, tenant, "SN-1")
    body = await gateway.query(
        """mutation($id: ID!) { setDeviceStatus(id: $id, status: ACTIVE) { status }
            a: updateShadow(deviceId: $id, reported: {on: true}) { version }
            b: updateShadow(deviceId: $id, desired: {on: false}) { version } }""",
        {"id": device}, key=tenant.key,
    )
    assert body["data"]["b"] == {"version": 2}
    monkeypatch.setattr(stores.shadows, "delete", failing("shadows"))
    body = await gateway.query(
        "mutation($id: ID!) { decommissionDevice(id: $id) { status shadow { version } } }",
        {"id": device}, key=tenant.key,
    )
    assert body == {"data": {"decommissionDevice": {"status": "DECOMMISSIONED", "shadow": None}}}
    monkeypatch.undo()

    leftover = await stores.shadows.get_many(tenant.id, [UUID(device)])
    assert leftover[0] is not None and leftover[0].version == 2
    body = await gateway.query(
        """query($id: ID!) { shadow(deviceId: $id) { version } device(id: $id) { shadow {
            version } } devices { edges { node { shadow { version } } } } }""",
        {"id": device}, key=tenant.key,
    )
    assert body == {"data": {"shadow": None, "device": {"shadow": None},
                             "devices": {"edges": [{"node": {"shadow": None}}]}}}
    creds = await stores.registry.credentials_of(tenant.id, UUID(device))
    assert creds and all(c["revoked_at"] is not None for c in creds)

    assert (await reconcile(stores, grace=timedelta(0))).shadows == 1
    assert await stores.shadows.get_many(tenant.id, [UUID(device)]) == [None]
    assert await stores.shadows.client.get(version_key(tenant.id, UUID(device))) == b"2"
    assert (await reconcile(stores, grace=timedelta(0))).shadows == 0


async def test_ingest_with_the_registry_failing_after_the_readings(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await register(gateway, tenant, "SN-1")
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(minutes=5), now - timedelta(minutes=1)]
    readings = [{"deviceId": device, "metric": "temp", "time": t.isoformat(), "value": 1.0}
                for t in times]
    monkeypatch.setattr(stores.registry, "touch_last_seen", failing("registry"))
    body = await gateway.query(INGEST, {"r": readings}, key=tenant.key)
    assert body == {"data": {"ingestTelemetry": {"accepted": 2, "duplicates": 0,
                                                 "rejected": []}}}
    monkeypatch.undo()
    state = (await gateway.query(DEVICE, {"id": device}, key=tenant.key))["data"]["device"]
    assert state["lastSeenAt"] is None
    assert [datetime.fromisoformat(r["time"]) for r in state["latest"]] == [times[1]]

    assert (await reconcile(stores, grace=timedelta(0))).last_seen == 1
    state = (await gateway.query(DEVICE, {"id": device}, key=tenant.key))["data"]["device"]
    assert datetime.fromisoformat(state["lastSeenAt"]) == times[1]
    assert (await reconcile(stores, grace=timedelta(0))).last_seen == 0


async def test_ingest_with_the_telemetry_store_failing(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await register(gateway, tenant, "SN-1")
    reading = {"deviceId": device, "metric": "temp", "value": 1.0,
               "time": datetime.now(UTC).isoformat()}
    monkeypatch.setattr(stores.telemetry, "ingest_sorted", failing("telemetry"))
    unavailable(await gateway.query(INGEST, {"r": [reading]}, key=tenant.key), "telemetry")
    monkeypatch.undo()
    state = (await gateway.query(DEVICE, {"id": device}, key=tenant.key))["data"]["device"]
    assert state["lastSeenAt"] is None and state["latest"] == []
    body = await gateway.query(INGEST, {"r": [reading]}, key=tenant.key)
    assert body["data"]["ingestTelemetry"]["accepted"] == 1
