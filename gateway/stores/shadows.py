"""Device Shadow adapter (Redis): one hash per device, keyed by tenant.

Key ``iot:{tenant}:shadow:{device}`` holds the fields ``desired``, ``reported`` and
``metadata`` (JSON text), ``version`` (integer) and ``updatedAt`` (RFC 3339). One hash per
device lets a Lua script read-modify-write it atomically, and the key name carries the
tenant so a key can never be read through another tenant's scope. The ``{tenant}`` hash tag
keeps one tenant's keys in one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreUnavailable
from gateway.stores.base import record_round_trip

KEY_PREFIX = "iot"


def shadow_key(tenant_id: UUID, device_id: UUID) -> str:
    return f"{KEY_PREFIX}:{{{tenant_id}}}:shadow:{device_id}"


@dataclass(frozen=True)
class ShadowDoc:
    device_id: UUID
    version: int
    desired: dict[str, Any]
    reported: dict[str, Any]
    metadata: dict[str, Any]
    updated_at: datetime


def _decode(device_id: UUID, fields: dict[bytes, bytes]) -> ShadowDoc | None:
    if not fields:
        return None
    return ShadowDoc(
        device_id=device_id,
        version=int(fields[b"version"]),
        desired=orjson.loads(fields.get(b"desired", b"{}")),
        reported=orjson.loads(fields.get(b"reported", b"{}")),
        metadata=orjson.loads(fields.get(b"metadata", b"{}")),
        updated_at=datetime.fromisoformat(fields[b"updatedAt"].decode()),
    )


class ShadowStore:
    name = "shadows"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._redis: redis.Redis | None = None

    async def connect(self) -> None:
        self._redis = redis.Redis.from_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
        )
        try:
            await self._redis.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(self.name, type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def client(self) -> redis.Redis:
        if self._redis is None:
            raise RuntimeError("shadows store used before connect()")
        return self._redis

    async def get_many(
        self, tenant_id: UUID, device_ids: Sequence[UUID]
    ) -> list[ShadowDoc | None]:
        """All shadows in one pipelined round trip, aligned with ``device_ids``."""
        record_round_trip(self.name)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for device_id in device_ids:
                    pipe.hgetall(shadow_key(tenant_id, device_id))
                results = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(self.name, type(exc).__name__) from exc
        return [_decode(d, r) for d, r in zip(device_ids, results, strict=True)]

    async def put(self, tenant_id: UUID, doc: ShadowDoc) -> None:
        """Writes a whole shadow (seeding and tests; updates go through the update script)."""
        record_round_trip(self.name)
        try:
            await self.client.hset(shadow_key(tenant_id, doc.device_id), mapping={
                "desired": orjson.dumps(doc.desired),
                "reported": orjson.dumps(doc.reported),
                "metadata": orjson.dumps(doc.metadata),
                "version": doc.version,
                "updatedAt": doc.updated_at.isoformat(),
            })
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(self.name, type(exc).__name__) from exc
