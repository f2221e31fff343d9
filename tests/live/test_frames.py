"""The hub's frame writer, without Redis or a server: members of a cohort get one
execution and identical frames, written from the writer's one task; a slow socket is
coalesced to the newest state without holding up the others; a member that leaves
mid-fan-out gets nothing more; a failed execution ends its subscriptions. The sinks are
fakes of the WebSocket (a list of frames; a send that can be held), the only part the
writer talks to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from strawberry.types.execution import ExecutionResult

from gateway.live import frames as frames_module
from gateway.live.cohorts import SNAPSHOT, UPDATED, Cohort, ShadowChange
from gateway.live.frames import FrameWriter, SocketMember
from gateway.live.payload import PreparedPayload
from tests.live.test_cohorts import TENANT, change


class Sink:
    """Records every frame; ``hold`` makes sends wait (a socket whose buffer is full)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.tasks: set[asyncio.Task[Any] | None] = set()
        self.hold: asyncio.Event | None = None
        self.ended_count = 0

    async def _send(self, text: str) -> None:
        self.tasks.add(asyncio.current_task())
        if self.hold is not None:
            await self.hold.wait()
        self.raw.append(text)
        self.frames.append(orjson.loads(text))

    def write(self, payload: PreparedPayload) -> bool:
        return False  # a server without prepared frames: every frame takes `send`

    def send(self, payload: PreparedPayload) -> Any:
        return self._send('{"id":"' + self.name + '","type":"next","payload":'
                          + payload.text.decode() + "}")

    def ended(self) -> None:
        self.ended_count += 1

    def versions(self) -> list[tuple[int, str]]:
        return [(f["payload"]["data"]["version"], f["payload"]["data"]["kind"])
                for f in self.frames]


