"""JWT revocation: revokeToken refuses a token (by jti) or a subject's earlier tokens on
HTTP, at once on the replica that revoked it and, through the Redis announcement, on every
other one (without a registry round trip there), and closes the WebSockets opened with it
on every replica. Tenancy: a revocation names tokens of its own tenant only."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import httpx
import pytest
import websockets

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores, open_stores
from gateway.stores.revoked_tokens import RevokedTokens, TokenRevocation
from tests.auth.test_jwt import SECRET, claims, hs256
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, serve
from tests.support.store_calls import RequestCalls, count_requests

REVOKE = """mutation($input: RevokeTokenInput!) {
  revokeToken(input: $input) { id jti subject issuedBefore revokedAt } }"""
QUERY = {"query": "{ devices { totalCount } }"}


@dataclasses.dataclass
class Replica:
    http: httpx.AsyncClient
    address: str
    calls: RequestCalls


@asynccontextmanager
async def replica(settings: Settings, stores: Stores) -> AsyncIterator[Replica]:
    app = create_app(settings, stores=stores)
    calls = count_requests(app)
    async with serve(app) as address, \
            httpx.AsyncClient(base_url=f"http://{address}") as http:
        yield Replica(http, address, calls)


async def ask(http: httpx.AsyncClient, token: str, body: dict[str, Any] | None = None
              ) -> httpx.Response:
    return await http.post("/graphql", json=body or QUERY,
                           headers={"Authorization": f"Bearer {token}"})


async def revoke(http: httpx.AsyncClient, admin_key: str, **input: Any) -> dict[str, Any]:
    body = (await ask(http, admin_key, {"query": REVOKE, "variables": {"input": input}})).json()
    assert "errors" not in body, body
    revoked: dict[str, Any] = body["data"]["revokeToken"]
    return revoked


async def closed_with(ws: TransportWS) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await ws.receive(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["message"] == "Token has been revoked"


@pytest.fixture
def jwt_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, jwt_secret=SECRET)


async def test_a_revoked_jwt_is_refused_and_its_sockets_closed_on_every_replica(
    jwt_settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    revoked_token = hs256(claims(tenant, jti="t-1"))
    kept_token = hs256(claims(tenant, jti="t-2"))
    async with open_stores(jwt_settings) as other_stores, \
            replica(jwt_settings, stores) as first, \
            replica(jwt_settings, other_stores) as second, \
            TransportWS.connect(first.address, revoked_token) as on_first, \
            TransportWS.connect(second.address, revoked_token) as on_second, \
            TransportWS.connect(second.address, kept_token) as kept:
        for ws in (on_first, on_second, kept):
            assert (await ws.receive())["type"] == "connection_ack"
        for rep in (first, second):
            assert (await ask(rep.http, revoked_token)).status_code == 200
        revocation = await revoke(first.http, tenant.key, jti="t-1")
        assert revocation["jti"] == "t-1" and revocation["subject"] is None
        # The replica that revoked it refuses it before answering the mutation.
        refused(await ask(first.http, revoked_token))
        assert await closed_with(on_first) == (4403, "Credential revoked")
        assert await closed_with(on_second) == (4403, "Credential revoked")
        # The other replica learnt it from the announcement: no registry round trip.
        second.calls.clear()
        refused(await ask(second.http, revoked_token))
        assert second.calls.per_request("registry") == [0]
        # Another token of the same subject is untouched, socket and requests.
        await kept.send({"type": "ping"})
        assert (await kept.receive())["type"] == "pong"
        assert (await ask(second.http, kept_token)).status_code == 200


async def test_revoking_a_subject_refuses_the_tokens_issued_before(
    jwt_settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    now = int(time.time())
    earlier = hs256(claims(tenant, sub="carol", iat=now - 60))
    no_iat = hs256(claims(tenant, sub="carol", iat=None))
    other_subject = hs256(claims(tenant, sub="dave", iat=now - 60))
    later = hs256(claims(tenant, sub="carol", iat=now + 5))
    async with replica(jwt_settings, stores) as rep:
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        revocation = await revoke(rep.http, tenant.key, subject="carol", issuedBefore=cutoff)
        assert revocation["subject"] == "carol" and revocation["jti"] is None
        refused(await ask(rep.http, earlier))
        refused(await ask(rep.http, no_iat))
        assert (await ask(rep.http, other_subject)).status_code == 200
        assert (await ask(rep.http, later)).status_code == 200


async def test_a_revocation_names_tokens_of_its_own_tenant_only(
    jwt_settings: Settings, stores: Stores, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = hs256(claims(tenant, jti="shared-id"))
    theirs = hs256(claims(other_tenant, jti="shared-id"))
    async with replica(jwt_settings, stores) as rep:
        await revoke(rep.http, other_tenant.key, jti="shared-id")
        refused(await ask(rep.http, theirs))
        assert (await ask(rep.http, mine)).status_code == 200


async def test_input_names_one_kind_of_revocation(
    jwt_settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with replica(jwt_settings, stores) as rep:
        for bad in ({}, {"jti": "a", "subject": "b"}, {"jti": ""},
                    {"jti": "a", "issuedBefore": "2026-01-01T00:00:00Z"}):
            body = (await ask(rep.http, tenant.key,
                              {"query": REVOKE, "variables": {"input": bad}})).json()
            assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], bad


async def test_a_cut_off_at_the_end_of_time_is_bad_input_and_a_stored_one_is_read(
    jwt_settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    # Found by test_fuzz: 0001-01-01T00:00:00Z reached PostgreSQL as -infinity, came back
    # without an offset, and the mutation answered INTERNAL after writing the row.
    now = int(time.time())
    async with replica(jwt_settings, stores) as rep:
        for cutoff in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"):
            body = (await ask(rep.http, tenant.key, {"query": REVOKE, "variables": {
                "input": {"subject": "erin", "issuedBefore": cutoff}}})).json()
            assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
        assert not await stores.registry.fetch(
            "SELECT 1 FROM revoked_tokens WHERE tenant_id = $1", tenant.id)
        # Such a row written by another writer: every re-read of the live revocations
        # must still work, or every JWT would fail with it.
        await stores.registry.execute(
            "INSERT INTO revoked_tokens (tenant_id, subject, issued_before) "
            "VALUES ($1, 'erin', '-infinity'), ($1, 'frank', 'infinity')", tenant.id)
        stores.registry.revoked_tokens = RevokedTokens()
        assert (await ask(rep.http, hs256(claims(tenant, sub="erin", iat=now)))
                ).status_code == 200
        refused(await ask(rep.http, hs256(claims(tenant, sub="erin", iat=None))))
        refused(await ask(rep.http, hs256(claims(tenant, sub="frank", iat=now))))
        assert (await ask(rep.http, hs256(claims(tenant, sub="gina", iat=now)))
                ).status_code == 200


def test_a_reread_keeps_what_was_announced_meanwhile() -> None:
    now = [0.0]
    copy = RevokedTokens(clock=lambda: now[0])
    tenant = uuid4()
    assert copy.due() and not copy.loaded
    copy.reading()
    copy.add(TokenRevocation(tenant, jti="during"))  # announced while the read ran
    copy.replace([TokenRevocation(tenant, jti="stored")])
    assert copy.revoked(tenant, "during", None, None)
    assert copy.revoked(tenant, "stored", None, None)
    assert not copy.due()
    now[0] = 31.0
    assert copy.due()
    copy.reading()
    assert not copy.due()  # one re-read at a time; the others use the copy meanwhile
    copy.replace([])
    assert not copy.revoked(tenant, "during", None, None)  # gone from the registry: expired
