"""The hub's reads per Redis node (gateway/live/node_reads.py): a node whose read hangs
(a primary that just died, its read in the cluster client's retries) holds back only its
own devices. Pure scheduling logic, with reads that wait on events."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

from gateway.errors import StoreUnavailable
from gateway.live.node_reads import Dirty, NodeReads

TENANT = uuid4()


class Reads:
    def __init__(self, nodes: dict[UUID, str]) -> None:
        self.nodes = nodes
        self.read: list[tuple[str, set[UUID]]] = []
        self.release: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()
        self.requeued: list[set[Dirty]] = []
        self.reads = NodeReads(self._read, lambda tenant, device: self.nodes[device],
                               self.requeued.append)

    async def _read(self, tenant_id: UUID, devices: list[UUID]) -> None:
        node = self.nodes[devices[0]]
        assert {self.nodes[d] for d in devices} == {node}  # one read per node
        gate = self.release.setdefault(node, asyncio.Event())
        await gate.wait()
        if node in self.fail:
            raise StoreUnavailable("shadows", "ConnectionError")
        self.read.append((node, set(devices)))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_hung_node_holds_back_only_its_own_devices() -> None:
    a1, a2, b1, b2 = (uuid4() for _ in range(4))
    reads = Reads({a1: "a", a2: "a", b1: "b", b2: "b"})
    reads.release["a"] = asyncio.Event()  # node a hangs
    reads.release["b"] = asyncio.Event()
    reads.release["b"].set()
    reads.reads.start(TENANT, [a1, b1])
    await _settle()
    assert reads.read == [("b", {b1})]  # b answered while a's read hangs
    reads.reads.start(TENANT, [a2, b2])  # a is busy: a2 waits; b is free again
    await _settle()
    assert reads.read == [("b", {b1}), ("b", {b2})]
    assert reads.requeued == []
    reads.release["a"].set()
    await _settle()
    assert reads.read[-1] == ("a", {a1})
    assert reads.requeued == [{(TENANT, a2)}]  # read in the hub's next round, on a
    assert not reads.reads.busy()


async def test_a_failed_read_frees_its_node() -> None:
    a1, a2 = uuid4(), uuid4()
    reads = Reads({a1: "a", a2: "a"})
    reads.fail.add("a")
    reads.release["a"] = asyncio.Event()
    reads.reads.start(TENANT, [a1])
    reads.reads.start(TENANT, [a2])
    reads.release["a"].set()
    await _settle()
    assert reads.read == [] and reads.requeued == [{(TENANT, a2)}]
    assert not reads.reads.busy()
    reads.fail.clear()
    reads.reads.start(TENANT, [a2])
    await _settle()
    assert reads.read == [("a", {a2})]


async def test_closing_cancels_reads_in_flight() -> None:
    a1 = uuid4()
    reads = Reads({a1: "a"})
    reads.release["a"] = asyncio.Event()
    reads.reads.start(TENANT, [a1])
    await _settle()
    assert reads.reads.busy()
    await reads.reads.aclose()
    assert not reads.reads.busy() and reads.read == []
