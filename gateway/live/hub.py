"""The subscription hub: what its Redis connection (``gateway.live.keyspace``) hears,
fanned out to cohorts; their WebSocket members' frames written by one writer task
(``gateway.live.frames``).

The connection hears the keyspace notifications of every shadow key, the topology
channel the writes publish on, revocations, and the readings channel both ingest paths
announce committed batches on (handed to ``gateway.live.telemetry_feed``). A
notification marks its device dirty; a reader drains dirty devices in one read per tenant
and Redis node, one in flight per node (``gateway.live.node_reads``; a burst of writes to
one device costs one read), and offers each change to the cohorts watching that device.
Writes by any Redis client reach subscribers, since the notification comes from Redis
itself.

Keyspace notifications are fire-and-forget: after every reconnect the hub re-reads every
watched device and offers it to every member as a SNAPSHOT: no dashboard stays silently
stale.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from uuid import UUID

from gateway.errors import StoreUnavailable
from gateway.live.cohorts import Cohort, Execute, Mailbox, Member, ShadowChange
from gateway.live.frames import FrameSink, FrameWriter, SocketMember
from gateway.live.keyspace import HubConfigError, KeyspaceListener
from gateway.live.node_reads import NodeReads
from gateway.live.sockets import heard_revocation
from gateway.live.telemetry_feed import TelemetryCohort, TelemetryFeed
from gateway.metrics import SUBSCRIPTIONS
from gateway.stores import Stores
from gateway.stores.revoked_tokens import TokenRevocation
from gateway.stores.shadows import KEY_PREFIX

__all__ = ["HubConfigError", "ShadowHub"]

log = logging.getLogger("gateway.live.hub")

_KEY = re.compile(
    rf"^{KEY_PREFIX}:{{([0-9a-f-]{{36}}):([0-9a-f-]{{36}})}}:shadow$".encode()
)
_TOPOLOGY = re.compile(rf"^{KEY_PREFIX}:{{([0-9a-f-]{{36}})}}:topology$".encode())
_REVOKED = re.compile(rf"^{KEY_PREFIX}:{{([0-9a-f-]{{36}})}}:revoked$".encode())
_TELEMETRY = re.compile(rf"^{KEY_PREFIX}:{{([0-9a-f-]{{36}})}}:telemetry$".encode())

# Called with (tenant, revoked key ids, device whose credentials all went or None,
# revoked JWTs).
OnRevoked = Callable[[UUID, list[UUID], UUID | None, list[TokenRevocation]], Awaitable[object]]
ASSET_REFRESH_INTERVAL = 60.0  # fallback for topology messages lost while disconnected


class ShadowHub:
    def __init__(self, stores: Stores, redis_url: str,
                 on_revoked: OnRevoked | None = None) -> None:
        self._stores = stores
        self._on_revoked = on_revoked
        self._revocations: set[asyncio.Task[object]] = set()
        self._listener = KeyspaceListener(redis_url, self._on_message, self._resnapshot_all)
        self.frames = FrameWriter()  # writes the frames of WebSocket members
        self._cohorts: dict[tuple[object, ...], Cohort] = {}
        self._by_device: dict[tuple[UUID, UUID], set[Cohort]] = defaultdict(set)
        self._tenant_wide: dict[UUID, set[Cohort]] = defaultdict(set)
        self._by_asset: dict[UUID, set[Cohort]] = defaultdict(set)  # tenant -> cohorts
        self._dirty: set[tuple[UUID, UUID]] = set()
        self._dirty_tenants: set[UUID] = set()
        self._wake = asyncio.Event()
        self._seq = itertools.count(1)
        self.telemetry = TelemetryFeed(stores, self._seq)  # telemetryChanged's cohorts
        self._tasks: list[asyncio.Task[None]] = []
        self._reads = NodeReads(self._read_and_offer, stores.shadows.node_of, self._requeue)

    @property
    def connected(self) -> asyncio.Event:
        return self._listener.connected

    @property
    def reconnects(self) -> int:
        return self._listener.reconnects

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, wait: float = 5.0) -> None:
        """Starts listening; waits up to ``wait`` s for the first connection. A Redis that
        refuses keyspace notifications fails here; an unreachable one is retried."""
        self._tasks = [
            asyncio.create_task(self._listener.listen(), name="hub-listen"),
            asyncio.create_task(self._read_dirty(), name="hub-read"),
            asyncio.create_task(self._refresh_periodically(), name="hub-refresh"),
            asyncio.create_task(self.frames.run(), name="hub-frames"),
        ]
        listener = self._tasks[0]
        connected = asyncio.create_task(self.connected.wait())
        await asyncio.wait({listener, connected}, timeout=wait,
                           return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        if listener.done():
            listener.result()  # raises HubConfigError

    async def aclose(self) -> None:
        for cohort in [*self._cohorts.values(), *self.telemetry.cohorts]:
            for member in list(cohort.members):
                member.end()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._reads.aclose()
        await self.frames.aclose()

    # -- subscribers -------------------------------------------------------------------

    async def join(
        self, key: tuple[object, ...], tenant_id: UUID, *, devices: set[UUID] | None,
        asset_id: UUID | None, execute: Execute, sink: FrameSink | None = None,
    ) -> Mailbox:
        """A new member of the cohort ``key``: registered first, then sent a SNAPSHOT of
        every device it watches, so no change between the two is missed. With ``sink``
        (a WebSocket operation) the hub writes its frames; without, the caller iterates
        the returned ``Member``."""
        cohort = self._cohorts.get(key)
        if cohort is None and asset_id is not None:
            devices = await self._asset_devices(tenant_id, asset_id)
            cohort = self._cohorts.get(key)  # another join may have made it meanwhile
        if cohort is None:
            cohort = Cohort(key, tenant_id, devices=devices, asset_id=asset_id,
                            execute=execute)
            cohort.on_newest = self.frames.mark_cohort
            self._index(cohort)
        member: Mailbox = (Member(cohort) if sink is None
                           else SocketMember(cohort, sink, self.frames))
        cohort.add(member)
        SUBSCRIPTIONS.inc()
        try:
            await self._snapshot(cohort, [member], cohort.devices)
        except BaseException:
            self.leave(member)
            raise
        return member

    def leave(self, member: Mailbox) -> None:
        if isinstance(member.cohort, TelemetryCohort):
            self.telemetry.leave(member)
            return
        member.close()
        cohort = member.cohort
        if cohort.discard(member):
            SUBSCRIPTIONS.dec()
        if not cohort.members and self._cohorts.get(cohort.key) is cohort:
            self._unindex(cohort)

    @property
    def subscriber_count(self) -> int:
        return (sum(len(c.members) for c in self._cohorts.values())
                + self.telemetry.subscriber_count)

    def _index(self, cohort: Cohort) -> None:
        self._cohorts[cohort.key] = cohort
        if cohort.devices is None:
            self._tenant_wide[cohort.tenant_id].add(cohort)
        else:
            for device in cohort.devices:
                self._by_device[(cohort.tenant_id, device)].add(cohort)
        if cohort.asset_id is not None:
            self._by_asset[cohort.tenant_id].add(cohort)

    def _unindex(self, cohort: Cohort) -> None:
        del self._cohorts[cohort.key]
        self._tenant_wide[cohort.tenant_id].discard(cohort)
        self._by_asset[cohort.tenant_id].discard(cohort)
        for device in cohort.devices or ():
            watchers = self._by_device.get((cohort.tenant_id, device))
            if watchers is not None:
                watchers.discard(cohort)
                if not watchers:
                    del self._by_device[(cohort.tenant_id, device)]

    def _watchers(self, tenant_id: UUID, device_id: UUID) -> set[Cohort]:
        return self._by_device.get((tenant_id, device_id), set()) | self._tenant_wide.get(
            tenant_id, set())

    # -- changes -----------------------------------------------------------------------

    async def _snapshot(
        self, cohort: Cohort, members: Iterable[Mailbox], devices: Iterable[UUID] | None
    ) -> None:
        ids = list(devices) if devices is not None else (
            await self._stores.registry.live_device_ids(cohort.tenant_id))
        members = list(members)
        for change in await self._read(cohort.tenant_id, ids):
            for member in members:
                member.offer(change, snapshot=True)

    async def _read(self, tenant_id: UUID, device_ids: list[UUID]) -> list[ShadowChange]:
        if not device_ids:
            return []
        now = datetime.now(UTC)
        rows = await self._stores.shadows.get_with_versions(tenant_id, device_ids)
        return [
            ShadowChange(seq=next(self._seq), tenant_id=tenant_id, device_id=device,
                         deleted=doc is None and version is not None, version=version,
                         doc=doc, at=now)
            for device, (doc, version) in zip(device_ids, rows, strict=True)
        ]

    async def _read_dirty(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Topology first: a device detached before it changed must not be offered.
            tenants, self._dirty_tenants = self._dirty_tenants, set()
            for tenant_id in tenants:
                await self._refresh_assets(tenant_id)
            dirty, self._dirty = self._dirty, set()
            by_tenant: dict[UUID, list[UUID]] = defaultdict(list)
            for tenant_id, device_id in dirty:
                by_tenant[tenant_id].append(device_id)
            for tenant_id, device_ids in by_tenant.items():
                self._reads.start(tenant_id, device_ids)  # a read per Redis node

    async def _read_and_offer(self, tenant_id: UUID, device_ids: list[UUID]) -> None:
        for change in await self._read(tenant_id, device_ids):
            for cohort in self._watchers(tenant_id, change.device_id):
                cohort.offer(change)

    def _requeue(self, dirty: set[tuple[UUID, UUID]]) -> None:
        self._dirty |= dirty
        self._wake.set()

    def _on_message(self, channel: bytes, data: bytes = b"") -> None:
        name = channel.split(b":", 1)[1] if channel.startswith(b"__keyspace@") else channel
        if match := _KEY.match(name):
            tenant_id, device_id = UUID(match[1].decode()), UUID(match[2].decode())
            if self._watchers(tenant_id, device_id):
                self._dirty.add((tenant_id, device_id))
                self._wake.set()
        elif match := _TOPOLOGY.match(name):
            self._dirty_tenants.add(UUID(match[1].decode()))
            self._wake.set()
        elif match := _REVOKED.match(name):
            self._revoked(UUID(match[1].decode()), data)
        elif match := _TELEMETRY.match(name):
            self.telemetry.announced(UUID(match[1].decode()), data)

    def _revoked(self, tenant_id: UUID, data: bytes) -> None:
        """Forgets the revoked credentials locally and hands them to ``on_revoked``."""
        heard = heard_revocation(self._stores.registry, tenant_id, data)
        if heard is not None and self._on_revoked is not None:
            task = asyncio.ensure_future(self._on_revoked(tenant_id, *heard))
            self._revocations.add(task)
            task.add_done_callback(self._revocations.discard)

    # -- asset filters -----------------------------------------------------------------

    async def _asset_devices(self, tenant_id: UUID, asset_id: UUID) -> set[UUID]:
        ids = await self._stores.assets.device_ids_matching(
            tenant_id, asset_id=asset_id, metadata=None)
        rows = await self._stores.registry.devices_by_ids(tenant_id, ids)
        return {r["id"] for r in rows if r is not None and r["status"] != "DECOMMISSIONED"}

    async def _refresh_assets(self, tenant_id: UUID) -> None:
        """Re-resolves the devices of the tenant's asset-filtered cohorts; devices that came
        in get a SNAPSHOT."""
        for cohort in list(self._by_asset.get(tenant_id, ())):
            assert cohort.asset_id is not None
            try:
                devices = await self._asset_devices(tenant_id, cohort.asset_id)
            except StoreUnavailable as exc:
                log.warning("asset filter refresh postponed: %s", exc)
                return
            if self._cohorts.get(cohort.key) is not cohort:
                continue
            added = devices - (cohort.devices or set())
            self._unindex(cohort)
            cohort.devices = devices
            self._index(cohort)
            if added:
                try:
                    await self._snapshot(cohort, cohort.members, added)
                except StoreUnavailable as exc:
                    # Their next change is their first delivery, hence a SNAPSHOT.
                    log.warning("snapshot of %d newly matching devices failed: %s",
                                len(added), exc)

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(ASSET_REFRESH_INTERVAL)
            self._dirty_tenants.update(self._by_asset)
            self._wake.set()

    async def _resnapshot_all(self) -> None:
        log.info("hub reconnected: re-sending snapshots to %d subscribers",
                 self.subscriber_count)
        for cohort in list(self._cohorts.values()):
            await self._snapshot(cohort, cohort.members, cohort.devices)
        await self.telemetry.resnapshot()

