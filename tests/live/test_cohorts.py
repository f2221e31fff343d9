"""Member and Cohort, without Redis or a server: what a member delivers, in which order and
kind, how it coalesces, and that a cohort executes each change once for all its members."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.live.cohorts import DELETED, SNAPSHOT, UPDATED, Cohort, Member, ShadowChange

TENANT = uuid4()
_seq = itertools.count(1)


def change(device: UUID, version: int | None, *, deleted: bool = False) -> ShadowChange:
    return ShadowChange(seq=next(_seq), tenant_id=TENANT, device_id=device, deleted=deleted,
                        version=version, doc=None, at=datetime.now(UTC))


class Recorder:
    """An ``execute`` that returns what it was asked for and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, c: ShadowChange, kind: str) -> tuple[UUID, int | None, str]:
        self.calls.append((c.seq, kind))
        return c.device_id, c.version, kind


def cohort(execute: Any = None) -> Cohort:
    return Cohort(("key",), TENANT, devices=None, asset_id=None,
                  execute=execute or Recorder())


async def drain(member: Member) -> list[tuple[UUID, int | None, str]]:
    """Everything the member has ready, without waiting for more."""
    out = []
    while member.backlog:
        out.append(await anext(member))
    return out


def test_rank_orders_updated_deleted_updated() -> None:
    d = uuid4()
    updated, deleted, next_updated = change(d, 3), change(d, 3, deleted=True), change(d, 4)
    assert change(d, None).rank < change(d, 1).rank
    assert updated.rank < deleted.rank < next_updated.rank


async def test_first_delivery_is_a_snapshot_even_when_offered_as_a_change() -> None:
    d = uuid4()
    member = Member(cohort())
    member.offer(change(d, 5))
    member.offer(change(d, 6))  # coalesced with the undelivered first: still a SNAPSHOT
    assert await drain(member) == [(d, 6, SNAPSHOT)]
    member.offer(change(d, 7))
    assert await drain(member) == [(d, 7, UPDATED)]


async def test_snapshot_without_shadow_then_first_shadow_is_an_update() -> None:
    d = uuid4()
    member = Member(cohort())
    member.offer(change(d, None), snapshot=True)
    assert await drain(member) == [(d, None, SNAPSHOT)]
    member.offer(change(d, 1))
    assert await drain(member) == [(d, 1, UPDATED)]


async def test_older_and_repeated_changes_are_dropped() -> None:
    d = uuid4()
    member = Member(cohort())
    member.offer(change(d, 3), snapshot=True)
    await drain(member)
    member.offer(change(d, 2))
    member.offer(change(d, 3))  # the same version again (a duplicate notification)
    member.offer(change(d, 1), snapshot=True)  # an older snapshot never goes back
    assert member.backlog == 0
    member.offer(change(d, 3), snapshot=True)  # a re-snapshot of the same version is sent
    assert await drain(member) == [(d, 3, SNAPSHOT)]


async def test_deleted_sits_between_its_version_and_the_next() -> None:
    d = uuid4()
    member = Member(cohort())
    member.offer(change(d, 3), snapshot=True)
    await drain(member)
    member.offer(change(d, 3, deleted=True))
    assert await drain(member) == [(d, 3, DELETED)]
    member.offer(change(d, 3))  # UPDATED v3 is older than DELETED v3
    assert member.backlog == 0
    member.offer(change(d, 4))
    assert await drain(member) == [(d, 4, UPDATED)]


async def test_coalesces_to_the_newest_change_per_device() -> None:
    a, b = uuid4(), uuid4()
    member = Member(cohort())
    member.offer(change(a, 1), snapshot=True)
    member.offer(change(b, 1), snapshot=True)
    await drain(member)
    for version in range(2, 200):
        member.offer(change(a, version))
        member.offer(change(b, version, deleted=version == 199))
    assert member.backlog == 2  # one pending change per device, however many were offered
    assert sorted(await drain(member)) == sorted([(a, 199, UPDATED), (b, 199, DELETED)])


async def test_close_ends_iteration_and_ignores_later_offers() -> None:
    d = uuid4()
    member = Member(cohort())
    waiting = asyncio.ensure_future(anext(member))
    await asyncio.sleep(0)  # let it wait on an empty mailbox
    member.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)
    member.offer(change(d, 1))
    assert member.backlog == 0
    assert [r async for r in member] == []


