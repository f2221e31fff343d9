"""Open WebSockets (and HTTP subscription streams, gateway/http/streams.py) by the
credential that authenticated them, so a revoked API key or a decommissioned device loses
its live connections too, not only its next request, and a socket opened with a JWT ends
when the token does.

A revocation is published on the tenant's Redis channel (``ShadowStore.publish_revocation``)
and every replica's hub hands it to its own ``OpenSockets``: the sockets it matches are
closed with 4403, the code both GraphQL WebSocket protocols use for Forbidden.

A JWT socket is closed at the token's ``exp`` plus ``JWT_LEEWAY`` (the moment an HTTP
request with it starts failing) with 4401 "Token expired": 4401 (Unauthorized) because
the credential is no longer valid rather than forbidden, so a client knows to get a
fresh token and reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Protocol
from uuid import UUID

import orjson

from gateway.auth.callers import Caller
from gateway.errors import StoreUnavailable
from gateway.stores.registry import RegistryStore
from gateway.stores.revoked_tokens import TokenRevocation
from gateway.stores.shadows import ShadowStore

log = logging.getLogger("gateway.live.sockets")

REVOKED_CLOSE_CODE = 4403
REVOKED_REASON = "Credential revoked"
EXPIRED_CLOSE_CODE = 4401
EXPIRED_REASON = "Token expired"


class Closable(Protocol):
    """A live connection: a WebSocket, or a stream's handle (both close with a code)."""

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class OpenSockets:
    """This process's authenticated WebSockets. Entries go with their socket (weak
    references): a connection that ends needs no bookkeeping."""

    def __init__(self, token_leeway: float = 0.0) -> None:
        self._ids = itertools.count()
        self._by_tenant: dict[UUID, dict[int, tuple[weakref.ref[Closable], Caller]]] = {}
        self._token_leeway = token_leeway
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, caller: Caller, websocket: Closable) -> None:
        sockets = self._by_tenant.setdefault(caller.tenant_id, {})
        entry = next(self._ids)
        expiry: asyncio.TimerHandle | None = None

        def forget(_: object, tenant: UUID = caller.tenant_id, entry: int = entry) -> None:
            if expiry is not None:
                expiry.cancel()
            held = self._by_tenant.get(tenant)
            if held is not None:
                held.pop(entry, None)
                if not held:
                    self._by_tenant.pop(tenant, None)

        ref = weakref.ref(websocket, forget)
        sockets[entry] = (ref, caller)
        if caller.token is not None:
            left = caller.token.expires_at + self._token_leeway - time.time()
            expiry = asyncio.get_running_loop().call_later(max(0.0, left), self._expire, ref)

    def _expire(self, ref: weakref.ref[Closable]) -> None:
        websocket = ref()
        if websocket is None:
            return
        task = asyncio.ensure_future(_close(websocket, EXPIRED_CLOSE_CODE, EXPIRED_REASON))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def count(self, tenant_id: UUID) -> int:
        return len(self._by_tenant.get(tenant_id, {}))

    async def close_revoked(self, tenant_id: UUID, key_ids: Iterable[UUID],
                            device_id: UUID | None,
                            tokens: Sequence[TokenRevocation] = ()) -> int:
        """Closes the tenant's sockets opened with one of ``key_ids``, as ``device_id``
        or with a JWT one of ``tokens`` names; the number closed."""
        revoked = set(key_ids)
        matched = []
        for ref, caller in list(self._by_tenant.get(tenant_id, {}).values()):
            token = caller.token
            if caller.key_id in revoked or (device_id is not None
                                            and caller.device_id == device_id) or (
                token is not None and any(
                    t.matches(tenant_id, token.jti, token.subject, token.issued_at)
                    for t in tokens)):
                websocket = ref()
                if websocket is not None:
                    matched.append(websocket)
        for websocket in matched:
            await _close(websocket, REVOKED_CLOSE_CODE, REVOKED_REASON)
        if matched:
            log.info("closed %d WebSocket(s) of revoked credentials in tenant %s",
                     len(matched), tenant_id)
        return len(matched)


async def _close(websocket: Closable, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # already closing: nothing left to do
        await websocket.close(code=code, reason=reason)


def heard_revocation(
    registry: RegistryStore, tenant_id: UUID, data: bytes
) -> tuple[list[UUID], UUID | None, list[TokenRevocation]] | None:
    """A revocation announced on the tenant's channel, heard by the hub: the revoked keys
    are forgotten (cached and outage grace) and the revoked tokens refused from now on.
    Returns (key ids, device, tokens) for closing the sockets; None if malformed."""
    try:
        payload = orjson.loads(data)
        key_ids = [UUID(k) for k in payload["keyIds"]]
        device_id = UUID(payload["deviceId"]) if payload["deviceId"] else None
        tokens = [TokenRevocation.from_json(tenant_id, t)
                  for t in payload.get("tokens") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignored a malformed revocation on tenant %s", tenant_id)
        return None
    registry.verified_keys.forget_ids(key_ids)
    if device_id is not None:
        registry.forget_device(tenant_id, device_id)
    for token in tokens:
        registry.revoked_tokens.add(token)
    return key_ids, device_id, tokens


async def announce_revocation(shadows: ShadowStore, tenant_id: UUID, key_ids: list[UUID],
                              device_id: UUID | None = None,
                              tokens: Sequence[TokenRevocation] = ()) -> None:
    """Best effort, after the registry committed the revocation: every later request with
    the credential fails anyway; only sockets already open need the announcement, and
    while Redis is down there are no live updates on them to cut off."""
    try:
        await shadows.publish_revocation(tenant_id, key_ids, device_id, tokens)
    except StoreUnavailable:
        log.warning("revocation in tenant %s not announced: open WebSockets of it stay "
                    "until they reconnect", tenant_id)
