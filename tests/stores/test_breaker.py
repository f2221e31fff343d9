"""The circuit breaker's transitions, on a fake clock (pure logic: no store involved)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import BadUserInput, StoreUnavailable
from gateway.stores.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, failures: int = 3, cooldown: float = 1.5) -> CircuitBreaker:
    return CircuitBreaker("assets", failures=failures, cooldown=cooldown, clock=clock)


def fail(b: CircuitBreaker, store: str = "assets") -> None:
    with pytest.raises(StoreUnavailable), b.guard():
        raise StoreUnavailable(store, "ConnectionRefusedError")


def succeed(b: CircuitBreaker) -> None:
    with b.guard():
        pass


def rejected(b: CircuitBreaker) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as caught, b.guard():
        raise AssertionError("an open circuit let a call through")
    return caught.value


def test_opens_after_n_consecutive_outage_failures(clock: Clock) -> None:
    b = breaker(clock)
    fail(b)
    fail(b)
    assert b.state == "closed"
    fail(b)
    assert b.state == "open"
    error = rejected(b)
    assert error.extensions == {"code": "STORE_UNAVAILABLE", "store": "assets"}
    assert "assets" in error.message and "circuit open" in error.message


def test_a_success_resets_the_count(clock: Clock) -> None:
    b = breaker(clock)
    fail(b)
    fail(b)
    succeed(b)
    fail(b)
    fail(b)
    assert b.state == "closed"


def test_errors_the_store_answered_with_are_not_outages(clock: Clock) -> None:
    b = breaker(clock, failures=1)
    for _ in range(5):
        with pytest.raises(BadUserInput), b.guard():
            raise BadUserInput("a NUL in text")
    assert b.state == "closed"


def test_another_stores_outage_does_not_count(clock: Clock) -> None:
    b = breaker(clock, failures=1)
    fail(b, store="registry")  # e.g. a registry lookup inside a telemetry transaction
    assert b.state == "closed"


def test_fails_fast_until_the_cooldown_then_lets_one_probe(clock: Clock) -> None:
    b = breaker(clock, failures=1, cooldown=1.5)
    fail(b)
    clock.now += 1.4
    assert b.state == "open"
    rejected(b)
    clock.now += 0.1
    assert b.state == "half-open"
    b.before()  # the probe goes through...
    rejected(b)  # ...and nobody else meanwhile
    b.success()
    assert b.state == "closed"
    succeed(b)


def test_a_failed_probe_opens_for_another_whole_cooldown(clock: Clock) -> None:
    b = breaker(clock, failures=2, cooldown=1.0)
    fail(b)
    fail(b)
    clock.now += 1.0
    fail(b)  # the probe
    assert b.state == "open"
    clock.now += 0.9
    rejected(b)
    clock.now += 0.1
    succeed(b)
    assert b.state == "closed"
    fail(b)  # closed again: the count starts over
    assert b.state == "closed"


def test_a_cancelled_probe_frees_the_probe_slot(clock: Clock) -> None:
    b = breaker(clock, failures=1, cooldown=1.0)
    fail(b)
    clock.now += 1.0
    with pytest.raises(asyncio.CancelledError), b.guard():
        raise asyncio.CancelledError
    assert b.state == "half-open"
    succeed(b)  # the next call probes
    assert b.state == "closed"


def test_rejects_a_threshold_below_one() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("assets", failures=0)
