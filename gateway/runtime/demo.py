"""Demo data for `iotsphere serve --demo`: a plant with a site > line > machine tree, a
fleet of devices with 24 h of telemetry and shadows, and a simulator that keeps it alive.

``seed_fleet`` is also what the tests and benchmarks build their fleets with, so the data a
newcomer sees in GraphiQL is the data the suite is proven on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from gateway.errors import StoreConflict
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.pages import Window
from gateway.stores.predicates import Cmp
from gateway.stores.registry import DeviceQuery
from gateway.stores.shadows import ShadowDoc
from gateway.writes.shadows import update_shadow
from gateway.writes.telemetry import RawReading, ingest
from gateway.writes.tenants import DEMO_TENANT

log = logging.getLogger("gateway.runtime.demo")

METRICS = ("temperature", "vibration", "power")
DEVICE_TYPES = {
    "thermal-sensor": ("temperature",),
    "vibration-sensor": ("vibration", "temperature"),
    "power-meter": ("power",),
    "edge-controller": METRICS,
}
UNITS = {"temperature": "celsius", "vibration": "mm/s", "power": "W"}
MANUFACTURERS = ("Acme", "Globex", "Initech")


@dataclass
class Fleet:
    tenant_id: UUID
    assets: dict[str, UUID] = field(default_factory=dict)  # name -> id
    devices: list[UUID] = field(default_factory=list)
    active: list[UUID] = field(default_factory=list)


def _value(metric: str, phase: float, t: float, rng: random.Random) -> float:
    hours = t / 3600
    if metric == "temperature":
        return round(55 + 8 * math.sin(hours / 24 * 2 * math.pi + phase) + rng.gauss(0, 0.6), 3)
    if metric == "vibration":
        return round(abs(2.5 + 0.8 * math.sin(hours * 3 + phase) + rng.gauss(0, 0.3)), 4)
    return round(1400 + 250 * math.sin(hours / 12 * 2 * math.pi + phase) + rng.gauss(0, 20), 2)


async def _asset_tree(stores: Stores, fleet: Fleet, sites: int, lines: int,
                      machines: int) -> list[UUID]:
    leaves = []
    for s in range(1, sites + 1):
        site = uuid4()
        await stores.assets.insert_asset(fleet.tenant_id, site, None, f"Site {s}", "site",
                                         {"city": ("Lyon", "Porto", "Graz")[s % 3]})
        fleet.assets[f"Site {s}"] = site
        for ln in range(1, lines + 1):
            line = uuid4()
            await stores.assets.insert_asset(fleet.tenant_id, line, site, f"Line {s}.{ln}",
                                             "line", {"shift": "24/7"})
            fleet.assets[f"Line {s}.{ln}"] = line
            for m in range(1, machines + 1):
                machine = uuid4()
                await stores.assets.insert_asset(
                    fleet.tenant_id, machine, line, f"Machine {s}.{ln}.{m}", "machine",
                    {"model": f"CNC-{100 + m}", "criticality": ("low", "high")[m % 2]},
                )
                fleet.assets[f"Machine {s}.{ln}.{m}"] = machine
                leaves.append(machine)
    return leaves


async def _ensure_partitions(stores: Stores, start: datetime, end: datetime) -> None:
    """Partitions for [start, end), retried when the creation lost a deadlock to a
    concurrent creator (the app's start-up upkeep): a StoreConflict wrote nothing."""
    for attempt in range(1, 6):
        try:
            await stores.telemetry.ensure_partitions(start, end)
            return
        except StoreConflict:
            if attempt == 5:
                raise
            log.info("partition creation lost a deadlock; retrying (%d)", attempt)
            await asyncio.sleep(0.05 * attempt)


async def seed_fleet(
    stores: Stores, tenant_id: UUID, *, devices: int = 120, hours: float = 24,
    every: timedelta = timedelta(minutes=1), now: datetime | None = None, seed: int = 7,
    sites: int = 2, lines: int = 2, machines: int = 3,
) -> Fleet:
    """Builds a plant for ``tenant_id``: the asset tree, ``devices`` devices spread over its
    machines, ``hours`` of readings every ``every`` for each device's metrics, and a shadow
    for every ACTIVE device."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    fleet = Fleet(tenant_id)
    leaves = await _asset_tree(stores, fleet, sites, lines, machines)
    steps = int(timedelta(hours=hours) / every)
    start = now - steps * every
    await _ensure_partitions(stores, start, now + timedelta(days=2))
    readings: list[tuple[UUID, UUID, str, datetime, float]] = []
    for n in range(devices):
        device_type = list(DEVICE_TYPES)[n % len(DEVICE_TYPES)]
        status = "ACTIVE" if n % 10 else ("PROVISIONED", "SUSPENDED")[n // 10 % 2]
        row = await stores.registry.insert_device(
            tenant_id, serial=f"SN-{n + 1:05d}", name=f"{device_type} {n + 1:03d}",
            type=device_type, status=status, firmware_version=f"1.{n % 4}.0",
            labels=["demo", ("north", "south")[n % 2]] + (["critical"] if n % 7 == 0 else []),
        )
        device_id: UUID = row["id"]
        fleet.devices.append(device_id)
        metrics = DEVICE_TYPES[device_type]
        await stores.assets.upsert_profile(
            tenant_id, device_id, asset_id=leaves[n % len(leaves)],
            metadata={"manufacturer": MANUFACTURERS[n % 3], "model": f"M{n % 5}",
                      "specs": {"ipRating": "IP67", "maxTemp": 85}},
            capabilities=[{"metric": m, "unit": UNITS[m]} for m in metrics],
        )
        phase = rng.uniform(0, 2 * math.pi)
        for step in range(steps):
            t = start + step * every
            for metric in metrics:
                readings.append((tenant_id, device_id, metric, t,
                                 _value(metric, phase, t.timestamp(), rng)))
        if len(readings) >= 100_000:
            await stores.telemetry.insert_readings(readings)
            readings = []
        if status == "ACTIVE":
            fleet.active.append(device_id)
            await stores.shadows.put(tenant_id, ShadowDoc(
                device_id=device_id, version=1,
                desired={"sampleRateHz": 1, "mode": "run"},
                reported={"sampleRateHz": 1 if n % 3 else 10, "mode": "run",
                          "firmware": f"1.{n % 4}.0"},
                metadata={}, updated_at=now,
            ))
    await stores.telemetry.insert_readings(readings)
    return fleet


async def simulate_step(stores: Stores, tenant_id: UUID, active: list[UUID],
                        rng: random.Random) -> None:
    """A few devices report a new temperature: as readings through ingest's path (which
    moves lastSeenAt) and into their shadows through updateShadow's atomic merge (a user's
    update at the same moment is kept, never overwritten)."""
    now = datetime.now(UTC)
    chosen = rng.sample(active, k=min(5, len(active)))
    await ingest(stores, tenant_id, [
        RawReading(str(d), "temperature", now, round(55 + rng.gauss(0, 3), 3)) for d in chosen
    ])
    for device_id in chosen:
        await update_shadow(stores, tenant_id, device_id, desired=None,
                            reported={"temperature": round(55 + rng.gauss(0, 3), 2)},
                            expected_version=None)


async def _simulate(stores: Stores, tenant_id: UUID, active: list[UUID]) -> None:
    """Every two seconds a few devices report a new temperature and shadow state."""
    rng = random.Random()
    while True:
        await asyncio.sleep(2)
        try:
            await simulate_step(stores, tenant_id, active, rng)
        except Exception:  # a store hiccup must not end the demo
            log.exception("demo simulator step failed; retrying")


async def prepare_demo(stores: Stores, settings: Settings) -> None:
    """Seeds the demo tenant once (it exists: the CLI created it with its admin key)."""
    tenant = await stores.registry.tenant_by_name(DEMO_TENANT)
    if tenant is None:
        raise RuntimeError(f"tenant {DEMO_TENANT!r} is missing; start through `iotsphere serve`")
    page = await stores.registry.page_devices(tenant["id"], DeviceQuery(window=Window(first=0)))
    if page.total == 0:
        log.info("seeding demo data (first start only: ~120 devices, 24 h of telemetry)")
        fleet = await seed_fleet(stores, tenant["id"])
        log.info("seeded %d devices, %d assets", len(fleet.devices), len(fleet.assets))
    else:
        now = datetime.now(UTC)
        await _ensure_partitions(stores, now - timedelta(days=1), now + timedelta(days=2))


async def run_demo(stores: Stores, settings: Settings) -> None:
    tenant = await stores.registry.tenant_by_name(DEMO_TENANT)
    assert tenant is not None
    page = await stores.registry.page_devices(tenant["id"], DeviceQuery(
        window=Window(first=settings.max_page_size), where=Cmp("status", "in", ("ACTIVE",))))
    await _simulate(stores, tenant["id"], [r["id"] for r in page.rows])
