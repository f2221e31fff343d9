"""Per-key rate limit: a token bucket in Redis, shared by every replica
(docs/http-and-websocket.md says what spends it and what a client sees).

One Lua script call per request refills, spends and answers atomically, on Redis's own
clock (``TIME``), so replicas with skewed clocks share one budget. When Redis does not
answer within ``REDIS_BUDGET`` the request is let through (fail open), logged at most once
per ``LOG_EVERY`` seconds: the limit protects fairness between keys, not data, and
failing closed would turn a Redis outage into a whole-gateway outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import Protocol

from prometheus_client import Counter
from redis.exceptions import NoScriptError, RedisError

from gateway.auth.callers import Caller
from gateway.errors import LimitExceeded
from gateway.settings import Settings
from gateway.stores.redis_client import AnyRedis

log = logging.getLogger("gateway.http.rate_limit")

REDIS_BUDGET = 0.5  # seconds; beyond it the request goes through unlimited
LOG_EVERY = 10.0

LIMITED = Counter("iotsphere_rate_limited_total", "Requests refused by the per-key rate limit")
UNAVAILABLE = Counter(
    "iotsphere_rate_limit_unavailable_total",
    "Requests let through unlimited because Redis did not answer the rate limiter")

# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst, cost. Returns {allowed, wait_ms}.
# TIME in a script needs Redis >= 5 (effects replication), as every supported server has.
_BUCKET = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000000 * rate)
local allowed, wait = 0, 0
if tokens >= cost then
  tokens, allowed = tokens - cost, 1
else
  wait = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait}
"""
_SHA = hashlib.sha1(_BUCKET.encode()).hexdigest()

_last_log = 0.0


class RateLimited(LimitExceeded):
    """Over the caller's per-key rate limit; ``retry_after`` in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded: retry after {retry_after} s",
                         limit="rateLimit", retryAfter=retry_after)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def bucket_key(caller: Caller) -> str:
    # The tenant as hash tag, like every other key of the tenant (Redis Cluster).
    return f"iot:{{{caller.tenant_id}}}:ratelimit:{caller.key_id}"


async def _spend(client: AnyRedis, key: str, rate: float, burst: int,
                 cost: int) -> list[int]:
    args = (rate, burst, cost)
    try:
        reply = await client.evalsha(_SHA, 1, key, *args)  # type: ignore[misc]
    except NoScriptError:
        reply = await client.eval(_BUCKET, 1, key, *args)  # type: ignore[misc]
    return [int(v) for v in reply]


class _HasClient(Protocol):
    @property
    def client(self) -> AnyRedis: ...


async def take(shadows: _HasClient, settings: Settings, caller: Caller, cost: int = 1) -> None:
    """Spends ``cost`` operations of the caller's bucket in the shadow store's Redis;
    raises RateLimited when it does not hold them. A cost above the burst spends the whole
    bucket (a full one allows it)."""
    if settings.rate_limit <= 0:
        return
    wait_ms = await spend(shadows, bucket_key(caller), settings.rate_limit,
                          settings.rate_burst, cost)
    if wait_ms:
        LIMITED.inc()
        raise RateLimited(max(1, math.ceil(wait_ms / 1000)))


async def spend(shadows: _HasClient, key: str, rate: float, burst: int, cost: int = 1) -> int:
    """Spends ``cost`` tokens of the bucket ``key``: 0 when it held them, else the
    milliseconds until it will. 0 too when Redis does not answer (fail open)."""
    cost = max(1, min(cost, burst))
    try:
        client = shadows.client  # RuntimeError while the store has never connected
        async with asyncio.timeout(REDIS_BUDGET):
            allowed, wait_ms = await _spend(client, key, rate, burst, cost)
    except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
        _fail_open(exc)
        return 0
    return 0 if allowed else max(1, wait_ms)


def _fail_open(exc: BaseException) -> None:
    global _last_log
    UNAVAILABLE.inc()
    now = time.monotonic()
    if now - _last_log >= LOG_EVERY:
        _last_log = now
        log.warning("rate limiter unavailable, letting requests through: %s",
                    type(exc).__name__)
