"""Store outages for real: each store is stopped while the gateway serves the dashboard,
and started again on the same port.

The suite's shared servers hold all three databases in one PostgreSQL cluster, so this
module runs its own: one embedded cluster per PostgreSQL store and a Valkey for the
shadows (``DevStack``s of one database each), stopped with ``pg_ctl stop -m fast`` or
SIGTERM and restarted where they were. The gateway is never restarted: each outage must
cost only the fields of the stopped store (nulls with STORE_UNAVAILABLE errors naming it,
HTTP 200), and full answers must come back within 5 s of the store returning (the bar
of the operability issue).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.app import create_app
from gateway.auth.callers import create_tenant_with_admin_key, hash_key, new_api_key
from gateway.runtime.demo import Fleet, seed_fleet
from gateway.runtime.devstack import DevStack
from gateway.settings import Settings
from gateway.stores import open_stores
from gateway.stores.migrations import migrate_reachable
from tests.support.lifespan import Lifespan
from tests.support.live_server import lifespan_state

PG_STORES = ("registry", "assets", "telemetry")
STORES = (*PG_STORES, "shadows")
RECOVERY = 5.0  # seconds: the bar for full answers after a store returns

QUERY = """
query Faults($first: Int!) {
  devices(first: $first) {
    totalCount
    edges { node {
      id name
      asset { name kind parent { name } }
      metadata
      shadow { version reported }
      latest(metrics: ["temperature", "vibration"]) { metric value }
      telemetry(metric: "temperature", bucket: "5m") { points { time value } stats { avg } }
    } }
  }
  assets(first: 20) { totalCount edges { node { name kind } } }
}
"""
# The device fields each store serves (the registry serves the page itself).
FIELDS = {"assets": ("asset", "metadata"), "telemetry": ("latest", "telemetry"),
          "shadows": ("shadow",)}
DEVICES = 6


@dataclass
class Cluster:
    """A server per store; the shadows live in the registry stack's Valkey."""

    stacks: dict[str, DevStack]
    settings: Settings

    def stop(self, store: str) -> None:
        if store == "shadows":
            self.stacks["registry"].stop_valkey()
        else:
            self.stacks[store].stop_postgres()

    def restart(self, store: str) -> None:
        if store == "shadows":
            self.stacks["registry"].restart_valkey()
        else:
            self.stacks[store].restart_postgres()


@dataclass(frozen=True)
class Seeded:
    fleet: Fleet
    key: str  # admin key, used before every outage
    spare_key: str  # a valid key that no gateway has verified yet


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Under /tmp and traversable: as root, PostgreSQL runs as a system user.
    root = Path(tempfile.mkdtemp(prefix="iotsphere-faults-"))
    root.chmod(0o711)
    stacks = {store: DevStack(root / store, databases=(store,)) for store in PG_STORES}
    try:
        with ThreadPoolExecutor(len(stacks)) as pool:
            ends = dict(zip(stacks, pool.map(DevStack.start, stacks.values()), strict=True))
        settings = Settings(
            registry_dsn=ends["registry"].dsn("registry"), assets_dsn=ends["assets"].dsn("assets"),
            telemetry_dsn=ends["telemetry"].dsn("telemetry"), redis_url=ends["registry"].redis_url,
            pool_min_size=1, pool_max_size=4, store_timeout=2.0,
        )
        yield Cluster(stacks, settings)
    finally:
        with ThreadPoolExecutor(len(stacks)) as pool:
            list(pool.map(DevStack.stop, stacks.values()))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def seeded(cluster: Cluster) -> Seeded:
    async with open_stores(cluster.settings) as stores:
        stores_pg = (stores.registry, stores.assets, stores.telemetry)
        assert await migrate_reachable(stores_pg, connect_timeout=5.0) == []
        tenant_id, key = await create_tenant_with_admin_key(stores.registry, "faults")
        spare = new_api_key()
        await stores.registry.create_api_key(tenant_id, "spare", hash_key(spare), "viewer")
        fleet = await seed_fleet(stores, tenant_id, devices=DEVICES, hours=1, sites=1, lines=1,
                                 machines=2)
    return Seeded(fleet, key, spare)


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    """A gateway that opens (and migrates) its own stores, as ``iotsphere serve`` does."""
    app = create_app(settings)
    state = lifespan_state(app)
    async with Lifespan(app, startup_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http, state


async def dashboard(http: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": QUERY, "variables": {
        "first": DEVICES}}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text  # never a 5xx for a store outage
    body: dict[str, Any] = response.json()
    return body


def check(body: dict[str, Any], seeded: Seeded, down: str | None) -> None:
    """The answer with every store up (``down`` None), or with ``down`` out: its fields
    null with errors naming it, everything else present."""
    data = body["data"]
    if down is None:
        assert "errors" not in body, body["errors"]
    else:
        errors = body.get("errors") or []
        assert errors, body
        for error in errors:
            assert error["extensions"]["code"] == "STORE_UNAVAILABLE", error
            assert error["extensions"]["store"] == down, error
            assert down in error["message"], error
    if down == "assets":
        assert data["assets"] is None
    else:
        assert data["assets"]["totalCount"] > 0 and data["assets"]["edges"], data["assets"]
    if down == "registry":
        assert data["devices"] is None
        return
    assert data["devices"]["totalCount"] == DEVICES
    active = {str(d) for d in seeded.fleet.active}
    for edge in data["devices"]["edges"]:
        node = edge["node"]
        assert node["id"] and node["name"]
        for store, fields in FIELDS.items():
            for name in fields:
                if store == down:
                    assert node[name] is None, (name, node)
                elif name == "shadow":
                    assert (node["shadow"] is not None) == (node["id"] in active), node
                else:
                    assert node[name] is not None, (name, node)


