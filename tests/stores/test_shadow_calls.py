"""Shadow reads through the store boundary (``ShadowStore.get_many``,
``get_with_versions``) against a real Valkey behind a TCP proxy: each call is counted and
timed; dropped connections and a server that stops answering are outages that open the
circuit, after which calls fail fast until one probe succeeds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from gateway.errors import StoreUnavailable
from gateway.settings import Settings
from gateway.stores.base import begin_counting
from gateway.stores.breaker import CircuitBreaker
from gateway.stores.shadows import ShadowDoc, ShadowStore
from tests.support.tcp_proxy import TcpProxy, proxy

TENANT = uuid4()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def front(settings: Settings) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(settings.redis_url or "")
    assert parts.hostname and parts.port
    async with proxy(parts.hostname, parts.port) as front:
        yield front


@pytest.fixture
async def shadows(front: TcpProxy, clock: Clock) -> AsyncIterator[ShadowStore]:
    store = ShadowStore(f"redis://127.0.0.1:{front.port}/0", timeout=0.5,
                        breaker=CircuitBreaker("shadows", failures=3, cooldown=10.0,
                                               clock=clock))
    await store.connect()
    try:
        yield store
    finally:
        front.resume()
        await store.aclose()


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"store": "shadows"}) or 0.0


async def test_each_read_is_counted_and_timed(shadows: ShadowStore) -> None:
    device = uuid4()
    await shadows.put(TENANT, ShadowDoc(device, 3, {}, {"on": True}, {},
                                        datetime.now(UTC)))
    trips, timed = (_sample("iotsphere_store_round_trips_total"),
                    _sample("iotsphere_store_call_seconds_count"))
    calls = begin_counting()
    [doc, missing] = await shadows.get_many(TENANT, [device, uuid4()])
    assert doc is not None and doc.reported == {"on": True} and missing is None
    [(again, _)] = await shadows.get_with_versions(TENANT, [device])
    assert again == doc
    assert calls.shadows == 2
    assert _sample("iotsphere_store_round_trips_total") - trips == 2
    assert _sample("iotsphere_store_call_seconds_count") - timed == 2


async def test_outages_open_the_circuit_and_one_probe_closes_it(
    shadows: ShadowStore, front: TcpProxy, clock: Clock
) -> None:
    front.cut()
    for _ in range(2):
        with pytest.raises(StoreUnavailable) as failed:
            await shadows.get_many(TENANT, [uuid4()])
        assert failed.value.store == "shadows"
    front.resume()
    front.hang()
    with pytest.raises(StoreUnavailable, match="Timeout"):  # cut off at the store timeout
        await shadows.get_with_versions(TENANT, [uuid4()])
    assert shadows.breaker.state == "open"
    with pytest.raises(StoreUnavailable, match="circuit open"):
        await shadows.get_many(TENANT, [uuid4()])  # at once: the read is never sent

    front.resume()
    clock.now += 10.0
    assert await shadows.get_many(TENANT, [uuid4()]) == [None]  # the probe
    assert shadows.breaker.state == "closed"

