"""Device Shadow adapter (Redis): one hash per device, keyed by tenant and device.

Key ``iot:{tenant:device}:shadow`` holds the fields ``desired``, ``reported`` and
``metadata`` (JSON text), ``version`` (integer) and ``updatedAt`` (RFC 3339). One hash per
device lets a transaction read-modify-write it atomically, and the key name carries the
tenant so a key can never be read through another tenant's scope. The hash tag
``{tenant:device}`` gives each device a slot of its own in a Redis Cluster, so a large
tenant spreads over every node (one tag per tenant made its whole fleet one hot slot); a
device's two keys (shadow, version) share the slot, so its scripts and transactions stay
within one slot. Reads of many devices run one script call per node (``NodeScript``);
on a single server that one call makes the keys itself (``_GET_MANY_PACKED``).
Shadows written under the old layout (``iot:{tenant}:shadow:{device}``) are moved by
``gateway.stores.shadow_layout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import tracing
from gateway.errors import StoreUnavailable, VersionConflict
from gateway.stores.base import record_round_trip, store_metrics
from gateway.stores.breaker import CircuitBreaker
from gateway.stores.redis_client import AnyRedis, NodeScript, Script, connect_url
from gateway.stores.revoked_tokens import TokenRevocation

log = logging.getLogger("gateway.stores")

KEY_PREFIX = "iot"
T = TypeVar("T")


def _tenant_head(tenant_id: UUID) -> str:
    return f"{KEY_PREFIX}:{{{tenant_id}:"


def shadow_key(tenant_id: UUID, device_id: UUID) -> str:
    return f"{_tenant_head(tenant_id)}{device_id}}}:shadow"


def shadow_keys(tenant_id: UUID, device_ids: Sequence[UUID]) -> list[str]:
    """``shadow_key`` of each device: the tenant's part made once (``str`` of a Python
    UUID is ~3 us, most of a key's cost)."""
    head = _tenant_head(tenant_id)
    return [f"{head}{d}}}:shadow" for d in device_ids]


def version_key(tenant_id: UUID, device_id: UUID) -> str:
    """Where a deleted shadow leaves its last version, so a recreated one continues it."""
    return f"{KEY_PREFIX}:{{{tenant_id}:{device_id}}}:shadowver"


def topology_channel(tenant_id: UUID) -> str:
    return f"{KEY_PREFIX}:{{{tenant_id}}}:topology"


def revoked_channel(tenant_id: UUID) -> str:
    return f"{KEY_PREFIX}:{{{tenant_id}}}:revoked"


def telemetry_channel(tenant_id: UUID) -> str:
    return f"{KEY_PREFIX}:{{{tenant_id}}}:telemetry"


# Atomic, so a concurrent update cannot slip between reading the version and deleting.
_DELETE_KEEPING_VERSION = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return 0 end
redis.call('SET', KEYS[2], version)
redis.call('DEL', KEYS[1])
return 1
"""

# A shadow's fields in the order every read decodes them (``_decode``): one HMGET instead
# of HGETALL, so a reply holds no field names and needs no dict made of it.
FIELDS = ("version", "updatedAt", "desired", "reported", "metadata")
_HMGET = "redis.call('HMGET', KEYS[i], 'version', 'updatedAt', 'desired', 'reported', 'metadata')"

_GET_MANY = f"""
local out = {{}}
for i = 1, #KEYS do out[i] = {_HMGET} end
return out
"""

# On a single server the keys of ``_GET_MANY`` travel in two arguments, the tenant's key
# head and the device ids (36 characters each) run together, and the script makes them:
# redis-py packs each argument of a command in Python (an encoder call and a generator
# step per key), which for 100 keys cost more than making them here. The format is
# ``shadow_key``'s, built from the same head.
_GET_MANY_PACKED = """
local head, ids = ARGV[1], ARGV[2]
local KEYS = {}
for i = 1, #ids, 36 do KEYS[#KEYS + 1] = head .. string.sub(ids, i, i + 35) .. '}:shadow' end
""" + _GET_MANY

# KEYS alternate shadow key, version key. A missing version comes back as false (0 here).
_GET_WITH_VERSIONS = f"""
local out = {{}}
for i = 1, #KEYS, 2 do
  out[i] = {_HMGET}
  out[i + 1] = redis.call('GET', KEYS[i + 1]) or 0
