"""GraphQL over HTTP: graphql-http's server audits (npm) against a live gateway, media
types, status codes, GET, content types and batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.http import spec as http_spec
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import AppClient, Gateway, Tenant
from tests.support.js import JS, npm_ready
from tests.support.live_server import serve

GQL = "application/graphql-response+json"
TYPENAME = {"query": "{ __typename }"}


@pytest.fixture
async def live(settings: Settings, stores: Stores) -> AsyncIterator[str]:
    async with serve(create_app(settings, stores=stores)) as address:
        yield address


async def test_graphql_http_audits_pass(live: str, tenant: Tenant) -> None:
    """Every audit of graphql-http's ``auditServer`` (MUST, SHOULD and MAY) passes."""
    await asyncio.to_thread(npm_ready, "graphql-http")
    node = await asyncio.create_subprocess_exec(
        "node", str(JS / "audit.mjs"), f"http://{live}/graphql", tenant.key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(node.communicate(), 120)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert node.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)
    assert len(results) > 50  # the suite ran, not an empty list
    failed = [r for r in results if r["status"] != "ok"]
    by_status = {s: [r for r in failed if r["status"] == s] for s in ("error", "warn", "notice")}
    assert by_status["error"] == [] and by_status["warn"] == [], json.dumps(failed, indent=1)
    assert by_status["notice"] == [], json.dumps(failed, indent=1)

    async with httpx.AsyncClient(base_url=f"http://{live}") as http:  # and a plain client
        response = await http.post("/graphql", json=TYPENAME,
                                   headers=_auth(tenant, **{"X-Request-Id": "abc-1"}))
    assert response.status_code == 200 and response.headers["x-request-id"] == "abc-1"


def _auth(tenant: Tenant, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}", **headers}


# Cases are looped over inside one test each: a test's fresh databases cost more than all
# of its requests together.
ACCEPTS = [
    (None, "application/json"),
    ("*/*", "application/json"),
    ("application/json", "application/json"),
    (GQL, GQL),
    (f"{GQL}, application/json;q=0.9", GQL),
    (f"{GQL};q=0.5, application/json", "application/json"),
    ("application/*", "application/json"),
    ("text/html, */*;q=0.8", "application/json"),
]


async def test_media_type_follows_accept(gateway: Gateway, tenant: Tenant) -> None:
    for accept, media in ACCEPTS:
        headers = _auth(tenant, **({"Accept": accept} if accept else {}))
        response = await gateway.http.post("/graphql", json=TYPENAME, headers=headers)
        assert response.status_code == 200, accept
        assert response.headers["content-type"] == f"{media}; charset=utf-8", accept
        assert response.json() == {"data": {"__typename": "Query"}}


REQUEST_ERRORS: list[dict[str, Any]] = [
    {"query": "{"},  # parse error
    {"query": "{ noSuchField }"},  # validation error
    {"query": "query($id: ID!) { device(id: $id) { id } }", "variables": {"id": None}},
    {"query": "query A { __typename }", "operationName": "B"},  # no such operation
]


async def test_request_errors_are_400_with_graphql_response_json_and_200_with_json(
    gateway: Gateway, tenant: Tenant
) -> None:
    for body in REQUEST_ERRORS:
        query = body["query"]
        new = await gateway.http.post("/graphql", json=body, headers=_auth(tenant, Accept=GQL))
        assert new.status_code == 400, query
        assert "data" not in new.json() and new.json()["errors"], query
        legacy = await gateway.http.post("/graphql", json=body,
                                         headers=_auth(tenant, Accept="application/json"))
        assert legacy.status_code == 200, query
        assert "data" not in legacy.json() and legacy.json()["errors"], query

    # A field error is not a request error: data is there, and so is 200.
    response = await gateway.http.post("/graphql", json={"query": '{ device(id: "42") { id } }'},
                                       headers=_auth(tenant, Accept=GQL))
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"device": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_get_runs_queries_and_refuses_mutations_with_405(
    gateway: Gateway, tenant: Tenant
) -> None:
    query = "query Q($name: String!) { __type(name: $name) { name } }"
    mutation = 'mutation { createAsset(input: {name: "x", kind: "site"}) { id } }'
    for accept in (GQL, "application/json"):
        response = await gateway.http.get("/graphql", params={
            "query": query, "variables": json.dumps({"name": "Device"}), "operationName": "Q"},
            headers=_auth(tenant, Accept=accept))
        assert response.status_code == 200
        assert response.json() == {"data": {"__type": {"name": "Device"}}}

        refused = await gateway.http.get("/graphql", params={"query": mutation},
                                         headers=_auth(tenant, Accept=accept))
        assert refused.status_code == 405
        assert refused.headers["allow"] == "POST"
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_params: list[Any] = [{}, {"query": "{ __typename }", "variables": "{bad"},
                             [("query", "{ __typename }"), ("query", "{ __typename }")]]
    for params in bad_params:
        bad = await gateway.http.get("/graphql", params=params,
                                     headers=_auth(tenant, Accept=GQL))
        assert bad.status_code == 400, params
    assets = await gateway.query("{ assets { totalCount } }", key=tenant.key)
    assert assets["data"]["assets"]["totalCount"] == 0  # nothing was created