async def test_close_ends_iteration_even_with_pending_changes() -> None:
    member = Member(cohort())
    member.offer(change(uuid4(), 1))
    member.close()
    assert [r async for r in member] == []


async def test_a_cohort_executes_each_change_once_for_all_members() -> None:
    recorder = Recorder()
    shared = cohort(recorder)
    members = [Member(shared) for _ in range(5)]
    d = uuid4()
    snap, update = change(d, 1), change(d, 2)
    for member in members:
        member.offer(snap, snapshot=True)
        member.offer(update)
    results = [await drain(m) for m in members]
    assert results == [[(d, 2, SNAPSHOT)]] * 5
    assert recorder.calls == [(update.seq, SNAPSHOT)]  # coalesced, then executed once


async def test_the_same_change_as_different_kinds_executes_per_kind() -> None:
    recorder = Recorder()
    shared = cohort(recorder)
    d = uuid4()
    old, new = Member(shared), Member(shared)
    old.offer(change(d, 1), snapshot=True)
    await drain(old)
    update = change(d, 2)
    old.offer(update)
    new.offer(update)  # new's first delivery of the device: a SNAPSHOT
    assert await drain(old) == [(d, 2, UPDATED)]
    assert await drain(new) == [(d, 2, SNAPSHOT)]
    assert recorder.calls[-2:] == [(update.seq, UPDATED), (update.seq, SNAPSHOT)]


async def test_a_failed_execution_is_not_cached() -> None:
    attempts = 0

    async def flaky(c: ShadowChange, kind: str) -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("boom")
        return kind

    shared = cohort(flaky)
    c = change(uuid4(), 1)
    with pytest.raises(RuntimeError):
        await shared.result(c, SNAPSHOT)
    assert await shared.result(c, SNAPSHOT) == SNAPSHOT
    assert attempts == 2


async def test_a_member_cancelled_mid_execution_does_not_fail_the_others() -> None:
    """The member that started an execution goes away (its client closed) while the
    execution awaits I/O: the members waiting for the same result still get it."""
    release = asyncio.Event()

    async def slow(c: ShadowChange, kind: str) -> str:
        await release.wait()
        return kind

    shared = cohort(slow)
    c = change(uuid4(), 1)
    first = asyncio.ensure_future(shared.result(c, SNAPSHOT))
    second = asyncio.ensure_future(shared.result(c, SNAPSHOT))
    await asyncio.sleep(0)  # both are now waiting on the one execution
    first.cancel()
    release.set()
    assert await asyncio.wait_for(second, 5) == SNAPSHOT
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_finished_results_are_shared_for_a_while_then_dropped(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members of a cohort share a change's result; once finished and older than
    RESULT_TTL, it is dropped at the cohort's next execution (kept up to the count bound
    instead, every cohort's finished results grew the process for minutes)."""
    import gateway.live.cohorts as cohorts

    now = [1000.0]
    monkeypatch.setattr(cohorts, "_clock", lambda: now[0])
    recorder = Recorder()
    group = cohort(recorder)
    d = uuid4()
    first = change(d, 1)
    await group.result(first, UPDATED)
    await group.result(first, UPDATED)  # shared: executed once
    assert recorder.calls == [(first.seq, UPDATED)]

    now[0] += cohorts.RESULT_TTL + 1
    await group.result(change(d, 2), UPDATED)  # the next execution drops the old result
    assert len(group._results) == 1
    await group.result(first, UPDATED)  # asked again: executed again
    assert [c[0] for c in recorder.calls] == [first.seq, first.seq + 1, first.seq]


async def test_a_rate_bounded_member_delivers_once_per_interval_and_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.live import cohorts as cohorts_module

    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(cohorts_module, "_clock", lambda: now[0])
    monkeypatch.setattr(cohorts_module, "_sleep", sleep)
    member = Member(cohort(), min_interval=2.0)
    d = uuid4()
    member.offer(change(d, 1), snapshot=True)
    assert await anext(member) == (d, 1, SNAPSHOT)  # the first delivery does not wait
    for version in range(2, 52):  # 50 changes inside the interval
        member.offer(change(d, version))
    assert await anext(member) == (d, 51, UPDATED)  # one delivery: the newest
    assert slept == [2.0] and member.backlog == 0
    now[0] += 5.0  # a quiet spell: the next change goes at once
    member.offer(change(d, 52))
    assert await anext(member) == (d, 52, UPDATED)
    assert slept == [2.0]
