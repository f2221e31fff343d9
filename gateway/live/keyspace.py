"""The hub's Redis connection: one pub/sub connection per process (per primary on a Redis
Cluster, ``gateway.live.cluster_follow``) pattern-subscribed to the keyspace notifications
of every shadow key and to the topology, revocation and readings channels.

Keyspace notifications are fire-and-forget: while a connection is down, changes are
lost. So after every reconnect (capped exponential backoff), and after the cluster's
topology changed, ``resync`` is awaited: the hub re-reads every watched device and offers
it to every member as a SNAPSHOT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreUnavailable
from gateway.live.cluster_follow import follow_cluster
from gateway.metrics import HUB_RECONNECTS
from gateway.stores.redis_client import is_cluster_url
from gateway.stores.shadows import KEY_PREFIX

log = logging.getLogger("gateway.live.hub")

# K: keyspace channel; h: hash commands (HSET); g: generic (DEL, RENAME, EXPIRE);
# x/e: expired/evicted keys.
REQUIRED_FLAGS = "Khgxe"
_BACKOFF_START, _BACKOFF_MAX = 0.1, 5.0

OnMessage = Callable[[bytes, bytes], None]


class HubConfigError(RuntimeError):
    """Redis will not deliver keyspace notifications and the hub may not turn them on."""


class KeyspaceListener:
    """Listens until cancelled (``listen``); ``connected`` is set while every expected
    server is listened to."""

    def __init__(self, url: str, on_message: OnMessage,
                 resync: Callable[[], Awaitable[None]]) -> None:
        self._url = url
        self._on_message = on_message
        self._resync = resync
        # The nodes to listen on (one, or a cluster's primaries) and those listening now.
        self._expected: set[str] = set() if is_cluster_url(url) else {url}
        self._up: set[str] = set()
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def listen(self) -> None:
        if is_cluster_url(self._url):
            await follow_cluster(self._url, listen=self._listen_node,
                                 primaries_now=self._primaries_now,
                                 changed=self._topology_changed)
        else:
            await self._listen_node(self._url)

    def _primaries_now(self, urls: set[str]) -> None:
        self._expected = urls
        self._up &= urls
        self._update_connected()

    def _update_connected(self) -> None:
        if self._expected and self._expected <= self._up:
            self.connected.set()
        else:
            self.connected.clear()

    async def _topology_changed(self) -> None:
        """Keys may have moved between nodes while no listener heard them: once every
        primary is listened to, every member gets a fresh SNAPSHOT."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 10.0)
        await self._resync()

    async def _listen_node(self, url: str) -> None:
        """Listens on one server (a cluster's primary, or the only server) until cancelled,
        reconnecting with capped backoff; re-syncs after each reconnect."""
        db = int(parse_url(url).get("db", 0))
        backoff = _BACKOFF_START
        first = True
        while True:
            client = redis.Redis.from_url(url, health_check_interval=5,
                                          socket_keepalive=True)
            pubsub = client.pubsub()
            try:
                await _enable_notifications(client)
                await pubsub.psubscribe(
                    f"__keyspace@{db}__:{KEY_PREFIX}:*:shadow",
                    f"{KEY_PREFIX}:*:topology",
                    f"{KEY_PREFIX}:*:revoked",
                    f"{KEY_PREFIX}:*:telemetry",
                )
                if not first:
                    await self._resync()
                first = False
                backoff = _BACKOFF_START
                self._up.add(url)
                self._update_connected()
                log.info("hub listening for shadow changes on %s", url.split("@")[-1])
                async for message in pubsub.listen():
                    if message["type"] == "pmessage":
                        self._on_message(message["channel"], message["data"])
            except HubConfigError:
                if first:
                    raise
                log.exception("hub cannot enable keyspace notifications; retrying")
            except (RedisConnectionError, RedisTimeoutError, OSError, StoreUnavailable) as exc:
                log.warning("hub lost Redis (%s); reconnecting in %.1fs", exc, backoff)
            except Exception:  # a bug must not end live updates for the process
                log.exception("hub listener failed; reconnecting")
            finally:
                if url in self._up:
                    self._up.discard(url)
                    self.reconnects += 1
                    HUB_RECONNECTS.inc()
                self._update_connected()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)


async def _enable_notifications(client: redis.Redis) -> None:
    """Turns on the keyspace events the hub needs (a restarted Redis forgets them)."""
    try:
        current = (await client.config_get("notify-keyspace-events")).get(
            "notify-keyspace-events", "")
    except ResponseError:
        current = None
    if isinstance(current, bytes):
        current = current.decode()
    if current is not None and _covers(current):
        return
    wanted = "".join(dict.fromkeys((current or "") + REQUIRED_FLAGS))
    try:
        await client.config_set("notify-keyspace-events", wanted)
    except ResponseError as exc:
        raise HubConfigError(
            "Redis keyspace notifications are off and CONFIG SET is not allowed here "
            f"({exc}). Set notify-keyspace-events to include '{REQUIRED_FLAGS}' (or "
            "'KA') on the server, e.g. in the managed Redis parameter group."
        ) from exc


def _covers(flags: str) -> bool:
    if "K" not in flags:
        return False
    classes = set(flags) - {"K", "E"}
    return "A" in classes or {"h", "g"} <= classes
