"""Following a Redis Cluster's primaries for the subscription hub.

Keyspace notifications are node-local in a cluster: a node publishes them only to its own
subscribers, for the keys it holds. So the hub listens on every primary, one connection
each, and this module keeps that set current: every ``check`` seconds it reads the slot
map (CLUSTER SLOTS, through the cluster client, which finds a live node). A new primary
(failover, added node) gets a listener, a primary that left loses its own, and any change
of the slot map (also a slot moved between nodes) calls ``changed``: notifications for
moved keys may have been lost in between, so the hub re-sends SNAPSHOTs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from gateway.stores.redis_client import connect_url

log = logging.getLogger("gateway.live.cluster")

TOPOLOGY_CHECK = 1.0

SlotMap = tuple[tuple[int, int, str], ...]  # (first slot, last slot, primary host:port)


async def slot_map(client: RedisCluster) -> SlotMap:
    reply: Any = await client.execute_command("CLUSTER SLOTS")
    rows = []
    for (first, last), node in reply.items():  # redis-py parses it into a dict
        host, port = node["primary"][:2]
        host = host.decode() if isinstance(host, bytes) else host
        rows.append((int(first), int(last), f"{host}:{port}"))
    return tuple(sorted(rows))


async def follow_cluster(
    url: str, *, listen: Callable[[str], Coroutine[Any, Any, None]],
    primaries_now: Callable[[set[str]], None], changed: Callable[[], Awaitable[None]],
    check: float = TOPOLOGY_CHECK,
) -> None:
    """Runs ``listen("redis://host:port/0")`` for each primary while it is one; tells
    ``primaries_now`` the current set, and awaits ``changed()`` after the slot map changed."""
    client = connect_url(url)
    assert isinstance(client, RedisCluster)
    listeners: dict[str, asyncio.Task[None]] = {}
    known: SlotMap | None = None
    try:
        while True:
            try:
                current = await slot_map(client)
            except (RedisError, OSError) as exc:
                log.warning("cannot read the cluster's slot map (%s); retrying", exc)
                current = None
            if current is not None and current != known:
                primaries = {addr for _, _, addr in current}
                for addr in set(listeners) - primaries:
                    listeners.pop(addr).cancel()
                for addr in primaries - set(listeners):
                    listeners[addr] = asyncio.create_task(
                        listen(f"redis://{addr}/0"), name=f"hub-listen-{addr}")
                primaries_now({f"redis://{addr}/0" for addr in primaries})
                if known is not None:
                    log.info("cluster topology changed: %d primaries", len(primaries))
                    await changed()
                known = current
            await asyncio.sleep(check)
    finally:
        for task in listeners.values():
            task.cancel()
        await asyncio.gather(*listeners.values(), return_exceptions=True)
        with contextlib.suppress(Exception):
            await client.aclose()
