"""Graceful shutdown: the part uvicorn leaves to the application.

On SIGTERM uvicorn stops accepting connections, closes WebSockets with 1012 (Service
Restart: clients reconnect, to another replica or to this one restarted), lets in-flight
requests run for ``timeout_graceful_shutdown`` seconds (``SHUTDOWN_GRACE``), then cancels
what is left and runs the lifespan shutdown (background tasks, hub, pools; the CLI stops
the embedded stores after that). A cancellation can land anywhere, COMMIT included: the
one point where a client could get an error for a bulk ingest that was in fact stored.

So the gateway ends request bodies itself, earlier: ``DrainGuard`` refuses any body still
arriving ``reserve`` seconds before uvicorn's deadline by raising ``ShuttingDown`` from
``receive``. The handler's transaction rolls back and the client gets 503 with nothing
stored. A body complete by then is committed and answered: the reserve is what is left
for that commit. Whatever uvicorn still cancels at the deadline (a stalled upload, a
commit blocked longer than the reserve) is answered 503 too, instead of a bare 500.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ShuttingDown

log = logging.getLogger("gateway.runtime.draining")

COMMIT_RESERVE = 5.0  # seconds kept for committing bodies complete before the cutoff
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _error(error: ShuttingDown) -> JSONResponse:
    return JSONResponse({"errors": [error.formatted]}, status_code=503)


def reserve(grace: float) -> float:
    """Seconds before the end of the grace period at which bodies are refused."""
    return min(COMMIT_RESERVE, grace / 2)


class DrainGuard:
    """ASGI wrapper: learns of SIGTERM/SIGINT (by chaining the server's own handlers when
    the lifespan starts) and refuses request bodies past the cutoff."""

    def __init__(self, app: ASGIApp, grace: float) -> None:
        self.app = app
        self.grace = grace
        self.cutoff: float | None = None  # monotonic time; None until a signal arrives

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._request(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            self._chain_signals()
        await self.app(scope, receive, send)

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._guarded(receive), tracked)
        except asyncio.CancelledError:
            if self.cutoff is None or started:
                raise
            # uvicorn's grace period ended with this request still running (its store
            # work was cancelled, its transaction rolled back). Answered with a coded
            # error rather than uvicorn's bare 500; not "nothing stored", since a cut
            # COMMIT may have gone through.
            await _error(ShuttingDown(
                "The gateway shut down before this request finished; it may not have "
                "been applied."))(scope, receive, send)

    def begin(self) -> None:
        """Starts the drain (idempotent): bodies are refused from ``cutoff`` on."""
        if self.cutoff is None:
            self.cutoff = time.monotonic() + self.grace - reserve(self.grace)
            log.info("draining: request bodies refused in %.1f s, in-flight work ends "
                     "within %.1f s", self.grace - reserve(self.grace), self.grace)

    def _guarded(self, receive: Receive) -> Receive:
        async def guarded() -> Message:
            message = await receive()
            # One comparison per body chunk while serving; only a body that is still
            # arriving is refused, a complete one goes on to its commit.
            if (self.cutoff is not None and message.get("more_body")
                    and time.monotonic() >= self.cutoff):
                raise ShuttingDown()
            return message
        return guarded

    def _chain_signals(self) -> None:
        """Runs ``begin`` ahead of the handlers uvicorn installed for the serve (it
        restores its predecessors when the serve ends, which drops these)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled there (in-thread test servers)
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if not (isinstance(previous, _Chained) and previous.guard is self):
                signal.signal(sig, _Chained(self, previous))


class _Chained:
    """A signal handler that starts the drain, then does what the previous one did."""

    def __init__(self, guard: DrainGuard, previous: Any) -> None:
        self.guard = guard
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.guard.begin()
        if callable(self.previous):
            self.previous(signum, frame)
        else:  # SIG_DFL or SIG_IGN: put it back and let it act
            signal.signal(signum, self.previous)
            signal.raise_signal(signum)
