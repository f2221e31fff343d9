"""Asset tree writes (Asset DB), with the registry consulted for what is installed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import BadUserInput, NotFound
from gateway.stores import Stores
from gateway.writes import validate
from gateway.writes.devices import require_asset, topology_changed

KIND_MAX = 64
SHOWN = 5  # how many blocking children/devices an error names
# A registration writes its profile, then its registry row, well within this.
ORPHAN_GRACE = timedelta(minutes=1)


async def create_asset(
    stores: Stores, tenant_id: UUID, *, name: str, kind: str, parent_id: UUID | None,
    attributes: Any,
) -> asyncpg.Record:
    clean_name = validate.text(name, "input.name", max_len=200, required=True)
    clean_kind = validate.text(kind, "input.kind", max_len=KIND_MAX, required=True)
    attrs = validate.json_object(attributes, "input.attributes") or {}
    assert clean_name and clean_kind
    if parent_id is not None:
        await require_asset(stores, tenant_id, parent_id, "input.parentId")
    try:
        return await stores.assets.insert_asset(
            tenant_id, uuid4(), parent_id, clean_name, clean_kind, attrs
        )
    except asyncpg.ForeignKeyViolationError:  # the parent was deleted meanwhile
        raise NotFound(f"No asset {parent_id}", argument="input.parentId") from None


@dataclass(frozen=True)
class AssetPatch:
    name: str | None = None
    kind: str | None = None
    parent_id: UUID | None = None
    to_root: bool = False  # parentId given as null: the asset becomes a root
    attributes: Any = None


async def update_asset(
    stores: Stores, tenant_id: UUID, asset_id: UUID, patch: AssetPatch
) -> asyncpg.Record:
    name = validate.text(patch.name, "input.name", max_len=200)
    kind = validate.text(patch.kind, "input.kind", max_len=KIND_MAX)
    if patch.attributes is not None and not isinstance(patch.attributes, dict):
        raise BadUserInput("input.attributes must be a JSON object (a merge patch)",
                           argument="input.attributes")
    if patch.parent_id == asset_id:
        raise BadUserInput("An asset cannot be its own parent", argument="input.parentId")
    row = await stores.assets.update_asset(
        tenant_id, asset_id, name=name, kind=kind, attributes_patch=patch.attributes,
        new_parent=patch.parent_id, to_root=patch.to_root,
        check=partial(validate.json_object, field="input.attributes"),
    )
    if patch.parent_id is not None or patch.to_root:
        await topology_changed(stores, tenant_id)  # the subtree's devices moved with it
    return row


async def delete_asset(stores: Stores, tenant_id: UUID, asset_id: UUID) -> bool:
    """Refused while children or devices remain, naming some of them."""
    await require_asset(stores, tenant_id, asset_id, "id")
    children = await stores.assets.children_names(tenant_id, asset_id, SHOWN + 1)
    if children:
        names = ", ".join(r["name"] for r in children[:SHOWN])
        more = " and more" if len(children) > SHOWN else ""
        raise BadUserInput(
            f"Asset {asset_id} still has child assets: {names}{more}", argument="id",
            children=[str(r["id"]) for r in children[:SHOWN]],
        )
    installed = await stores.assets.installed_devices(tenant_id, asset_id)
    devices = [r for r in await stores.registry.devices_by_ids(tenant_id, installed) if r]
    if devices:
        names = ", ".join(f"{r['name']} ({r['serial']})" for r in devices[:SHOWN])
        more = " and more" if len(devices) > SHOWN else ""
        raise BadUserInput(
            f"Asset {asset_id} still has devices installed: {names}{more}", argument="id",
            devices=[str(r["id"]) for r in devices[:SHOWN]],
        )
    # Profiles whose device never reached the registry are invisible leftovers: not a reason
    # to refuse, and deleted with the asset once older than a registration can take.
    try:
        return await stores.assets.delete_asset(
            tenant_id, asset_id, orphan_profiles=installed,
            older_than=datetime.now(UTC) - ORPHAN_GRACE,
        )
    except asyncpg.ForeignKeyViolationError:
        raise BadUserInput(
            f"Asset {asset_id} gained a child or a device meanwhile; not deleted",
            argument="id",
        ) from None
