"""Subscription cohorts and their members.

A cohort is every live subscription with the same tenant, document, operation and
variables: they select the same fields of the same devices, so each shadow change is
executed once per cohort (and per event kind) and the result is shared by every member,
Hasura's cohort idea. Execution is lazy: a change nobody consumes is never executed.

A member is one subscription. Its mailbox holds at most one pending change per device:
a consumer that falls behind gets the newest state of each device, never a backlog, and
the hub never waits for it. Per device, what a member receives only moves forward
(``rank``), and the first thing it receives is always a SNAPSHOT. A member may be
rate-bounded (``min_interval``): between two deliveries it waits, and what arrives
meanwhile coalesces as above (telemetryChanged's per-subscriber bound).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol
from uuid import UUID

from gateway.stores.shadows import ShadowDoc

SNAPSHOT, UPDATED, DELETED = "SNAPSHOT", "UPDATED", "DELETED"
_RESULTS_KEPT = 1024  # per cohort at most; older results are recomputed if asked for again
# A finished result is shared for this long, then dropped when the cohort next executes:
# members take a change's result within a fan-out's latency (p99 ~0.4 s for 10,000
# subscribers at 100 updates/s), and a slower one recomputes it. Kept up to the count bound
# instead, the finished tasks (with their results and contexts) of every cohort grew the
# process for the whole 10-minute soak (bench/RESULTS.md, "Memory that levels off").
RESULT_TTL = 10.0
_clock = time.monotonic  # the tests' seams
_sleep = asyncio.sleep


@dataclass(frozen=True)
class ShadowChange:
    """What the hub observed for one device: its shadow now (None when it has none)."""

    seq: int
    tenant_id: UUID
    device_id: UUID
    deleted: bool
    version: int | None
    doc: ShadowDoc | None
    at: datetime

    @property
    def rank(self) -> int:
        """Orders changes of one device: UPDATED v < DELETED v < UPDATED v+1."""
        if self.version is None:
            return -1
        return 2 * self.version + (1 if self.deleted else 0)


class Change(Protocol):
    """What a cohort executes and a member orders: a ShadowChange, or a telemetry
    change (``gateway.live.telemetry_feed``)."""

    @property
    def seq(self) -> int: ...
    @property
    def device_id(self) -> UUID: ...
    @property
    def deleted(self) -> bool: ...
    @property
    def rank(self) -> int: ...


Execute = Callable[[Any, str], Awaitable[Any]]


class Cohort:
    def __init__(
        self, key: tuple[Any, ...], tenant_id: UUID, *, devices: set[UUID] | None,
        asset_id: UUID | None, execute: Execute,
    ) -> None:
        self.key = key
        self.tenant_id = tenant_id
        self.devices = devices  # None: every device of the tenant
        self.asset_id = asset_id
        self.members: set[Mailbox] = set()
        # Members a consumer iterates get each change queued (Member.offer); the others
        # (WebSocket members, gateway.live.frames) take the cohort's newest change per
        # device when the writer comes round: a change costs them nothing per member.
        self._queued: set[Mailbox] = set()
        self.shared: set[Mailbox] = set()
        self._newest: dict[UUID, Change] = {}
        self.on_newest: Callable[[Cohort], None] | None = None  # the hub's frame writer
        self.frames_ready = False  # in the frame writer's next round
        self._execute = execute
        # (change seq, kind) -> (when it was started, its execution), oldest first.
        self._results: OrderedDict[tuple[int, str], tuple[float, asyncio.Future[Any]]] = (
            OrderedDict())

    def add(self, member: Mailbox) -> None:
        self.members.add(member)
        (self.shared if member.takes_newest else self._queued).add(member)

    def discard(self, member: Mailbox) -> bool:
        """Removes ``member``; whether it was one."""
        present = member in self.members
        self.members.discard(member)
        self.shared.discard(member)
        self._queued.discard(member)
        return present

    def offer(self, change: Change) -> None:
        """A change of a watched device: queued for each iterated member, kept once (the
        newest per device) for the members the frame writer serves."""
        for member in self._queued:
            member.offer(change)
        if self.shared:
            held = self._newest.get(change.device_id)
            if held is None or change.rank > held.rank:
                self._newest[change.device_id] = change
                if self.on_newest is not None:
                    self.on_newest(self)

    def take_newest(self) -> list[Change]:
        """The newest change per device since the last take."""
        taken = list(self._newest.values())
        self._newest.clear()
        return taken

    def watches(self, device_id: UUID) -> bool:
        return self.devices is None or device_id in self.devices

    def started(self, change: Change, kind: str) -> asyncio.Future[Any]:
        """The execution of ``change`` as ``kind``, started by the first member to ask and
        shared by every later one."""
        key = (change.seq, kind)
        entry = self._results.get(key)
        if entry is not None:
            return entry[1]
        # A task of its own: a member that goes away mid-execution (shield) does not
        # cancel the execution the other members wait for.
        future: asyncio.Future[Any] = asyncio.ensure_future(self._execute(change, kind))
        future.add_done_callback(partial(self._forget_failed, key))
        now = _clock()
        self._results[key] = (now, future)
        self._expire(now)
        return future

    async def result(self, change: Change, kind: str) -> Any:
        """The execution result for ``change`` as ``kind``, computed once per cohort."""
        future = self.started(change, kind)
        if future.done() and not future.cancelled() and future.exception() is None:
            # Most members of a cohort ask after the execution finished: no shield
            # (a future and two callbacks per member and change) for them.
            return future.result()
        return await asyncio.shield(future)

    def _expire(self, now: float) -> None:
        results = self._results
        while results:
            started, oldest = next(iter(results.values()))
            if len(results) <= _RESULTS_KEPT and (
                    now - started < RESULT_TTL or not oldest.done()):
                return
            results.popitem(last=False)

    def _forget_failed(self, key: tuple[int, str], future: asyncio.Future[Any]) -> None:
        """A failed execution is not kept (a later ask retries); its waiters got the error."""
        entry = self._results.get(key)
        if (future.cancelled() or future.exception() is not None) and (
            entry is not None and entry[1] is future
        ):
            del self._results[key]


class Mailbox:
    """What a member has not received yet: at most one change per device, each newer than
    what it received before. How the changes leave is the subclass's business:
    ``Member`` is iterated by a consumer task, ``gateway.live.frames.SocketMember`` is
    written by the hub's frame writer."""

    def __init__(self, cohort: Cohort) -> None:
        self.cohort = cohort
        self._pending: dict[UUID, tuple[Change, str]] = {}
        self._ranks: dict[UUID, int] = {}
        self._closed = False

    takes_newest = False  # True: served from the cohort's newest changes (Cohort.offer)

    def offer(self, change: Change, *, snapshot: bool = False) -> None:
        """Queues ``change`` unless the member already has it or something newer; a newer
        change replaces a pending one of the same device. Never blocks."""
        if self._closed:
            return
        kind = self._kind(change, snapshot)
        if kind is None:
            return
        queued = self._pending.pop(change.device_id, None)
        if queued is not None and queued[1] == SNAPSHOT:
            kind = SNAPSHOT  # the device's first delivery stays a SNAPSHOT when coalesced
        self._pending[change.device_id] = (change, kind)
        self._ranks[change.device_id] = change.rank
        self._woken()

    def accept(self, change: Change) -> str | None:
        """For a change delivered at once (nothing of its device pending): its kind, the
        member now having it; None when the member has it or something newer already."""
        kind = self._kind(change, False)
        if kind is not None:
            self._ranks[change.device_id] = change.rank
        return kind

    def _kind(self, change: Change, snapshot: bool) -> str | None:
        last = self._ranks.get(change.device_id)
        if last is not None and (change.rank < last or (change.rank == last and not snapshot)):
            return None
        return SNAPSHOT if snapshot or last is None else DELETED if change.deleted else UPDATED

    def _woken(self) -> None:
        """Something is pending now."""

    def close(self) -> None:
        self._closed = True

    def end(self) -> None:
        """The server ends the subscription (shutdown): closed, and the client told so."""
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backlog(self) -> int:
        return len(self._pending)


class Member(Mailbox):
    """A member its consumer iterates (Strawberry's operation task, an HTTP stream)."""

    def __init__(self, cohort: Cohort, *, min_interval: float = 0.0) -> None:
        super().__init__(cohort)
        self._min_interval = min_interval
        self._next_at = 0.0  # monotonic time before which nothing more is delivered
        self._wake = asyncio.Event()

    def _woken(self) -> None:
        self._wake.set()

    def close(self) -> None:
        super().close()
        self._wake.set()

    def __aiter__(self) -> Member:
        return self

    async def __anext__(self) -> Any:
        while not self._pending or self._closed:
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        if self._min_interval:
            wait = self._next_at - _clock()
            if wait > 0:
                await _sleep(wait)  # what arrives meanwhile coalesces
                if self._closed:
                    raise StopAsyncIteration
            self._next_at = _clock() + self._min_interval
        device = next(iter(self._pending))
        change, kind = self._pending.pop(device)
        return await self.cohort.result(change, kind)
