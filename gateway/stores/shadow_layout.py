"""Moves shadows from the old key layout (one hash tag per tenant) to one slot per device.

Before: ``iot:{tenant}:shadow:{device}`` and ``iot:{tenant}:shadowver:{device}``, a whole
tenant in one cluster slot. Now: ``iot:{tenant:device}:shadow`` and ``...:shadowver``.
The move runs at every start until it has completed once (marker key ``iot:layout``), and
on every ``iotsphere migrate``; it is idempotent and safe beside running gateways:

- an old key is copied only when the new layout holds no higher version (neither a
  shadow nor a deleted shadow's version), so nothing moves backwards or comes back after
  a delete;
- the old key is deleted only if it still holds what was copied (a replica of the old
  release that wrote meanwhile leaves it for the next run).

The old and new keys sit in different slots, so a copy is two steps, not one script.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from redis.asyncio.cluster import RedisCluster

from gateway.errors import StoreUnavailable
from gateway.stores.redis_client import AnyRedis
from gateway.stores.shadows import ShadowStore, shadow_key, version_key

log = logging.getLogger("gateway.stores.shadow_layout")

LAYOUT_KEY = "iot:layout"
LAYOUT = b"device-slots"
_OLD = re.compile(rb"^iot:\{([0-9a-f-]{36})\}:(shadow|shadowver):([0-9a-f-]{36})$")

# KEYS: new shadow, new version key. ARGV: version, then field, value, ...
_PUT_IF_NEWER = """
local v = tonumber(ARGV[1])
local have = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local tomb = tonumber(redis.call('GET', KEYS[2]) or '-1')
if have >= v or tomb >= v then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
# KEYS: new version key. ARGV: version.
_TOMB_IF_NEWER = """
local tomb = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tomb >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
# KEYS: old key. ARGV: 'hash' or 'string', the version copied.
_DELETE_IF_UNCHANGED = """
local v
if ARGV[1] == 'hash' then v = redis.call('HGET', KEYS[1], 'version')
else v = redis.call('GET', KEYS[1]) end
if v == ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def move_shadow_layout(shadows: ShadowStore) -> None:
    """At start: ``move_old_layout`` unless a completed move is recorded. A Redis that
    does not answer now is not fatal: the move runs at the next start or ``migrate``."""
    try:
        with shadows.guarded():
            if await shadows.client.get(LAYOUT_KEY) != LAYOUT:
                await move_old_layout(shadows.client)
    except StoreUnavailable as exc:
        log.warning("%s: shadows of the old key layout move at the next start or "
                    "`iotsphere migrate`", exc.message)


async def move_old_layout(client: AnyRedis) -> int:
    """Moves every old-layout key; returns how many were copied. Records completion."""
    copied = 0
    scan = {"target_nodes": RedisCluster.PRIMARIES} if isinstance(client, RedisCluster) else {}
    async for raw in client.scan_iter(match="iot:{*}:shadow*:*", count=1000, **scan):
        match = _OLD.match(raw)
        if match is None:
            continue
        tenant_id, device_id = UUID(match[1].decode()), UUID(match[3].decode())
        new_keys = (shadow_key(tenant_id, device_id), version_key(tenant_id, device_id))
        if match[2] == b"shadow":
            fields: dict[Any, Any] = await client.hgetall(raw)
            version = fields.get(b"version")
            if version is None:
                continue  # not a shadow: left alone
            args = [version] + [x for pair in fields.items() for x in pair]
            copied += int(await client.eval(_PUT_IF_NEWER, 2, *new_keys, *args))
            await client.eval(_DELETE_IF_UNCHANGED, 1, raw, "hash", version)
        else:
            tomb = await client.get(raw)
            if tomb is None:
                continue
            copied += int(await client.eval(_TOMB_IF_NEWER, 1, new_keys[1], tomb))
            await client.eval(_DELETE_IF_UNCHANGED, 1, raw, "string", tomb)
    await client.set(LAYOUT_KEY, LAYOUT)
    if copied:
        log.info("moved %d shadow keys to one slot per device", copied)
    return copied
