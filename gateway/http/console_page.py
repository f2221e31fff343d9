"""The live fleet console at ``/console``: one HTML page, its script and stylesheet
(``gateway/http/console/``, shipped in the wheel as package data), served by the gateway
itself, so it works offline. The page talks only to the public GraphQL API with the
user's key; outside production the dev key is prefilled, and only for a browser on this
machine (the rule GraphiQL's page follows, ``gateway/http/front_door.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from gateway.http.front_door import is_loopback_client
from gateway.http.graphiql import script_json

PATH = "/console"
STATIC_PATH = "/console-static"


@lru_cache(maxsize=1)
def _template() -> str:
    return (resources.files("gateway.http") / "console" / "index.html").read_text("utf-8")


def static_app() -> StaticFiles:
    return StaticFiles(directory=str(resources.files("gateway.http") / "console"))


def console_endpoint(dev_key: str | None) -> Callable[[Request], Awaitable[Response]]:
    """The page's endpoint; ``dev_key`` is None in production (nothing prefilled)."""

    async def page(request: Request) -> Response:
        key = dev_key if dev_key and is_loopback_client(request.scope) else None
        html = _template().replace("{{config}}", script_json({"key": key}))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return page
