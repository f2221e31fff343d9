"""What a newcomer's browser meets: ``GET /`` leads to GraphiQL in development and answers
links in production; the dev key is prefilled only for a browser on this machine."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from gateway.app import create_app
from gateway.settings import Settings
from gateway.stores import Stores
from tests.support.lifespan import Lifespan

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
DEV_KEY = "iot_dev-key-for-this-test"


@asynccontextmanager
async def client(settings: Settings, stores: Stores, *, client_ip: str = "127.0.0.1",
                 **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dataclasses.replace(settings, **overrides), stores=stores,
                     dev_key=DEV_KEY)
    async with Lifespan(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


async def test_root_sends_a_browser_to_graphiql_in_development(
    settings: Settings, stores: Stores
) -> None:
    async with client(settings, stores) as http:
        page = await http.get("/", headers=HTML)
        assert page.status_code == 307 and page.headers["location"] == "/graphql"
        links = await http.get("/")  # not a browser: where things are
        assert links.status_code == 200
        assert links.json()["graphiql"] == "/graphql"
        assert links.json()["graphql"] == "/graphql"


async def test_root_answers_links_in_production_and_no_ide(
    settings: Settings, stores: Stores
) -> None:
    async with client(settings, stores, env="production") as http:
        for headers in (HTML, {}):
            answer = await http.get("/", headers=headers)
            assert answer.status_code == 200
            body = answer.json()
            assert body["graphql"] == "/graphql" and "graphiql" not in body
            assert {"healthz", "readyz", "metrics", "ingest"} <= set(body)
            for path in ("healthz", "readyz"):
                assert (await http.get(body[path])).status_code == 200
        assert (await http.get("/graphql", headers=HTML)).status_code == 401


async def test_dev_key_is_prefilled_for_loopback_browsers_only(
    settings: Settings, stores: Stores
) -> None:
    for ip, prefilled in (("127.0.0.1", True), ("::1", True), ("203.0.113.7", False),
                          ("10.0.0.5", False)):
        async with client(settings, stores, client_ip=ip) as http:
            page = await http.get("/graphql", headers=HTML)
            assert page.status_code == 200, ip
            assert (DEV_KEY in page.text) is prefilled, ip
