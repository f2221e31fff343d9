"""registerDevice, updateDevice, setDeviceStatus and decommissionDevice end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from gateway.auth.credentials import verify_secret
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

DEVICE = """id serial name type status labels firmwareVersion metadata
    capabilities { metric unit min max description } asset { id name } shadow { version }"""
REGISTER = f"""mutation($input: RegisterDeviceInput!) {{ registerDevice(input: $input) {{
    device {{ {DEVICE} }} credential {{ id secret }} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: UpdateDeviceInput!) {{
    updateDevice(id: $id, input: $input) {{ {DEVICE} }} }}"""
STATUS = """mutation($id: ID!, $s: DeviceStatus!) {
    setDeviceStatus(id: $id, status: $s) { id status } }"""
GET = f"query($id: ID!) {{ device(id: $id) {{ {DEVICE} }} }}"
DECOMMISSION = """mutation($id: ID!) { decommissionDevice(id: $id) {
    id status shadow { version } latest { metric value } } }"""


def error(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None and len(body["errors"]) == 1, body
    err: dict[str, Any] = body["errors"][0]
    return err


async def register(gateway: Gateway, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    data = {"serial": f"SN-{uuid4().hex[:8]}", "name": "Pump", "type": "pump", **fields}
    body = await gateway.query(REGISTER, {"input": data}, key=tenant.key)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["registerDevice"]
    return payload


async def create_asset(gateway: Gateway, tenant: Tenant, name: str) -> str:
    body = await gateway.query(
        "mutation($n: String!) { createAsset(input: {name: $n, kind: \"machine\"}) { id } }",
        {"n": name}, key=tenant.key,
    )
    return str(body["data"]["createAsset"]["id"])


async def test_register_returns_the_new_state_and_stores_only_a_salted_hash(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    asset = await create_asset(gateway, tenant, "Press 1")
    payload = await register(
        gateway, tenant, serial="SN-1", name="  Press sensor ", labels=["a", "b", "a"],
        firmwareVersion="2.1.0", assetId=asset, metadata={"vendor": {"name": "Acme"}},
        capabilities=[{"metric": "temperature", "unit": "celsius", "min": -20, "max": 120}],
    )
    device, credential = payload["device"], payload["credential"]
    assert {k: v for k, v in device.items() if k != "id"} == {
        "serial": "SN-1", "name": "Press sensor", "type": "pump", "status": "PROVISIONED",
        "labels": ["a", "b"], "firmwareVersion": "2.1.0",
        "metadata": {"vendor": {"name": "Acme"}}, "asset": {"id": asset, "name": "Press 1"},
        "capabilities": [{"metric": "temperature", "unit": "celsius", "min": -20.0,
                          "max": 120.0, "description": None}],
        "shadow": None,
    }

    secret = credential["secret"]
    rows = await stores.registry.credentials_of(tenant.id, UUID(device["id"]))
    assert [str(r["id"]) for r in rows] == [credential["id"]]
    stored = rows[0]["secret_hash"]
    assert secret not in str(dict(rows[0])) and stored.startswith("scrypt$")
    assert verify_secret(secret, stored)
    assert not verify_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored)
    assert rows[0]["revoked_at"] is None

    # A second device gets its own secret and its own salt.
    other = await register(gateway, tenant)
    assert other["credential"]["secret"] != secret
    other_rows = await stores.registry.credentials_of(tenant.id, UUID(other["device"]["id"]))
    assert other_rows[0]["secret_hash"].split("$")[4] != stored.split("$")[4]

    # The same device read back later has no secret anywhere.
    body = await gateway.query(GET, {"id": device["id"]}, key=tenant.key)
    assert body["data"]["device"] == device
    assert secret not in str(body)


async def test_duplicate_serial_is_refused_within_a_tenant_only(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    await register(gateway, tenant, serial="SN-DUP")
    body = await gateway.query(
        REGISTER, {"input": {"serial": "SN-DUP", "name": "x", "type": "t"}}, key=tenant.key
    )
    err = error(body)
    assert (err["extensions"]["code"], err["extensions"]["argument"]) == (
        "BAD_USER_INPUT", "input.serial")
    assert "SN-DUP" in err["message"]
    # The refused registration left no profile behind.
    assert await stores.assets.pool.fetchval("SELECT count(*) FROM device_profiles") == 1

    theirs = await register(gateway, other_tenant, serial="SN-DUP")
    assert theirs["device"]["serial"] == "SN-DUP"
    body = await gateway.query("{ devices { totalCount } }", key=tenant.key)
    assert body["data"]["devices"]["totalCount"] == 1


REGISTER_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"name": "   "}, "BAD_USER_INPUT", "input.name"),
    ({"serial": ""}, "BAD_USER_INPUT", "input.serial"),
    ({"type": "x" * 65}, "BAD_USER_INPUT", "input.type"),
    ({"labels": ["ok", " "]}, "BAD_USER_INPUT", "input.labels"),
    ({"assetId": "not-an-id"}, "BAD_USER_INPUT", "input.assetId"),
    ({"assetId": str(uuid4())}, "NOT_FOUND", "input.assetId"),
    ({"metadata": [1, 2]}, "BAD_USER_INPUT", "input.metadata"),
    ({"metadata": "text"}, "BAD_USER_INPUT", "input.metadata"),
    ({"metadata": {"big": "x" * 70_000}}, "LIMIT_EXCEEDED", "input.metadata"),
    ({"capabilities": [{"metric": "9lives"}]}, "BAD_USER_INPUT",
     "input.capabilities[0].metric"),
    ({"capabilities": [{"metric": "ok"}, {"metric": "temp", "min": 5, "max": 1}]},
     "BAD_USER_INPUT", "input.capabilities"),
    ({"capabilities": [{"metric": "temp"}, {"metric": "temp"}]}, "BAD_USER_INPUT",
     "input.capabilities"),
]


async def test_register_validation_writes_nothing(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await create_asset(gateway, other_tenant, "Their press")
    their_asset = [({"assetId": theirs}, "NOT_FOUND", "input.assetId")]
    for fields, code, argument in REGISTER_ERRORS + their_asset:
        data = {"serial": "SN-V", "name": "n", "type": "t", **fields}
        err = error(await gateway.query(REGISTER, {"input": data}, key=tenant.key))
        assert (err["extensions"]["code"], err["extensions"]["argument"]) == (
            code, argument), fields
    assert await stores.registry.pool.fetchval("SELECT count(*) FROM devices") == 0
    assert await stores.assets.pool.fetchval("SELECT count(*) FROM device_profiles") == 0
    # min == max is a valid range, and the serial is still free.
    ok = await register(gateway, tenant, serial="SN-V",
                        capabilities=[{"metric": "t", "min": 1, "max": 1}])
    assert ok["device"]["capabilities"][0]["min"] == ok["device"]["capabilities"][0]["max"]


async def test_update_merges_metadata_and_replaces_capabilities_and_labels(
    gateway: Gateway, tenant: Tenant
) -> None:
    device = (await register(
        gateway, tenant, labels=["old"], metadata={
            "vendor": {"name": "Acme", "country": "FR"}, "ports": [1, 2, 3], "drop": 1,
        }, capabilities=[{"metric": "temperature"}, {"metric": "power"}],
    ))["device"]
    body = await gateway.query(UPDATE, {"id": device["id"], "input": {
        "name": "Renamed", "labels": ["new", "x"], "firmwareVersion": "3.0",
        "metadata": {"vendor": {"country": None, "site": "Lyon"}, "ports": [9], "drop": None,
                     "added": {"deep": True}},
        "capabilities": [{"metric": "vibration", "unit": "mm/s"}],
    }}, key=tenant.key)
    assert "errors" not in body, body
    updated = body["data"]["updateDevice"]
    assert updated["metadata"] == {
        "vendor": {"name": "Acme", "site": "Lyon"}, "ports": [9], "added": {"deep": True}
    }
    assert [c["metric"] for c in updated["capabilities"]] == ["vibration"]
    assert updated["labels"] == ["new", "x"] and updated["name"] == "Renamed"
    assert updated["firmwareVersion"] == "3.0" and updated["serial"] == device["serial"]

    # Fields the input leaves out stay as they are.
    body = await gateway.query(UPDATE, {"id": device["id"], "input": {"type": "valve"}},
                               key=tenant.key)
    assert body["data"]["updateDevice"] == {**updated, "type": "valve"}


async def test_mutations_in_one_document_see_each_others_writes(
    gateway: Gateway, tenant: Tenant
) -> None:
    device = (await register(gateway, tenant, metadata={"a": 1}))["device"]
    body = await gateway.query(
        """mutation($id: ID!) {
            one: updateDevice(id: $id, input: {metadata: {b: 2}}) { metadata }
            two: updateDevice(id: $id, input: {metadata: {a: null}, name: "N"}) {
                name metadata }
            three: setDeviceStatus(id: $id, status: ACTIVE) { status name metadata }
        }""", {"id": device["id"]}, key=tenant.key,
    )
    assert "errors" not in body, body
    assert body["data"]["one"] == {"metadata": {"a": 1, "b": 2}}
    assert body["data"]["two"] == {"name": "N", "metadata": {"b": 2}}
    assert body["data"]["three"] == {"status": "ACTIVE", "name": "N", "metadata": {"b": 2}}


UPDATE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"name": " "}, "input.name"),
    ({"labels": [""]}, "input.labels"),
    ({"metadata": [1]}, "input.metadata"),
    ({"capabilities": [{"metric": "bad metric"}]}, "input.capabilities[0].metric"),
    ({"capabilities": [{"metric": "t", "min": 2, "max": 1}]}, "input.capabilities"),
]


async def test_update_validation_changes_nothing(gateway: Gateway, tenant: Tenant) -> None:
    device = (await register(gateway, tenant, metadata={"a": 1}))["device"]
    for fields, argument in UPDATE_ERRORS:
        # A valid change rides along: it must not be written either.
        variables = {"id": device["id"], "input": {"firmwareVersion": "9", **fields}}
        err = error(await gateway.query(UPDATE, variables, key=tenant.key))
        assert (err["extensions"]["code"], err["extensions"]["argument"]) == (
            "BAD_USER_INPUT", argument), fields
    # Metadata merged past the size limit: refused before anything is written.
    await gateway.query(UPDATE, {"id": device["id"], "input": {"metadata": {"a": "x" * 40_000}}},
                        key=tenant.key)
    big = {"firmwareVersion": "9", "metadata": {"b": "y" * 40_000}}
    err = error(await gateway.query(UPDATE, {"id": device["id"], "input": big}, key=tenant.key))
    assert err["extensions"]["code"] == "LIMIT_EXCEEDED"
    body = await gateway.query(GET, {"id": device["id"]}, key=tenant.key)
    assert body["data"]["device"] == {**device, "metadata": {"a": "x" * 40_000}}
    err = error(await gateway.query(UPDATE, {"id": "nope", "input": {}}, key=tenant.key))
    assert err["extensions"]["code"] == "BAD_USER_INPUT"
    err = error(await gateway.query(UPDATE, {"id": str(uuid4()), "input": {}}, key=tenant.key))
    assert err["extensions"]["code"] == "NOT_FOUND"


ALLOWED = [
    ("PROVISIONED", "ACTIVE"), ("ACTIVE", "SUSPENDED"), ("SUSPENDED", "ACTIVE"),
    ("ACTIVE", "ACTIVE"), ("PROVISIONED", "DECOMMISSIONED"), ("ACTIVE", "DECOMMISSIONED"),
    ("SUSPENDED", "DECOMMISSIONED"),
]
REFUSED = [
    ("PROVISIONED", "SUSPENDED"), ("ACTIVE", "PROVISIONED"), ("SUSPENDED", "PROVISIONED"),
    ("DECOMMISSIONED", "ACTIVE"), ("DECOMMISSIONED", "SUSPENDED"),
    ("DECOMMISSIONED", "PROVISIONED"),
]
PATH = {"PROVISIONED": [], "ACTIVE": ["ACTIVE"], "SUSPENDED": ["ACTIVE", "SUSPENDED"],
        "DECOMMISSIONED": ["DECOMMISSIONED"]}


async def _device_in(gateway: Gateway, tenant: Tenant, status: str) -> str:
    device_id: str = (await register(gateway, tenant))["device"]["id"]
    for step in PATH[status]:
        body = await gateway.query(STATUS, {"id": device_id, "s": step}, key=tenant.key)
        assert body["data"]["setDeviceStatus"]["status"] == step, body
    return device_id


async def test_allowed_status_transitions(gateway: Gateway, tenant: Tenant) -> None:
    for start, target in ALLOWED:
        device_id = await _device_in(gateway, tenant, start)
        body = await gateway.query(STATUS, {"id": device_id, "s": target}, key=tenant.key)
        assert body["data"]["setDeviceStatus"] == {"id": device_id, "status": target}, body


async def test_refused_status_transitions(gateway: Gateway, tenant: Tenant) -> None:
    for start, target in REFUSED:
        device_id = await _device_in(gateway, tenant, start)
        body = await gateway.query(STATUS, {"id": device_id, "s": target}, key=tenant.key)
        err = error(body)
        assert err["extensions"]["code"] == "BAD_USER_INPUT", (start, target)
        assert err["extensions"]["currentStatus"] == start
        assert start in err["message"] and target in err["message"]
        body = await gateway.query("query($id: ID!) { device(id: $id) { status } }",
                                   {"id": device_id}, key=tenant.key)
        assert body["data"]["device"]["status"] == start


async def test_decommission_revokes_deletes_the_shadow_and_keeps_telemetry(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device_id = await _device_in(gateway, tenant, "ACTIVE")
    body = await gateway.query(
        """mutation($id: ID!, $t: DateTime!) {
            updateShadow(deviceId: $id, reported: {on: true}) { version }
            ingestTelemetry(readings: [{deviceId: $id, metric: "temp", time: $t, value: 4.5}])
                { accepted } }""",
        {"id": device_id, "t": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        key=tenant.key,
    )
    assert body["data"] == {"updateShadow": {"version": 1}, "ingestTelemetry": {"accepted": 1}}

    body = await gateway.query(DECOMMISSION, {"id": device_id}, key=tenant.key)
    assert body["data"]["decommissionDevice"] == {
        "id": device_id, "status": "DECOMMISSIONED", "shadow": None,
        "latest": [{"metric": "temp", "value": 4.5}],
    }
    rows = await stores.registry.credentials_of(tenant.id, UUID(device_id))
    assert rows and all(r["revoked_at"] is not None for r in rows)
    assert await stores.shadows.get_many(tenant.id, [UUID(device_id)]) == [None]
    body = await gateway.query("query($id: ID!) { shadow(deviceId: $id) { version } }",
                               {"id": device_id}, key=tenant.key)
    assert body == {"data": {"shadow": None}}


async def test_mutations_on_another_tenants_device_are_not_found(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = (await register(gateway, other_tenant, metadata={"a": 1}))["device"]
    attempts = [
        (UPDATE, {"id": theirs["id"], "input": {"name": "mine"}}),
        (UPDATE, {"id": theirs["id"], "input": {"metadata": {"a": 2}}}),
        (STATUS, {"id": theirs["id"], "s": "ACTIVE"}),
        (STATUS, {"id": theirs["id"], "s": "DECOMMISSIONED"}),
        (DECOMMISSION, {"id": theirs["id"]}),
    ]
    for query, variables in attempts:
        body = await gateway.query(query, variables, key=tenant.key)
        assert error(body)["extensions"]["code"] == "NOT_FOUND", (query, body)
    body = await gateway.query(GET, {"id": theirs["id"]}, key=other_tenant.key)
    assert body["data"]["device"] == theirs