class Execute:
    """Counts executions; ``gate`` holds them until set; ``fail`` raises."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, c: ShadowChange, kind: str) -> ExecutionResult:
        self.calls.append((c.seq, kind))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("execution failed")
        return ExecutionResult(
            data={"deviceId": str(c.device_id), "version": c.version, "kind": kind},
            errors=None)


@pytest.fixture
async def writer() -> AsyncIterator[FrameWriter]:
    frames = FrameWriter()
    task = asyncio.create_task(frames.run())
    yield frames
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await frames.aclose()


def join(cohort: Cohort, writer: FrameWriter, name: str) -> tuple[SocketMember, Sink]:
    sink = Sink(name)
    member = SocketMember(cohort, sink, writer)
    cohort.on_newest = writer.mark_cohort  # as the hub's join does
    cohort.add(member)
    return member, sink


async def settle(writer: FrameWriter) -> None:
    """Lets the writer finish its rounds."""
    for _ in range(20):
        await asyncio.sleep(0)


def offer(members: list[SocketMember], c: ShadowChange, *, snapshot: bool = False) -> None:
    for member in members:
        member.offer(c, snapshot=snapshot)


async def test_members_get_one_execution_and_identical_frames_from_one_task(
    writer: FrameWriter,
) -> None:
    execute = Execute()
    cohort = Cohort(("k",), TENANT, devices=None, asset_id=None, execute=execute)
    joined = [join(cohort, writer, "op") for _ in range(300)]  # more than one yield batch
    members = [m for m, _ in joined]
    device = uuid4()
    offer(members, change(device, 1), snapshot=True)
    await settle(writer)
    update = change(device, 2)
    cohort.offer(update)
    # The change waits once, in the cohort, not in each member's mailbox.
    assert all(m.backlog == 0 for m in members) and cohort.frames_ready
    await settle(writer)

    frames = {sink.raw[-1] for _, sink in joined}
    assert len(frames) == 1  # byte-identical: encoded once, same id
    assert orjson.loads(frames.pop()) == {"id": "op", "type": "next", "payload": {
        "data": {"deviceId": str(device), "version": 2, "kind": UPDATED}}}
    assert [sink.versions() for _, sink in joined] == [[(1, SNAPSHOT), (2, UPDATED)]] * 300
    assert execute.calls[-1] == (update.seq, UPDATED) and len(execute.calls) == 2
    # No task of their own: every frame was sent from the writer's task.
    senders = set().union(*(sink.tasks for _, sink in joined))
    assert len(senders) == 1 and None not in senders
    assert writer.frames == 600


async def test_a_slow_member_is_coalesced_and_holds_up_no_one(writer: FrameWriter) -> None:
    cohort = Cohort(("k",), TENANT, devices=None, asset_id=None, execute=Execute())
    fast, fast_sink = join(cohort, writer, "fast")
    slow, slow_sink = join(cohort, writer, "slow")
    device = uuid4()
    offer([fast, slow], change(device, 1), snapshot=True)
    await settle(writer)
    slow_sink.hold = asyncio.Event()  # its socket's buffer is full from now on
    for version in range(2, 12):
        cohort.offer(change(device, version))
        await settle(writer)
        assert fast_sink.versions()[-1] == (version, UPDATED)  # not delayed by `slow`
    assert slow.backlog == 1  # the newest only: nothing queues without bound
    assert slow_sink.versions() == [(1, SNAPSHOT)]

    slow_sink.hold.set()  # the socket drains: the frame it was writing, then the newest
    await settle(writer)
    assert slow_sink.versions() == [(1, SNAPSHOT), (2, UPDATED), (11, UPDATED)]
    assert len(fast_sink.frames) == 11


async def test_a_member_that_leaves_mid_fan_out_gets_nothing_more(writer: FrameWriter) -> None:
    execute = Execute()
    cohort = Cohort(("k",), TENANT, devices=None, asset_id=None, execute=execute)
    (stay, stay_sink), (leave, leave_sink) = join(cohort, writer, "a"), join(cohort, writer, "b")
    device = uuid4()
    offer([stay, leave], change(device, 1), snapshot=True)
    await settle(writer)
    execute.gate = asyncio.Event()
    cohort.offer(change(device, 2))
    await settle(writer)
    assert len(execute.calls) == 2  # the round is under way, waiting for its execution
    leave.close()  # the client's `complete` (the handler calls hub.leave)
    cohort.discard(leave)
    execute.gate.set()
    await settle(writer)
    assert stay_sink.versions() == [(1, SNAPSHOT), (2, UPDATED)]
    assert leave_sink.versions() == [(1, SNAPSHOT)]
    cohort.offer(change(device, 3))
    await settle(writer)
    assert leave_sink.versions() == [(1, SNAPSHOT)]
    assert stay_sink.versions()[-1] == (3, UPDATED)


async def test_a_failed_execution_ends_its_subscriptions(writer: FrameWriter) -> None:
    execute = Execute()
    execute.fail = True
    cohort = Cohort(("k",), TENANT, devices=None, asset_id=None, execute=execute)
    (a, a_sink), (b, b_sink) = join(cohort, writer, "a"), join(cohort, writer, "b")
    offer([a, b], change(uuid4(), 1), snapshot=True)
    await settle(writer)
    assert (a_sink.frames, b_sink.frames) == ([], [])
    assert (a_sink.ended_count, b_sink.ended_count) == (1, 1) and a.closed and b.closed


async def test_a_change_right_after_a_snapshot_follows_it_in_the_next_round(
    writer: FrameWriter,
) -> None:
    """A member whose SNAPSHOT is written in a round gets a change that arrived meanwhile
    after it, never before, and as UPDATED."""
    execute = Execute()
    cohort = Cohort(("k",), TENANT, devices=None, asset_id=None, execute=execute)
    (old, old_sink), (new, new_sink) = join(cohort, writer, "old"), join(cohort, writer, "new")
    device = uuid4()
    old.offer(change(device, 1), snapshot=True)
    await settle(writer)
    new.offer(change(device, 1), snapshot=True)  # joins: its SNAPSHOT pending
    cohort.offer(change(device, 2))  # and a change arrives before the writer ran
    await settle(writer)
    assert old_sink.versions() == [(1, SNAPSHOT), (2, UPDATED)]
    assert new_sink.versions() == [(1, SNAPSHOT), (2, UPDATED)]


async def test_members_of_other_cohorts_get_their_own_results(writer: FrameWriter) -> None:
    """Cohorts are per tenant (and document, variables): one change seen by two tenants'
    cohorts is executed by each, and each member gets its own cohort's frame."""
    tenants: list[UUID] = [uuid4(), uuid4()]
    executes = [Execute(), Execute()]
    cohorts = [Cohort((t,), t, devices=None, asset_id=None, execute=e)
               for t, e in zip(tenants, executes, strict=True)]
    (a, a_sink), (b, b_sink) = join(cohorts[0], writer, "a"), join(cohorts[1], writer, "b")
    c = change(uuid4(), 1)
    a.offer(c, snapshot=True)
    await settle(writer)
    assert len(a_sink.frames) == 1 and b_sink.frames == []
    assert [len(e.calls) for e in executes] == [1, 0]
    b.offer(c, snapshot=True)
    await settle(writer)
    assert [len(e.calls) for e in executes] == [1, 1]


async def test_a_round_takes_the_longest_waiting_cohorts_their_newest_when_it_starts(
    writer: FrameWriter, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round takes ready cohorts up to a member budget, oldest first, and each cohort's
    newest changes as its round starts: a cohort whose turn has not come yet delivers
    only the change that is newest by then."""
    monkeypatch.setattr(frames_module, "_ROUND_MEMBERS", 2)
    cohorts = [Cohort((name,), TENANT, devices=None, asset_id=None, execute=Execute())
               for name in "abc"]
    sinks = []
    device = uuid4()
    for cohort in cohorts:
        members = [join(cohort, writer, cohort.key[0]) for _ in range(2)]
        offer([m for m, _ in members], change(device, 1), snapshot=True)
        sinks.append([sink for _, sink in members])
    await settle(writer)
    for cohort in cohorts:
        cohort.offer(change(device, 2))
    for _ in range(20):  # until the first cohort's round has written
        await asyncio.sleep(0)
        if len(sinks[0][0].frames) == 2:
            break
    assert [len(s[0].frames) for s in sinks] == [2, 1, 1]
    cohorts[2].offer(change(device, 3))  # before the third cohort's turn
    await settle(writer)
    assert [s.versions() for s in sinks[0] + sinks[1]] == [[(1, SNAPSHOT), (2, UPDATED)]] * 4
    assert [s.versions() for s in sinks[2]] == [[(1, SNAPSHOT), (3, UPDATED)]] * 2
