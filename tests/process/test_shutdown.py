"""Graceful shutdown of a real ``iotsphere serve`` process: SIGTERM during a bulk
``POST /ingest`` and an open subscription. The ingest either commits fully and answers
200 with its counts, or the client gets an error and nothing is committed; the subscriber
sees a normal close (1012, Service Restart); the process exits 0.

The SIGTERM lands at a known point each time, found from PostgreSQL itself: mid-body (the
ingest's transaction is open, the body still arriving) or during the commit (the final
INSERT waits on a lock this test holds on ``readings``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import orjson

from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.live_server import TransportWS
from tests.support.serve_process import GatewayProcess, gateway_process

METRIC = "shutdown_probe"
SUB = "subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) { kind version } }"


def lines(device: UUID, start: int, count: int) -> bytes:
    now = datetime.now(UTC)
    return b"".join(orjson.dumps({
        "deviceId": str(device), "metric": METRIC,
        "time": (now - timedelta(seconds=n)).isoformat(), "value": n,
    }) + b"\n" for n in range(start, start + count))


async def stored(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.telemetry_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings WHERE metric = $1",
                                       METRIC))
    finally:
        await conn.close()


async def wait_for_backend(settings: Settings, condition: str) -> None:
    """Waits until a session of the gateway on the telemetry database matches
    ``condition`` (SQL over pg_stat_activity)."""
    conn = await asyncpg.connect(settings.telemetry_dsn)
    try:
        for _ in range(600):
            if await conn.fetchval(
                f"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                f"AND pid <> pg_backend_pid() AND {condition}"
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no gateway session with {condition}")
    finally:
        await conn.close()


async def post_ingest(address: str, key: str, content: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http:
        return await http.post("/ingest", content=content, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"})


@asynccontextmanager
async def subscribed(gateway: GatewayProcess, key: str, device: UUID,
                     ) -> AsyncIterator[TransportWS]:
    async with TransportWS.connect(gateway.address, key) as ws:
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(SUB, {"ids": [str(device)]})
        assert (await ws.next_event())["kind"] == "SNAPSHOT"
        yield ws


async def closed_with(ws: TransportWS) -> int | None:
    await asyncio.wait_for(ws.ws.wait_closed(), 30)
    code: int | None = ws.ws.close_code
    return code


async def device_of(stores: Stores, tenant: Tenant) -> UUID:
    fleet = await seed_fleet(stores, tenant.id, devices=1, hours=0.02, sites=1, lines=1,
                             machines=1)
    return fleet.active[0] if fleet.active else fleet.devices[0]


async def test_sigterm_mid_body_commits_a_body_that_completes_in_time(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    device = await device_of(stores, tenant)
    signalled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield lines(device, 0, 500)
        await signalled.wait()  # the rest is sent after SIGTERM, slowly
        for chunk in range(1, 6):
            await asyncio.sleep(0.05)
            yield lines(device, chunk * 500, 500)

    async with gateway_process(settings, SHUTDOWN_GRACE="20") as gateway:
        async with subscribed(gateway, tenant.key, device) as ws:
            ingest = asyncio.create_task(post_ingest(gateway.address, tenant.key, body()))
            await wait_for_backend(settings, "state = 'idle in transaction'")
            gateway.terminate()
            signalled.set()
            response = await ingest
            assert await closed_with(ws) == 1012
        assert await gateway.wait() == 0, gateway.output
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3000
    assert await stored(settings) == 3000


async def test_sigterm_mid_body_refuses_a_body_still_arriving_at_the_cutoff(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    device = await device_of(stores, tenant)
    signalled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield lines(device, 0, 500)
        await signalled.wait()
        for chunk in range(1, 200):  # 20 s of body: far past the 1 s cutoff
            await asyncio.sleep(0.1)
            yield lines(device, chunk * 500, 500)

    # Grace 2 s: bodies are refused 1 s after SIGTERM, uvicorn cancels at 2 s. At INFO,
    # for uvicorn's access line: the status the server answered, whatever the client saw.
    async with gateway_process(settings, SHUTDOWN_GRACE="2", LOG_LEVEL="INFO") as gateway:
        ingest = asyncio.create_task(post_ingest(gateway.address, tenant.key, body()))
        await wait_for_backend(settings, "state = 'idle in transaction'")
        gateway.terminate()
        signalled.set()
        outcome = await asyncio.gather(ingest, return_exceptions=True)
        assert await gateway.wait() == 0, gateway.output
    response = outcome[0]
    if isinstance(response, httpx.Response):  # else the connection closed mid-upload
        assert response.status_code == 503, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
    else:
        assert isinstance(response, httpx.TransportError), response
    # The guard answered 503 (a cancellation by uvicorn would have logged no status).
    assert '"POST /ingest HTTP/1.1" 503' in gateway.output, gateway.output
    assert await stored(settings) == 0


async def blocked_commit(settings: Settings, grace: str, release_after_exit: bool,
                         stores: Stores, tenant: Tenant) -> tuple[Any, GatewayProcess]:
    """SIGTERM while the ingest's final INSERT waits on a lock held here; the lock is
    released shortly after SIGTERM, or only once the process has exited."""
    device = await device_of(stores, tenant)
    locker = await asyncpg.connect(settings.telemetry_dsn)
    try:
        async with gateway_process(settings, SHUTDOWN_GRACE=grace) as gateway:
            async with subscribed(gateway, tenant.key, device) as ws:
                lock = locker.transaction()
                await lock.start()
                await locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
                ingest = asyncio.create_task(
                    post_ingest(gateway.address, tenant.key, lines(device, 0, 2000)))
                await wait_for_backend(settings, "wait_event_type = 'Lock'")
                gateway.terminate()
                if not release_after_exit:
                    await asyncio.sleep(0.5)  # the commit is still blocked when draining
                    await lock.commit()
                [outcome] = await asyncio.gather(ingest, return_exceptions=True)
                assert await closed_with(ws) == 1012
            assert await gateway.wait() == 0, gateway.output
            if release_after_exit:
                await lock.commit()
    finally:
        await locker.close()
    return outcome, gateway


async def test_sigterm_during_commit_finishes_it_and_answers(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    outcome, gateway = await blocked_commit(settings, "20", False, stores, tenant)
    assert isinstance(outcome, httpx.Response), (outcome, gateway.output)
    assert outcome.status_code == 200, outcome.text
    assert outcome.json()["accepted"] == 2000
    assert await stored(settings) == 2000


async def test_commit_blocked_past_the_grace_is_rolled_back(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    outcome, gateway = await blocked_commit(settings, "2", True, stores, tenant)
    assert isinstance(outcome, httpx.Response), (outcome, gateway.output)
    assert outcome.status_code == 503, outcome.text
    assert outcome.json()["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
    assert "timeout graceful shutdown exceeded" in gateway.output, gateway.output
    assert await stored(settings) == 0
