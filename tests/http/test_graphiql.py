"""The offline GraphiQL page: no CDN, every asset served locally, headers prefilled safely."""

from __future__ import annotations

import json
import re
import warnings

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from gateway.http.graphiql import STATIC_PATH, graphiql_html, static_app

# Starlette 1.x warns at import when its TestClient runs on `httpx` rather than `httpx2`
# (filterwarnings=error turns that into a collection error). Silence only that warning,
# only for this import; once httpx2 is installed there is nothing to silence.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=".*install `httpx2`", category=StarletteDeprecationWarning
    )
    from starlette.testclient import TestClient

EVIL = "</script><script>alert(1)</script>"


def make_client(**kwargs: object) -> TestClient:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_html(**kwargs))  # type: ignore[arg-type]

    app = Starlette(routes=[Route("/graphql", page), Mount(STATIC_PATH, app=static_app())])
    return TestClient(app)


def asset_urls(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, flags=re.IGNORECASE)


def embedded_config(page: str) -> dict[str, object]:
    match = re.search(r"var config = (\{.*?\});\n", page)
    assert match, "config object not found in page"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def client() -> TestClient:
    return make_client(headers={"Authorization": "Bearer dev-key-123"})


def test_page_is_html_with_title(client: TestClient) -> None:
    response = client.get("/graphql")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>IoTSphere GraphiQL</title>" in page
    assert "GraphiQL.createFetcher(" in page
    assert "devices(first: 10)" in embedded_config(page)["defaultQuery"]  # type: ignore[operator]


def test_page_references_no_remote_url(client: TestClient) -> None:
    page = client.get("/graphql").text
    assert not re.search(r"https?://", page, flags=re.IGNORECASE)
    # Protocol-relative URLs ("//cdn...") would also reach out to the network.
    assert not any(url.startswith("//") for url in asset_urls(page))


def test_every_asset_is_local_and_served(client: TestClient) -> None:
    page = client.get("/graphql").text
    # The empty data: icon keeps the browser from asking for /favicon.ico.
    urls = [url for url in asset_urls(page) if url != "data:,"]
    assert len(urls) >= 6  # css x2, react, react-dom, graphiql, explorer
    assert any(url.endswith("graphiql.min.js") for url in urls)
    assert any(url.endswith("graphiql.min.css") for url in urls)
    for url in urls:
        assert url.startswith(STATIC_PATH + "/"), url
        response = client.get(url)
        assert response.status_code == 200, url
        content_type = response.headers["content-type"]
        if url.endswith(".js"):
            assert "javascript" in content_type, (url, content_type)
        elif url.endswith(".css"):
            assert content_type.startswith("text/css"), (url, content_type)
        else:  # pragma: no cover - the page only loads JS and CSS
            pytest.fail(f"unexpected asset type: {url}")
        assert len(response.content) > (500 if url.endswith("/style.css") else 5_000), url


def test_bundle_exposes_the_api_the_page_uses(client: TestClient) -> None:
    bundle = client.get(f"{STATIC_PATH}/graphiql.min.js").text
    assert "window.GraphiQL=" in bundle
    assert ".createFetcher=" in bundle
    for prop in ("defaultHeaders", "isHeadersEditorEnabled", "shouldPersistHeaders"):
        assert prop in bundle, prop
    assert "graphql-transport-ws" in bundle  # graphql-ws is bundled for subscriptionUrl


def test_unknown_asset_is_404(client: TestClient) -> None:
    assert client.get(f"{STATIC_PATH}/nope.js").status_code == 404


def test_headers_are_prefilled(client: TestClient) -> None:
    config = embedded_config(client.get("/graphql").text)
    assert json.loads(config["defaultHeaders"]) == {  # type: ignore[arg-type]
        "Authorization": "Bearer dev-key-123"
    }


def test_header_values_are_escaped() -> None:
    headers = {"Authorization": f"Bearer {EVIL}", "X-Q": "a&b'\"\\"}
    page = make_client(headers=headers).get("/graphql").text
    assert EVIL not in page
    assert "alert(1)</script>" not in page
    assert page.count("</script>") == page.count("<script")  # no extra element closed
    # Only the page's own markup has "<" or ">": the embedded JSON has none.
    config_text = re.search(r"var config = (\{.*?\});\n", page).group(1)  # type: ignore[union-attr]
    assert not set("<>&") & set(config_text)
    assert json.loads(embedded_config(page)["defaultHeaders"]) == headers  # type: ignore[arg-type]


def test_without_headers_no_authorization() -> None:
    page = make_client().get("/graphql").text
    assert "Authorization" not in page
    assert "Bearer" not in page
    assert embedded_config(page)["defaultHeaders"] is None


@pytest.mark.parametrize("subscriptions", [True, False])
def test_endpoint_and_subscriptions_flag(subscriptions: bool) -> None:
    page = make_client(endpoint="/api/graphql", subscriptions=subscriptions).get("/graphql").text
    config = embedded_config(page)
    assert config["endpoint"] == "/api/graphql"
    assert config["subscriptions"] is subscriptions
