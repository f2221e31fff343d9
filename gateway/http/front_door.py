"""What a browser meets first: ``GET /``, and who may see the dev key in GraphiQL.

``GET /`` sends a browser to GraphiQL in development; otherwise (production, or a client
that does not ask for HTML) it answers where things are, as JSON, instead of a bare 404.

The dev key (embedded mode's demo admin key) is prefilled in GraphiQL only for a browser on
this machine: with ``--host 0.0.0.0`` anyone on the network could open ``/graphql``.
uvicorn puts the peer address in ``scope["client"]`` (or X-Forwarded-For's, for a proxy on
this machine it trusts), so a proxy in front forwards its client's address, not its own.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Scope

from gateway.settings import Settings


def is_loopback_client(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _links(settings: Settings) -> dict[str, str]:
    links = {
        "name": "IoTSphere Gateway",
        "graphql": "/graphql",
        "websocket": "/graphql (graphql-transport-ws, graphql-ws)",
        "ingest": "/ingest",
        "healthz": "/healthz",
        "readyz": "/readyz",
        "metrics": "/metrics",
        "auth": "Authorization: Bearer <API key>",
    }
    if not settings.production:
        links["graphiql"] = "/graphql"
    return links


async def root(request: Request) -> Response:
    settings: Settings = request.state.settings
    if not settings.production and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/graphql", status_code=307)
    return JSONResponse(_links(settings))
