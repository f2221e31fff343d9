"""telemetryChanged's side of the hub: cohorts of telemetry subscriptions, fed by the
batches both ingest paths announce on the tenant's Redis channel
(``gateway.writes.reading_announcements``), which the hub's one pub/sub connection hands
over here.

The feed keeps the newest reading of each (device, metric) its cohorts watch, merged
newest-time-wins from snapshots (the store's last values) and announcements, so every
change it offers carries the device's current values: a member that coalesced (a slow
consumer, or the per-subscriber rate bound) loses intermediate readings, never the
newest one. A change is offered only to cohorts that watch one of the metrics it moved.
Handling an announcement needs no I/O.

Announcements are fire-and-forget like keyspace notifications: after a reconnect the hub
calls ``resnapshot``, and every member gets a fresh SNAPSHOT from the store.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from gateway.live.cohorts import Cohort, Execute, Mailbox, Member
from gateway.metrics import SUBSCRIPTIONS
from gateway.stores import Stores

log = logging.getLogger("gateway.live.telemetry_feed")

Values = dict[str, tuple[datetime, float]]  # metric -> (time, value)


@dataclass(frozen=True)
class TelemetryChange:
    """A device's newest readings (of every metric the feed holds for it) at ``seq``."""

    seq: int
    tenant_id: UUID
    device_id: UUID
    values: tuple[tuple[str, datetime, float], ...]
    at: datetime
    deleted: bool = False

    @property
    def rank(self) -> int:
        return self.seq

    def readings(self, metrics: frozenset[str] | None) -> list[tuple[str, datetime, float]]:
        return [v for v in self.values if metrics is None or v[0] in metrics]


class TelemetryCohort(Cohort):
    def __init__(self, key: tuple[Any, ...], tenant_id: UUID, *, devices: set[UUID],
                 metrics: frozenset[str] | None, execute: Execute) -> None:
        super().__init__(key, tenant_id, devices=devices, asset_id=None, execute=execute)
        self.metrics = metrics  # None: every metric

    def moved(self, metrics: set[str]) -> bool:
        return self.metrics is None or not self.metrics.isdisjoint(metrics)


class TelemetryFeed:
    def __init__(self, stores: Stores, seq: itertools.count[int]) -> None:
        self._stores = stores
        self._seq = seq  # shared with the hub: one order for every change it offers
        self._cohorts: dict[tuple[Any, ...], TelemetryCohort] = {}
        self._by_device: dict[tuple[UUID, UUID], set[TelemetryCohort]] = defaultdict(set)
        self._values: dict[tuple[UUID, UUID], Values] = {}

    async def join(self, key: tuple[Any, ...], tenant_id: UUID, *, devices: set[UUID],
                   metrics: frozenset[str] | None, execute: Execute,
                   min_interval: float) -> Member:
        """A new member: registered first, then sent a SNAPSHOT of each device's last
        values, so no batch committed between the two is missed."""
        cohort = self._cohorts.get(key)
        if cohort is None:
            cohort = TelemetryCohort(key, tenant_id, devices=devices, metrics=metrics,
                                     execute=execute)
            self._cohorts[key] = cohort
            for device in devices:
                self._by_device[(tenant_id, device)].add(cohort)
        member = Member(cohort, min_interval=min_interval)
        cohort.add(member)
        SUBSCRIPTIONS.inc()
        try:
            await self._snapshot(cohort, [member])
        except BaseException:
            self.leave(member)
            raise
        return member

    def leave(self, member: Mailbox) -> None:
        member.close()
        cohort = member.cohort
        if cohort.discard(member):
            SUBSCRIPTIONS.dec()
        if cohort.members or self._cohorts.get(cohort.key) is not cohort:
            return
        del self._cohorts[cohort.key]
        for device in cohort.devices or ():
            watchers = self._by_device.get((cohort.tenant_id, device))
            if watchers is not None:
                watchers.discard(cohort)
                if not watchers:
                    del self._by_device[(cohort.tenant_id, device)]
                    self._values.pop((cohort.tenant_id, device), None)

    @property
    def cohorts(self) -> list[TelemetryCohort]:
        return list(self._cohorts.values())

    @property
    def subscriber_count(self) -> int:
        return sum(len(c.members) for c in self._cohorts.values())

    async def _snapshot(self, cohort: TelemetryCohort, members: list[Mailbox]) -> None:
        devices = sorted(cohort.devices or ())
        rows = await self._stores.telemetry.latest(
            cohort.tenant_id, devices, sorted(cohort.metrics) if cohort.metrics else None)
        for device, device_rows in zip(devices, rows, strict=True):
            self._merge(cohort.tenant_id, device,
                        [(r["metric"], r["time"], r["value"]) for r in device_rows])
            change = self._change(cohort.tenant_id, device)
            for member in members:
                member.offer(change, snapshot=True)

    async def resnapshot(self) -> None:
        for cohort in list(self._cohorts.values()):
            await self._snapshot(cohort, list(cohort.members))

    def announced(self, tenant_id: UUID, data: bytes) -> None:
        """One committed batch's newest readings, from the tenant's channel."""
        try:
            entries = [(UUID(d), str(m), datetime.fromisoformat(t), float(v))
                       for d, m, t, v in orjson.loads(data)]
        except (ValueError, TypeError) as exc:
            log.warning("ignored a malformed readings announcement on tenant %s: %s",
                        tenant_id, exc)
            return
        by_device: dict[UUID, list[tuple[str, datetime, float]]] = defaultdict(list)
        for device, metric, time, value in entries:
            if (tenant_id, device) in self._by_device:
                by_device[device].append((metric, time, value))
        for device, readings in by_device.items():
            moved = self._merge(tenant_id, device, readings)
            if not moved:
                continue
            change = self._change(tenant_id, device)
            for cohort in self._by_device.get((tenant_id, device), ()):
                if cohort.moved(moved):
                    for member in list(cohort.members):
                        member.offer(change)

    def _merge(self, tenant_id: UUID, device: UUID,
               readings: list[tuple[str, datetime, float]]) -> set[str]:
        """Newest time wins; returns the metrics that moved."""
        values = self._values.setdefault((tenant_id, device), {})
        moved = set()
        for metric, time, value in readings:
            held = values.get(metric)
            if held is None or held[0] < time:
                values[metric] = (time, value)
                moved.add(metric)
        return moved

    def _change(self, tenant_id: UUID, device: UUID) -> TelemetryChange:
        values = self._values.get((tenant_id, device), {})
        return TelemetryChange(
            seq=next(self._seq), tenant_id=tenant_id, device_id=device,
            values=tuple((m, t, v) for m, (t, v) in sorted(values.items())),
            at=datetime.now(UTC))
