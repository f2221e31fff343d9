"""Bad input never becomes a 500 or a masked internal error: every argument a client can get
wrong answers HTTP 200 with a GraphQL error carrying its extensions.code (401 for auth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from gateway.stores import Stores
from tests.conftest import Gateway, Tenant

BAD, LIMIT, NOT_FOUND = "BAD_USER_INPUT", "LIMIT_EXCEEDED", "NOT_FOUND"
# Text that would give away the implementation: stack traces, driver and language names.
LEAKS = ("Traceback", 'File "', "asyncpg", "Python", "Internal server error",
         "query argument", "object at 0x", "Error(", "Exception")
DAY = 'from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z"'


@dataclass
class Known:
    device: UUID
    asset: UUID


@pytest.fixture
async def known(stores: Stores, tenant: Tenant) -> Known:
    row = await stores.registry.insert_device(tenant.id, serial="K1", name="known", type="x")
    asset = uuid4()
    await stores.assets.insert_asset(tenant.id, asset, None, "Site", "site", {})
    return Known(row["id"], asset)


async def _codes(gateway: Gateway, tenant: Tenant, known: Known, query: str,
                 variables: dict[str, Any] | None = None) -> list[Any]:
    """The error codes of one request, then anything wrong with its status or text."""
    query = query.replace("DEV", str(known.device)).replace("AST", str(known.asset))
    response = await gateway.post(query, variables, key=tenant.key)
    codes = [e.get("extensions", {}).get("code") for e in response.json().get("errors", [])]
    leaks = [leak for leak in LEAKS if leak in response.text]
    return codes + ([response.status_code] if response.status_code != 200 else []) + leaks


CASES: list[tuple[str, str, dict[str, Any] | None]] = [  # expected code, query, variables
    # Malformed ids.
    (BAD, '{ device(id: "42") { id } }', None),
    (BAD, '{ asset(id: "not-a-uuid") { id } }', None),
    (BAD, '{ shadow(deviceId: "x") { version } }', None),
    (BAD, '{ telemetry(deviceIds: ["DEV", "x"], metric: "t") { deviceId } }', None),
    (BAD, '{ devices(filter: {assetId: "x"}) { totalCount } }', None),
    (BAD, '{ assets(filter: {parentId: "x"}) { totalCount } }', None),
    (BAD, '{ asset(id: "AST") { devices(filter: {assetId: ""}) { totalCount } } }', None),
    # Time ranges.
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", from: "2026-01-02T00:00:00Z", '
          'to: "2026-01-01T00:00:00Z") { from } } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", from: "2026-01-01T00:00:00Z", '
          'to: "2026-01-01T00:00:00Z") { from } } }', None),
    (BAD, '{ telemetry(deviceIds: ["DEV"], metric: "t", from: "2026-01-01T01:00:00Z", '
          'to: "2026-01-01T00:00:00Z") { deviceId } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", to: "0001-01-01T00:30:00Z") '
          '{ from } } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", bucket: "1000d", '
          'from: "2026-01-01T00:00:00Z", to: "9999-12-31T00:00:00Z") { from } } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", bucket: "7m", '
          'from: "0001-01-01T00:00:00Z", to: "0001-01-01T01:00:00Z") { from } } }', None),
    # Sizes: points, pages, raw limits.
    (LIMIT, f'{{ device(id: "DEV") {{ telemetry(metric: "t", bucket: "1s", {DAY}) '
            '{ from } } }', None),
    (LIMIT, f'{{ telemetry(deviceIds: ["DEV"], metric: "t", bucket: "5s", {DAY}) '
            '{ deviceId } }', None),
    (LIMIT, '{ devices(first: 501) { totalCount } }', None),
    (LIMIT, '{ assets(first: 501) { totalCount } }', None),
    (LIMIT, '{ asset(id: "AST") { devices(first: 501) { totalCount } } }', None),
    (BAD, '{ devices(first: -1) { totalCount } }', None),
    (BAD, '{ assets(first: -1) { totalCount } }', None),
    (BAD, '{ devices(first: 2147483648) { totalCount } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", limit: 0) { from } } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", limit: -5) { from } } }', None),
    (LIMIT, '{ device(id: "DEV") { telemetry(metric: "t", limit: 10001) { from } } }', None),
    (BAD, 'query($ids: [ID!]!) { telemetry(deviceIds: $ids, metric: "t") { deviceId } }',
     {"ids": [str(uuid4()) for _ in range(501)]}),
    # Cursors.
    (BAD, '{ devices(after: "garbage!!") { totalCount } }', None),
    (BAD, '{ devices(after: "bm90LWEtY3Vyc29y") { totalCount } }', None),
    (BAD, '{ assets(after: "") { totalCount } }', None),
    (BAD, '{ asset(id: "AST") { devices(after: "a") { totalCount } } }', None),
    # Strings, JSON and numbers a store cannot take.
    (BAD, '{ device(id: "DEV") { telemetry(metric: "") { from } } }', None),
    (BAD, '{ devices(filter: {search: "a\\u0000b"}) { totalCount } }', None),
    (BAD, '{ devices(filter: {types: ["\\u0000"], labels: ["x"]}) { totalCount } }', None),
    (BAD, '{ assets(filter: {search: "\\u0000"}) { totalCount } }', None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t\\u0000") { from } } }', None),
    (BAD, '{ device(id: "DEV") { latest(metrics: ["\\u0000"]) { value } } }', None),
    (BAD, "query($m: JSON) { devices(filter: {metadata: $m}) { totalCount } }",
     {"m": {"a": "x\u0000"}}),
    (BAD, "query($m: JSON) { devices(filter: {metadata: $m}) { totalCount } }",
     {"m": {"a": 10**30}}),
    (BAD, '{ assets(filter: {attributes: {a: 99999999999999999999999}}) { totalCount } }',
     None),
]
for value in ([1], "Acme", 5, True):
    CASES.append((BAD, "query($m: JSON) { devices(filter: {metadata: $m}) { totalCount } }",
                  {"m": value}))
    CASES.append((BAD, "query($m: JSON) { assets(filter: {attributes: $m}) { totalCount } }",
                  {"m": value}))
for interval in ("5x", "", "P", "PT", "-5m", "0s", "P0D", "PT0.0000001S", "99999999999d",
                 "P99999999999D", "5 m", 5):
    CASES.append((BAD, 'query($b: Interval) { device(id: "DEV") { telemetry(metric: "t", '
                       "bucket: $b) { from } } }", {"b": interval}))
CASES += [
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", bucket: "5x") { from } } }', None),
    (BAD, '{ device(id: "DEV") { forecast(metric: "t", threshold: 1, window: "0s") '
          '{ r2 } } }', None),
]
for when in ("yesterday", "2026-13-01T00:00:00Z", "", "2026-01-01T25:00:00Z", 1767225600):
    CASES.append((BAD, 'query($f: DateTime) { device(id: "DEV") { telemetry(metric: "t", '
                       "from: $f) { from } } }", {"f": when}))
CASES += [  # Requests the schema rejects.
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", to: "noon") { from } } }', None),
    (BAD, '{ device(id: "DEV") { nope } }', None),
    (BAD, '{ devices(colour: "red") { totalCount } }', None),
    (BAD, '{ devices(filter: {colour: "red"}) { totalCount } }', None),
    (BAD, "{ devices(filter: {status: [BROKEN]}) { totalCount } }", None),
    (BAD, '{ device(id: "DEV") { telemetry(metric: "t", aggregate: MEDIAN) { from } } }', None),
    (BAD, "{ devices { totalCount ", None),
    (BAD, "{ device { id } }", None),
]


async def test_every_bad_argument_answers_its_code(
    gateway: Gateway, known: Known, tenant: Tenant
) -> None:
    wrong = []
    for expected, query, variables in CASES:
        codes = await _codes(gateway, tenant, known, query, variables)
        if set(codes) != {expected}:
            wrong.append((query, variables if variables and len(str(variables)) < 99 else "",
                          codes))
    assert wrong == [], "\n".join(map(str, wrong))


async def test_unknown_ids(
    gateway: Gateway, stores: Stores, known: Known, tenant: Tenant, other_tenant: Tenant
) -> None:
    unknown = uuid4()
    for field in ("device(id: $id) { id }", "asset(id: $id) { id }"):
        body = await gateway.query(f"query($id: ID!) {{ {field} }}", {"id": str(unknown)},
                                   key=tenant.key)
        assert list(body["data"].values()) == [None]
        assert [e["extensions"]["code"] for e in body["errors"]] == [NOT_FOUND]
    foreign = await stores.registry.insert_device(other_tenant.id, serial="F", name="f",
                                                  type="x")
    for missing in (unknown, foreign["id"]):
        body = await gateway.query("query($id: ID!) { shadow(deviceId: $id) { version } }",
                                   {"id": str(missing)}, key=tenant.key)
        assert body["data"] == {"shadow": None}
        assert [e["extensions"]["code"] for e in body["errors"]] == [NOT_FOUND]
        body = await gateway.query(
            'query($ids: [ID!]!) { telemetry(deviceIds: $ids, metric: "t") { deviceId } }',
            {"ids": [str(known.device), str(missing)]}, key=tenant.key)
        assert body["data"] == {"telemetry": None}
        [error] = body["errors"]
        assert error["extensions"]["code"] == NOT_FOUND
        assert str(missing) in error["message"] and str(known.device) not in error["message"]


async def test_bad_credentials_answer_401(gateway: Gateway, tenant: Tenant) -> None:
    for authorization in (None, "Bearer iot_not-a-real-key", "Bearer not-a-gateway-key",
                          "Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "iot_abcdef", "",
                          f"Token {tenant.key}", f"{tenant.key}"):
        headers = {} if authorization is None else {"Authorization": authorization}
        response: httpx.Response = await gateway.http.post(
            "/graphql", json={"query": "{ devices { totalCount } }"}, headers=headers)
        assert response.status_code == 401, authorization
        assert not [leak for leak in LEAKS if leak in response.text], response.text
        body = response.json()
        assert "data" not in body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    ok = await gateway.query("{ devices { totalCount } }", key=tenant.key)
    assert ok == {"data": {"devices": {"totalCount": 0}}}
