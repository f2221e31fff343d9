"""One statement through a store (``PgStore.fetch``, ``fetchrow``, ``execute``) against a
real PostgreSQL: what the store boundary promises on that path. Held stores refuse; the
breaker hears each outcome (an outage is a failure, an answer a success, a cancellation
says nothing); driver errors are translated; each call is counted and timed; a query or
a wait for a connection that does not end is cut off at the store timeout. Outages are
injected by subclassing asyncpg's connection class, as asyncpg's own tests do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from gateway.errors import BadUserInput, StoreConflict, StoreUnavailable
from gateway.settings import Settings
from gateway.stores.base import begin_counting
from gateway.stores.breaker import CircuitBreaker
from gateway.stores.registry import RegistryStore

TIMEOUT = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cuttable(asyncpg.Connection):  # type: ignore[misc]
    """A connection whose statements, while ``cut`` is set, find it dropped."""

    cut = False
    statements = 0

    async def _maybe_dropped(self) -> None:
        type(self).statements += 1
        if type(self).cut:
            self.terminate()
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation")

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        await self._maybe_dropped()
        return await super().fetch(*args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        await self._maybe_dropped()
        return await super().fetchrow(*args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        await self._maybe_dropped()
        return await super().execute(*args, **kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(settings: Settings, clock: Clock) -> AsyncIterator[RegistryStore]:
    assert settings.registry_dsn is not None
    Cuttable.cut, Cuttable.statements = False, 0
    registry = RegistryStore(
        settings.registry_dsn, timeout=TIMEOUT, min_size=1, max_size=1,
        breaker=CircuitBreaker("registry", failures=3, cooldown=10.0, clock=clock))
    registry.connection_class = Cuttable
    await registry.connect()
    try:
        yield registry
    finally:
        await registry.aclose()


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"store": "registry"}) or 0.0


async def test_each_statement_is_counted_and_timed(store: RegistryStore) -> None:
    trips, timed = (_sample("iotsphere_store_round_trips_total"),
                    _sample("iotsphere_store_call_seconds_count"))
    calls = begin_counting()
    assert [tuple(r) for r in await store.fetch("SELECT 1")] == [(1,)]
    assert tuple(await store.fetchrow("SELECT 2") or ()) == (2,)
    assert await store.execute("SELECT 3") == "SELECT 1"
    assert await store.fetch_may_lag("SELECT 4")  # no replica: the primary, counted once
    assert calls.registry == 4
    assert _sample("iotsphere_store_round_trips_total") - trips == 4
    assert _sample("iotsphere_store_call_seconds_count") - timed == 4


async def test_outages_open_the_circuit_and_one_probe_closes_it(
    store: RegistryStore, clock: Clock
) -> None:
    Cuttable.cut = True
    for call in (store.fetch, store.fetchrow, store.execute):
        with pytest.raises(StoreUnavailable) as failed:
            await call("SELECT 1")
        assert failed.value.store == "registry"
        assert "ConnectionDoesNotExistError" in failed.value.message
    assert store.breaker.state == "open"
    tried = Cuttable.statements
    with pytest.raises(StoreUnavailable, match="circuit open"):
        await store.fetch("SELECT 1")
    assert Cuttable.statements == tried  # failed fast: no connection was asked

    Cuttable.cut = False
    clock.now += 10.0
    assert store.breaker.state == "half-open"
    assert await store.fetchrow("SELECT 1") is not None  # the probe, on a new connection
    assert store.breaker.state == "closed"


async def test_driver_errors_are_translated_and_count_as_answers(
    store: RegistryStore
) -> None:
    def one_outage_counted() -> None:
        store.breaker.failure()
        assert store.breaker._failures == 1

    one_outage_counted()
    with pytest.raises(BadUserInput, match="cannot be stored or searched by the registry"):
        await store.fetch("SELECT 1 / $1::int", 0)  # SQLSTATE 22012: a DataError
    assert store.breaker._failures == 0

    for code, kind in (("40001", "serialization"), ("40P01", "deadlock")):
        one_outage_counted()
        with pytest.raises(StoreConflict, match="nothing was written"):
            await store.execute(
                f"DO $$ BEGIN RAISE EXCEPTION '{kind}' USING ERRCODE = '{code}'; END $$")
        assert store.breaker._failures == 0

    one_outage_counted()
    with pytest.raises(asyncpg.exceptions.UndefinedTableError):  # a bug, not translated
        await store.fetchrow("SELECT * FROM no_such_table")
    assert store.breaker._failures == 0


async def test_a_held_store_refuses_without_a_round_trip(store: RegistryStore) -> None:
    store.held = "its migrations have not run"
    tried = Cuttable.statements
    with pytest.raises(StoreUnavailable, match="its migrations have not run"):
        await store.fetch("SELECT 1")
    assert Cuttable.statements == tried
    assert store.breaker.state == "closed" and store.breaker._failures == 0
    store.held = None
    assert await store.fetch("SELECT 1")


async def test_a_query_that_does_not_end_is_cut_off_at_the_store_timeout(
    store: RegistryStore
) -> None:
    with pytest.raises(StoreUnavailable, match="TimeoutError"):
        await store.fetch("SELECT pg_sleep(60)")
    assert store.breaker._failures == 1
    # The server cancelled the query; the one connection went back to the pool.
    assert await store.fetchrow("SELECT 1") is not None
    assert store.breaker._failures == 0


async def test_a_wait_for_a_connection_is_cut_off_at_the_store_timeout(
    store: RegistryStore
) -> None:
    held = await store.pool.acquire()  # the pool's only connection
    try:
        with pytest.raises(StoreUnavailable, match="TimeoutError"):
            await store.fetch("SELECT 1")
        assert store.breaker._failures == 1
    finally:
        await store.pool.release(held)
    assert await store.fetch("SELECT 1")
    assert store.breaker._failures == 0


async def test_a_cancelled_probe_lets_the_next_call_probe(
    store: RegistryStore, clock: Clock
) -> None:
    for _ in range(3):
        store.breaker.failure()
    clock.now += 10.0
    probe = asyncio.ensure_future(store.fetch("SELECT pg_sleep(60)"))
    await asyncio.sleep(0)  # the probe runs until it waits for the query's answer
    assert store.breaker._probing
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert store.breaker.state == "half-open" and not store.breaker._probing
    assert await store.fetch("SELECT 1")  # the next call was let through as the probe
    assert store.breaker.state == "closed"
