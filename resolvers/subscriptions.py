"""The shadowChanged subscription. Live streaming lands with the subscriptions issue (#4)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gateway.errors import NotImplementedYet
from resolvers.shadows import ShadowEvent


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Shadow changes of the given devices, or of every device installed under "
        "assetId, or of the whole tenant when both are omitted."
    )
    async def shadow_changed(
        self, device_ids: list[strawberry.ID] | None = None, asset_id: strawberry.ID | None = None
    ) -> AsyncGenerator[ShadowEvent, None]:
        raise NotImplementedYet("Subscription.shadowChanged (lands with issue #4)")
        yield  # pragma: no cover  (makes this an async generator)
