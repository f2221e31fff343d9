"""Per-client-address limit on requests that fail authentication (no credential, a bad
one, a revoked one), so a flood of them costs neither registry round trips nor much else.

Each failed authentication spends a token of the address's bucket in Redis (the same
token-bucket script as the per-key limit, so every replica shares one budget per
address: ``AUTH_FAILURE_RATE_LIMIT`` per second, ``AUTH_FAILURE_BURST`` at once). The
failure that finds the bucket empty is answered 429 ``LIMIT_EXCEEDED``
(``limit: "authFailureRate"``) instead of 401, and this replica then remembers the address
as blocked until the bucket refills: meanwhile its requests are answered 429 before any
lookup (no registry and no Redis round trip), except those whose API key this replica
verified within ``API_KEY_CACHE_TTL`` (a client sharing the address with the flood keeps
working). Another replica learns the block from Redis on the address's next failure.

Requests that authenticate cost nothing here. Like the per-key limit this fails open: when
Redis does not answer, failures are not counted and nothing is refused for them. The
address is the ASGI client's: behind a proxy, uvicorn's ``--proxy-headers`` and
``FORWARDED_ALLOW_IPS`` decide whether that is the proxy or the client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import Counter

from gateway.auth.callers import KEY_PREFIX, Caller, authenticate, hash_key
from gateway.errors import LimitExceeded, Unauthenticated
from gateway.http import rate_limit
from gateway.settings import Settings
from gateway.stores import Stores

MAX_ADDRESSES = 10_000

REFUSED = Counter("iotsphere_auth_failures_limited_total",
                  "Requests refused by the per-address limit on failed authentication")


class AuthFailuresLimited(LimitExceeded):
    """Too many failed authentications from the caller's address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests without a valid credential from this address: retry after "
            f"{retry_after} s", limit="authFailureRate", retryAfter=retry_after)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def bucket_key(address: str) -> str:
    return f"iot:{{authfail:{address}}}"


class AddressLimit:
    """This replica's knowledge of blocked addresses (learned from Redis), bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._blocked: dict[str, float] = {}

    def blocked(self, address: str) -> AuthFailuresLimited | None:
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            del self._blocked[address]
            return None
        return AuthFailuresLimited(max(1, math.ceil(left)))

    def block(self, address: str, seconds: float) -> None:
        self._blocked.pop(address, None)
        self._blocked[address] = self._clock() + seconds
        if len(self._blocked) > MAX_ADDRESSES:
            del self._blocked[next(iter(self._blocked))]

    async def failed(self, stores: Stores, settings: Settings,
                     address: str) -> AuthFailuresLimited | None:
        """Spends the address's token for one failure; the refusal when none was left."""
        wait_ms = await rate_limit.spend(stores.shadows, bucket_key(address),
                                         settings.auth_failure_rate_limit,
                                         settings.auth_failure_burst)
        if not wait_ms:
            return None
        self.block(address, wait_ms / 1000)
        return AuthFailuresLimited(max(1, math.ceil(wait_ms / 1000)))


def _cached_key(stores: Stores, authorization: str | None) -> bool:
    """An API key this replica verified within API_KEY_CACHE_TTL: no lookup to spare."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return (scheme.lower() == "bearer" and token.startswith(KEY_PREFIX)
            and stores.registry.verified_keys.fresh(hash_key(token)) is not None)


async def authenticate_limited(
    stores: Stores, settings: Settings, limit: AddressLimit | None, authorization: str | None,
    address: str | None,
) -> Caller:
    """``authenticate`` behind the address's failure budget: raises AuthFailuresLimited
    (429) for a blocked address or the failure that empties its bucket, Unauthenticated
    for other failures; StoreUnavailable (the registry cannot tell) spends nothing."""
    if limit is None or address is None or settings.auth_failure_rate_limit <= 0:
        return await authenticate(stores.registry, authorization, settings=settings)
    refused = limit.blocked(address)
    if refused is not None and not _cached_key(stores, authorization):
        REFUSED.inc()
        raise refused
    try:
        return await authenticate(stores.registry, authorization, settings=settings)
    except Unauthenticated as error:
        refused = await limit.failed(stores, settings, address)
        if refused is not None:
            REFUSED.inc()
            raise refused from error
        raise