end
return out
"""


# Bounded optimistic retries: 20 concurrent writers on one key settle well within this.
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class ShadowDoc:
    device_id: UUID
    version: int
    desired: dict[str, Any]
    reported: dict[str, Any]
    metadata: dict[str, Any]
    updated_at: datetime


# Errors that mean "Redis is not there or not answering".
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


@contextmanager
def _translate() -> Iterator[None]:
    started = time.perf_counter()
    span = tracing.store_span("shadows")  # None unless tracing is on (gateway/tracing.py)
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable("shadows", type(exc).__name__) from exc
    finally:
        store_metrics("shadows")[1].observe(time.perf_counter() - started)
        if span is not None:
            tracing.end_store_span(span)


def _encode(doc: ShadowDoc) -> dict[Any, Any]:
    return {
        "desired": orjson.dumps(doc.desired),
        "reported": orjson.dumps(doc.reported),
        "metadata": orjson.dumps(doc.metadata),
        "version": doc.version,
        "updatedAt": doc.updated_at.isoformat(),
    }


def _decode(device_id: UUID, values: Sequence[Any]) -> ShadowDoc | None:
    """The shadow in a hash, from the values of its ``FIELDS`` (HMGET), or None for a
    missing one. Other clients may write these keys, so a hash without a valid version or
    timestamp, or with a state that is not JSON, counts as missing."""
    version, updated_at, desired, reported, metadata = values
    if version is None or updated_at is None:
        return None
    try:
        # The frozen dataclass's __init__ sets each field through object.__setattr__,
        # about half of a decoded shadow's cost; the instance gets its __dict__ whole
        # instead (ShadowDoc has no defaults, no __post_init__ and no slots). An empty
        # metadata, the usual one, is no orjson call.
        doc = _new(ShadowDoc)
        _setattr(doc, "__dict__", {
            "device_id": device_id,
            "version": int(version),
            "desired": _loads(desired) if desired is not None else {},
            "reported": _loads(reported) if reported is not None else {},
            "metadata": _loads(metadata) if metadata is not None and metadata != b"{}"
            else {},
            "updated_at": _fromisoformat(updated_at.decode()),
        })
    except (ValueError, orjson.JSONDecodeError):
        return None
    return doc


_new = object.__new__
_setattr = object.__setattr__
_loads = orjson.loads
_fromisoformat = datetime.fromisoformat


class ShadowStore:
    name = "shadows"

    def __init__(
        self, url: str, *, timeout: float = 5.0, breaker: CircuitBreaker | None = None
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._redis: AnyRedis | None = None
        self.breaker = breaker or CircuitBreaker(self.name)
        self._seconds = store_metrics(self.name)[1]

    async def connect(self) -> None:
        """Makes the client (which connects on demand) and pings once; an unreachable Redis
        is logged, not fatal: calls fail as unavailable until it answers."""
        self._redis = connect_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
        )
        self._delete_script = self._redis.register_script(_DELETE_KEEPING_VERSION)
        self._get_many_script = NodeScript(self._redis, _GET_MANY)
        self._get_many_packed = Script(_GET_MANY_PACKED)
        self._get_with_versions_script = NodeScript(self._redis, _GET_WITH_VERSIONS)
        try:
            await self.ping()
        except StoreUnavailable as exc:
            log.warning("%s; continuing without it until it answers", exc.message)

    async def ping(self) -> None:
        """PING through the breaker (readiness; not a request's round trip)."""
        with self.guarded():
            await self.client.ping()

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """The store boundary: the breaker decides, driver errors are translated (and feed
        the breaker)."""
        with self.breaker.guard(), _translate():
            yield

    async def _guarded_call(self, call: Coroutine[Any, Any, T]) -> T:
        """``await call`` within ``guarded()``, written out as one coroutine: the reads on
        every request's path take this one, since ``guarded()``'s three nested
        generator-based context managers cost ~30 k instructions a call (callgrind:
        ``get_many`` of one shadow 330 -> 300 k). Keep the two in step."""
        breaker = self.breaker
        try:
            breaker.before()
        except StoreUnavailable:
            call.close()  # never awaited
            raise
        try:
            started = time.perf_counter()
            span = tracing.store_span("shadows")  # None unless tracing is on
            try:
                result = await call
            except _UNAVAILABLE as exc:
                raise StoreUnavailable("shadows", type(exc).__name__) from exc
            finally:
                self._seconds.observe(time.perf_counter() - started)
                if span is not None:
                    tracing.end_store_span(span)
        except BaseException as exc:
            breaker.failed_with(exc)
            raise
        breaker.success()
        return result

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def client(self) -> AnyRedis:
        if self._redis is None:
            raise RuntimeError("shadows store used before connect()")
        return self._redis

    async def get_many(
        self, tenant_id: UUID, device_ids: Sequence[UUID]
    ) -> list[ShadowDoc | None]:
        """All shadows in one script call per node (one in all on a single server, the nodes
        at once on a cluster), aligned with ``device_ids``. A script rather than a pipeline
        of HGETALLs: redis-py spends ~50 µs of Python per pipelined command, which made 100
        shadows cost 6-9 ms; the script's one reply is parsed in C (hiredis)."""
        if not device_ids:
            return []
        record_round_trip(self.name)
        client = self.client
        if isinstance(client, RedisCluster):
            replies = await self._guarded_call(
                self._get_many_script.run(shadow_keys(tenant_id, device_ids)))
        else:
            replies = await self._guarded_call(self._get_many_packed.call(
                client, (), (_tenant_head(tenant_id), "".join(map(str, device_ids)))))
        return list(map(_decode, device_ids, replies))

    async def put(self, tenant_id: UUID, doc: ShadowDoc) -> None:
        """Writes a whole shadow (seeding and tests; updates go through ``update``)."""
        record_round_trip(self.name)
        with self.guarded():
            await self.client.hset(shadow_key(tenant_id, doc.device_id), mapping=_encode(doc))

    async def update(
        self, tenant_id: UUID, device_id: UUID,
        change: Callable[[ShadowDoc | None, int], ShadowDoc],
    ) -> ShadowDoc:
        """Read-modify-write as one atomic step (WATCH/MULTI/EXEC, retried on a concurrent
        write). ``change(current, last_version)`` returns the new document or raises;
        ``last_version`` is the current version, or the one a deleted shadow left behind."""
        key, ver_key = shadow_key(tenant_id, device_id), version_key(tenant_id, device_id)
        with self.guarded():
            async with self.client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_ATTEMPTS):
                    try:
                        record_round_trip(self.name)
                        await pipe.watch(key, ver_key)
                        record_round_trip(self.name)
                        current = _decode(device_id, await pipe.hmget(key, FIELDS))
                        record_round_trip(self.name)
                        tomb = await pipe.get(ver_key)
                        last = current.version if current else int(tomb or 0)
                        new = change(current, last)
                        pipe.multi()
                        pipe.hset(key, mapping=_encode(new))
                        record_round_trip(self.name)
                        await pipe.execute()
                        return new
                    except WatchError:
                        continue
        raise VersionConflict(
            f"Shadow of device {device_id} is under heavy concurrent update; retry",
            deviceId=str(device_id),
        )

    def node_of(self, tenant_id: UUID, device_id: UUID) -> str | None:
        """The cluster node serving the device's shadow as the client last saw the slots
        (None on a single server, or while no node is known for the slot)."""
        client = self._redis
        if not isinstance(client, RedisCluster):
            return None
        try:
            node = client.get_node_from_key(shadow_key(tenant_id, device_id))
        except RedisError:
            return None
        return node.name if node is not None else None

    async def get_with_versions(
        self, tenant_id: UUID, device_ids: Sequence[UUID]
    ) -> list[tuple[ShadowDoc | None, int | None]]:
        """Each device's shadow and, for one that has none, the version a deleted one left
        (None if it never had one): one script call per node, like ``get_many``."""
        if not device_ids:
            return []
        record_round_trip(self.name)
        keys = []
        for device_id in device_ids:
            keys += [shadow_key(tenant_id, device_id), version_key(tenant_id, device_id)]
        results = await self._guarded_call(self._get_with_versions_script.run(keys, group=2))
        out: list[tuple[ShadowDoc | None, int | None]] = []
        for n, device_id in enumerate(device_ids):
            doc = _decode(device_id, results[2 * n])
            tomb = results[2 * n + 1] or None
            out.append((doc, doc.version if doc else int(tomb) if tomb else None))
        return out

    async def publish_topology(self, tenant_id: UUID) -> None:
        """Tells every gateway replica that devices moved between assets in this tenant,
        so subscriptions filtered by asset re-resolve their devices."""
        record_round_trip(self.name)
        with self.guarded():
            await self.client.publish(topology_channel(tenant_id), b"1")

    async def publish_readings(
        self, tenant_id: UUID, latest: Mapping[tuple[UUID, str], tuple[datetime, float]]
    ) -> None:
        """Tells every gateway replica the newest committed reading of each (device,
        metric) of one batch, for telemetryChanged (``gateway.live.telemetry_feed``): one
        message per batch, ``[[device, metric, time (ISO 8601), value], ...]``."""
        record_round_trip(self.name)
        payload = orjson.dumps([[str(device), metric, at.isoformat(), value]
                                for (device, metric), (at, value) in latest.items()])
        with self.guarded():
            await self.client.publish(telemetry_channel(tenant_id), payload)

    async def publish_revocation(self, tenant_id: UUID, key_ids: list[UUID],
                                 device_id: UUID | None = None,
                                 tokens: Sequence[TokenRevocation] = ()) -> None:
        """Tells every gateway replica that these keys (or this device's credentials, or
        these JWTs) are revoked, so each refuses them and closes the WebSockets they
        opened (``gateway.live.sockets``)."""
        record_round_trip(self.name)
        payload = orjson.dumps({"keyIds": [str(k) for k in key_ids],
                                "deviceId": str(device_id) if device_id else None,
                                "tokens": [t.as_json() for t in tokens]})
        with self.guarded():
            await self.client.publish(revoked_channel(tenant_id), payload)

    async def delete(self, tenant_id: UUID, device_id: UUID) -> bool:
        """Deletes the shadow, keeping its version for a later re-creation; False when there
        was no shadow."""
        record_round_trip(self.name)
        with self.guarded():
            deleted = await self._delete_script(
                keys=[shadow_key(tenant_id, device_id), version_key(tenant_id, device_id)]
            )
        return bool(deleted)

    async def delete_many(self, tenant_device_ids: Sequence[tuple[UUID, UUID]]) -> int:
        """``delete`` for many shadows in one pipelined round trip (the reconciler's repair
        for decommissioned devices; on a cluster, one call per device, at once). Returns
        how many existed."""
        if not tenant_device_ids:
            return 0
        record_round_trip(self.name)
        with self.guarded():
            if isinstance(self.client, RedisCluster):
                deleted = await asyncio.gather(*(self._delete_script(
                    keys=[shadow_key(t, d), version_key(t, d)]) for t, d in tenant_device_ids))
                return sum(1 for r in deleted if r)
            async with self.client.pipeline(transaction=False) as pipe:
                for tenant_id, device_id in tenant_device_ids:
                    await self._delete_script(
                        keys=[shadow_key(tenant_id, device_id), version_key(tenant_id, device_id)],
                        client=pipe,
                    )
                results = await pipe.execute()
        return sum(1 for r in results if r)
