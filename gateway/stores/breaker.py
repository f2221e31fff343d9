"""A circuit breaker per store: fail fast while the store is down, probe it back.

    closed --N consecutive outage failures--> open --cool-down elapsed--> half-open
    half-open --the one probe call succeeds--> closed
    half-open --the probe fails--> open (a new cool-down)

Only outages count: errors the adapters translate to ``StoreUnavailable`` (refused or
dropped connections, timeouts). A store that answers with an error (a constraint, bad
input, a bug in a query) is up, and that answer counts as a success. While open, a call
fails at once with ``StoreUnavailable(store, "circuit open")`` instead of waiting for a
connect or a timeout. After the cool-down exactly one call goes through as the probe;
calls meanwhile fail fast, so a store coming back is not stampeded by every waiting request.

Pure logic over an injected clock, so the transitions are tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from gateway.errors import StoreUnavailable

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(
        self, store: str, *, failures: int = 5, cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        self.store = store
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0  # consecutive, while closed
        self._opened_at: float | None = None  # None: closed
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self._cooldown:
            return "half-open"
        return "open"

    def before(self) -> None:
        """Lets a call through or raises ``StoreUnavailable``; a call let through in
        half-open is the probe, and must report ``success``, ``failure`` or ``abandon``."""
        if self._opened_at is None:
            return
        if self._probing or self._clock() - self._opened_at < self._cooldown:
            raise StoreUnavailable(self.store, "circuit open")
        self._probing = True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        if self._opened_at is not None:
            # The probe failed (or a call let through before the circuit opened ended now):
            # wait a whole cool-down again.
            self._opened_at = self._clock()
            self._probing = False
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """The call ended without telling whether the store is up (it was cancelled, or
        failed in another store): the next call after this may probe."""
        self._probing = False

    def failed_with(self, exc: BaseException) -> None:
        """The outcome of a call that raised ``exc``: its own store's ``StoreUnavailable``
        is a failure, any other exception an answer from the store (so a success), except
        another store's outage or a cancellation, which say nothing about this store."""
        if isinstance(exc, StoreUnavailable):
            if exc.store == self.store:
                self.failure()
            else:
                self.abandon()
        elif isinstance(exc, Exception):
            self.success()
        else:
            self.abandon()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``before``, then the block's outcome: ``success``, or ``failed_with`` its error."""
        self.before()
        try:
            yield
        except BaseException as exc:
            self.failed_with(exc)
            raise
        self.success()
