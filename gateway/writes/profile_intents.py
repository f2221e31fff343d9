"""updateDevice's profile part, carried from the registry to the asset DB by an outbox.

The registry commit is the mutation's commit point: it records the device's fields and,
in the same statement, an intent holding the profile part (a metadata merge patch and/or
new capabilities), numbered per device in commit order (sql/registry/004). The intent is
then applied to the asset DB, where the profile remembers the last number applied, so an
intent applies only right after its predecessor and a repeated or late one changes
nothing; then it is forgotten. A write whose registry commit went unanswered (a timeout,
a dropped connection) is therefore never undone by mistake: if it committed, its intent
is there, and whoever drains the device's intents (the next writer, or the reconciler)
completes it; if it did not, nothing changed anywhere. Nothing is compensated.
"""

from __future__ import annotations

import logging
from uuid import UUID

from gateway.stores import Stores

log = logging.getLogger("gateway.writes")


async def apply_one(stores: Stores, tenant_id: UUID, device_id: UUID, seq: int, *,
                    metadata_patch: dict[str, object] | None,
                    capabilities: list[dict[str, object]] | None) -> None:
    """The writer's path: applies its own intent right after its commit (no extra read
    when no earlier intent is pending), then forgets it; drains the device's intents in
    order when an earlier one is still pending."""
    outcome = await stores.assets.apply_profile_intent(
        tenant_id, device_id, seq, metadata_patch=metadata_patch, capabilities=capabilities)
    if outcome == "blocked":
        await drain(stores, device_id)
        return
    if outcome == "missing":
        log.warning("device %s has no profile; its profile intent %d is dropped",
                    device_id, seq)
    await stores.registry.forget_profile_intents(device_id, seq)


async def drain(stores: Stores, device_id: UUID) -> int:
    """Applies every recorded intent of the device in order and forgets those applied;
    returns how many changed the profile now. Safe to run anywhere at any time, several
    at once: each intent applies at most once, and only after its predecessor."""
    applied, through = 0, 0
    for intent in await stores.registry.profile_intents_of(device_id):
        outcome = await stores.assets.apply_profile_intent(
            intent["tenant_id"], device_id, intent["seq"],
            metadata_patch=intent["metadata_patch"], capabilities=intent["capabilities"])
        if outcome == "blocked":  # cannot happen while intents are forgotten only once applied
            log.error("profile intent %d of device %s waits for a predecessor that is gone",
                      intent["seq"], device_id)
            break
        if outcome == "missing":
            log.warning("device %s has no profile; its profile intent %d is dropped",
                        device_id, intent["seq"])
        applied += outcome == "applied"
        through = intent["seq"]
    if through:
        await stores.registry.forget_profile_intents(device_id, through)
    return applied
