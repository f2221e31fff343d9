"""Every mutation, tried by every role: only admin and operator may write. (The security
issue refines roles per field; this pins down the rule that holds until then.)"""

from __future__ import annotations

from uuid import uuid4

import pytest

from gateway.auth import ROLES, hash_key, new_api_key
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

NOWHERE = str(uuid4())
MUTATIONS = {
    "registerDevice": 'registerDevice(input: {serial: "R", name: "r", type: "t"}) '
                      "{ device { id } }",
    "updateDevice": f'updateDevice(id: "{NOWHERE}", input: {{name: "x"}}) {{ id }}',
    "setDeviceStatus": f'setDeviceStatus(id: "{NOWHERE}", status: ACTIVE) {{ id }}',
    "decommissionDevice": f'decommissionDevice(id: "{NOWHERE}") {{ id }}',
    "createAsset": 'createAsset(input: {name: "a", kind: "site"}) { id }',
    "updateAsset": f'updateAsset(id: "{NOWHERE}", input: {{name: "x"}}) {{ id }}',
    "deleteAsset": f'deleteAsset(id: "{NOWHERE}")',
    "attachDevice": f'attachDevice(deviceId: "{NOWHERE}", assetId: "{NOWHERE}") {{ id }}',
    "detachDevice": f'detachDevice(deviceId: "{NOWHERE}") {{ id }}',
    "updateShadow": f'updateShadow(deviceId: "{NOWHERE}", desired: {{a: 1}}) {{ version }}',
    "deleteShadow": f'deleteShadow(deviceId: "{NOWHERE}")',
    "ingestTelemetry": f'ingestTelemetry(readings: [{{deviceId: "{NOWHERE}", metric: "t", '
                       'time: "2026-01-01T00:00:00Z", value: 1}]) { accepted rejected { reason } }',
}


@pytest.fixture
async def keys(stores: Stores, tenant: Tenant) -> dict[str, str]:
    made = {}
    for role in ROLES:
        made[role] = new_api_key()
        await stores.registry.create_api_key(tenant.id, role, hash_key(made[role]), role)
    return made


async def test_every_mutation_by_every_role(gateway: Gateway, keys: dict[str, str]) -> None:
    for name, selection in MUTATIONS.items():
        for role, key in keys.items():
            body = await gateway.query(f"mutation {{ {selection} }}", key=key)
            codes = [e["extensions"]["code"] for e in body.get("errors", [])]
            if role in ("admin", "operator"):
                assert "FORBIDDEN" not in codes, (name, role, body)
                assert codes or body["data"][name] is not None, (name, role, body)
            else:
                assert codes == ["FORBIDDEN"], (name, role, body)
                assert role in body["errors"][0]["message"]


async def test_every_role_reads(gateway: Gateway, keys: dict[str, str]) -> None:
    for key in keys.values():
        body = await gateway.query("{ devices { totalCount } assets { totalCount } }", key=key)
        assert body == {"data": {"devices": {"totalCount": 0}, "assets": {"totalCount": 0}}}
