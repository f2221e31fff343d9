"""Repairs what a failed multi-store write may leave behind (see ``gateway.writes``).

Every leftover is invisible to readers until repaired, and every repair is idempotent, so
the reconciler may run on several replicas at once; it runs on the jobs' leader only
(``gateway.jobs.leader``), as soon as a replica leads and then periodically:
- asset-side profiles whose device never reached the registry are deleted;
- updateDevice's profile intents still recorded in the registry are applied, in order
  (``gateway.writes.profile_intents``);
- shadows of decommissioned devices are deleted (keeping their version);
- lastSeenAt moves forward to the newest reading the telemetry store holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from gateway.errors import GatewayError
from gateway.jobs.leader import JobLeader
from gateway.metrics import JOB_RUNS
from gateway.stores import Stores
from gateway.writes import profile_intents

log = logging.getLogger("gateway.jobs.reconciler")

BATCH = 1000
# Profiles younger than this may belong to a registration still in flight.
ORPHAN_GRACE = timedelta(minutes=1)
_FIRST = UUID(int=0)


@dataclass
class Repairs:
    orphan_profiles: int = 0
    shadows: int = 0
    last_seen: int = 0
    profile_intents: int = 0


async def reconcile(stores: Stores, *, grace: timedelta = ORPHAN_GRACE) -> Repairs:
    repairs = Repairs()
    older_than = datetime.now(UTC) - grace
    after = _FIRST
    while rows := await stores.assets.profiles_older_than(after, BATCH, older_than):
        ids = [r["device_id"] for r in rows]
        orphans = set(ids) - await stores.registry.existing_ids(ids)
        if orphans:
            await stores.assets.delete_orphan_profiles(sorted(orphans), older_than)
            repairs.orphan_profiles += len(orphans)
        after = ids[-1]

    after = _FIRST
    while devices := await stores.registry.devices_with_profile_intents(
            after, BATCH, older_than):
        for device_id in devices:
            repairs.profile_intents += await profile_intents.drain(stores, device_id)
        after = devices[-1]

    after = _FIRST
    while rows := await stores.registry.decommissioned_ids(after, BATCH):
        repairs.shadows += await stores.shadows.delete_many(
            [(r["tenant_id"], r["id"]) for r in rows]
        )
        after = rows[-1]["id"]

    after = _FIRST
    while rows := await stores.telemetry.last_seen_after(after, BATCH):
        by_tenant: dict[UUID, dict[UUID, datetime]] = defaultdict(dict)
        for r in rows:
            by_tenant[r["tenant_id"]][r["device_id"]] = r["seen"]
        for tenant_id, seen in by_tenant.items():
            repairs.last_seen += await stores.registry.touch_last_seen(tenant_id, seen)
        after = rows[-1]["device_id"]
    return repairs


async def run_periodically(stores: Stores, interval: float, leader: JobLeader) -> None:
    """Reconciles every ``interval`` seconds while this replica leads the jobs (at once
    when it becomes the leader). No error ends the loop: an outage or a conflict only
    delays it, anything else is logged with its traceback."""
    while True:
        await leader.leading()
        JOB_RUNS.labels("reconciler").inc()
        try:
            repairs = await reconcile(stores)
            if repairs.orphan_profiles or repairs.shadows or repairs.profile_intents:
                log.info("reconciled: %s", repairs)
        except GatewayError as exc:  # outages and conflicts: expected, said in one line
            log.warning("reconciliation postponed: %s", exc.message)
        except Exception:
            log.exception("reconciliation failed; next try in %.0f s", interval)
        await asyncio.sleep(interval)
