"""Hostile documents: each answers one clear error without executing, and the gateway
keeps serving ordinary queries, afterwards and while they arrive.

"Without executing" is counted, not timed: a refused request's errors have no field path,
and with ``X-IoTSphere-Trace: 1`` it shows no store call besides authentication. (The
10 MB body and the batch of 1,000 operations are HTTP-layer limits, tested with the
endpoint.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.runtime.demo import seed_fleet
from gateway.stores import Stores
from tests.conftest import AppClient, Gateway, Tenant

NORMAL = "{ devices(first: 5) { totalCount edges { node { id name shadow { version } } } } }"


def _fan_out(levels: int, leaf: str) -> str:
    return "{ ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    ) + f" fragment F{levels} on Query {{ {leaf} }}"


ALIASES_SPREAD = (  # one fragment of 10 aliases, spread 10 times: 100 aliases
    "{ " + " ".join("...Ten" for _ in range(10)) + " } fragment Ten on Query { "
    + " ".join(f"a{n}: devices(first: 1) {{ totalCount }}" for n in range(10)) + " }"
)

# (name, document, variables, code, limit or None)
HOSTILE: list[tuple[str, str, dict[str, Any] | None, str, str | None]] = [
    ("depth 50", "{ assets { edges { node { " + "parent { " * 47 + "name" + " }" * 47
     + " } } } }", None, "LIMIT_EXCEEDED", "maxDepth"),
    ("1,000 aliases", "{ " + " ".join(f"a{n}: __typename" for n in range(1_000)) + " }",
     None, "LIMIT_EXCEEDED", "maxTokens"),  # 3,000 tokens: the parser stops first
    ("fragment cycle", "{ devices { ...A } } fragment A on DeviceConnection { ...B } "
     "fragment B on DeviceConnection { totalCount ...A }", None, "BAD_USER_INPUT", None),
    ("aliases in a fragment spread 10 times", ALIASES_SPREAD, None, "LIMIT_EXCEEDED",
     "maxAliases"),
    ("fragment fan-out of 2**100", _fan_out(100, "devices { totalCount }"), None,
     "LIMIT_EXCEEDED", "maxCost"),
    ("first: 1,000,000", "{ devices(first: 1000000) { edges { node { id } } } }", None,
     "LIMIT_EXCEEDED", "maxPageSize"),
    ("first: 1,000,000 in a variable",
     "query($n: Int) { assets { edges { node { devices(first: $n) { totalCount } } } } }",
     {"n": 1_000_000}, "LIMIT_EXCEEDED", "maxPageSize"),
    ("raw series of 400 devices",
     "query($ids: [ID!]!) { telemetry(deviceIds: $ids, metric: \"t\") { points { value } } }",
     {"ids": [f"00000000-0000-4000-8000-{n:012d}" for n in range(400)]},
     "LIMIT_EXCEEDED", "maxCost"),
    ("500 devices x 500 devices", "{ devices(first: 500) { edges { node { asset { "
     "devices(first: 500) { edges { node { name } } } } } } } }", None,
     "LIMIT_EXCEEDED", "maxCost"),
    ("directive flood", "{ __typename " + "@skip(if: false) " * 250 + "}", None,
     "BAD_USER_INPUT", None),
    # Repeated fields make graphql-core's overlap check compare every pair: its own budget
    # let this take seconds; resolvers/execution/limits.py caps it.
    ("duplicate-field flood", "{ " + "devices { totalCount } " * 495 + "}", None,
     "LIMIT_EXCEEDED", "maxValidationWork"),
    ("120 fragments selecting one field", "{ " + " ".join(f"...F{i}" for i in range(120))
     + " } " + " ".join(f"fragment F{i} on Query {{ devices {{ totalCount }} }}"
                        for i in range(120)), None, "LIMIT_EXCEEDED", "maxValidationWork"),
]


def _assert_refused(body: dict[str, Any], code: str, limit: str | None) -> None:
    errors = body["errors"]
    assert body.get("data") is None, body
    assert {e["extensions"]["code"] for e in errors} == {code}, errors
    if limit is not None:
        assert [e["extensions"]["limit"] for e in errors] == [limit], errors
    # Refused before execution: no field path, no store touched besides the registry
    # (which authenticates the key).
    assert all("path" not in e for e in errors), errors
    calls = body["extensions"]["storeCalls"]
    assert calls["assets"] == calls["telemetry"] == calls["shadows"] == 0, calls


@pytest.fixture
async def fleet(stores: Stores, tenant: Tenant) -> None:
    await seed_fleet(stores, tenant.id, devices=8, hours=0.1)


async def _normal(gateway: Gateway, tenant: Tenant) -> None:
    body = await gateway.query(NORMAL, key=tenant.key)
    assert "errors" not in body, body
    assert body["data"]["devices"]["totalCount"] == 8
    assert len(body["data"]["devices"]["edges"]) == 5


async def test_each_hostile_document_is_refused_and_others_still_served(
    gateway: Gateway, tenant: Tenant, fleet: None
) -> None:
    # One database for every document (a fresh one each would cost seconds apiece).
    for name, document, variables, code, limit in HOSTILE:
        body = await gateway.query(document, variables, key=tenant.key, trace=True)
        try:
            _assert_refused(body, code, limit)
        except AssertionError as failed:
            raise AssertionError(f"{name}: {failed}") from None
        await _normal(gateway, tenant)


async def test_the_spread_aliases_are_all_counted(gateway: Gateway, tenant: Tenant) -> None:
    # Strawberry's MaxAliasesLimiter counted a spread fragment once before 0.315.7.
    body = await gateway.query(ALIASES_SPREAD, key=tenant.key)
    assert body["errors"][0]["message"] == "100 aliases found. Allowed: 30"


async def test_a_thousand_aliases_are_counted_when_tokens_allow(
    app_client: AppClient, tenant: Tenant
) -> None:
    document = "{ " + " ".join(f"a{n}: __typename" for n in range(1_000)) + " }"
    async with app_client(max_tokens=10_000) as http:
        response = await http.post("/graphql", json={"query": document},
                                   headers={"Authorization": f"Bearer {tenant.key}"})
    [error] = response.json()["errors"]
    assert error["message"] == "1000 aliases found. Allowed: 30"
    assert error["extensions"]["limit"] == "maxAliases"


async def test_a_field_repeated_a_few_times_is_fine(gateway: Gateway, tenant: Tenant,
                                                     fleet: None) -> None:
    body = await gateway.query("{ " + "devices { totalCount } " * 50 + "}", key=tenant.key)
    assert body == {"data": {"devices": {"totalCount": 8}}}


async def test_hostile_and_normal_queries_interleaved(
    gateway: Gateway, tenant: Tenant, fleet: None
) -> None:
    async def hostile(entry: tuple[str, str, dict[str, Any] | None, str, str | None]) -> None:
        _, document, variables, code, limit = entry
        _assert_refused(await gateway.query(document, variables, key=tenant.key, trace=True),
                        code, limit)

    # Every hostile document twice, with ordinary queries in between, all at once.
    tasks = []
    for entry in HOSTILE * 2:
        tasks += [hostile(entry), _normal(gateway, tenant)]
    await asyncio.gather(*tasks)
    await _normal(gateway, tenant)
