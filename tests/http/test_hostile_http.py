"""Hostile HTTP against a live server: huge bodies, a 1,000-operation batch, malformed JSON
and wrong content types each get a clear error, and the gateway keeps serving others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.live_server import serve

TEN_MB = 10 * 1024 * 1024
CREATE = 'mutation { createAsset(input: {name: "x", kind: "site"}) { id } }'


@pytest.fixture
async def http(settings: Settings, stores: Stores) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(settings, stores=stores)) as address, \
            httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as client:
        yield client


def _auth(tenant: Tenant, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json",
            **headers}


def _error(response: httpx.Response) -> dict[str, Any]:
    [error] = response.json()["errors"]
    extensions: dict[str, Any] = error["extensions"]
    return extensions


async def _still_serving(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.post("/graphql", json={"query": "{ assets { totalCount } }"},
                               headers=_auth(tenant))
    assert response.json() == {"data": {"assets": {"totalCount": 0}}}


async def _huge(http: httpx.AsyncClient, tenant: Tenant, *, chunked: bool) -> httpx.Response:
    padding = b" " * TEN_MB
    body = b'{"query": "{ __typename }"' + padding + b"}"
    if not chunked:
        return await http.post("/graphql", content=body, headers=_auth(tenant))

    async def pieces() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]
    return await http.post("/graphql", content=pieces(), headers=_auth(tenant))


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_10_mb_body_is_413_while_others_are_served(
    http: httpx.AsyncClient, tenant: Tenant, chunked: bool
) -> None:
    huge, _ = await asyncio.gather(_huge(http, tenant, chunked=chunked),
                                   _still_serving(http, tenant))
    assert huge.status_code == 413
    assert _error(huge) == {"code": "LIMIT_EXCEEDED", "limit": "maxBodyBytes",
                            "maximum": 2 * 1024 * 1024}
    await _still_serving(http, tenant)


async def test_a_1000_operation_batch_runs_nothing(http: httpx.AsyncClient, tenant: Tenant
                                                   ) -> None:
    batch = [{"query": CREATE}] * 1_000
    refused, _ = await asyncio.gather(
        http.post("/graphql", json=batch, headers=_auth(tenant)), _still_serving(http, tenant))
    assert refused.status_code == 400
    assert _error(refused) == {"code": "LIMIT_EXCEEDED", "limit": "maxBatchOperations",
                               "maximum": 10}
    await _still_serving(http, tenant)  # not one of the thousand mutations ran


async def test_malformed_bodies_and_wrong_types_are_refused(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    cases = [
        (b'{"query": "{ __typename }"', "application/json", 400),
        (b"\xff\xfe{}", "application/json", 400),
        (b'{"query": "' + b"[" * 100_000 + b'"}', "application/json", 200),  # a string
        (b"[" * 100_000, "application/json", 400),  # nesting beyond the JSON parser
        (b'{"query": "{ __typename }"}', "application/xml", 415),
        (b"<query/>", "text/xml", 415),
        (b'{"query": "{ __typename }"}', "multipart/form-data; boundary=x", 415),
    ]
    results = await asyncio.gather(*(
        http.post("/graphql", content=body, headers=_auth(tenant, **{"Content-Type": kind}))
        for body, kind, _ in cases))
    for (body, kind, status), response in zip(cases, results, strict=True):
        assert response.status_code == status, (kind, body[:30], response.text[:200])
        assert response.json()["errors"], kind
    await _still_serving(http, tenant)
