"""``iotsphere serve --workers 2``: two processes behind one port, each with its own pools
and subscription hub. A subscriber on one worker sees every update, whichever worker
served it; SIGTERM stops both cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from gateway.runtime.demo import seed_fleet
from gateway.settings import Settings
from gateway.stores import Stores
from tests.conftest import Tenant
from tests.support.live_server import TransportWS, free_port
from tests.support.serve_process import STARTED, gateway_process

SUB = """subscription($ids: [ID!]) {
  shadowChanged(deviceIds: $ids) { kind deviceId version shadow { reported } } }"""
UPDATE = """mutation UpdateShadow($d: ID!, $r: JSON!) {
  updateShadow(deviceId: $d, reported: $r) { version } }"""
UPDATES = 41  # odd: two workers cannot have served the same number
_SERVED = re.compile(
    r'^iotsphere_graphql_requests_total\{operation="UpdateShadow",outcome="ok"\} (\S+)$', re.M)


async def served_per_worker(address: str) -> set[int]:
    """UpdateShadow counts from /metrics, which each worker answers for itself: scraped on
    fresh connections until two different counts have been seen (or 60 tries)."""
    seen: set[int] = set()
    async with httpx.AsyncClient(base_url=f"http://{address}",
                                 limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for _ in range(60):
            match = _SERVED.search((await http.get("/metrics")).text)
            seen.add(int(float(match[1])) if match else 0)
            if len(seen) == 2:
                break
    return seen


async def test_updates_through_either_worker_reach_a_subscriber(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    fleet = await seed_fleet(stores, tenant.id, devices=2, hours=0.05, sites=1, lines=1,
                             machines=1)
    device = str(fleet.active[0])
    async with gateway_process(settings, workers=2) as gateway:
        async with TransportWS.connect(gateway.address, tenant.key) as ws:
            assert (await ws.receive())["type"] == "connection_ack"
            await ws.subscribe(SUB, {"ids": [device]})
            snapshot = await ws.next_event()
            assert snapshot["kind"] == "SNAPSHOT"
            version = snapshot["version"]
            # A new connection per request, so the kernel hands them to either worker.
            async with httpx.AsyncClient(
                base_url=f"http://{gateway.address}", timeout=30,
                limits=httpx.Limits(max_keepalive_connections=0),
                headers={"Authorization": f"Bearer {tenant.key}"},
            ) as http:
                for n in range(UPDATES):
                    response = await http.post("/graphql", json={
                        "query": UPDATE, "variables": {"d": device, "r": {"n": n}}})
                    assert response.status_code == 200, response.text
                    version += 1
                    assert response.json()["data"]["updateShadow"]["version"] == version
                    event = await ws.next_event()
                    assert (event["kind"], event["version"]) == ("UPDATED", version)
                    assert event["shadow"]["reported"]["n"] == n

            counts = await served_per_worker(gateway.address)
            assert len(counts) == 2 and 0 not in counts, counts
            assert sum(counts) == UPDATES, counts

            gateway.terminate()
            assert await gateway.wait() == 0, gateway.output
            await ws.ws.wait_closed()
            code = ws.ws.close_code
    assert code == 1012, gateway.output
    assert gateway.output.count("Finished server process") == 2, gateway.output


async def test_serve_starts_while_an_external_store_is_down(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    """`iotsphere serve` against external stores does not migrate before serving: with
    the telemetry database unreachable it serves the rest and reports not ready."""
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    async with gateway_process(settings, TELEMETRY_DSN=down) as gateway, \
            httpx.AsyncClient(base_url=f"http://{gateway.address}") as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        states = {s["store"]: s["ok"] for s in ready.json()["stores"]}
        assert states == {"registry": True, "assets": True, "telemetry": False,
                          "shadows": True}
        body = (await http.post("/graphql", json={"query": "{ devices { totalCount } }"},
                                headers={"Authorization": f"Bearer {tenant.key}"})).json()
        assert body == {"data": {"devices": {"totalCount": 0}}}
        gateway.terminate()
        assert await gateway.wait() == 0
    # IOTSPHERE_LOG_LEVEL is WARNING here (tests.support.serve_process): uvicorn's access
    # lines follow it, its lifecycle lines do not.
    assert "Application startup complete" in gateway.output
    assert '"POST /graphql HTTP/1.1"' not in gateway.output, gateway.output


def listening_sockets(port: int) -> list[str]:
    """Inodes of the TCP sockets listening on ``port`` (state 0A in /proc/net/tcp)."""
    inodes = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inodes.append(fields[9])
    return inodes


def socket_owners(inodes: list[str]) -> dict[str, set[int]]:
    """For each socket inode, the pids holding it open."""
    owners: dict[str, set[int]] = {inode: set() for inode in inodes}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                target = os.readlink(fd)
                inode = target[len("socket:["):-1] if target.startswith("socket:[") else None
                if inode in owners:
                    owners[inode].add(int(fd_dir.parent.name))
        except OSError:
            continue  # a process that ended while we looked
    return owners


async def test_each_worker_accepts_on_its_own_socket(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    """With one shared socket, whichever worker wakes first takes the next keep-alive
    connection and the other core can idle. Each worker listens on its own SO_REUSEPORT
    socket, so the kernel spreads connections across them: two listening sockets on the
    port, each held by a different worker (and by the parent, which keeps them for
    restarts)."""
    async with gateway_process(settings, workers=2) as gateway:
        port = int(gateway.address.rsplit(":", 1)[1])
        inodes = listening_sockets(port)
        assert len(inodes) == 2, inodes
        owners = socket_owners(inodes)
        workers = [pids - {gateway.proc.pid} for pids in owners.values()]
        assert all(len(pids) == 1 for pids in workers), owners
        assert workers[0] != workers[1], owners
        gateway.terminate()
        assert await gateway.wait() == 0, gateway.output


async def test_a_worker_that_dies_is_replaced(
    settings: Settings, stores: Stores, tenant: Tenant
) -> None:
    async with gateway_process(settings, workers=2) as gateway:
        port = int(gateway.address.rsplit(":", 1)[1])
        owners = socket_owners(listening_sockets(port))
        victim = min(pid for pids in owners.values() for pid in pids - {gateway.proc.pid})
        await asyncio.sleep(6)  # past the supervisor's "failing to start" window
        os.kill(victim, signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 60
        while gateway.output.count(STARTED) < 3:
            assert asyncio.get_running_loop().time() < deadline, gateway.output
            await asyncio.sleep(0.1)
        assert f"worker {victim} exited with -9; starting another" in gateway.output
        owners = socket_owners(listening_sockets(port))
        assert all(victim not in pids and len(pids - {gateway.proc.pid}) == 1
                   for pids in owners.values()), owners
        async with httpx.AsyncClient(base_url=f"http://{gateway.address}",
                                     limits=httpx.Limits(max_keepalive_connections=0)) as http:
            assert all([(await http.get("/healthz")).status_code == 200 for _ in range(10)])
        gateway.terminate()
        assert await gateway.wait() == 0, gateway.output


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    """SO_REUSEPORT alone would let a second gateway on the same port share it."""
    from gateway.runtime.supervisor import reuseport_sockets

    first = reuseport_sockets("127.0.0.1", 0, 2)
    port = first[0].getsockname()[1]
    try:
        with pytest.raises(OSError, match="in use"):
            reuseport_sockets("127.0.0.1", port, 2)
    finally:
        for sock in first:
            sock.close()
