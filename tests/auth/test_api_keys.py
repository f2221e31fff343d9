"""API key management: createApiKey (secret shown once), revokeApiKey (at once), apiKeys;
validation, tenancy, and last-used bookkeeping at most once a minute."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.auth.callers import hash_key
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

CREATE = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    secret apiKey { id name role deviceId createdAt lastUsedAt revokedAt } } }"""
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { id name revokedAt } }"
LIST = """query($first: Int, $after: String, $all: Boolean) {
  apiKeys(first: $first, after: $after, includeRevoked: $all) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id name role revokedAt } } } }"""


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def create(gateway: Gateway, key: str, **input: Any) -> dict[str, Any]:
    body = await gateway.query(CREATE, {"input": input}, key=key)
    assert "errors" not in body, body
    made: dict[str, Any] = body["data"]["createApiKey"]
    return made


async def register(gateway: Gateway, key: str, serial: str) -> str:
    body = await gateway.query(
        'mutation($s: String!) { registerDevice(input: {serial: $s, name: "d", type: "t"}) '
        "{ device { id } } }", {"s": serial}, key=key)
    device: str = body["data"]["registerDevice"]["device"]["id"]
    return device


async def test_create_shows_the_secret_once_and_stores_only_its_hash(
    gateway: Gateway, stores: Stores, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    made = await create(gateway, tenant.key, name="  ci pipeline ", role="OPERATOR")
    secret, key = made["secret"], made["apiKey"]
    assert secret.startswith("iot_") and len(secret) == 47
    assert key["name"] == "ci pipeline" and key["role"] == "OPERATOR"
    assert key["lastUsedAt"] is None and key["revokedAt"] is None and key["deviceId"] is None
    assert secret not in caplog.text
    row = await stores.registry.pool.fetchrow("SELECT * FROM api_keys WHERE id = $1",
                                              UUID(key["id"]))
    assert row is not None and row["key_hash"] == hash_key(secret)
    assert all(secret not in str(value) for value in row.values())
    # The new key works, with its role.
    body = await gateway.query('mutation { createAsset(input: {name: "a", kind: "site"}) '
                               "{ id } }", key=secret)
    assert "errors" not in body
    body = await gateway.query(LIST, key=secret)
    assert codes(body) == ["FORBIDDEN"]
    listed = await gateway.query(LIST, key=tenant.key)
    assert all("secret" not in str(e) for e in listed["data"]["apiKeys"]["edges"])


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"name": "", "role": "VIEWER"}, "BAD_USER_INPUT"),
    ({"name": "   ", "role": "VIEWER"}, "BAD_USER_INPUT"),
    ({"name": "x" * 101, "role": "VIEWER"}, "BAD_USER_INPUT"),
    ({"name": "tab\there", "role": "VIEWER"}, "BAD_USER_INPUT"),
    ({"name": "k", "role": "ROOT"}, "BAD_USER_INPUT"),
    ({"name": "k", "role": "DEVICE"}, "BAD_USER_INPUT"),
    ({"name": "k", "role": "VIEWER", "deviceId": str(uuid4())}, "BAD_USER_INPUT"),
    ({"name": "k", "role": "DEVICE", "deviceId": "nope"}, "BAD_USER_INPUT"),
    ({"name": "k", "role": "DEVICE", "deviceId": str(uuid4())}, "NOT_FOUND"),
]


async def test_create_validates(gateway: Gateway, tenant: Tenant) -> None:
    for input, code in INVALID:
        body = await gateway.query(CREATE, {"input": input}, key=tenant.key)
        assert codes(body) == [code], (input, body)
    total = (await gateway.query(LIST, key=tenant.key))["data"]["apiKeys"]["totalCount"]
    assert total == 1  # only the tenant's first admin key


