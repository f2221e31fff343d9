"""Telemetry housekeeping: partitions created ahead of the data, and retention.

Ingest creates any partition it needs on the way, so this is not needed for correctness;
it keeps partition creation (which briefly locks the readings table) off the ingest path
for the common case, and drops days older than ``TELEMETRY_RETENTION_DAYS`` when set,
together with the 5-minute rollup of those days (``readings_drop_before`` drops both, so a
wide range never shows rolled-up data whose readings are gone).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from gateway.errors import GatewayError
from gateway.jobs.leader import JobLeader
from gateway.metrics import JOB_RUNS
from gateway.settings import Settings
from gateway.stores import Stores

log = logging.getLogger("gateway.jobs.retention")

AHEAD = timedelta(days=7)
INTERVAL = 3600.0


async def maintain(stores: Stores, settings: Settings, now: datetime | None = None) -> int:
    """Ensures partitions from yesterday to a week ahead; drops expired ones. Returns how
    many partitions (or chunks) were dropped."""
    now = now or datetime.now(UTC)
    await stores.telemetry.ensure_days(now - timedelta(days=1), now + AHEAD)
    if not settings.telemetry_retention_days:
        return 0
    cutoff = now - timedelta(days=settings.telemetry_retention_days)
    dropped = await stores.telemetry.drop_before(cutoff)
    if dropped:
        log.info("retention dropped %d partitions of readings before %s", dropped, cutoff)
    return dropped


async def run_periodically(stores: Stores, settings: Settings, leader: JobLeader) -> None:
    """Maintains every INTERVAL seconds while this replica leads the jobs. No error ends
    the loop (a deadlock or a bug would otherwise stop partition upkeep for the life of the
    process); each is logged and the next round tries again. Cancellation still ends it."""
    while True:
        await leader.leading()
        JOB_RUNS.labels("retention").inc()
        try:
            await maintain(stores, settings)
        except GatewayError as exc:  # outages and conflicts: expected, said in one line
            log.warning("telemetry maintenance postponed: %s", exc.message)
        except Exception:
            log.exception("telemetry maintenance failed; next try in %.0f s", INTERVAL)
        await asyncio.sleep(INTERVAL)
