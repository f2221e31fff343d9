"""The typed request context every resolver receives. Plain data: nothing here knows
the transport (the view that builds it lives in ``gateway.http.view``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import strawberry

from gateway.auth.callers import Caller
from gateway.errors import Unauthenticated
from gateway.live.hub import ShadowHub
from gateway.loaders import Loaders
from gateway.settings import Settings
from gateway.stores import Stores
from gateway.stores.base import StoreCalls, begin_counting


@dataclass
class Context:
    stores: Stores
    settings: Settings
    caller: Caller | None  # None only on a WebSocket before connection_init
    loaders: Loaders
    calls: StoreCalls
    hub: ShadowHub | None = None
    request_id: str | None = None
    connection_params: dict[str, Any] | None = None
    trace: bool = False
    # The transport's request or socket, opaque here: only the HTTP edge looks inside.
    request: Any = None
    # One "now" per request, so every device's default range is the same and batches.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def tenant_id(self) -> UUID:
        if self.caller is None:
            raise Unauthenticated("Not authenticated")
        return self.caller.tenant_id


Info = strawberry.Info[Context, None]


def new_context(
    stores: Stores, settings: Settings, caller: Caller | None, *,
    calls: StoreCalls | None = None, trace: bool = False,
    request: Any = None, hub: ShadowHub | None = None,
) -> Context:
    tenant = caller.tenant_id if caller else None
    return Context(
        stores=stores, settings=settings, caller=caller,
        loaders=Loaders(stores, tenant) if tenant else Loaders(stores, _NO_TENANT),
        calls=calls or begin_counting(), trace=trace, request=request, hub=hub,
    )


_NO_TENANT = UUID(int=0)  # loaders of an unauthenticated socket; every query finds nothing
