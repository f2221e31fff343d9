"""A document with several operations and no operationName is a request error, as the
GraphQL spec's GetOperation requires, over HTTP (GET and POST, both media types) and both
WebSocket protocols; named, each operation of it runs."""

from __future__ import annotations

import json
from typing import Any

import websockets

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Gateway, Tenant
from tests.support.live_server import TransportWS, serve

TWO = "query A { a: __typename } query B { b: __typename }"
SUB_TWO = ("subscription S { shadowChanged(deviceIds: [\"00000000-0000-4000-8000-000000000000\"])"
           " { kind } } query Q { __typename }")
GRAPHQL_RESPONSE = "application/graphql-response+json"


def _refused(errors: list[dict[str, Any]]) -> None:
    [error] = errors
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["argument"] == "operationName"
    assert "several operations" in error["message"]


async def test_http_post_refuses_an_unnamed_choice(gateway: Gateway, tenant: Tenant) -> None:
    auth = {"Authorization": f"Bearer {tenant.key}"}
    strict = await gateway.http.post("/graphql", json={"query": TWO},
                                     headers={**auth, "Accept": GRAPHQL_RESPONSE})
    assert strict.status_code == 400
    assert "data" not in strict.json()
    _refused(strict.json()["errors"])
    legacy = await gateway.http.post("/graphql", json={"query": TWO},
                                     headers={**auth, "Accept": "application/json"})
    assert legacy.status_code == 200 and "data" not in legacy.json()
    _refused(legacy.json()["errors"])
    named = await gateway.http.post("/graphql", json={"query": TWO, "operationName": "B"},
                                    headers=auth)
    assert named.json() == {"data": {"b": "Query"}}
    single = await gateway.query("query Only { __typename }", key=tenant.key)
    assert single == {"data": {"__typename": "Query"}}


async def test_http_get_and_batches_refuse_it_too(gateway: Gateway, tenant: Tenant) -> None:
    auth = {"Authorization": f"Bearer {tenant.key}", "Accept": GRAPHQL_RESPONSE}
    got = await gateway.http.get("/graphql", params={"query": TWO}, headers=auth)
    assert got.status_code == 400
    _refused(got.json()["errors"])
    batch = await gateway.http.post(
        "/graphql", json=[{"query": TWO}, {"query": TWO, "operationName": "A"}], headers=auth)
    first, second = batch.json()
    _refused(first["errors"])
    assert second == {"data": {"a": "Query"}}


async def test_websockets_refuse_an_unnamed_choice(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with serve(create_app(settings, stores=stores)) as address:
        async with TransportWS.connect(address, tenant.key) as ws:
            assert (await ws.receive())["type"] == "connection_ack"
            op = await ws.subscribe(SUB_TWO)
            message = await ws.receive()
            assert (message["type"], message["id"]) == ("error", op), message
            _refused(message["payload"])
            # The socket goes on: the same document with a name runs.
            await ws.send({"id": "named", "type": "subscribe",
                           "payload": {"query": SUB_TWO, "operationName": "Q"}})
            message = await ws.receive()
            assert message == {"id": "named", "type": "next",
                               "payload": {"data": {"__typename": "Query"}}}
        async with websockets.connect(f"ws://{address}/graphql",
                                      subprotocols=["graphql-ws"]) as legacy:  # type: ignore[list-item]
            await legacy.send(json.dumps({"type": "connection_init", "payload": {
                "Authorization": f"Bearer {tenant.key}"}}))
            assert json.loads(await legacy.recv())["type"] == "connection_ack"
            await legacy.send(json.dumps({"id": "1", "type": "start",
                                          "payload": {"query": SUB_TWO}}))
            message = json.loads(await legacy.recv())
            while message["type"] == "ka":
                message = json.loads(await legacy.recv())
            assert message["type"] == "error" and message["id"] == "1", message
            _refused([message["payload"]])