async def readiness(http: httpx.AsyncClient) -> tuple[int, dict[str, dict[str, Any]]]:
    response = await http.get("/readyz")
    body = response.json()
    assert body["ready"] == (response.status_code == 200)
    return response.status_code, {entry["store"]: entry for entry in body["stores"]}


async def until_full(http: httpx.AsyncClient, seeded: Seeded, within: float) -> dict[str, Any]:
    """Polls the dashboard until a full answer, for at most ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        body = await dashboard(http, seeded.key)
        if "errors" not in body:
            return body
        assert loop.time() < deadline, f"still degraded after {within} s: {body['errors'][:2]}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("down", STORES)
async def test_an_outage_costs_only_that_stores_fields_and_heals(
    cluster: Cluster, seeded: Seeded, down: str
) -> None:
    async with gateway(cluster.settings) as (http, state):
        check(await dashboard(http, seeded.key), seeded, None)  # also verifies the key
        status, stores = await readiness(http)
        assert status == 200 and {s["state"] for s in stores.values()} == {"closed"}, stores

        await asyncio.to_thread(cluster.stop, down)
        try:
            # Until the breaker answers for the store: each answer partial, never a 5xx.
            for _ in range(50):
                body = await dashboard(http, seeded.key)
                check(body, seeded, down)
                if any("circuit open" in e["message"] for e in body["errors"]):
                    break
            else:
                raise AssertionError("the circuit never opened")
            status, stores = await readiness(http)
            assert status == 503
            assert not stores[down]["ok"] and stores[down]["state"] == "open", stores[down]
            assert down in stores[down]["error"]
            for store in set(STORES) - {down}:
                assert stores[store]["ok"] and stores[store]["state"] == "closed", stores
            if down == "registry":
                # Keys the registry verified before the outage keep reading (above); one
                # it never verified cannot be checked: the whole request is refused.
                refused = await http.post("/graphql", json={"query": "{ __typename }"},
                                          headers={"Authorization": f"Bearer {seeded.spare_key}"})
                assert refused.status_code == 503, refused.text
                error = refused.json()["errors"][0]
                assert error["extensions"] == {"code": "STORE_UNAVAILABLE", "store": "registry"}
        finally:
            await asyncio.to_thread(cluster.restart, down)

        check(await until_full(http, seeded, RECOVERY), seeded, None)
        status, stores = await readiness(http)
        assert status == 200 and {s["state"] for s in stores.values()} == {"closed"}, stores
        if down == "shadows":
            hub = state["state"]["hub"]
            await asyncio.wait_for(hub.connected.wait(), RECOVERY)  # reconnected on its own
            assert hub.reconnects >= 1


INGEST = """mutation($r: [ReadingInput!]!) { ingestTelemetry(readings: $r) { accepted } }"""
LATEST = """query($id: ID!) { device(id: $id) { name latest { metric value } } }"""


async def test_starts_while_a_store_is_down_and_serves_it_once_it_answers(
    cluster: Cluster, seeded: Seeded
) -> None:
    # A telemetry database nobody has migrated yet, on a server that is down at start.
    server_dsn = cluster.settings.telemetry_dsn
    assert server_dsn is not None
    admin = await asyncpg.connect(server_dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute('DROP DATABASE IF EXISTS "telemetry_late"')
        await admin.execute('CREATE DATABASE "telemetry_late"')
    finally:
        await admin.close()
    settings = dataclasses.replace(
        cluster.settings, telemetry_dsn=server_dsn.rsplit("/", 1)[0] + "/telemetry_late")
    await asyncio.to_thread(cluster.stop, "telemetry")
    stopped = True
    try:
        async with gateway(settings) as (http, _):
            status, stores = await readiness(http)
            assert status == 503 and not stores["telemetry"]["ok"], stores
            assert "telemetry" in stores["telemetry"]["error"]
            assert all(stores[s]["ok"] for s in ("registry", "assets", "shadows")), stores
            check(await dashboard(http, seeded.key), seeded, "telemetry")

            await asyncio.to_thread(cluster.restart, "telemetry")
            stopped = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15.0  # bounded wait, not a speed check
            while (await readiness(http))[0] != 200:
                assert loop.time() < deadline, await readiness(http)
                await asyncio.sleep(0.1)

            body = await dashboard(http, seeded.key)
            assert "errors" not in body, body["errors"]  # migrated: empty series, no errors
            device = str(seeded.fleet.active[0])
            now = datetime.now(UTC).isoformat()
            written = await http.post("/graphql", json={"query": INGEST, "variables": {"r": [
                {"deviceId": device, "metric": "temperature", "time": now, "value": 21.5}]}},
                headers={"Authorization": f"Bearer {seeded.key}"})
            assert written.json() == {"data": {"ingestTelemetry": {"accepted": 1}}}
            read = await http.post("/graphql", json={"query": LATEST, "variables": {
                "id": device}}, headers={"Authorization": f"Bearer {seeded.key}"})
            latest = read.json()["data"]["device"]["latest"]
            assert latest == [{"metric": "temperature", "value": 21.5}]
    finally:
        if stopped:  # up again for whoever is next
            await asyncio.to_thread(cluster.restart, "telemetry")
