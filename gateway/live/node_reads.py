"""The hub's reads of changed shadows, one in flight per Redis node.

A round of changed devices used to be read in one call for all of them, awaited before the
next round: on a cluster, a device on a primary that had just died held that call in the
cluster client's retries until its replica took over, and with it the changes of every
other device on the healthy primaries, and every later round (bench/fanout.py
--failover-at: ~4.5 s for all devices). Reads now start per node, as tasks: a node with a
read still in flight has its newly changed devices held until that read ends, then read
in the next round, so each node still sees one read at a time and a burst coalesces as
before. Changes may reach cohorts out of order across nodes (a device whose slot moves to
the promoted replica is read there while its old read still waits): members keep only a
newer version than the one they have, so an older one arriving late is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from uuid import UUID

from gateway.errors import StoreUnavailable

log = logging.getLogger("gateway.live.hub")

Dirty = tuple[UUID, UUID]  # (tenant, device)
Read = Callable[[UUID, list[UUID]], Awaitable[None]]  # reads and offers one node's devices
NodeOf = Callable[[UUID, UUID], object]  # the node holding a device's shadow (None: one)


class NodeReads:
    def __init__(self, read: Read, node_of: NodeOf, requeue: Callable[[set[Dirty]], None]
                 ) -> None:
        self._read = read
        self._node_of = node_of
        self._requeue = requeue  # marks devices dirty again and wakes the hub's reader
        self._reading: dict[object, asyncio.Task[None]] = {}
        self._held: dict[object, set[Dirty]] = {}

    def start(self, tenant_id: UUID, device_ids: Iterable[UUID]) -> None:
        """Starts a read per node for these devices, or holds them behind that node's read
        in flight."""
        by_node: dict[object, list[UUID]] = {}
        for device_id in device_ids:
            by_node.setdefault(self._node_of(tenant_id, device_id), []).append(device_id)
        for node, devices in by_node.items():
            if node in self._reading:
                self._held.setdefault(node, set()).update((tenant_id, d) for d in devices)
                continue
            task = asyncio.create_task(self._guarded(tenant_id, devices), name="hub-read-node")
            self._reading[node] = task
            task.add_done_callback(partial(self._ended, node))

    def busy(self) -> bool:
        return bool(self._reading)

    async def aclose(self) -> None:
        tasks = list(self._reading.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guarded(self, tenant_id: UUID, devices: list[UUID]) -> None:
        try:
            await self._read(tenant_id, devices)
        except StoreUnavailable as exc:
            # The reconnect that follows an outage re-snapshots every member.
            log.warning("hub could not read %d shadows: %s", len(devices), exc)
        except Exception:
            log.exception("hub read of %d shadows failed", len(devices))

    def _ended(self, node: object, task: asyncio.Task[None]) -> None:
        if self._reading.get(node) is task:
            del self._reading[node]
        held = self._held.pop(node, None)
        if held:
            self._requeue(held)
