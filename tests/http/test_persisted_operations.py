"""Persisted operations (APQ-compatible hashes): off, allow and only modes, over HTTP
(POST, GET, batches) and WebSocket; the manifest and its builder."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import websockets

from gateway.app import create_app
from gateway.http.persisted import LEARNED_MAX_BYTES, LearnedDocuments, document_hash
from gateway.settings import Settings, SettingsError
from gateway.stores import Stores
from tests.conftest import AppClient, Tenant
from tests.support.live_server import TransportWS, serve

REGISTERED = "query Count { devices { totalCount } }"
OTHER = "query Other { assets { totalCount } }"
SUB = "subscription S($ids: [ID!]) { shadowChanged(deviceIds: $ids) { kind } }"
GQL = "application/graphql-response+json"
UNKNOWN_DEVICE = "00000000-0000-4000-8000-000000000000"


def _ext(document: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_hash(document)}}


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({document_hash(d): d for d in (REGISTERED, SUB)}))
    return path


async def _post(http: Any, tenant: Tenant, body: Any, accept: str = "application/json"
                ) -> tuple[int, Any]:
    response = await http.post("/graphql", json=body, headers={
        "Authorization": f"Bearer {tenant.key}", "Accept": accept})
    return response.status_code, response.json()


def _code(body: dict[str, Any]) -> tuple[str, str]:
    [error] = body["errors"]
    assert "data" not in body
    return error["extensions"]["code"], error["message"]


COUNTED = {"data": {"devices": {"totalCount": 0}}}


async def test_off_runs_documents_and_refuses_bare_hashes(
    app_client: AppClient, tenant: Tenant
) -> None:
    async with app_client() as http:
        assert await _post(http, tenant, {"query": REGISTERED}) == (200, COUNTED)
        assert await _post(http, tenant, {"query": REGISTERED, "extensions": _ext(REGISTERED)}
                           ) == (200, COUNTED)
        status, body = await _post(http, tenant, {"extensions": _ext(REGISTERED)})
        assert status == 200 and _code(body) == ("PERSISTED_QUERY_NOT_SUPPORTED",
                                                 "PersistedQueryNotSupported")
        status, body = await _post(http, tenant, {"query": OTHER, "extensions": _ext(REGISTERED)},
                                   accept=GQL)
        assert status == 400 and _code(body) == ("BAD_USER_INPUT",
                                                 "provided sha does not match query")


async def test_allow_runs_registered_hashes_and_any_document(
    app_client: AppClient, tenant: Tenant, manifest: Path
) -> None:
    async with app_client(persisted_operations="allow", persisted_manifest=manifest) as http:
        assert await _post(http, tenant, {"extensions": _ext(REGISTERED)}) == (200, COUNTED)
        assert (await _post(http, tenant, {"query": OTHER}))[0] == 200
        status, body = await _post(http, tenant, {"extensions": _ext(OTHER)})
        # What APQ clients expect (they then send the document, which runs).
        assert status == 200 and _code(body) == ("PERSISTED_QUERY_NOT_FOUND",
                                                 "PersistedQueryNotFound")
        status, body = await _post(http, tenant, {"extensions": _ext(OTHER)}, accept=GQL)
        assert status == 400 and _code(body)[0] == "PERSISTED_QUERY_NOT_FOUND"
        # A GET with the hash alone: cacheable by a CDN, the document never travels.
        response = await http.get("/graphql", params={
            "extensions": json.dumps(_ext(REGISTERED))},
            headers={"Authorization": f"Bearer {tenant.key}"})
        assert (response.status_code, response.json()) == (200, COUNTED)


async def test_allow_learns_a_document_sent_with_its_hash_per_tenant(
    app_client: AppClient, tenant: Tenant, other_tenant: Tenant, manifest: Path
) -> None:
    async with app_client(persisted_operations="allow", persisted_manifest=manifest) as http:
        status, body = await _post(http, tenant, {"extensions": _ext(OTHER)})
        assert _code(body)[0] == "PERSISTED_QUERY_NOT_FOUND"
        # Apollo's retry: the document with its hash runs, and is learned...
        assert (await _post(http, tenant, {"query": OTHER, "extensions": _ext(OTHER)}))[0] == 200
        status, body = await _post(http, tenant, {"extensions": _ext(OTHER)})
        assert (status, body) == (200, {"data": {"assets": {"totalCount": 0}}})
        # ...for that tenant only.
        status, body = await _post(http, other_tenant, {"extensions": _ext(OTHER)})
        assert _code(body)[0] == "PERSISTED_QUERY_NOT_FOUND"
        # A wrong hash teaches nothing.
        wrong = "query Wrong { devices { totalCount } }"
        status, body = await _post(http, tenant, {"query": wrong, "extensions": _ext(OTHER + " ")})
        assert _code(body)[0] == "BAD_USER_INPUT"
        status, body = await _post(http, tenant, {"extensions": _ext(OTHER + " ")})
        assert _code(body)[0] == "PERSISTED_QUERY_NOT_FOUND"


def test_learned_documents_are_bounded_per_tenant() -> None:
    learned = LearnedDocuments(per_tenant=2)
    a, b = uuid4(), uuid4()
    for n in range(3):
        learned.learn(a, f"h{n}", f"doc {n}")
    learned.learn(b, "h0", "b's doc")
    assert [learned.get(a, f"h{n}") for n in range(3)] == [None, "doc 1", "doc 2"]
    assert learned.get(b, "h0") == "b's doc" and learned.get(b, "h1") is None
    learned.learn(a, "big", "x" * (LEARNED_MAX_BYTES + 1))
    assert learned.get(a, "big") is None


async def test_only_refuses_every_unregistered_document(
    app_client: AppClient, tenant: Tenant, manifest: Path
) -> None:
    async with app_client(persisted_operations="only", persisted_manifest=manifest) as http:
        assert await _post(http, tenant, {"extensions": _ext(REGISTERED)}) == (200, COUNTED)
        # The registered document sent in full (with or without its hash) runs too.
        assert await _post(http, tenant, {"query": REGISTERED}) == (200, COUNTED)
        assert await _post(http, tenant, {"query": REGISTERED, "extensions": _ext(REGISTERED)}
                           ) == (200, COUNTED)
        for body in ({"query": OTHER}, {"extensions": _ext(OTHER)},
                     {"query": OTHER, "extensions": _ext(OTHER)},
                     {"query": REGISTERED + " "}):  # one byte off is another document
            status, answer = await _post(http, tenant, body)
            assert status == 200, body
            code, message = _code(answer)
            assert code == "FORBIDDEN" and message.startswith("PersistedQueryNotFound"), body
            status, answer = await _post(http, tenant, body, accept=GQL)
            assert status == 403 and _code(answer)[0] == "FORBIDDEN"
        status, batch = await _post(http, tenant, [{"extensions": _ext(REGISTERED)},
                                                   {"query": OTHER}])
        assert status == 200
        assert batch[0] == COUNTED and batch[1]["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_only_applies_to_websocket_operations(
    settings: Settings, stores: Stores, tenant: Tenant, manifest: Path
) -> None:
    only = dataclasses.replace(settings, persisted_operations="only",
                               persisted_manifest=manifest)
    unregistered = "subscription { shadowChanged(deviceIds: []) { kind deviceId } }"
    async with serve(create_app(only, stores=stores)) as address, \
            TransportWS.connect(address, tenant.key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        refused = await ws.subscribe(unregistered)
        message = await ws.receive()
        assert (message["type"], message["id"]) == ("error", refused)
        assert message["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        # A hash-only subscribe runs the registered subscription (which then looks the
        # device up: NOT_FOUND shows it ran).
        await ws.send({"id": "h", "type": "subscribe", "payload": {
            "variables": {"ids": [UNKNOWN_DEVICE]}, "extensions": _ext(SUB)}})
        message = await ws.receive()
        assert (message["type"], message["id"]) == ("error", "h")
        assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_only_applies_to_the_legacy_websocket_protocol(
    settings: Settings, stores: Stores, tenant: Tenant, manifest: Path
) -> None:
    only = dataclasses.replace(settings, persisted_operations="only",
                               persisted_manifest=manifest)
    unregistered = "subscription { shadowChanged(deviceIds: []) { kind deviceId } }"
    async with serve(create_app(only, stores=stores)) as address, \
            websockets.connect(f"ws://{address}/graphql",
                               subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]

        async def answer(op: str) -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] != "ka":
                    assert message["id"] == op, message
                    return message

        await ws.send(json.dumps({"type": "connection_init", "payload": {
            "Authorization": f"Bearer {tenant.key}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "doc", "type": "start",
                                  "payload": {"query": unregistered}}))
        refused = await answer("doc")
        assert refused["type"] == "error"
        assert refused["payload"]["extensions"]["code"] == "FORBIDDEN"
        # A hash-only start runs the registered subscription (NOT_FOUND: it looked the
        # device up).
        await ws.send(json.dumps({"id": "h", "type": "start", "payload": {
            "variables": {"ids": [UNKNOWN_DEVICE]}, "extensions": _ext(SUB)}}))
        ran = await answer("h")
        assert ran["type"] == "error", ran
        assert ran["payload"]["extensions"]["code"] == "NOT_FOUND", ran


def test_the_manifest_is_checked_at_start(tmp_path: Path) -> None:
    settings = Settings()  # create_app connects to nothing: no stores needed
    with pytest.raises(SettingsError, match="PERSISTED_MANIFEST"):
        create_app(dataclasses.replace(settings, persisted_operations="only"))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({document_hash(OTHER): REGISTERED}))
    with pytest.raises(SettingsError, match="is not the SHA-256"):
        create_app(dataclasses.replace(settings, persisted_operations="allow",
                                       persisted_manifest=wrong))
    with pytest.raises(SettingsError, match="missing.json"):
        create_app(dataclasses.replace(settings, persisted_operations="only",
                                       persisted_manifest=tmp_path / "missing.json"))
    with pytest.raises(SettingsError, match="PERSISTED_OPERATIONS"):
        Settings.from_env({"IOTSPHERE_PERSISTED_OPERATIONS": "sometimes"})


async def test_apollo_manifests_and_the_builder(
    app_client: AppClient, tenant: Tenant, tmp_path: Path
) -> None:
    (tmp_path / "count.graphql").write_text(REGISTERED)
    (tmp_path / "other.graphql").write_text(OTHER + "\n")
    built = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway.http.persisted",
                         str(tmp_path / "count.graphql"), str(tmp_path / "other.graphql")],
        capture_output=True, text=True, check=True)
    documents = json.loads(built.stdout)
    assert documents == {document_hash(REGISTERED): REGISTERED,
                         document_hash(OTHER + "\n"): OTHER + "\n"}
    apollo = tmp_path / "apollo.json"
    apollo.write_text(json.dumps({
        "format": "apollo-persisted-query-manifest", "version": 1,
        "operations": [{"id": sha, "body": doc, "name": "x", "type": "query"}
                       for sha, doc in documents.items()]}))
    async with app_client(persisted_operations="only", persisted_manifest=apollo) as http:
        assert await _post(http, tenant, {"extensions": _ext(REGISTERED)}) == (200, COUNTED)
        status, body = await _post(http, tenant, {"query": OTHER})  # no newline: not listed
        assert _code(body)[0] == "FORBIDDEN"