MALFORMED: list[tuple[bytes, str | None, int]] = [
    (b'{"query": "{ __typename }"}', "text/plain", 415),
    (b'{"query": "{ __typename }"}', None, 415),
    (b"query={ __typename }", "application/x-www-form-urlencoded", 415),
    (b'{"query": "{ __typename }"}', "application/json; charset=latin-1", 415),
    (b'{ "not json', "application/json", 400),
    (b"", "application/json", 400),
    (b'"a string"', "application/json", 400),
    (b'{"query": 1}', "application/json", 400),
    (b'{"query": "{ __typename }", "variables": "x"}', "application/json", 400),
    (b'{"query": "{ __typename }", "operationName": []}', "application/json", 400),
    (b'{"query": "{ __typename }", "extensions": 1}', "application/json", 400),
    (b'{"qeury": "{ __typename }"}', "application/json", 400),
    (b'{"query": "{ __typename }"}\xff', "application/json", 400),
    (b'[{"query": "{ __typename }"}, 1]', "application/json", 400),
]


async def test_malformed_requests_are_refused(gateway: Gateway, tenant: Tenant) -> None:
    for body, content_type, status in MALFORMED:
        headers = _auth(tenant, **({"Content-Type": content_type} if content_type else {}))
        response = await gateway.http.post("/graphql", content=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert "data" not in response.json()


async def test_a_batch_runs_every_operation_in_order(gateway: Gateway, tenant: Tenant) -> None:
    batch = [
        {"query": 'mutation { createAsset(input: {name: "plant", kind: "site"}) { name } }'},
        {"query": "{ assets { totalCount } }"},
        {"query": "{ nope }"},
        {"query": "query A { __typename } query B { __typename }", "operationName": "B"},
    ]
    response = await gateway.http.post("/graphql", json=batch, headers=_auth(tenant))
    assert response.status_code == 200
    first, second, third, fourth = response.json()
    assert first == {"data": {"createAsset": {"name": "plant"}}}
    assert second == {"data": {"assets": {"totalCount": 1}}}  # after the first, not beside
    assert "data" not in third and third["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert fourth == {"data": {"__typename": "Query"}}


async def test_a_batch_over_the_limit_runs_nothing(app_client: AppClient, tenant: Tenant) -> None:
    create = {"query": 'mutation { createAsset(input: {name: "x", kind: "site"}) { id } }'}
    async with app_client(max_batch_operations=3) as http:
        response = await http.post("/graphql", json=[create] * 4, headers=_auth(tenant))
        assert response.status_code == 400
        [error] = response.json()["errors"]
        assert error["extensions"] == {"code": "LIMIT_EXCEEDED", "limit": "maxBatchOperations",
                                       "maximum": 3}
        count = await http.post("/graphql", json={"query": "{ assets { totalCount } }"},
                                headers=_auth(tenant))
        assert count.json() == {"data": {"assets": {"totalCount": 0}}}
        ok = await http.post("/graphql", json=[create] * 3, headers=_auth(tenant))
        assert [len(r["data"]["createAsset"]["id"]) for r in ok.json()] == [36] * 3


def test_negotiation_rules() -> None:
    assert http_spec.negotiate("") == "application/json"
    assert http_spec.negotiate("application/json;q=0, */*") == GQL  # json refused outright
    assert http_spec.negotiate(f"{GQL};q=0, application/json") == "application/json"
    assert http_spec.negotiate("image/png") is None
    assert http_spec.negotiate(f"{GQL};q=bogus") is None


async def test_refusals_of_method_accept_operation_type_and_key(
    gateway: Gateway, tenant: Tenant
) -> None:
    unacceptable = await gateway.http.post("/graphql", json=TYPENAME,
                                           headers=_auth(tenant, Accept="text/plain"))
    assert unacceptable.status_code == 406
    assert unacceptable.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    put = await gateway.http.put("/graphql", json=TYPENAME, headers=_auth(tenant))
    assert put.status_code == 405

    sub = {"query": 'subscription { shadowChanged(deviceIds: ["x"]) { kind } }'}
    over_http = await gateway.http.post("/graphql", json=sub, headers=_auth(tenant, Accept=GQL))
    assert over_http.status_code == 400
    assert "WebSocket" in over_http.json()["errors"][0]["message"]

    empty_batch = await gateway.http.post("/graphql", json=[], headers=_auth(tenant))
    assert empty_batch.status_code == 400

    anonymous = await gateway.http.post("/graphql", json=TYPENAME, headers={"Accept": GQL})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == f"{GQL}; charset=utf-8"
