"""Every mutation, query field and subscription, tried by every role.

admin: everything in its tenant, API keys included. operator: reads, and every write but
key management. viewer: reads only. device (here a device-bound API key; Basic and JWT
device callers are checked to get the same rules): reads itself and its shadow (and its
own telemetry), writes its reported state and its own readings; anything else, or any
other device's id, is FORBIDDEN.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
import websockets

from gateway.app import create_app
from gateway.auth.callers import ROLES, hash_key, new_api_key
from gateway.settings import Settings
from gateway.stores import Stores
from resolvers.schema import schema
from tests.conftest import AppClient, Gateway, Tenant
from tests.support.live_server import TransportWS, serve

NOWHERE = str(uuid4())
JWT_SECRET = "j" * 32
WRITERS = {"admin", "operator"}
READERS = {"admin", "operator", "viewer"}

# Each mutation with the roles that may call it and the error codes an allowed caller
# gets: none (a result), or NOT_FOUND for the unknown id admin and operator name. ``{t}`` is
# the target device: an unknown id for admin and operator (so the matrix changes nothing
# real), the device's own id for the device (so a refusal is the role's, not the id's),
# whose allowed calls succeed. ``{r}`` is the caller's role (a serial of its own).
NF = ["NOT_FOUND"]
MUTATIONS: dict[str, tuple[str, set[str], list[str]]] = {
    "registerDevice": ('registerDevice(input: {{serial: "R-{r}", name: "r", type: "t"}}) '
                       "{{ device {{ id }} }}", WRITERS, []),
    "updateDevice": ('updateDevice(id: "{t}", input: {{name: "x"}}) {{ id }}', WRITERS, NF),
    "setDeviceStatus": ('setDeviceStatus(id: "{t}", status: ACTIVE) {{ id }}', WRITERS, NF),
    "decommissionDevice": ('decommissionDevice(id: "{t}") {{ id }}', WRITERS, NF),
    "createAsset": ('createAsset(input: {{name: "a-{r}", kind: "site"}}) {{ id }}', WRITERS,
                    []),
    "updateAsset": (f'updateAsset(id: "{NOWHERE}", input: {{{{name: "x"}}}}) {{{{ id }}}}',
                    WRITERS, NF),
    "deleteAsset": (f'deleteAsset(id: "{NOWHERE}")', WRITERS, NF),
    "attachDevice": (f'attachDevice(deviceId: "{{t}}", assetId: "{NOWHERE}") {{{{ id }}}}',
                     WRITERS, NF),
    "detachDevice": ('detachDevice(deviceId: "{t}") {{ id }}', WRITERS, NF),
    "updateShadow": ('updateShadow(deviceId: "{t}", reported: {{a: 1}}) {{ version }}',
                     WRITERS | {"device"}, NF),
    "deleteShadow": ('deleteShadow(deviceId: "{t}")', WRITERS, NF),
    "ingestTelemetry": ('ingestTelemetry(readings: [{{deviceId: "{t}", metric: "t", '
                        'time: "2026-01-01T00:00:00Z", value: 1}}]) '
                        "{{ accepted rejected {{ reason }} }}", WRITERS | {"device"}, []),
    "createApiKey": ('createApiKey(input: {{name: "k", role: VIEWER}}) {{ secret }}', {"admin"},
                     []),
    "revokeApiKey": (f'revokeApiKey(id: "{NOWHERE}") {{{{ id }}}}', {"admin"}, NF),
    "revokeToken": ('revokeToken(input: {{jti: "matrix"}}) {{ id }}', {"admin"}, []),
}

# Each query field with the roles that may read it; ``{own}`` is the device's own id.
# ... and the error codes an allowed reader gets: none, or NOT_FOUND for the unknown asset.
QUERIES: dict[str, tuple[str, set[str], list[str]]] = {
    "device": ('device(id: "{own}") {{ id }}', READERS | {"device"}, []),
    "devices": ("devices {{ totalCount }}", READERS, []),
    "asset": (f'asset(id: "{NOWHERE}") {{{{ id }}}}', READERS, NF),
    "assets": ("assets {{ totalCount }}", READERS, []),
    "shadow": ('shadow(deviceId: "{own}") {{ version }}', READERS | {"device"}, []),
    "telemetry": ('telemetry(deviceIds: ["{own}"], metric: "t") {{ deviceId }}',
                  READERS | {"device"}, []),
    "apiKeys": ("apiKeys {{ totalCount }}", {"admin"}, []),
    "fleetOverview": ("fleetOverview {{ total }}", READERS, []),
    "node": ('node(id: "{own}") {{ id }}', READERS, []),
    "nodes": ('nodes(ids: ["{own}"]) {{ id }}', READERS, []),
}


@dataclass
class Fixture:
    keys: dict[str, str]  # role -> API key (the device key is bound to ``device``)
    device: str
    other_device: str
    secret: str  # the device's own credential (Basic)

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.device}:{self.secret}".encode()).decode()


async def register(gateway: Gateway, key: str, serial: str) -> tuple[str, str]:
    body = await gateway.query(
        'mutation($s: String!) { registerDevice(input: {serial: $s, name: "d", type: "t"}) '
        "{ device { id } credential { secret } } }", {"s": serial}, key=key)
    made = body["data"]["registerDevice"]
    return made["device"]["id"], made["credential"]["secret"]


@pytest.fixture
async def fx(gateway: Gateway, stores: Stores, tenant: Tenant) -> Fixture:
    device, secret = await register(gateway, tenant.key, "OWN")
    other, _ = await register(gateway, tenant.key, "OTHER")
    keys = {"admin": tenant.key}
    for role in ROLES[1:]:
        keys[role] = new_api_key()
        await stores.registry.create_api_key(
            tenant.id, role, hash_key(keys[role]), role,
            UUID(device) if role == "device" else None)
    return Fixture(keys, device, other, secret)


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def test_the_matrix_covers_every_field() -> None:
    fields = schema._schema
    assert fields.mutation_type is not None
    assert set(MUTATIONS) == set(fields.mutation_type.fields)
    assert set(QUERIES) == set(fields.query_type.fields)
    assert set(ROLES) == {"admin", "operator", "viewer", "device"}


async def test_every_mutation_by_every_role(gateway: Gateway, fx: Fixture) -> None:
    for name, (template, allowed, expected) in MUTATIONS.items():
        for role, key in fx.keys.items():
            target = NOWHERE if role in WRITERS else fx.device
            body = await gateway.query(
                f"mutation {{ {template.format(t=target, r=role)} }}", key=key)
            if role in allowed:
                # Exactly the expected outcome: any other error (INTERNAL included) fails.
                assert codes(body) == (expected if role in WRITERS else []), (name, role, body)
                if not codes(body):
                    assert body["data"][name] is not None, (name, role, body)
            else:
                assert codes(body) == ["FORBIDDEN"], (name, role, body)
                assert role in body["errors"][0]["message"], body


async def test_a_device_writes_its_reported_state_and_its_readings(
    gateway: Gateway, fx: Fixture
) -> None:
    for name in ("updateShadow", "ingestTelemetry"):
        body = await gateway.query(
            f"mutation {{ {MUTATIONS[name][0].format(t=fx.device)} }}", key=fx.keys["device"])
        assert "errors" not in body, body
    assert body["data"]["ingestTelemetry"]["accepted"] == 1


async def test_every_query_field_by_every_role(gateway: Gateway, fx: Fixture) -> None:
    for name, (template, allowed, expected) in QUERIES.items():
        for role, key in fx.keys.items():
            body = await gateway.query(f"{{ {template.format(own=fx.device)} }}", key=key)
            if role in allowed:
                # Exactly the expected outcome: any other error (INTERNAL included) fails.
                assert codes(body) == expected, (name, role, body)
                assert name in body["data"], (name, role, body)
            else:
                assert codes(body) == ["FORBIDDEN"], (name, role, body)
                assert body["data"] is None or body["data"][name] is None


OTHERS = {
    "device": 'query { device(id: "{o}") { id } }',
    "shadow": 'query { shadow(deviceId: "{o}") { version } }',
    "telemetry": 'query { telemetry(deviceIds: ["{d}", "{o}"], metric: "t") { deviceId } }',
    "updateShadow": 'mutation { updateShadow(deviceId: "{o}", reported: {a: 1}) { version } }',
    "ingestTelemetry": 'mutation { ingestTelemetry(readings: [{deviceId: "{o}", metric: "t", '
                       'time: "2026-01-01T00:00:00Z", value: 1}]) { accepted } }',
}


@pytest.mark.parametrize("how", ["device key", "basic"])
async def test_a_device_may_name_only_itself(gateway: Gateway, fx: Fixture, how: str) -> None:
    """Another device's id (existing or not), desired state and the asset tree are
    FORBIDDEN, whichever way the device authenticated."""
    headers = {"Authorization": f"Bearer {fx.keys['device']}" if how == "device key"
               else fx.basic}

    async def ask(query: str) -> dict[str, Any]:
        response = await gateway.http.post("/graphql", json={"query": query}, headers=headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    for other in (fx.other_device, NOWHERE):
        for name, template in OTHERS.items():
            body = await ask(template.replace("{o}", other).replace("{d}", fx.device))
            assert codes(body) == ["FORBIDDEN"], (name, body)
            assert other not in json.dumps(body["data"]), body
    own = await ask(f'{{ device(id: "{fx.device}") {{ id shadow {{ version }} }} }}')
    assert own == {"data": {"device": {"id": fx.device, "shadow": None}}}
    nested = await ask(f'{{ device(id: "{fx.device}") {{ id asset {{ id }} }} }}')
    assert codes(nested) == ["FORBIDDEN"]
    assert nested["data"]["device"] == {"id": fx.device, "asset": None}
    desired = await ask(f'mutation {{ updateShadow(deviceId: "{fx.device}", desired: {{a: 1}}) '
                        "{ version } }")
    assert codes(desired) == ["FORBIDDEN"] and "desired" in desired["errors"][0]["message"]


async def test_a_decommissioned_devices_key_stops_working(
    gateway: Gateway, fx: Fixture, tenant: Tenant
) -> None:
    query = f'{{ device(id: "{fx.device}") {{ id }} }}'
    assert "errors" not in await gateway.query(query, key=fx.keys["device"])
    await gateway.query(f'mutation {{ decommissionDevice(id: "{fx.device}") {{ id }} }}',
                        key=tenant.key)
    response = await gateway.post(query, key=fx.keys["device"])
    assert response.status_code == 401


async def test_every_device_credential_stops_at_decommission(
    app_client: AppClient, fx: Fixture, tenant: Tenant
) -> None:
    """Device key, Basic credential and device JWT: each worked a moment before (so each
    is cached where the gateway caches: key, verified secret, token subject) and each is
    refused at once after decommissionDevice."""
    now = int(time.time())
    token = jwt.encode({"tenant": str(tenant.id), "role": "device", "sub": fx.device,
                        "iat": now, "exp": now + 300}, JWT_SECRET, algorithm="HS256")
    credentials = {"device key": f"Bearer {fx.keys['device']}", "basic": fx.basic,
                   "jwt": f"Bearer {token}"}
    query = {"query": f'{{ device(id: "{fx.device}") {{ id }} }}'}
    async with app_client(jwt_secret=JWT_SECRET) as http:
        for how, authorization in credentials.items():
            worked = await http.post("/graphql", json=query,
                                     headers={"Authorization": authorization})
            assert worked.json() == {"data": {"device": {"id": fx.device}}}, (how, worked.text)
        body = (await http.post(
            "/graphql", json={"query": f'mutation {{ decommissionDevice(id: "{fx.device}") '
                                       "{ status } }"},
            headers={"Authorization": f"Bearer {tenant.key}"})).json()
        assert body == {"data": {"decommissionDevice": {"status": "DECOMMISSIONED"}}}, body
        for how, authorization in credentials.items():
            refused = await http.post("/graphql", json=query,
                                      headers={"Authorization": authorization})
            assert refused.status_code == 401, (how, refused.text)
            [error] = refused.json()["errors"]
            assert error["extensions"]["code"] == "UNAUTHENTICATED", (how, error)


async def test_device_keys_from_before_device_binding_are_revoked(stores: Stores,
                                                                  tenant: Tenant) -> None:
    """A device key must name its device; the registry refuses one that does not."""
    import asyncpg

    with pytest.raises(asyncpg.CheckViolationError):
        await stores.registry.create_api_key(tenant.id, "d", hash_key(new_api_key()), "device")


# -- subscriptions ------------------------------------------------------------------------

SUB = """subscription($ids: [ID!], $asset: ID) {
  shadowChanged(deviceIds: $ids, assetId: $asset) { kind deviceId } }"""


@pytest.fixture
async def address(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    async with serve(create_app(settings, stores=stores)) as addr:
        yield addr


async def first_answer(ws: TransportWS, variables: dict[str, Any]) -> dict[str, Any]:
    op = await ws.subscribe(SUB, variables)
    message = await ws.receive()
    assert message["id"] == op, message
    return message


async def test_subscriptions_by_role(address: str, gateway: Gateway, fx: Fixture) -> None:
    """Readers watch the tenant; a device only its own shadow."""
    whole: dict[str, Any] = {}
    for role, key in fx.keys.items():
        async with TransportWS.connect(address, key) as ws:
            assert (await ws.receive())["type"] == "connection_ack"
            message = await first_answer(ws, whole)
            if role in READERS:
                assert message["type"] == "next", (role, message)
                assert message["payload"]["data"]["shadowChanged"]["kind"] == "SNAPSHOT"
            else:
                assert message["type"] == "error", message
                assert [e["extensions"]["code"] for e in message["payload"]] == ["FORBIDDEN"]

    async with TransportWS.connect(address, fx.keys["device"]) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        for refused in ({"ids": [fx.other_device]}, {"ids": [fx.device, fx.other_device]},
                        {"ids": [fx.device], "asset": NOWHERE}, {"asset": NOWHERE}):
            message = await first_answer(ws, refused)
            assert message["type"] == "error", (refused, message)
            assert [e["extensions"]["code"] for e in message["payload"]] == ["FORBIDDEN"]
        message = await first_answer(ws, {"ids": [fx.device]})
        assert message["type"] == "next", message
        event = message["payload"]["data"]["shadowChanged"]
        assert event == {"kind": "SNAPSHOT", "deviceId": fx.device}


async def test_a_device_subscribes_with_its_own_credential(address: str, fx: Fixture) -> None:
    async with websockets.connect(f"ws://{address}/graphql",
                                  subprotocols=["graphql-transport-ws"]) as raw:  # type: ignore[list-item]
        ws = TransportWS(raw)
        await ws.send({"type": "connection_init", "payload": {"Authorization": fx.basic}})
        assert (await ws.receive())["type"] == "connection_ack"
        assert (await first_answer(ws, {}))["type"] == "error"
        assert (await first_answer(ws, {"ids": [fx.device]}))["type"] == "next"


async def test_bulk_ingest_by_role(gateway: Gateway, fx: Fixture) -> None:
    """POST /ingest: writers for any device, a device (key or credential) for itself only,
    a viewer not at all."""
    lines = "\n".join(json.dumps({"deviceId": d, "metric": "t", "time": "2026-01-01T00:00:00Z",
                                  "value": 1}) for d in (fx.device, fx.other_device))
    for who, authorization in (("device key", f"Bearer {fx.keys['device']}"),
                               ("basic", fx.basic), ("viewer", f"Bearer {fx.keys['viewer']}"),
                               ("operator", f"Bearer {fx.keys['operator']}")):
        response = await gateway.http.post(
            "/ingest", content=lines, headers={"Authorization": authorization,
                                               "Content-Type": "application/x-ndjson"})
        if who == "viewer":
            assert response.status_code == 403, response.text
            continue
        assert response.status_code == 200, (who, response.text)
        outcome = response.json()
        if who == "operator":  # the device's line was stored by the device already
            assert (outcome["accepted"], outcome["duplicates"]) == (1, 1), outcome
        else:
            assert [r["reason"] for r in outcome["rejected"]] == [
                "a device may only write its own readings"], outcome


async def test_bulk_ingest_answers_to_the_rule_declared_on_ingest_telemetry(
    gateway: Gateway, fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /ingest has no rule of its own: narrowing the one declared on ingestTelemetry
    narrows the route too (for the device, and for the roles)."""
    from resolvers.mutations import Mutation
    from resolvers.permissions import declared_rule

    rule = declared_rule(Mutation, "ingest_telemetry")
    line = json.dumps({"deviceId": fx.device, "metric": "t", "time": "2026-01-01T00:00:00Z",
                       "value": 1})

    async def status(authorization: str) -> int:
        response = await gateway.http.post(
            "/ingest", content=line, headers={"Authorization": authorization,
                                              "Content-Type": "application/x-ndjson"})
        return response.status_code

    assert await status(f"Bearer {fx.keys['operator']}") == 200
    monkeypatch.setattr(rule, "roles", frozenset({"admin"}))
    monkeypatch.setattr(rule, "device", None)
    assert await status(f"Bearer {fx.keys['operator']}") == 403
    assert await status(fx.basic) == 403
    assert await status(f"Bearer {fx.keys['admin']}") == 200


TELEMETRY_SUB = """subscription($ids: [ID!]!) {
  telemetryChanged(deviceIds: $ids) { kind deviceId } }"""


async def test_telemetry_subscription_by_role(address: str, fx: Fixture) -> None:
    """Readers watch any device of the tenant; a device only its own readings."""
    for role, key in fx.keys.items():
        async with TransportWS.connect(address, key) as ws:
            assert (await ws.receive())["type"] == "connection_ack"
            for ids in ([fx.other_device], [fx.device]):
                op = await ws.subscribe(TELEMETRY_SUB, {"ids": ids})
                message = await ws.receive()
                assert message["id"] == op, message
                if role in READERS or (role == "device" and ids == [fx.device]):
                    assert message["type"] == "next", (role, ids, message)
                    assert message["payload"]["data"]["telemetryChanged"] == {
                        "kind": "SNAPSHOT", "deviceId": ids[0]}
                else:
                    assert message["type"] == "error", (role, ids, message)
                    assert [e["extensions"]["code"] for e in message["payload"]] == [
                        "FORBIDDEN"]
