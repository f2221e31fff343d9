"""The hub's frame writer: subscription results written straight to the WebSockets of a
cohort's members, without a task (or a consumer of any kind) per subscriber.

A WebSocket subscription the gateway serves from a cohort (``shadowChanged``) joins as a
``SocketMember`` carrying a ``FrameSink``: the socket and the operation's frame head,
built by the protocol handler (``gateway.http.websocket``). A change reaches such members
through their cohort alone (``Cohort.offer`` keeps the newest change per device and marks
the cohort ready: nothing per member per change); a member's own changes (its
SNAPSHOTs, what coalesced while its socket was full) mark the member ready. One task per
hub drains the ready members and cohorts in rounds, a round taking every ready member and
the cohorts that have been ready longest, up to ``_ROUND_MEMBERS`` members (a cohort
marked ready again goes to the back):

1. each ready member's pending changes, and each ready cohort's newest changes for every
   member not already served in this round, are grouped by (cohort, change, kind), and
   every group's execution is started (``Cohort.started``: once per cohort and change);
2. per group, the result's payload (``{"data": ..., "errors": ...}``) is encoded once to
   UTF-8 and, for sockets with permessage-deflate, compressed once (a
   ``gateway.live.payload.PreparedPayload``); each member's frame is its head and that
   payload, spliced by the sink (``gateway.http.ws_frames``): as text, or as DEFLATE
   stored blocks around the shared compressed blocks, which the server's protocol
   negotiates without context takeover for this (``gateway.http.ws_protocol``);
3. each frame is written in place: ``FrameSink.write`` puts the whole frame on the
   socket's transport when it has room (no task, no loop round, no per-socket
   compression). Otherwise (the transport paused, the socket closing, a server without
   prepared frames) its ASGI send is started in place: that of a socket whose buffer
   has room finishes without suspending; a socket whose buffer is full (a slow reader)
   finishes that one frame in a task of its own and is left out of the rounds until it
   has: what arrives meanwhile coalesces in its mailbox to the newest state per device.
   Nothing queues without bound and no slow socket holds up the others.

The writer yields to the event loop every ``_YIELD_EVERY`` frames, so a large round does
not stall the sockets' readers, the hub's listener or a health check.

Why rounds of a bounded size: a round takes its cohorts' newest changes when it starts.
When one round took every ready cohort (at 10,000 subscribers, every member: a round of
10,000 frames), a change that arrived during a round waited for the rest of that round
and then for its cohort's turn in the next, up to two rounds' time, while the change its
members got had been taken up to a round before it was written. In rounds of
``_ROUND_MEMBERS`` a cohort's changes are taken when its turn comes, so the latency
of a delivered change is about one small round: at 10,000 subscribers and 1,000 updates/s
on a busy 2-core machine, p50/p99 1503/3533 ms over the writer's window -> 446/830 ms
(bench/RESULTS.md, 2026-12-07 17:51 and 17:56). A subscriber's next change still comes
once its cohort's turn comes round again: the time to serve every member once, which is
what the last change of a run waits for (its p99 then ~2 s on that machine).

Measured (bench/RESULTS.md, "Subscription fan-out: frames written by the hub"): the
per-subscriber path (Strawberry's operation task, message dict, JSON encoding and send
per member) cost ~200 us a delivered message at 2,000 subscribers.
Then (bench/RESULTS.md, "2026-12-07 13:47 UTC: fanout"): ~100 us of gateway CPU a
delivered message through the ASGI send, a third of it compressing per socket.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Coroutine, Generator
from typing import Any, Protocol, cast

import orjson

from gateway.live.cohorts import SNAPSHOT, Change, Cohort, Mailbox
from gateway.live.payload import PreparedPayload

log = logging.getLogger("gateway.live.frames")

_YIELD_EVERY = 256  # frames written between two yields to the event loop
# Members whose ready cohorts one round takes at most (at least one cohort a round); 256
# gave no lower latency at 10,000 subscribers (bench/RESULTS.md, 2026-12-07 18:11).
_ROUND_MEMBERS = 1024


class FrameSink(Protocol):
    """Where one subscription's frames go: built by the WebSocket protocol handler."""

    def write(self, payload: PreparedPayload) -> bool:
        """Writes the protocol's result message (``next`` / ``data``) with ``payload`` at
        once, as a prepared frame; False when it cannot (nothing written): ``send`` then."""
        ...

    def send(self, payload: PreparedPayload) -> Coroutine[Any, Any, None]:
        """Sends the protocol's result message with ``payload`` the ASGI way."""
        ...

    def ended(self) -> None:
        """The server ended the subscription (shutdown, a failed execution): the handler
        tells the client (``complete``) and forgets the operation."""
        ...


class SocketMember(Mailbox):
    """A member whose frames the hub's ``FrameWriter`` writes."""

    def __init__(self, cohort: Cohort, sink: FrameSink, writer: FrameWriter) -> None:
        super().__init__(cohort)
        self.sink = sink
        self._writer = writer
        self.ready = False  # in the writer's next round
        self.sending = False  # a frame's send waits for the socket's buffer to drain
        self.round = 0  # the writer's round that last took its pending changes

    takes_newest = True

    def _woken(self) -> None:
        if not self.ready and not self.sending:
            self._writer.mark_ready(self)

    def take(self) -> list[tuple[Change, str]]:
        """Everything pending, oldest first; the mailbox is left empty."""
        taken = list(self._pending.values())
        self._pending.clear()
        return taken

    def put_back(self, change: Change, kind: str) -> None:
        """Returns a taken change that could not be sent yet, unless a newer one of its
        device arrived since (which then keeps a SNAPSHOT's kind: still the first)."""
        newer = self._pending.get(change.device_id)
        if newer is None:
            self._pending[change.device_id] = (change, kind)
        elif kind == SNAPSHOT:
            self._pending[change.device_id] = (newer[0], SNAPSHOT)

    def end(self) -> None:
        if not self._closed:
            self.close()
            self.sink.ended()


