"""Mutation inputs and payloads of the contract. The writes land with the writes issue (#3);
until then every mutation answers a clear "not implemented yet" error."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gateway.errors import NotImplementedYet
from resolvers.assets import Asset
from resolvers.devices import Device, DeviceStatus
from resolvers.shadows import Shadow


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
        default=None, description="Moves the asset; a move under its own subtree is refused."
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


def _pending(name: str) -> NotImplementedYet:
    return NotImplementedYet(f"Mutation.{name} (writes land with issue #3)")


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def register_device(self, input: RegisterDeviceInput) -> RegisterDevicePayload:
        raise _pending("registerDevice")

    @strawberry.mutation
    async def update_device(self, id: strawberry.ID, input: UpdateDeviceInput) -> Device:
        raise _pending("updateDevice")

    @strawberry.mutation
    async def set_device_status(self, id: strawberry.ID, status: DeviceStatus) -> Device:
        raise _pending("setDeviceStatus")

    @strawberry.mutation(description="Revokes credentials, deletes the shadow, keeps telemetry.")
    async def decommission_device(self, id: strawberry.ID) -> Device:
        raise _pending("decommissionDevice")

    @strawberry.mutation
    async def create_asset(self, input: CreateAssetInput) -> Asset:
        raise _pending("createAsset")

    @strawberry.mutation
    async def update_asset(self, id: strawberry.ID, input: UpdateAssetInput) -> Asset:
        raise _pending("updateAsset")

    @strawberry.mutation(description="Refused while the asset has children or devices.")
    async def delete_asset(self, id: strawberry.ID) -> bool:
        raise _pending("deleteAsset")

    @strawberry.mutation
    async def attach_device(self, device_id: strawberry.ID, asset_id: strawberry.ID) -> Device:
        raise _pending("attachDevice")

    @strawberry.mutation
    async def detach_device(self, device_id: strawberry.ID) -> Device:
        raise _pending("detachDevice")

    @strawberry.mutation(
        description="Merges into desired and/or reported (null deletes a key). With "
        "expectedVersion, refused unless it equals the current version."
    )
    async def update_shadow(
        self, device_id: strawberry.ID, desired: JSON | None = None,
        reported: JSON | None = None, expected_version: int | None = None,
    ) -> Shadow:
        raise _pending("updateShadow")

    @strawberry.mutation
    async def delete_shadow(self, device_id: strawberry.ID) -> bool:
        raise _pending("deleteShadow")

    @strawberry.mutation
    async def ingest_telemetry(self, readings: list[ReadingInput]) -> IngestResult:
        raise _pending("ingestTelemetry")
