"""Device lifecycle across the registry, the asset DB and the shadow store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.auth.credentials import hash_secret, new_secret
from gateway.errors import BadUserInput, NotFound, StoreUnavailable
from gateway.live.sockets import announce_revocation
from gateway.stores import Stores
from gateway.writes import profile_intents, validate
from gateway.writes.merge_patch import merge_patch

log = logging.getLogger("gateway.writes")

# Target status -> the statuses it may be reached from (staying put is allowed).
TRANSITIONS = {
    "PROVISIONED": ("PROVISIONED",),
    "ACTIVE": ("PROVISIONED", "SUSPENDED", "ACTIVE"),
    "SUSPENDED": ("ACTIVE", "SUSPENDED"),
}


@dataclass(frozen=True)
class NewDevice:
    serial: str
    name: str
    type: str
    labels: list[str] | None = None
    firmware_version: str | None = None
    asset_id: UUID | None = None
    metadata: Any = None  # validated as a JSON object
    capabilities: list[Any] | None = None


@dataclass(frozen=True)
class Registered:
    device: asyncpg.Record
    credential_id: UUID
    secret: str


async def _require_device(stores: Stores, tenant_id: UUID, device_id: UUID) -> asyncpg.Record:
    rows = await stores.registry.devices_by_ids(tenant_id, [device_id])
    if rows[0] is None:
        raise NotFound(f"No device {device_id}", argument="id")
    return rows[0]


async def require_asset(stores: Stores, tenant_id: UUID, asset_id: UUID, field: str) -> None:
    rows = await stores.assets.assets_by_ids(tenant_id, [asset_id])
    if rows[0] is None:
        raise NotFound(f"No asset {asset_id}", argument=field)


async def register_device(stores: Stores, tenant_id: UUID, new: NewDevice) -> Registered:
    serial = validate.text(new.serial, "input.serial", max_len=128, required=True)
    name = validate.text(new.name, "input.name", max_len=200, required=True)
    device_type = validate.text(new.type, "input.type", max_len=64, required=True)
    firmware = validate.text(new.firmware_version, "input.firmwareVersion", max_len=64)
    labels = validate.labels(new.labels) or []
    metadata = validate.json_object(new.metadata, "input.metadata") or {}
    caps = validate.capabilities(new.capabilities) or []
    assert serial and name and device_type
    if new.asset_id is not None:
        await require_asset(stores, tenant_id, new.asset_id, "input.assetId")

    device_id, credential_id, secret = uuid4(), uuid4(), new_secret()
    # The profile first: without a registry row nothing can reach it.
    await stores.assets.upsert_profile(
        tenant_id, device_id, asset_id=new.asset_id, metadata=metadata, capabilities=caps
    )
    try:
        row = await stores.registry.register_device(
            tenant_id, device_id, serial=serial, name=name, type=device_type,
            firmware_version=firmware, labels=labels, credential_id=credential_id,
            # scrypt is deliberately slow (~50 ms): keep it off the event loop.
            secret_hash=await asyncio.to_thread(hash_secret, secret),
        )
    except asyncpg.UniqueViolationError:
        await _forget_profile(stores, tenant_id, device_id)
        raise BadUserInput(
            f"A device with serial {serial!r} already exists", argument="input.serial"
        ) from None
    except BaseException:
        # Any other failure may have hidden a commit (a dropped connection, a timeout):
        # the statement can still commit after a check of ours said it had not. The
        # profile stays, invisible without a registry row, and the reconciler removes it
        # once the registration is older than its grace and the registry has no such row.
        log.warning("registration of %s has an unknown outcome; its profile is left "
                    "for the reconciler", device_id)
        raise
    if new.asset_id is not None:
        await topology_changed(stores, tenant_id)
    return Registered(device=row, credential_id=credential_id, secret=secret)


async def _forget_profile(stores: Stores, tenant_id: UUID, device_id: UUID) -> None:
    """After the registry refused the row (a definite answer: nothing committed)."""
    try:
        await stores.assets.delete_profiles(tenant_id, [device_id])
    except StoreUnavailable:
        log.warning("orphan profile %s left for the reconciler", device_id)


@dataclass(frozen=True)
class DevicePatch:
    name: str | None = None
    type: str | None = None
    labels: list[str] | None = None
    firmware_version: str | None = None
    metadata: Any = None  # validated as a JSON object
    capabilities: list[Any] | None = None


async def update_device(
    stores: Stores, tenant_id: UUID, device_id: UUID, patch: DevicePatch
) -> asyncpg.Record:
    name = validate.text(patch.name, "input.name", max_len=200)
    device_type = validate.text(patch.type, "input.type", max_len=64)
    firmware = validate.text(patch.firmware_version, "input.firmwareVersion", max_len=64)
    labels = validate.labels(patch.labels)
    if patch.metadata is not None and not isinstance(patch.metadata, dict):
        raise BadUserInput("input.metadata must be a JSON object (a merge patch)",
                           argument="input.metadata")
    caps = validate.capabilities(patch.capabilities)
    await _require_device(stores, tenant_id, device_id)
    if patch.metadata is None and caps is None:
        row = await stores.registry.update_device(
            tenant_id, device_id, name=name, type=device_type, labels=labels,
            firmware_version=firmware)
        if row is None:
            raise NotFound(f"No device {device_id}", argument="id")
        return row

    # The profile part goes through the registry's outbox (gateway.writes.profile_intents):
    # checked here against the current profile, committed with the registry's fields, then
    # applied to the asset DB. A concurrent patch can still change the merged size a little.
    profile = (await stores.assets.profiles_by_device(tenant_id, [device_id]))[0]
    if profile is not None and patch.metadata is not None:
        validate.json_object(merge_patch(profile["metadata"], patch.metadata),
                             "input.metadata")
    row = await stores.registry.update_device_with_profile(
        tenant_id, device_id, name=name, type=device_type, labels=labels,
        firmware_version=firmware, metadata_patch=patch.metadata, capabilities=caps)
    if row is None:
        raise NotFound(f"No device {device_id}", argument="id")
    # Committed. An asset-DB failure from here leaves the intent to the reconciler; the
    # client is told (STORE_UNAVAILABLE), and a retry with the same input is idempotent.
    await profile_intents.apply_one(stores, tenant_id, device_id, row["profile_seq"],
                                    metadata_patch=patch.metadata, capabilities=caps)
    return row


async def set_status(
    stores: Stores, tenant_id: UUID, device_id: UUID, status: str
) -> asyncpg.Record:
    if status == "DECOMMISSIONED":
        return await decommission(stores, tenant_id, device_id)
    row = await stores.registry.set_status(tenant_id, device_id, status, TRANSITIONS[status])
    if row is not None:
        return row
    current = await _require_device(stores, tenant_id, device_id)
    raise BadUserInput(
        f"Device {device_id} cannot go from {current['status']} to {status}",
        argument="status", currentStatus=current["status"],
    )


async def decommission(stores: Stores, tenant_id: UUID, device_id: UUID) -> asyncpg.Record:
    row = await stores.registry.decommission(tenant_id, device_id)
    if row is None:
        raise NotFound(f"No device {device_id}", argument="id")
    # Its credentials and device keys went with it: sockets opened as it close too.
    await announce_revocation(stores.shadows, tenant_id, [], device_id)
    try:
        await stores.shadows.delete(tenant_id, device_id)
    except StoreUnavailable:
        # Reads hide shadows of decommissioned devices; the reconciler deletes this one.
        log.warning("shadow of decommissioned device %s left for the reconciler", device_id)
    return row


async def attach(
    stores: Stores, tenant_id: UUID, device_id: UUID, asset_id: UUID | None
) -> asyncpg.Record:
    row = await _require_device(stores, tenant_id, device_id)
    if asset_id is not None:
        await require_asset(stores, tenant_id, asset_id, "assetId")
    try:
        await stores.assets.set_device_asset(tenant_id, device_id, asset_id)
    except asyncpg.ForeignKeyViolationError:
        raise NotFound(f"No asset {asset_id}", argument="assetId") from None
    await topology_changed(stores, tenant_id)
    return row


async def topology_changed(stores: Stores, tenant_id: UUID) -> None:
    """Tells the subscription hubs that devices moved between assets, so subscriptions
    filtered by asset re-resolve their devices. Best effort: the hubs also re-resolve
    periodically."""
    try:
        await stores.shadows.publish_topology(tenant_id)
    except StoreUnavailable:
        log.warning("topology change of tenant %s not published; hubs catch up later",
                    tenant_id)