async def test_a_device_key_acts_as_its_device_of_the_same_tenant_only(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await register(gateway, tenant.key, "A1")
    theirs = await register(gateway, other_tenant.key, "B1")
    body = await gateway.query(CREATE, {"input": {"name": "d", "role": "DEVICE",
                                                  "deviceId": theirs}}, key=tenant.key)
    assert codes(body) == ["NOT_FOUND"] and theirs not in str(body["data"])
    made = await create(gateway, tenant.key, name="d", role="DEVICE", deviceId=mine)
    assert made["apiKey"]["deviceId"] == mine
    body = await gateway.query(f'{{ device(id: "{mine}") {{ id }} }}', key=made["secret"])
    assert body == {"data": {"device": {"id": mine}}}


async def test_revoke_takes_effect_at_once(gateway: Gateway, tenant: Tenant) -> None:
    made = await create(gateway, tenant.key, name="temp", role="VIEWER")
    assert (await gateway.post("{ devices { totalCount } }", key=made["secret"])).status_code \
        == 200
    first = await gateway.query(REVOKE, {"id": made["apiKey"]["id"]}, key=tenant.key)
    revoked_at = first["data"]["revokeApiKey"]["revokedAt"]
    assert revoked_at is not None
    response = await gateway.post("{ devices { totalCount } }", key=made["secret"])
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert made["secret"] not in response.text
    again = await gateway.query(REVOKE, {"id": made["apiKey"]["id"]}, key=tenant.key)
    assert again["data"]["revokeApiKey"]["revokedAt"] == revoked_at


async def test_the_last_admin_key_is_kept(gateway: Gateway, stores: Stores,
                                          tenant: Tenant) -> None:
    first_id = (await gateway.query(LIST, key=tenant.key))["data"]["apiKeys"]["edges"][0][
        "node"]["id"]
    body = await gateway.query(REVOKE, {"id": first_id}, key=tenant.key)
    assert codes(body) == ["BAD_USER_INPUT"] and "last active admin key" in \
        body["errors"][0]["message"]
    second = await create(gateway, tenant.key, name="admin 2", role="ADMIN")
    body = await gateway.query(REVOKE, {"id": first_id}, key=second["secret"])
    assert "errors" not in body, body
    assert (await gateway.post("{ devices { totalCount } }", key=tenant.key)).status_code == 401


async def test_keys_of_another_tenant_are_not_found(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await create(gateway, other_tenant.key, name="theirs", role="VIEWER")
    body = await gateway.query(REVOKE, {"id": theirs["apiKey"]["id"]}, key=tenant.key)
    assert codes(body) == ["NOT_FOUND"] and body["data"] is None
    assert "theirs" not in str(body)
    assert (await gateway.post("{ devices { totalCount } }", key=theirs["secret"])
            ).status_code == 200
    mine = await gateway.query(LIST, {"all": True}, key=tenant.key)
    names = [e["node"]["name"] for e in mine["data"]["apiKeys"]["edges"]]
    assert names == ["first admin key"]


async def test_list_pages_and_hides_revoked_keys_unless_asked(
    gateway: Gateway, tenant: Tenant
) -> None:
    made = [await create(gateway, tenant.key, name=f"k{n}", role="VIEWER") for n in range(3)]
    await gateway.query(REVOKE, {"id": made[0]["apiKey"]["id"]}, key=tenant.key)
    page = (await gateway.query(LIST, {"first": 2}, key=tenant.key))["data"]["apiKeys"]
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"]
    assert [e["node"]["name"] for e in page["edges"]] == ["first admin key", "k1"]
    rest = (await gateway.query(LIST, {"first": 2, "after": page["pageInfo"]["endCursor"]},
                                key=tenant.key))["data"]["apiKeys"]
    assert [e["node"]["name"] for e in rest["edges"]] == ["k2"]
    assert not rest["pageInfo"]["hasNextPage"]
    everything = (await gateway.query(LIST, {"all": True}, key=tenant.key))["data"]["apiKeys"]
    assert everything["totalCount"] == 4
    assert [e["node"]["revokedAt"] is not None for e in everything["edges"]] == [
        False, True, False, False]


async def test_last_used_moves_at_most_once_a_minute(
    gateway: Gateway, stores: Stores, tenant: Tenant
) -> None:
    made = await create(gateway, tenant.key, name="poller", role="VIEWER")
    key_id = UUID(made["apiKey"]["id"])
    pool = stores.registry.pool
    sql = "SELECT last_used_at, xmin::text::bigint AS tx FROM api_keys WHERE id = $1"
    for _ in range(3):
        await gateway.post("{ devices { totalCount } }", key=made["secret"])
    used = await pool.fetchrow(sql, key_id)
    assert used["last_used_at"] is not None
    for _ in range(5):
        await gateway.post("{ devices { totalCount } }", key=made["secret"])
    # No write since: the row version (xmin) and the time are unchanged.
    assert dict(await pool.fetchrow(sql, key_id)) == dict(used)
    await pool.execute("UPDATE api_keys SET last_used_at = now() - interval '61 seconds' "
                       "WHERE id = $1", key_id)
    # The next lookup, not an answer from the key cache (API_KEY_CACHE_TTL), moves it.
    stores.registry.verified_keys.forget(hash_key(made["secret"]))
    await gateway.post("{ devices { totalCount } }", key=made["secret"])
    later = await pool.fetchrow(sql, key_id)
    assert later["last_used_at"] > used["last_used_at"]
    listed = await gateway.query(LIST, key=tenant.key)
    node_ids = [e["node"]["id"] for e in listed["data"]["apiKeys"]["edges"]]
    assert made["apiKey"]["id"] in node_ids
