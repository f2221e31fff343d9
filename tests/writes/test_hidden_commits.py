"""Every cross-store mutation with its commit's answer lost (the statement commits, then
the connection is cut before the answer arrives): the client hears STORE_UNAVAILABLE,
nothing stays half-applied once the reconciler has run, and the client's retry with the
same input is safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

import gateway.app
from gateway.errors import StoreUnavailable
from gateway.jobs.reconciler import Repairs, reconcile
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.support.lost_answers import answer_lost
from tests.writes.test_write_faults import DEVICE, INGEST, REGISTER, UPDATE, register, unavailable

NOW = timedelta(0)  # the reconciler's grace: these tests run it when they choose


@pytest.fixture(autouse=True)
def no_background_reconciler(monkeypatch: pytest.MonkeyPatch) -> None:
    async def idle(*args: Any) -> None:
        return None

    monkeypatch.setattr(gateway.app, "reconcile_periodically", idle)


async def _device(gateway: Gateway, tenant: Tenant, device: str) -> dict[str, Any]:
    body = await gateway.query(DEVICE, {"id": device}, key=tenant.key)
    assert "errors" not in body, body
    state: dict[str, Any] = body["data"]["device"]
    return state


async def test_update_device_whose_registry_commit_is_unanswered(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    """The bug this replaces: the old compensation restored the old profile although the
    registry had committed the new name. Now the committed intent completes the write."""
    device = await register(gateway, tenant, "SN-1", metadata={"a": 1, "n": {"x": 1}},
                            capabilities=[{"metric": "temp"}])
    change = {"id": device, "input": {"name": "New", "metadata": {"a": None, "n": {"y": 2}},
                                      "capabilities": [{"metric": "power"}]}}
    async with answer_lost(stores.registry,
                           stores.registry.sql["update_device_with_profile"]) as lost:
        unavailable(await gateway.query(UPDATE, change, key=tenant.key), "registry")
    assert lost

    assert (await reconcile(stores, grace=NOW)).profile_intents == 1
    want = {"name": "New", "metadata": {"n": {"x": 1, "y": 2}},
            "capabilities": [{"metric": "power"}]}
    state = await _device(gateway, tenant, device)
    assert {k: state[k] for k in want} == want
    assert await stores.registry.pool.fetchval("SELECT count(*) FROM profile_intents") == 0

    # The client retries the same input: the same outcome, nothing left over.
    body = await gateway.query(UPDATE, change, key=tenant.key)
    assert body["data"]["updateDevice"] == want
    assert await reconcile(stores, grace=NOW) == Repairs()
    assert {k: (await _device(gateway, tenant, device))[k] for k in want} == want


async def test_update_device_whose_profile_commit_is_unanswered(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    """The intent applied in the asset DB but its answer lost: the reconciler finds it
    applied and forgets it without applying it twice."""
    device = await register(gateway, tenant, "SN-1", metadata={"count": 1})
    async with answer_lost(stores.assets, "COMMIT;") as lost:
        unavailable(await gateway.query(UPDATE, {"id": device, "input": {
            "metadata": {"count": 2, "tags": {"a": True}}}}, key=tenant.key), "assets")
    assert lost
    assert await stores.registry.pool.fetchval("SELECT count(*) FROM profile_intents") == 1
    assert (await _device(gateway, tenant, device))["metadata"] == {"count": 2,
                                                                    "tags": {"a": True}}
    assert (await reconcile(stores, grace=NOW)).profile_intents == 0  # applied already
    assert await stores.registry.pool.fetchval("SELECT count(*) FROM profile_intents") == 0
    assert (await _device(gateway, tenant, device))["metadata"] == {"count": 2,
                                                                    "tags": {"a": True}}


async def test_profile_intents_apply_in_commit_order(
    gateway: Gateway, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first update commits but the asset DB fails before its profile part; a second
    update of the same key finds it pending and applies both in order: the later value
    wins, and the earlier one's other keys are not lost."""
    device = await register(gateway, tenant, "SN-1", metadata={"k": 0})
    real = stores.assets.apply_profile_intent
    calls: list[int] = []

    async def fail_first(tenant_id: UUID, device_id: UUID, seq: int, **kw: Any) -> Any:
        calls.append(seq)
        if len(calls) == 1:
            raise StoreUnavailable("assets")
        return await real(tenant_id, device_id, seq, **kw)

    monkeypatch.setattr(stores.assets, "apply_profile_intent", fail_first)
    unavailable(await gateway.query(UPDATE, {"id": device, "input": {
        "metadata": {"k": 1, "first": True}}}, key=tenant.key), "assets")
    body = await gateway.query(UPDATE, {"id": device, "input": {"metadata": {"k": 2}}},
                               key=tenant.key)
    assert body["data"]["updateDevice"]["metadata"] == {"k": 2, "first": True}
    assert calls == [1, 2, 1, 2]  # 2 was blocked behind 1: drained in order
    assert await reconcile(stores, grace=NOW) == Repairs()


