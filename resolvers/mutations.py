"""The mutations of the contract: inputs, payloads, and resolvers that hand over to
``gateway.writes`` and return the new state (loaders forget what they cached for it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from gateway.context import Context, Info
from gateway.writes import assets, devices, shadows, telemetry
from resolvers.api_keys import ApiKeyMutation
from resolvers.assets import Asset
from resolvers.devices import Device, DeviceStatus
from resolvers.permissions import TENANT_WRITERS, OwnDevice, allow
from resolvers.scalars import parse_id
from resolvers.shadows import Shadow
from resolvers.token_revocations import TokenRevocationMutation


@strawberry.input
class CapabilityInput:
    metric: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    description: str | None = None


@strawberry.input
class RegisterDeviceInput:
    serial: str
    name: str
    type: str
    labels: list[str] | None = None
    firmware_version: str | None = None
    asset_id: strawberry.ID | None = None
    metadata: JSON | None = None
    capabilities: list[CapabilityInput] | None = None


@strawberry.type
class DeviceCredential:
    id: strawberry.ID
    secret: str = strawberry.field(
        description="Shown once, at registration; only a hash is stored."
    )


@strawberry.type
class RegisterDevicePayload:
    device: Device
    credential: DeviceCredential


@strawberry.input
class UpdateDeviceInput:
    name: str | None = None
    type: str | None = None
    labels: list[str] | None = None
    firmware_version: str | None = None
    metadata: JSON | None = strawberry.field(
        default=None, description="RFC 7396 merge patch: a null value deletes the key."
    )
    capabilities: list[CapabilityInput] | None = None


@strawberry.input
class CreateAssetInput:
    name: str
    kind: str
    parent_id: strawberry.ID | None = None
    attributes: JSON | None = None


@strawberry.input
class UpdateAssetInput:
    name: str | None = None
    kind: str | None = None
    parent_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Moves the asset (null: to the root); a move under its own subtree is refused.",
    )
    attributes: JSON | None = strawberry.field(
        default=None, description="RFC 7396 merge patch: a null value deletes the key."
    )


@strawberry.input
class ReadingInput:
    device_id: strawberry.ID
    metric: str
    time: datetime
    value: float


@strawberry.type
class RejectedReading:
    index: int
    reason: str


@strawberry.type
class IngestResult:
    accepted: int
    duplicates: int = strawberry.field(
        description="Readings already stored for the same device, metric and time."
    )
    rejected: list[RejectedReading]


def _device(info: Info, row: Any) -> Device:
    """The written row as the response's Device; loaders forget what they cached for it."""
    loaders = info.context.loaders
    loaders.device.clear(row["id"]).prime(row["id"], row)
    loaders.profile.clear(row["id"])
    loaders.shadow.clear(row["id"])
    return Device.from_row(row)


def _asset(info: Info, row: Any) -> Asset:
    info.context.loaders.asset.clear(row["id"]).prime(row["id"], row)
    return Asset.from_row(row)


