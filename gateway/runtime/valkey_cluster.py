"""A local Valkey Cluster from the same binary as the embedded stack, for the tests
(tests/live/test_cluster.py, tests/stores/test_shadows_cluster.py) and the fan-out benchmark
(bench/fanout.py --cluster); next to the devstack, since both start stores for development.

Three primaries (slots split in thirds, joined with CLUSTER MEET) on free ports in a
temporary directory; ``replicas=True`` adds one replica per primary, and the cluster is
handed over only once every replica has finished its first sync. Stopped (SIGTERM, then
SIGKILL) when the context ends.

Why the wait for the sync: a replica whose link to its primary never came up (its
``master_link_down_since_seconds`` is -1) counts its data as infinitely old, so when the
primary dies it never starts a failover (cluster-replica-validity-factor) and the primary's
slots stay on a dead node for good. With the default diskless-sync delay of 5 s a test that
killed a primary within seconds of the start depended on the machine being slow enough for
the first sync to have finished.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis
from redis.crc import key_slot

from gateway.runtime.devstack import free_port, valkey_bin

SLOTS = 16384
HOST = "127.0.0.1"


@dataclass
class Node:
    port: int
    bus_port: int
    process: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5)

    def node_id(self) -> str:
        reply = self.client().execute_command("CLUSTER MYID")
        return reply.decode() if isinstance(reply, bytes) else str(reply)


@dataclass
class LocalCluster:
    directory: Path
    primaries: list[Node] = field(default_factory=list)
    replicas: list[Node] = field(default_factory=list)
    starting: list[Node] = field(default_factory=list)  # every process, for stop()

    @property
    def url(self) -> str:
        """A seed URL naming a node that is still running (after a primary was killed, a
        new client seeded with the dead node alone could not learn the cluster)."""
        live = next((n for n in self.nodes() if n.process.poll() is None), self.primaries[0])
        return f"redis+cluster://{HOST}:{live.port}"

    def nodes(self) -> list[Node]:
        return self.primaries + self.replicas

    def primary_for(self, key: str) -> Node:
        """The primary that held ``key``'s slot when the cluster formed (slots in thirds)."""
        step = SLOTS // len(self.primaries)
        return self.primaries[min(key_slot(key.encode()) // step, len(self.primaries) - 1)]

    def replica_of(self, primary: Node) -> Node:
        """The replica that follows ``primary`` (asked while the primary is alive)."""
        for node in self.replicas:
            role = node.client().execute_command("ROLE")
            if role[0] == b"slave" and int(role[2]) == primary.port:
                return node
        raise RuntimeError(f"no replica follows the primary on port {primary.port}")

    def start_node(self) -> Node:
        port, bus_port = free_port(), free_port()
        process = subprocess.Popen(
            # The bus port is given: the default (port + 10000) may exceed 65535.
            [str(valkey_bin()), "--port", str(port), "--bind", HOST, "--cluster-enabled", "yes",
             "--cluster-port", str(bus_port),
             "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000",
             "--dir", str(self.directory), "--save", "", "--appendonly", "no",
             # The first sync starts at once instead of waiting 5 s for more replicas.
             "--repl-diskless-sync-delay", "0",
             "--notify-keyspace-events", "Khgxe"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        node = Node(port, bus_port, process)
        self.starting.append(node)
        _wait(partial(_pings, node), f"valkey on port {port}")
        return node

    def stop(self) -> None:
        for node in self.starting:
            if node.process.poll() is None:
                node.process.terminate()
        for node in self.starting:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)


def _pings(node: Node) -> bool:
    with contextlib.suppress(redis.RedisError):
        return bool(node.client().ping())
    return False


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _state_ok(node: Node, known: int) -> bool:
    with contextlib.suppress(redis.RedisError):
        info = node.client().cluster("info")  # parsed by redis-py
        return (info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == known)
    return False


@contextlib.contextmanager
def local_cluster(*, primaries: int = 3, replicas: bool = False) -> Iterator[LocalCluster]:
    with tempfile.TemporaryDirectory(prefix="iotsphere-cluster-") as tmp:
        cluster = LocalCluster(Path(tmp))
        try:
            cluster.primaries = [cluster.start_node() for _ in range(primaries)]
            step = SLOTS // primaries
            for n, node in enumerate(cluster.primaries):
                hi = SLOTS - 1 if n == primaries - 1 else (n + 1) * step - 1
                node.client().execute_command("CLUSTER ADDSLOTSRANGE", n * step, hi)
            first = cluster.primaries[0].client()
            for node in cluster.primaries[1:]:
                first.execute_command("CLUSTER MEET", HOST, node.port, node.bus_port)
            if replicas:
                cluster.replicas = [cluster.start_node() for _ in range(primaries)]
                for node in cluster.replicas:
                    first.execute_command("CLUSTER MEET", HOST, node.port, node.bus_port)
            known = len(cluster.nodes())
            for node in cluster.nodes():
                _wait(partial(_state_ok, node, known), "the cluster to form")
            for primary, replica in zip(cluster.primaries, cluster.replicas, strict=False):
                primary_id = primary.node_id()
                _wait(partial(_replicates, replica, primary_id), "a replica")
            for replica in cluster.replicas:
                _wait(partial(_synced, replica), "a replica's first sync")
            yield cluster
        finally:
            cluster.stop()


def _synced(node: Node) -> bool:
    with contextlib.suppress(redis.RedisError):
        return node.client().info("replication").get("master_link_status") == "up"
    return False


def _replicates(node: Node, primary_id: str) -> bool:
    with contextlib.suppress(redis.RedisError):
        node.client().execute_command("CLUSTER REPLICATE", primary_id)
        return True
    return False
