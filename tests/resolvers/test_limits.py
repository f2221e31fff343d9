"""Request limits against hostile queries, and the production posture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway.stores import Stores
from tests.conftest import AppClient, Gateway, Tenant
from tests.support.live_server import wait_until


def _limit(body: dict[str, Any]) -> dict[str, Any]:
    [error] = body["errors"]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED", body
    extensions: dict[str, Any] = error["extensions"]
    return extensions


async def test_depth_is_limited(gateway: Gateway, tenant: Tenant) -> None:
    nested = "{ assets { edges { node { " + "parent { " * 10 + "name" + " }" * 13 + " }"
    assert _limit(await gateway.query(nested, key=tenant.key))["limit"] == "maxDepth"
    shallow = "{ assets { edges { node { parent { parent { name } } } } } }"
    assert "errors" not in await gateway.query(shallow, key=tenant.key)


async def test_aliases_are_counted_through_fragments(gateway: Gateway, tenant: Tenant) -> None:
    fragment = "fragment F on Query { " + " ".join(f"a{n}: devices {{ totalCount }}"
                                                  for n in range(20)) + " }"
    body = await gateway.query("{ ...F b: assets { totalCount } ...G } " + fragment +
                               fragment.replace("fragment F", "fragment G")
                               .replace(" a", " c"), key=tenant.key)
    extensions = _limit(body)
    assert (extensions["limit"], extensions["maximum"]) == ("maxAliases", 30)


def _fan_out(levels: int, leaf: str) -> str:
    """F0 spreads F1 twice, F1 spreads F2 twice...: 2**levels copies of ``leaf``."""
    return "{ ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    ) + f" fragment F{levels} on Query {{ {leaf} }}"


async def test_a_fragment_fan_out_is_counted_exactly(gateway: Gateway, tenant: Tenant) -> None:
    # Strawberry's limiters walk every spread: 40 levels would be 2**40 walks (18 levels
    # measured 1.6 s). resolvers/execution/limits.py walks each fragment once and counts
    # every spread: one alias, 2**40 times.
    body = await gateway.query(_fan_out(40, "a: __typename"), key=tenant.key)
    assert _limit(body)["limit"] == "maxAliases"
    assert body["errors"][0]["message"].startswith(f"{2**40} aliases found")
    deep = "assets { edges { node { " + "parent { " * 8 + "name" + " }" * 8 + " } } }"
    assert _limit(await gateway.query(_fan_out(40, deep), key=tenant.key))["limit"] == "maxDepth"
    # Without aliases and within the depth: the cost estimate refuses 2**40 fields.
    assert _limit(await gateway.query(_fan_out(40, "__typename"), key=tenant.key)
                  )["limit"] == "maxCost"
    # A fan-out small enough passes every limit and runs.
    body = await gateway.query(_fan_out(3, "a: __typename"), key=tenant.key)
    assert body["data"] == {"a": "Query"}


async def test_an_unknown_fragment_is_reported_by_name(gateway: Gateway, tenant: Tenant) -> None:
    # Strawberry's depth limiter raised KeyError('Nope') here, answered as "'Nope'".
    body = await gateway.query("{ ...Nope }", key=tenant.key)
    [error] = body["errors"]
    assert (error["message"], error["extensions"]["code"]) == (
        "Unknown fragment 'Nope'.", "BAD_USER_INPUT")


async def test_tokens_are_limited(gateway: Gateway, tenant: Tenant) -> None:
    query = "{ " + " ".join("__typename" for _ in range(2_100)) + " }"
    assert _limit(await gateway.query(query, key=tenant.key))["limit"] == "maxTokens"


async def test_body_size_is_limited(app_client: AppClient, tenant: Tenant) -> None:
    async with app_client(max_body_bytes=10_000) as http:
        padding = " " * 20_000
        response = await http.post("/graphql", json={"query": "{ __typename }" + padding},
                                   headers={"Authorization": f"Bearer {tenant.key}"})
        assert response.status_code == 413
        assert _limit(response.json())["limit"] == "maxBodyBytes"

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to trust
            yield b'{"query": "{ __typename }", "x": "'
            for _ in range(30):
                yield b" " * 1_000
            yield b'"}'
        response = await http.post("/graphql", content=chunked(), headers={
            "Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"})
        assert response.status_code == 413


async def test_a_slow_request_is_cut_off(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = asyncio.Event()

    async def stuck(*args: Any) -> Any:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    monkeypatch.setattr(stores.registry, "page_devices", stuck)
    async with app_client(request_timeout=0.2) as http:
        response = await http.post("/graphql", json={"query": "{ devices { totalCount } }"},
                                   headers={"Authorization": f"Bearer {tenant.key}"})
    assert response.status_code == 504
    assert _limit(response.json())["limit"] == "requestTimeout"
    assert cancelled.is_set()  # the store work was cancelled, not left running


async def test_production_hides_the_schema(app_client: AppClient, tenant: Tenant) -> None:
    async with app_client(env="production") as http:
        auth = {"Authorization": f"Bearer {tenant.key}"}
        body = (await http.post("/graphql", json={"query": "{ __schema { types { name } } }"},
                                headers=auth)).json()
        assert body["errors"] and "data" not in body or body["data"] is None
        typo = (await http.post("/graphql", json={"query": "{ devicez { totalCount } }"},
                                headers=auth)).json()
        assert "Did you mean" not in typo["errors"][0]["message"]
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 401  # no IDE in production


async def test_requests_beyond_the_execution_slots_wait_their_turn(
    app_client: AppClient, stores: Stores, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_CONCURRENT_REQUESTS=1: a second request queues (counted in /metrics) until the
    first finishes, then runs; neither fails."""
    release = asyncio.Event()
    entered: list[int] = []
    page_devices = stores.registry.page_devices

    async def held(*args: Any, **kwargs: Any) -> Any:
        entered.append(1)
        if len(entered) == 1:
            await release.wait()
        return await page_devices(*args, **kwargs)

    monkeypatch.setattr(stores.registry, "page_devices", held)
    waiting = "iotsphere_http_operations_waiting"
    async with app_client(max_concurrent_requests=1) as http:
        def ask() -> Any:
            return http.post("/graphql", json={"query": "{ devices { totalCount } }"},
                             headers={"Authorization": f"Bearer {tenant.key}"})
        first = asyncio.create_task(ask())
        await wait_until(lambda: bool(entered))
        second = asyncio.create_task(ask())
        await wait_until(lambda: (REGISTRY.get_sample_value(waiting) or 0) >= 1)
        assert entered == [1]  # the second has not started executing
        release.set()
        answers = await asyncio.gather(first, second)
    assert [a.json() for a in answers] == [{"data": {"devices": {"totalCount": 0}}}] * 2
    assert entered == [1, 1] and (REGISTRY.get_sample_value(waiting) or 0) == 0
