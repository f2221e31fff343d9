"""The shadow store's reads on a single server: one script call for any number of devices,
aligned with them, within the caller's tenant, and hashes other clients wrote wrongly
count as missing."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from gateway.stores import Stores
from gateway.stores.shadows import ShadowDoc, shadow_key

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _doc(device: UUID, version: int, reported: dict[str, object]) -> ShadowDoc:
    return ShadowDoc(device, version, {"mode": "run"}, reported, {"reported": {}}, AT)


async def _script_calls(stores: Stores) -> int:
    stats = await stores.shadows.client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def test_many_shadows_are_one_script_call_aligned_and_within_the_tenant(
        stores: Stores) -> None:
    tenant, other = uuid4(), uuid4()
    devices = [uuid4() for _ in range(50)]
    for n, device in enumerate(devices):
        await stores.shadows.put(tenant, _doc(device, n + 1, {"n": n}))
    await stores.shadows.put(other, _doc(devices[0], 99, {"n": "theirs"}))
    missing = uuid4()
    await stores.shadows.put(other, _doc(missing, 7, {"n": "theirs"}))

    await stores.shadows.get_many(tenant, devices[:1])  # loads the script (NOSCRIPT once)
    before = await _script_calls(stores)
    found = await stores.shadows.get_many(tenant, [devices[0], missing, *devices[1:]])
    assert await _script_calls(stores) == before + 1
    assert found[1] is None
    assert found[0] == _doc(devices[0], 1, {"n": 0})
    assert found[2:] == [_doc(d, n + 2, {"n": n + 1}) for n, d in enumerate(devices[1:])]
    assert await stores.shadows.get_many(tenant, []) == []


async def test_a_hash_written_wrongly_by_another_client_counts_as_missing(
        stores: Stores) -> None:
    tenant = uuid4()
    client = stores.shadows.client
    valid = {"version": 3, "updatedAt": AT.isoformat(), "desired": '{"a": 1}',
             "reported": "{}", "metadata": "{}"}
    wrong = {
        "no version": {k: v for k, v in valid.items() if k != "version"},
        "no timestamp": {k: v for k, v in valid.items() if k != "updatedAt"},
        "version not a number": {**valid, "version": "three"},
        "timestamp not a time": {**valid, "updatedAt": "yesterday"},
        "desired not JSON": {**valid, "desired": "{a: 1"},
        "metadata not JSON": {**valid, "metadata": "{"},
    }
    devices = {name: uuid4() for name in wrong}
    for name, fields in wrong.items():
        await client.hset(shadow_key(tenant, devices[name]), mapping=fields)  # type: ignore[arg-type]
    bare = uuid4()  # version and timestamp only: empty states
    await client.hset(shadow_key(tenant, bare),  # type: ignore[arg-type]
                      mapping={"version": 1, "updatedAt": AT.isoformat()})

    found = await stores.shadows.get_many(tenant, [*devices.values(), bare])
    assert found[:-1] == [None] * len(wrong)
    assert found[-1] == ShadowDoc(bare, 1, {}, {}, {}, AT)
    with_versions = await stores.shadows.get_with_versions(tenant, [*devices.values(), bare])
    assert with_versions == [(None, None)] * len(wrong) + [(found[-1], 1)]
