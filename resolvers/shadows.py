"""Shadow and ShadowEvent types (Device Shadow store, Redis)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from gateway.stores.shadows import ShadowDoc
from gateway.writes.shadow_state import delta


@strawberry.type(description="A device's reported and desired state. Its `id` is the device's "
                 "id, so a client cache (Apollo's `Shadow:<id>`, urql's graphcache) updates the "
                 "one cached shadow from a query, an updateShadow result or a shadowChanged "
                 "event alike.")
class Shadow:
    id: strawberry.ID
    device_id: strawberry.ID
    version: int = strawberry.field(description="Increases by one on every accepted update.")
    reported: JSON
    desired: JSON
    delta: JSON = strawberry.field(description="The part of desired that differs from reported.")
    metadata: JSON = strawberry.field(
        description="Same shape as the state, each leaf holding {timestamp} of its last update."
    )
    updated_at: datetime

    @classmethod
    def from_doc(cls, doc: ShadowDoc) -> Shadow:
        device_id = strawberry.ID(str(doc.device_id))
        return cls(
            id=device_id, device_id=device_id, version=doc.version,
            reported=JSON(doc.reported), desired=JSON(doc.desired),
            delta=JSON(delta(doc.desired, doc.reported)), metadata=JSON(doc.metadata),
            updated_at=doc.updated_at,
        )


@strawberry.enum
class ShadowEventKind(Enum):
    SNAPSHOT = strawberry.enum_value(
        "SNAPSHOT", description="The current shadow, sent first on every (re)subscription."
    )
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@strawberry.type
class ShadowEvent:
    kind: ShadowEventKind
    device_id: strawberry.ID
    version: int | None
    shadow: Shadow | None = strawberry.field(
        description="Null when kind is DELETED, and in a SNAPSHOT of a device that has no "
        "shadow yet (its first UPDATED event brings one).")
    at: datetime
