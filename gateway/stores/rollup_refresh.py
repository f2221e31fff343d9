"""Refreshes TimescaleDB's 5-minute aggregate over what ingests wrote behind it.

Answers are exact without this: the readings_5m view (sql/telemetry/009) reads readings
for every bucket TimescaleDB has not materialized yet. This keeps that part small, so
reads stay fast after late data and after a bulk load of history: the ranges ingests
touched are collected, coalesced into one window and refreshed off the request path a
moment later (``delay``), instead of waiting up to 5 minutes for the policy, or for ever
for readings older than a bounded policy window.

A refresh re-materializes only the invalidated parts of its window (and what lies past
TimescaleDB's invalidation threshold), so one window from the oldest to the newest touched
time costs what separate windows would. The window stops ``lag`` before now, like the
policy's end_offset: buckets still being written would be invalidated again at once.
A refresh refused because another one is running (TimescaleDB allows one at a time per
aggregate: the policy's, or another worker's) is retried ``delay`` later; other failures
are logged and forgotten: the policy and the exact view cover them.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.metrics import ROLLUP_REFRESHES
from gateway.stores.base import PgStore

log = logging.getLogger("gateway.stores.rollup_refresh")

BUCKET = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a bucket boundary of every origin in use
REFRESH = "CALL refresh_continuous_aggregate('readings_5m_cagg', $1::timestamptz, $2::timestamptz)"


def _floor(t: datetime) -> datetime:
    return _EPOCH + (t - _EPOCH) // BUCKET * BUCKET


class RollupRefresher:
    """Collects touched time ranges and refreshes them, coalesced, in the background."""

    def __init__(self, store: PgStore, *, delay: float = 1.0,
                 lag: timedelta = timedelta(minutes=5), timeout: float = 600.0) -> None:
        self._store = store
        self.delay = delay
        self._timeout = timeout  # a bulk load's refresh takes longer than a query
        self._lag = lag
        self._window: tuple[datetime, datetime] | None = None
        self._task: asyncio.Task[None] | None = None

    def touched(self, start: datetime, end: datetime, *, now: datetime | None = None) -> None:
        """Notes that readings in [start, end] were written; schedules a refresh when any
        of them lies before now - lag (on-time readings are the policy's, and real-time
        reading covers them)."""
        if start >= (now or datetime.now(UTC)) - self._lag:
            return
        self._merge(start, end)
        if self._task is None or self._task.done():
            # A context of its own: the refresh is no round trip of the request that
            # happened to start it (extensions.storeCalls).
            self._task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context())

    def _merge(self, start: datetime, end: datetime) -> None:
        if self._window is not None:
            start, end = min(start, self._window[0]), max(end, self._window[1])
        self._window = (start, end)

    @property
    def pending(self) -> tuple[datetime, datetime] | None:
        return self._window

    async def _run(self) -> None:
        while self._window is not None:  # ranges noted during a refresh get their own
            await asyncio.sleep(self.delay)
            await self.flush()

    async def flush(self, *, now: datetime | None = None) -> bool:
        """Refreshes the collected window now; True when a refresh ran."""
        if self._window is None:
            return False
        (start, end), self._window = self._window, None
        lo = _floor(start)
        hi = min(_floor(end) + BUCKET, _floor((now or datetime.now(UTC)) - self._lag))
        if lo >= hi:
            return False
        try:
            async with self._store.acquire() as conn:
                await conn.execute(REFRESH, lo, hi, timeout=self._timeout)
        except asyncpg.LockNotAvailableError:
            # Another refresh of the aggregate is running (the policy's, or another
            # worker's): TimescaleDB refuses a second one at once. Try again later.
            ROLLUP_REFRESHES.labels("busy").inc()
            self._merge(start, end)
            return False
        except Exception as exc:  # the view stays exact; the policy will catch up
            ROLLUP_REFRESHES.labels("failed").inc()
            log.warning("refreshing readings_5m_cagg over [%s, %s) failed: %s", lo, hi, exc)
            return False
        ROLLUP_REFRESHES.labels("done").inc()
        return True

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
