"""asgi-lifespan's LifespanManager with each request given its own shallow copy of the
lifespan state, as ASGI servers give it (the ASGI spec; uvicorn copies it per request).
asgi-lifespan 2 hands every request the same dict, so concurrent requests in a test
overwrote each other's per-request entries (the caller, the store-call count): a refused
request once reported the round trips of an ordinary one running beside it."""

from __future__ import annotations

from typing import Any

from asgi_lifespan import LifespanManager

Scope = dict[str, Any]


def _per_request_state(app: Any) -> Any:
    async def with_own_state(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            scope["state"] = dict(scope["state"])
        await app(scope, receive, send)
    return with_own_state


class Lifespan(LifespanManager):
    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(_per_request_state(app), **options)