@strawberry.type
class Mutation(ApiKeyMutation, TokenRevocationMutation):
    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def register_device(
        self, info: Info, input: RegisterDeviceInput
    ) -> RegisterDevicePayload:
        ctx = info.context
        result = await devices.register_device(
            ctx.stores,
            ctx.tenant_id,
            devices.NewDevice(
                serial=input.serial,
                name=input.name,
                type=input.type,
                labels=input.labels,
                firmware_version=input.firmware_version,
                asset_id=parse_id(input.asset_id, "input.assetId") if input.asset_id else None,
                metadata=input.metadata,
                capabilities=input.capabilities,
            ),
        )
        return RegisterDevicePayload(
            device=_device(info, result.device),
            credential=DeviceCredential(
                id=strawberry.ID(str(result.credential_id)), secret=result.secret
            ),
        )

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def update_device(
        self, info: Info, id: strawberry.ID, input: UpdateDeviceInput
    ) -> Device:
        ctx = info.context
        row = await devices.update_device(
            ctx.stores,
            ctx.tenant_id,
            parse_id(id),
            devices.DevicePatch(
                name=input.name,
                type=input.type,
                labels=input.labels,
                firmware_version=input.firmware_version,
                metadata=input.metadata,
                capabilities=input.capabilities,
            ),
        )
        return _device(info, row)

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def set_device_status(
        self, info: Info, id: strawberry.ID, status: DeviceStatus
    ) -> Device:
        ctx = info.context
        row = await devices.set_status(ctx.stores, ctx.tenant_id, parse_id(id), status.value)
        return _device(info, row)

    @strawberry.mutation(
        extensions=[allow(*TENANT_WRITERS)],
        description="Revokes credentials, deletes the shadow, keeps telemetry.",
    )
    async def decommission_device(self, info: Info, id: strawberry.ID) -> Device:
        ctx = info.context
        return _device(info, await devices.decommission(ctx.stores, ctx.tenant_id, parse_id(id)))

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def create_asset(self, info: Info, input: CreateAssetInput) -> Asset:
        ctx = info.context
        row = await assets.create_asset(
            ctx.stores,
            ctx.tenant_id,
            name=input.name,
            kind=input.kind,
            parent_id=parse_id(input.parent_id, "input.parentId") if input.parent_id else None,
            attributes=input.attributes,
        )
        info.context.loaders.children.clear_all()
        return _asset(info, row)

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def update_asset(self, info: Info, id: strawberry.ID, input: UpdateAssetInput) -> Asset:
        ctx = info.context
        row = await assets.update_asset(
            ctx.stores,
            ctx.tenant_id,
            parse_id(id),
            assets.AssetPatch(
                name=input.name,
                kind=input.kind,
                parent_id=parse_id(input.parent_id, "input.parentId") if input.parent_id else None,
                to_root=input.parent_id is None,  # given as null; left out is UNSET
                attributes=input.attributes,
            ),
        )
        info.context.loaders.children.clear_all()
        return _asset(info, row)

    @strawberry.mutation(
        extensions=[allow(*TENANT_WRITERS)],
        description="Refused while the asset has children or devices.",
    )
    async def delete_asset(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        deleted = await assets.delete_asset(ctx.stores, ctx.tenant_id, parse_id(id))
        ctx.loaders.children.clear_all()
        return deleted

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def attach_device(
        self, info: Info, device_id: strawberry.ID, asset_id: strawberry.ID
    ) -> Device:
        ctx = info.context
        row = await devices.attach(
            ctx.stores,
            ctx.tenant_id,
            parse_id(device_id, "deviceId"),
            parse_id(asset_id, "assetId"),
        )
        return _device(info, row)

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def detach_device(self, info: Info, device_id: strawberry.ID) -> Device:
        ctx = info.context
        row = await devices.attach(ctx.stores, ctx.tenant_id, parse_id(device_id, "deviceId"), None)
        return _device(info, row)

    @strawberry.mutation(
        extensions=[allow(*TENANT_WRITERS, device=OwnDevice("device_id", refused=("desired",)))],
        description="Merges into desired and/or reported (null deletes a key). With "
        "expectedVersion, refused unless it equals the current version.",
    )
    async def update_shadow(
        self,
        info: Info,
        device_id: strawberry.ID,
        desired: JSON | None = None,
        reported: JSON | None = None,
        expected_version: int | None = None,
    ) -> Shadow:
        ctx = info.context
        device = parse_id(device_id, "deviceId")
        doc = await shadows.update_shadow(
            ctx.stores,
            ctx.tenant_id,
            device,
            desired=desired,
            reported=reported,
            expected_version=expected_version,
        )
        ctx.loaders.shadow.clear(device).prime(device, doc)
        return Shadow.from_doc(doc)

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS)])
    async def delete_shadow(self, info: Info, device_id: strawberry.ID) -> bool:
        ctx = info.context
        device = parse_id(device_id, "deviceId")
        deleted = await shadows.delete_shadow(ctx.stores, ctx.tenant_id, device)
        ctx.loaders.shadow.clear(device)
        return deleted

    @strawberry.mutation(extensions=[allow(*TENANT_WRITERS, device=OwnDevice("readings"))])
    async def ingest_telemetry(self, info: Info, readings: list[ReadingInput]) -> IngestResult:
        # Declares the field; at run time resolvers.execution.fast_paths serves it without
        # converting each input object (see there). Both go through ingest_readings.
        return await ingest_readings(
            info.context,
            [telemetry.RawReading(str(r.device_id), r.metric, r.time, r.value) for r in readings],
        )


async def ingest_readings(ctx: Context, readings: list[telemetry.Reading]) -> IngestResult:
    outcome = await telemetry.ingest(ctx.stores, ctx.tenant_id, readings)
    ctx.loaders.forget_telemetry()  # later fields of the same document see the new data
    return IngestResult(
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        rejected=[RejectedReading(index=i, reason=why) for i, why in outcome.rejected],
    )
