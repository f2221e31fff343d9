"""One Redis client for a single server or a Redis (Valkey) Cluster, and scripts per node.

``IOTSPHERE_REDIS_URL`` names a cluster by its scheme: ``redis+cluster://host:port`` (or
``rediss+cluster://``) with any node as seed; the client learns the others. Everything else
is a single server.

A Lua script may only touch keys of one slot in a cluster, unless it declares the flag
``allow-cross-slot-keys``: then any keys on the node that runs it. The keys it declares
(KEYS) must still share a slot (else CROSSSLOT, Valkey 8.1), so a node's keys are passed
as ARGV and the script reads them from there; a key the node does not hold fails the call
("non local key"). ``NodeScript`` uses that to read many devices (each in its own slot)
with one call per node, in parallel, and one call in all on a single server.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

AnyRedis = redis.Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def connect_url(url: str, **options: Any) -> AnyRedis:
    """The client for ``url`` (connects on demand)."""
    scheme, rest = url.split("://", 1)
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    if plain is None:
        return redis.Redis.from_url(url, **options)
    # A cluster has database 0 only; a path would be refused by the client.
    return RedisCluster.from_url(f"{plain}://{rest.split('/', 1)[0]}", **options)


class NodeScript:
    """A read script whose reply has one entry per key, run over keys that may span slots.

    ``run(keys, group=n)`` takes the keys in groups of ``n`` that share a slot (a device's
    shadow key and version key) and runs the script once per node holding them, in
    parallel; the replies are put back in key order. While slots move (MOVED/ASK) or a
    primary fails over, the node's groups are retried one group per call, routed by slot
    by the cluster client, which follows the redirection and refreshes its topology.
    """

    def __init__(self, client: AnyRedis, body: str) -> None:
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._slot_script = Script(body)  # KEYS of one slot, or any on a single server
        # The flags line needs Redis 7+/Valkey, hence only here: a single server never runs
        # it. ``local KEYS = ARGV`` lets one body serve both.
        self._node_script = Script(
            "#!lua flags=no-writes,allow-cross-slot-keys\nlocal KEYS = ARGV\n" + body)

    async def run(self, keys: Sequence[str], *, group: int = 1) -> list[Any]:
        if not keys:
            return []
        if not self._cluster:
            return list(await self._slot_script.call(self._client, keys))
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        assert isinstance(self._client, RedisCluster)
        for start in range(0, len(keys), group):
            node = self._client.get_node_from_key(keys[start])
            if node is None:
                raise RedisConnectionError(f"no cluster node serves the slot of {keys[start]}")
            by_node.setdefault(node.name, (node, []))[1].append(start)
        replies = await asyncio.gather(*(
            self._on_node(node, [keys[s:s + group] for s in starts])
            for node, starts in by_node.values()))
        out: list[Any] = [None] * len(keys)
        for (_, starts), reply in zip(by_node.values(), replies, strict=True):
            flat = iter(reply)
            for start in starts:
                for i in range(start, start + group):
                    out[i] = next(flat)
        return out

    async def _on_node(self, node: ClusterNode, groups: list[Sequence[str]]) -> list[Any]:
        keys = [k for g in groups for k in g]
        try:
            return list(await self._node_script.call(self._client, [], keys, node))
        except RedisError:  # connection errors too
            pass  # the topology moved under us: one group per call, routed by slot
        out: list[Any] = []
        for g in groups:
            out += await self._slot_script.call(self._client, g)
        return out


class Script:
    """A script called by its SHA1, sent whole once the server says it does not know it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def call(self, client: AnyRedis, keys: Sequence[str], args: Sequence[str] = (),
                   node: ClusterNode | None = None) -> Any:
        target = {"target_nodes": node} if node is not None else {}
        try:
            return await client.execute_command(
                "EVALSHA", self.sha, len(keys), *keys, *args, **target)
        except NoScriptError:
            return await client.execute_command(
                "EVAL", self.source, len(keys), *keys, *args, **target)
