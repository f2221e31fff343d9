"""A read replica of one store: a streaming standby, used while it is within the lag bound.

How far behind the standby is, is measured against its own primary, not from the
standby alone: every probe first reads the primary's WAL position (``pg_current_wal_lsn``)
and remembers it with the time just before asking; then it reads how far the standby
has replayed (``pg_last_wal_replay_lsn``). Once the standby has replayed past a
remembered position, it holds everything the primary had committed at that time, so
its lag is at most ``now - that time``, checked at every read against ``max_lag``.
``now() - pg_last_xact_replay_timestamp()`` alone would call a standby of an idle primary
ever further behind, and a standby whose WAL receiver is disconnected caught up (its
receive and replay positions agree); the remembered positions get both right. The price
is one ``SELECT`` on the primary per probe, and a resolution of one probe interval: a
caught-up standby looks up to one interval behind (so ``max_lag`` must exceed it,
``gateway.settings.check_read_replicas``).

A standby is left out, and its reads go to the primary, while it is further behind than
``max_lag``, while it does not answer (a read that fails with ``StoreUnavailable`` leaves
it out at once, and is retried on the primary, so the caller sees no error), and while
it is not a standby at all (``pg_last_wal_replay_lsn()`` is null). It is taken back when
a probe finds it answering and within the bound. While the primary does not answer, no
position is remembered, so the standby ages out after ``max_lag`` like a lagging one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncpg

from gateway.errors import StoreUnavailable
from gateway.metrics import READ_REPLICA_IN_USE
from gateway.stores.base import PgStore
from gateway.stores.breaker import CircuitBreaker

log = logging.getLogger("gateway.stores.read_replica")

# In bytes from 0/0, as int8: asyncpg has no codec for pg_lsn.
_PRIMARY_POSITION = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8"
_REPLAYED_POSITION = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8"
# A standby stuck for longer than this many probes keeps only the newest positions: the
# older ones it has not replayed could only ever prove a longer lag.
_KEPT_POSITIONS = 1000


class ReadReplica:
    """The standby of ``primary`` at ``dsn``; ``usable()`` says whether a read may go there
    now. Its pool is a ``PgStore`` of its own (its own breaker), named as the primary so
    timings and driver errors are the store's; round trips are counted by the caller."""

    def __init__(
        self, primary: PgStore, dsn: str, *, max_lag: float, probe_interval: float,
        breaker: CircuitBreaker | None = None, clock: Callable[[], float] = time.monotonic,
        **pool: Any,
    ) -> None:
        self.primary = primary
        self.store = PgStore(dsn, name=primary.name,
                             breaker=breaker or CircuitBreaker(primary.name), **pool)
        self.max_lag = max_lag
        self.probe_interval = probe_interval
        self._clock = clock
        self._timeout = pool.get("timeout", 5.0)
        # (time just before asking, primary's position) not yet replayed by the standby.
        self._positions: deque[tuple[float, int]] = deque(maxlen=_KEPT_POSITIONS)
        # When the primary held nothing the standby has not replayed; None: left out.
        self._caught_up_at: float | None = None
        self._in_use: bool | None = None  # as last reported
        self._prober: asyncio.Task[None] | None = None

    def usable(self) -> bool:
        at = self._caught_up_at
        return at is not None and self._clock() - at <= self.max_lag

    def lag(self) -> float | None:
        """At most how many seconds behind the standby is; None while it is left out."""
        at = self._caught_up_at
        return None if at is None else self._clock() - at

    async def connect(self) -> None:
        """Opens the pool (later, if the standby does not answer yet) and starts probing."""
        await self.store.connect()
        await self.probe()
        self._prober = asyncio.create_task(self._probe_forever(), name="read-replica-probe")

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None
        await self.store.aclose()
        READ_REPLICA_IN_USE.labels(self.primary.name).set(0)

    def failed(self, exc: StoreUnavailable) -> None:
        """A read on the standby found it unavailable: left out until a probe succeeds."""
        self._leave_out(f"a read failed: {exc.message}")

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.probe()
            except Exception:  # a bug here must not end probing, nor leave a stale verdict
                log.exception("probing the %s read replica failed", self.primary.name)
                self._leave_out("the probe failed")

    async def probe(self) -> None:
        """Remembers the primary's position, then checks how far the standby has replayed."""
        asked = self._clock()
        try:
            async with self.primary.acquire() as conn:
                position = await conn.fetchval(_PRIMARY_POSITION, timeout=self._timeout)
            self._positions.append((asked, position))
        except (StoreUnavailable, asyncpg.PostgresError):
            pass  # nothing new to compare with: the standby ages out after max_lag
        try:
            async with self.store.acquire() as conn:
                replayed = await conn.fetchval(_REPLAYED_POSITION, timeout=self._timeout)
        except StoreUnavailable as exc:
            self._leave_out(f"it does not answer ({exc.message})")
            return
        except asyncpg.PostgresError as exc:
            self._leave_out(f"it answers {type(exc).__name__}")
            return
        if replayed is None:
            self._leave_out("it is not a standby (pg_last_wal_replay_lsn() is null)")
            return
        while self._positions and self._positions[0][1] <= replayed:
            at, _ = self._positions.popleft()
            if self._caught_up_at is None or at > self._caught_up_at:
                self._caught_up_at = at
        self._report()

    def _leave_out(self, reason: str) -> None:
        self._caught_up_at = None
        self._report(reason)

    def _report(self, reason: str | None = None) -> None:
        """Sets the gauge, and logs each change between in use and left out."""
        usable = self.usable()
        READ_REPLICA_IN_USE.labels(self.primary.name).set(1 if usable else 0)
        if usable is self._in_use:
            return
        self._in_use = usable
        if usable:
            log.info("%s read replica in use", self.primary.name)
            return
        lag = self.lag()
        if reason is None:
            reason = ("not caught up since probing began" if lag is None
                      else f"{lag:.1f} s behind, over the bound of {self.max_lag:g} s")
        log.warning("%s read replica left out, its reads go to the primary: %s",
                    self.primary.name, reason)