def encode_payload(result: Any) -> PreparedPayload:
    """A result's message payload, as both protocols (and Strawberry) build it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return PreparedPayload(orjson.dumps(payload))


class FrameWriter:
    """One task per hub that writes every ``SocketMember``'s frames."""

    def __init__(self) -> None:
        self._ready: list[SocketMember] = []
        self._cohorts: list[Cohort] = []
        self._rounds = 0
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self.frames = 0  # written (or started) since the start: tests and metrics
        self.prepared = 0  # of which written as prepared frames (``FrameSink.write``)
        self.waited = 0  # of which waited for their socket to drain (a slow reader)

    def mark_ready(self, member: SocketMember) -> None:
        """``member`` has changes of its own pending (a SNAPSHOT, a coalesced backlog)."""
        member.ready = True
        self._ready.append(member)
        self._wake.set()

    def mark_cohort(self, cohort: Cohort) -> None:
        """``cohort`` has new changes for its members (``Cohort.offer``)."""
        if not cohort.frames_ready:
            cohort.frames_ready = True
            self._cohorts.append(cohort)
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ready or self._cohorts:
                members, self._ready = self._ready, []
                await self._round(members, self._next_cohorts())

    def _next_cohorts(self) -> list[Cohort]:
        """The longest-waiting ready cohorts, up to ``_ROUND_MEMBERS`` members: a round
        takes each cohort's newest changes when it starts, so a change that arrives during
        a round waits for the rest of it, and then for its cohort's turn in the next."""
        taken, members = 0, 0
        for cohort in self._cohorts:
            taken += 1
            members += len(cohort.shared)
            if members >= _ROUND_MEMBERS:
                break
        cohorts = self._cohorts[:taken]
        del self._cohorts[:taken]
        return cohorts

    async def aclose(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _round(self, members: list[SocketMember], cohorts: list[Cohort]) -> None:
        self._rounds += 1
        this_round = self._rounds
        groups: dict[tuple[Cohort, int, str], _Group] = {}

        def add(member: SocketMember, change: Change, kind: str) -> None:
            key = (member.cohort, change.seq, kind)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(change, kind, member.cohort.started(change, kind))
            group.members.append(member)

        for member in members:
            member.ready = False
            if member.closed or member.sending:
                continue
            member.round = this_round
            for change, kind in member.take():
                add(member, change, kind)
        for cohort in cohorts:
            cohort.frames_ready = False
            changes = cohort.take_newest()
            for shared in cohort.shared:
                member = cast(SocketMember, shared)
                if member.closed:
                    continue
                if (member.ready or member.sending or member.backlog
                        or member.round == this_round):
                    # Its own changes go first (a frame per device and round): these
                    # join them, coalesced, for its next round.
                    for change in changes:
                        member.offer(change)
                    continue
                for change in changes:
                    accepted = member.accept(change)
                    if accepted is not None:
                        add(member, change, accepted)
        written = 0
        for group in groups.values():
            future = group.execution
            try:
                # Not shielded: this task is cancelled only when the hub closes.
                result = future.result() if future.done() else await future
            except Exception:
                log.exception("a subscription execution failed; ending %d subscription(s)",
                              len(group.members))
                for member in group.members:
                    member.end()
                continue
            payload = encode_payload(result)
            for member in group.members:
                if member.closed:
                    continue
                if member.sending:  # an earlier frame of this round still waits: later
                    member.put_back(group.change, group.kind)
                    continue
                self._send(member, payload)
                written += 1
                if written % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        self.frames += written

    def _send(self, member: SocketMember, payload: PreparedPayload) -> None:
        try:
            if member.sink.write(payload):
                self.prepared += 1
                return  # written: the common case
        except Exception as exc:  # the socket is gone; its handler cleans up
            log.debug("frame not written: %r", exc)
            member.close()
            return
        coroutine = member.sink.send(payload)
        try:
            suspended = coroutine.send(None)
        except StopIteration:
            return  # written without waiting (a server without prepared frames)
        except Exception as exc:  # the socket is gone; its handler cleans up
            log.debug("frame not written: %r", exc)
            member.close()
            return
        self.waited += 1
        member.sending = True
        task = asyncio.ensure_future(_finish(coroutine, suspended))
        self._sending.add(task)
        task.add_done_callback(lambda done: self._sent(member, done))

    def _sent(self, member: SocketMember, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        member.sending = False
        if task.cancelled() or task.exception() is not None:
            member.close()
        elif member.backlog and not member.closed:
            self.mark_ready(member)


class _Group:
    """The members of one round that receive the same (cohort, change, kind)."""

    __slots__ = ("change", "execution", "kind", "members")

    def __init__(self, change: Change, kind: str, execution: asyncio.Future[Any]) -> None:
        self.change = change
        self.kind = kind
        self.execution = execution
        self.members: list[SocketMember] = []


async def _finish(coroutine: Coroutine[Any, Any, None], suspended: Any) -> None:
    await _resume(coroutine, suspended)


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, None], suspended: Any) -> Generator[Any, Any, None]:
    """Drives a coroutine that was started by hand (``coroutine.send(None)``) and
    suspended on ``suspended`` to its end, as the task it now runs in."""
    while True:
        try:
            sent = yield suspended
        except BaseException as exc:  # cancellation included: handed to the coroutine
            try:
                suspended = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                suspended = coroutine.send(sent)
            except StopIteration:
                return