async def test_register_device_whose_registry_commit_is_unanswered(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    data = {"serial": "SN-1", "name": "Pump", "type": "pump", "metadata": {"k": 1}}
    async with answer_lost(stores.registry, stores.registry.sql["register_device"]) as lost:
        unavailable(await gateway.query(REGISTER, {"input": data}, key=tenant.key),
                    "registry")
    assert lost
    assert await reconcile(stores, grace=NOW) == Repairs()  # the device exists: kept whole
    body = await gateway.query("{ devices { edges { node { serial metadata } } } }",
                               key=tenant.key)
    assert body["data"]["devices"]["edges"] == [{"node": {"serial": "SN-1",
                                                          "metadata": {"k": 1}}}]
    # The retry is refused as a duplicate and leaves nothing behind.
    body = await gateway.query(REGISTER, {"input": data}, key=tenant.key)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await stores.assets.pool.fetchval("SELECT count(*) FROM device_profiles") == 1
    assert await reconcile(stores, grace=NOW) == Repairs()


async def test_decommission_whose_registry_commit_is_unanswered(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await register(gateway, tenant, "SN-1")
    await gateway.query("mutation($id: ID!) { updateShadow(deviceId: $id, reported: {on: true})"
                        " { version } }", {"id": device}, key=tenant.key)
    mutation = "mutation($id: ID!) { decommissionDevice(id: $id) { status shadow { version } } }"
    async with answer_lost(stores.registry, stores.registry.sql["decommission"]) as lost:
        unavailable(await gateway.query(mutation, {"id": device}, key=tenant.key), "registry")
    assert lost
    assert (await _device(gateway, tenant, device))["status"] == "DECOMMISSIONED"
    assert (await _device(gateway, tenant, device))["shadow"] is None  # hidden, not gone
    assert (await reconcile(stores, grace=NOW)).shadows == 1
    assert await stores.shadows.get_many(tenant.id, [UUID(device)]) == [None]

    body = await gateway.query(mutation, {"id": device}, key=tenant.key)
    assert body == {"data": {"decommissionDevice": {"status": "DECOMMISSIONED",
                                                    "shadow": None}}}
    assert (await reconcile(stores, grace=NOW)).shadows == 0


@pytest.mark.parametrize("given_twice", [False, True], ids=["copied", "duplicates skipped"])
async def test_ingest_telemetry_whose_commit_is_unanswered(
    gateway: Gateway, stores: Stores, tenant: Tenant, given_twice: bool
) -> None:
    """Both ways a batch is written (TelemetryStore.ingest_sorted): binary COPY, and for a
    batch holding a duplicate (here a reading given twice) the insert skipping them."""
    device = await register(gateway, tenant, "SN-1")
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(minutes=5), now - timedelta(minutes=1)]
    readings = [{"deviceId": device, "metric": "temp", "time": t.isoformat(), "value": 1.0}
                for t in times]
    first = readings + readings[:1] if given_twice else readings
    async with answer_lost(stores.telemetry, "COMMIT;") as lost:
        unavailable(await gateway.query(INGEST, {"r": first}, key=tenant.key),
                    "telemetry")
    assert lost
    assert await stores.telemetry.pool.fetchval("SELECT count(*) FROM readings") == 2
    assert (await _device(gateway, tenant, device))["lastSeenAt"] is None
    assert (await reconcile(stores, grace=NOW)).last_seen == 1
    state = await _device(gateway, tenant, device)
    assert datetime.fromisoformat(state["lastSeenAt"]) == times[1]

    body = await gateway.query(INGEST, {"r": readings}, key=tenant.key)
    assert body["data"]["ingestTelemetry"] == {"accepted": 0, "duplicates": 2,
                                               "rejected": []}
    assert await stores.telemetry.pool.fetchval("SELECT count(*) FROM readings") == 2
    assert await stores.telemetry.pool.fetchval("SELECT sum(n) FROM readings_5m") == 2
    assert await reconcile(stores, grace=NOW) == Repairs()
