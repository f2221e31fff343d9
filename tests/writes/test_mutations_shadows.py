"""updateShadow and deleteShadow: AWS-style merge, metadata, delta, versions and limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from gateway.stores import Stores
from gateway.stores.shadows import ShadowDoc
from tests.conftest import Gateway, Tenant

SHADOW = "deviceId version desired reported delta metadata updatedAt"
UPDATE = f"""mutation($d: ID!, $des: JSON, $rep: JSON, $v: Int) {{
    updateShadow(deviceId: $d, desired: $des, reported: $rep, expectedVersion: $v) {{
        {SHADOW} }} }}"""
DELETE = "mutation($d: ID!) { deleteShadow(deviceId: $d) }"
GET = f"query($d: ID!) {{ shadow(deviceId: $d) {{ {SHADOW} }} }}"
OLD = datetime(2020, 1, 1, tzinfo=UTC)
OLD_TS = int(OLD.timestamp())


async def new_device(stores: Stores, tenant: Tenant, status: str = "ACTIVE") -> str:
    row = await stores.registry.insert_device(
        tenant.id, serial=f"SN-{uuid4().hex[:8]}", name="Thermostat", type="t", status=status
    )
    return str(row["id"])


async def update(gateway: Gateway, tenant: Tenant, device: str, **args: Any) -> dict[str, Any]:
    body = await gateway.query(UPDATE, {"d": device, **args}, key=tenant.key)
    assert "errors" not in body, body
    shadow: dict[str, Any] = body["data"]["updateShadow"]
    return shadow


def refused(body: dict[str, Any], code: str) -> dict[str, Any]:
    assert body["data"] is None and len(body["errors"]) == 1, body
    err: dict[str, Any] = body["errors"][0]
    assert err["extensions"]["code"] == code, err
    return err


def stamp(shadow: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(shadow["updatedAt"]).timestamp())


async def test_merge_metadata_version_and_delta(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await new_device(stores, tenant)
    # An existing shadow, last written in 2020, so new stamps are told apart from old ones.
    old = {"mode": {"timestamp": OLD_TS}, "cfg": {"rate": {"timestamp": OLD_TS},
                                                   "gain": {"timestamp": OLD_TS}}}
    await stores.shadows.put(tenant.id, ShadowDoc(
        UUID(device), 4, desired={"mode": "run", "cfg": {"rate": 1, "gain": 2}},
        reported={}, metadata={"desired": old}, updated_at=OLD,
    ))
    s5 = await update(gateway, tenant, device, des={"cfg": {"gain": None, "bias": 0.5},
                                                    "list": [1, 2]})
    now = stamp(s5)
    assert s5["deviceId"] == device and s5["version"] == 5 and now > OLD_TS
    assert s5["desired"] == {"mode": "run", "cfg": {"rate": 1, "bias": 0.5}, "list": [1, 2]}
    assert s5["metadata"] == {"desired": {
        "mode": {"timestamp": OLD_TS}, "list": {"timestamp": now},
        "cfg": {"rate": {"timestamp": OLD_TS}, "bias": {"timestamp": now}},
    }}
    assert s5["reported"] == {} and s5["delta"] == s5["desired"]

    s6 = await update(gateway, tenant, device, rep={
        "mode": "run", "cfg": {"rate": 1.0, "bias": 0.4}, "list": [2, 1], "uptime": 7})
    assert s6["version"] == 6 and s6["desired"] == s5["desired"]
    assert s6["delta"] == {"cfg": {"bias": 0.5}, "list": [1, 2]}
    assert s6["metadata"]["desired"] == s5["metadata"]["desired"]
    assert s6["metadata"]["reported"]["cfg"] == {"rate": {"timestamp": stamp(s6)},
                                                 "bias": {"timestamp": stamp(s6)}}
    assert s6["updatedAt"] >= s5["updatedAt"]

    # Arrays are replaced whole; null deletes the key and its metadata; both sides at once.
    s7 = await update(gateway, tenant, device, des={"list": [2]}, rep={
        "list": [2], "cfg": {"bias": 0.5}, "uptime": None})
    assert s7["version"] == 7 and s7["delta"] == {}
    assert s7["desired"]["list"] == [2] and "uptime" not in s7["reported"]
    assert "uptime" not in s7["metadata"]["reported"]
    assert await gateway.query(GET, {"d": device}, key=tenant.key) == {"data": {"shadow": s7}}


async def test_delta_follows_aws_rules(gateway: Gateway, stores: Stores, tenant: Tenant) -> None:
    device = await new_device(stores, tenant)
    shadow = await update(
        gateway, tenant, device,
        des={"on": True, "level": 3, "name": "a", "cfg": {"x": {"y": 1, "z": 2}}, "arr": [1],
             "obj": {"k": 1}},
        rep={"on": 1, "level": 3.0, "name": "a", "cfg": {"x": {"y": 1, "z": 3}}, "arr": [1],
             "obj": "flat", "onlyReported": 1},
    )
    # true is not 1, 3 is 3.0, nested objects keep their path, a type change sends the whole
    # desired value, keys only reported are no part of the delta.
    assert shadow["delta"] == {"on": True, "cfg": {"x": {"z": 2}}, "obj": {"k": 1}}


async def test_metadata_keeps_the_shape_of_the_state(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await new_device(stores, tenant)
    first = await update(gateway, tenant, device, rep={"a": 1, "b": {"c": 1}})
    shadow = await update(gateway, tenant, device, rep={"a": {"x": 1}, "b": 5})
    now = stamp(shadow)
    assert shadow["reported"] == {"a": {"x": 1}, "b": 5}
    assert shadow["metadata"]["reported"] == {"a": {"x": {"timestamp": now}},
                                              "b": {"timestamp": now}}
    assert stamp(first) <= now


async def test_expected_version(gateway: Gateway, stores: Stores, tenant: Tenant) -> None:
    device = await new_device(stores, tenant)
    assert (await update(gateway, tenant, device, rep={"a": 1}, v=0))["version"] == 1
    assert (await update(gateway, tenant, device, rep={"a": 2}))["version"] == 2
    body = await gateway.query(UPDATE, {"d": device, "rep": {"a": 3}, "v": 1}, key=tenant.key)
    err = refused(body, "VERSION_CONFLICT")
    assert err["extensions"]["currentVersion"] == 2
    assert (await update(gateway, tenant, device, rep={"b": 1}, v=2))["version"] == 3
    shadow = (await gateway.query(GET, {"d": device}, key=tenant.key))["data"]["shadow"]
    assert shadow["version"] == 3 and shadow["reported"] == {"a": 2, "b": 1}


async def test_delete_and_recreate_continues_the_version(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await new_device(stores, tenant)
    for n in range(3):
        await update(gateway, tenant, device, des={"n": n})
    assert await gateway.query(DELETE, {"d": device}, key=tenant.key) == {
        "data": {"deleteShadow": True}}
    assert await gateway.query(GET, {"d": device}, key=tenant.key) == {"data": {"shadow": None}}
    body = await gateway.query("query($d: ID!) { device(id: $d) { shadow { version } } }",
                               {"d": device}, key=tenant.key)
    assert body["data"]["device"]["shadow"] is None
    assert await gateway.query(DELETE, {"d": device}, key=tenant.key) == {
        "data": {"deleteShadow": False}}
    refused(await gateway.query(UPDATE, {"d": device, "rep": {"x": 1}, "v": 0}, key=tenant.key),
            "VERSION_CONFLICT")
    shadow = await update(gateway, tenant, device, rep={"x": 1}, v=3)
    assert shadow["version"] == 4
    assert shadow["desired"] == {} and shadow["reported"] == {"x": 1}
    assert shadow["metadata"] == {"reported": {"x": {"timestamp": stamp(shadow)}}}


def nested(depth: int) -> dict[str, Any]:
    """An object whose keys go ``depth`` levels deep."""
    value: Any = 1
    for level in range(depth, 0, -1):
        value = {f"l{level}": value}
    return value  # type: ignore[no-any-return]


async def test_limits_and_shapes(gateway: Gateway, stores: Stores, tenant: Tenant) -> None:
    device = await new_device(stores, tenant)
    accepted: list[dict[str, Any]] = [
        {"des": nested(6)}, {"rep": {"k" * 128: 1}}, {"rep": {"blob": "x" * 7000}},
        {"des": {}},
    ]
    for n, args in enumerate(accepted, start=1):
        assert (await update(gateway, tenant, device, **args))["version"] == n
    cases: list[tuple[dict[str, Any], str]] = [
        ({"des": nested(7)}, "LIMIT_EXCEEDED"),
        ({"rep": {"ok": nested(7)}}, "LIMIT_EXCEEDED"),
        ({"rep": {"k" * 129: 1}}, "LIMIT_EXCEEDED"),
        ({"des": {"a": {"k" * 129: None}}}, "LIMIT_EXCEEDED"),
        ({"des": {"more": "y" * 1500}}, "LIMIT_EXCEEDED"),  # 8 KB with what is stored
        ({"rep": {"blob": "x" * 8200}}, "LIMIT_EXCEEDED"),
        ({"des": [1, 2]}, "BAD_USER_INPUT"),
        ({"des": "on"}, "BAD_USER_INPUT"),
        ({"rep": 5}, "BAD_USER_INPUT"),
        ({}, "BAD_USER_INPUT"),
        ({"des": None, "rep": None}, "BAD_USER_INPUT"),
    ]
    for args, code in cases:
        refused(await gateway.query(UPDATE, {"d": device, **args}, key=tenant.key), code)
    shadow = (await gateway.query(GET, {"d": device}, key=tenant.key))["data"]["shadow"]
    assert shadow["version"] == len(accepted)
    assert "more" not in shadow["desired"] and len(shadow["reported"]["blob"]) == 7000
    # Dropping the blob makes room again.
    assert (await update(gateway, tenant, device, rep={"blob": None},
                         des={"more": "y" * 1500}))["version"] == len(accepted) + 1


async def test_scoping(
    gateway: Gateway, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await new_device(stores, other_tenant)
    their_shadow = await update(gateway, other_tenant, theirs, rep={"secret": 1})
    retired = await new_device(stores, tenant, status="DECOMMISSIONED")
    attempts: list[tuple[str, dict[str, Any], str]] = [
        (UPDATE, {"d": theirs, "rep": {"secret": 2}}, "NOT_FOUND"),
        (DELETE, {"d": theirs}, "NOT_FOUND"),
        (UPDATE, {"d": str(uuid4()), "rep": {"a": 1}}, "NOT_FOUND"),
        (DELETE, {"d": str(uuid4())}, "NOT_FOUND"),
        (UPDATE, {"d": "nope", "rep": {"a": 1}}, "BAD_USER_INPUT"),
        (UPDATE, {"d": retired, "rep": {"a": 1}}, "BAD_USER_INPUT"),
    ]
    for query, variables, code in attempts:
        err = refused(await gateway.query(query, variables, key=tenant.key), code)
        assert "tenant" not in err["message"].lower()
    body = await gateway.query(GET, {"d": theirs}, key=other_tenant.key)
    assert body["data"]["shadow"] == their_shadow
    assert await stores.shadows.get_many(tenant.id, [UUID(retired)]) == [None]


async def test_concurrent_updates_lose_nothing(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    device = await new_device(stores, tenant)
    start = (await update(gateway, tenant, device, rep={"start": True}))["version"]

    async def one(n: int) -> tuple[int, dict[str, Any]]:
        variables: dict[str, Any] = {"d": device, "rep": {f"k{n}": n}}
        if n % 2:
            variables["v"] = start
        return n, await gateway.query(UPDATE, variables, key=tenant.key)

    results = await asyncio.gather(*(one(n) for n in range(20)))
    accepted = {n: body["data"]["updateShadow"] for n, body in results if not body.get("errors")}
    conflicts = {n: body for n, body in results if body.get("errors")}
    assert len(accepted) + len(conflicts) == 20
    # Unconditional updates always land; of the conditional ones at most the first can.
    assert all(n in accepted for n in range(0, 20, 2))
    assert len([n for n in accepted if n % 2]) <= 1 and len(conflicts) >= 9
    for n, body in conflicts.items():
        err = refused(body, "VERSION_CONFLICT")
        assert n % 2 and err["extensions"]["currentVersion"] > start
    versions = sorted(s["version"] for s in accepted.values())
    assert versions == list(range(start + 1, start + 1 + len(accepted)))

    shadow = (await gateway.query(GET, {"d": device}, key=tenant.key))["data"]["shadow"]
    assert shadow["version"] == start + len(accepted)
    assert set(shadow["reported"]) == {"start"} | {f"k{n}" for n in accepted}
    assert set(shadow["metadata"]["reported"]) == set(shadow["reported"])
