"""The gateway's own per-request round-trip counts (``StoreCalls``), read from outside: a
middleware keeps each HTTP request's counter, including requests refused before any
GraphQL runs (no ``extensions`` to read them from)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from gateway.stores.base import StoreCalls


class RequestCalls:
    def __init__(self) -> None:
        self.requests: list[StoreCalls] = []

    def total(self, store: str) -> int:
        return sum(getattr(calls, store) for calls in self.requests)

    def per_request(self, store: str) -> list[int]:
        return [getattr(calls, store) for calls in self.requests]

    def clear(self) -> None:
        self.requests.clear()


def count_requests(app: Starlette) -> RequestCalls:
    """Adds the middleware to ``app`` (before it starts); the returned object fills up as
    requests finish."""
    kept = RequestCalls()

    class _Keep:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await self.inner(scope, receive, send)
            finally:
                calls = scope.get("state", {}).get("calls") if scope["type"] == "http" else None
                if calls is not None:
                    kept.requests.append(calls)

    app.add_middleware(_Keep)
    return kept
