"""CORS for browser frontends on other origins, from ``IOTSPHERE_ALLOWED_ORIGINS`` (the
same list that admits their WebSockets).

Only listed origins get CORS headers; a preflight from any other origin is refused (400)
and the browser then never sends the request. Credentials travel in the Authorization
header, never in cookies, so ``allow_credentials`` stays off and no ambient credential
can be replayed by another site. With no origins listed there is no CORS at all
(same-origin pages only).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway.settings import Settings

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-Id",
                   "X-IoTSphere-Trace")
EXPOSED_HEADERS = ("X-Request-Id", "Retry-After")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache a preflight answer


def cors_middleware(settings: Settings) -> list[Middleware]:
    if not settings.allowed_origins:
        return []
    return [Middleware(
        CORSMiddleware, allow_origins=list(settings.allowed_origins),
        allow_methods=["GET", "POST"], allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS), allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE,
    )]
