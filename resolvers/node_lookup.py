"""Query.node / Query.nodes: any Device or Asset of the tenant by id.

Ids are plain UUIDs (unchanged, not type-prefixed), so an id is looked up in both the
registry and the asset DB, batched: one round trip to each for any number of ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

from gateway.context import Info
from gateway.errors import LimitExceeded
from resolvers.assets import Asset
from resolvers.devices import Device
from resolvers.node import Node
from resolvers.scalars import parse_id

MAX_NODES = 500


async def resolve_nodes(info: Info, ids: Sequence[str], argument: str) -> list[Node | None]:
    """The object with each id, in order; None for an id the tenant has nothing under."""
    if len(ids) > MAX_NODES:
        raise LimitExceeded(f"At most {MAX_NODES} ids per request", limit="maxNodes",
                            maximum=MAX_NODES, argument=argument)
    keys: list[UUID] = [parse_id(i, argument) for i in ids]
    loaders = info.context.loaders
    devices, assets = await asyncio.gather(loaders.device.load_many(keys),
                                           loaders.asset.load_many(keys))
    found: list[Node | None] = []
    for device, asset in zip(devices, assets, strict=True):
        if device is not None:
            found.append(Device.from_row(device))
        elif asset is not None:
            found.append(Asset.from_row(asset))
        else:
            found.append(None)
    return found
