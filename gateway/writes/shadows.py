"""Shadow writes (Redis), for devices the registry knows in the caller's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

from gateway.errors import BadUserInput, NotFound
from gateway.stores import Stores
from gateway.stores.shadows import ShadowDoc
from gateway.writes.shadow_state import apply_update, check_patch


async def _require_live_device(stores: Stores, tenant_id: UUID, device_id: UUID) -> None:
    row = (await stores.registry.devices_by_ids(tenant_id, [device_id]))[0]
    if row is None:
        raise NotFound(f"No device {device_id}", argument="deviceId")
    if row["status"] == "DECOMMISSIONED":
        raise BadUserInput(f"Device {device_id} is decommissioned", argument="deviceId")


async def update_shadow(
    stores: Stores, tenant_id: UUID, device_id: UUID, *, desired: Any, reported: Any,
    expected_version: int | None,
) -> ShadowDoc:
    desired_patch = check_patch(desired, "desired")
    reported_patch = check_patch(reported, "reported")
    if desired_patch is None and reported_patch is None:
        raise BadUserInput("Give desired and/or reported", argument="desired")
    await _require_live_device(stores, tenant_id, device_id)
    change = partial(
        _apply, desired=desired_patch, reported=reported_patch,
        expected_version=expected_version, device_id=device_id,
    )
    return await stores.shadows.update(tenant_id, device_id, change)


def _apply(current: ShadowDoc | None, last_version: int, **kwargs: Any) -> ShadowDoc:
    return apply_update(current, last_version, now=datetime.now(UTC), **kwargs)


async def delete_shadow(stores: Stores, tenant_id: UUID, device_id: UUID) -> bool:
    row = (await stores.registry.devices_by_ids(tenant_id, [device_id]))[0]
    if row is None:
        raise NotFound(f"No device {device_id}", argument="deviceId")
    return await stores.shadows.delete(tenant_id, device_id)
