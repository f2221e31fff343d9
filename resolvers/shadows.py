"""Shadow and ShadowEvent types (Device Shadow store, Redis)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

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
    def from_doc(cls, doc: ShadowDoc, device_id: str | None = None) -> Shadow:
        """The shadow of a stored document; ``device_id`` is the id's text when the caller
        has it already (a Device's ``id``). ``delta`` is computed when first read."""
        shadow = _new(_StoredShadow)
        # The stored document's fields at once (the dataclass __init__ took each as a
        # keyword and each JSON value through a call): they are Shadow's, by name.
        fields = doc.__dict__.copy()
        fields["id"] = fields["device_id"] = (
            device_id if device_id is not None else str(doc.device_id))
        shadow.__dict__ = fields
        return shadow


class _Delta:
    """``Shadow.delta`` of a stored shadow, computed on first read and kept (a non-data
    descriptor: the value then sits in the instance's ``__dict__``). A dashboard that does
    not select it no longer compares every shadow's desired and reported state."""

    def __get__(self, shadow: Shadow | None, owner: type) -> Any:
        if shadow is None:
            return self
        fields = shadow.__dict__
        value = fields["delta"] = delta(fields["desired"], fields["reported"])
        return value


class _StoredShadow(Shadow):
    """A Shadow made by ``Shadow.from_doc``: the dataclass __init__ is not called."""

    delta = _Delta()  # type: ignore[assignment]


_new = object.__new__


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
