"""Asset DB adapter (PostgreSQL + JSONB): the asset tree and per-device profiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gateway.stores.base import PgStore, align, group
from gateway.stores.registry import like_pattern


@dataclass(frozen=True)
class AssetQuery:
    first: int
    after: tuple[datetime, UUID] | None = None
    kind: str | None = None
    parent_id: UUID | None = None
    roots: bool | None = None
    search: str | None = None
    attributes: dict[str, Any] | None = None


class AssetStore(PgStore):
    name = "assets"

    async def assets_by_ids(
        self, tenant_id: UUID, ids: Sequence[UUID]
    ) -> list[asyncpg.Record | None]:
        rows = await self.fetch(self.sql["assets_by_ids"], tenant_id, list(ids))
        return align(list(ids), rows, "id")

    async def children_of(
        self, tenant_id: UUID, parent_ids: Sequence[UUID]
    ) -> list[list[asyncpg.Record]]:
        rows = await self.fetch(self.sql["children_of"], tenant_id, list(parent_ids))
        return group(list(parent_ids), rows, "parent_id")

    async def profiles_by_device(
        self, tenant_id: UUID, device_ids: Sequence[UUID]
    ) -> list[asyncpg.Record | None]:
        rows = await self.fetch(self.sql["profiles_by_device"], tenant_id, list(device_ids))
        return align(list(device_ids), rows, "device_id")

    async def device_ids_matching(
        self, tenant_id: UUID, *, asset_id: UUID | None, metadata: dict[str, Any] | None
    ) -> list[UUID]:
        rows = await self.fetch(self.sql["device_ids_matching"], tenant_id, asset_id, metadata)
        return [row["device_id"] for row in rows]

    async def page_assets(
        self, tenant_id: UUID, q: AssetQuery
    ) -> tuple[list[asyncpg.Record], int]:
        after_time, after_id = q.after if q.after else (None, None)
        rows = await self.fetch(
            self.sql["page_assets"], tenant_id, q.kind, q.parent_id, q.roots,
            like_pattern(q.search) if q.search else None, q.attributes,
            after_time, after_id, q.first + 1,
        )
        total = rows[0]["total_count"] if rows else 0
        return [r for r in rows if r["id"] is not None], total

    async def insert_asset(
        self, tenant_id: UUID, asset_id: UUID, parent_id: UUID | None, name: str, kind: str,
        attributes: dict[str, Any],
    ) -> asyncpg.Record:
        row = await self.fetchrow(
            self.sql["insert_asset"], tenant_id, asset_id, parent_id, name, kind, attributes
        )
        assert row is not None
        return row

    async def upsert_profile(
        self, tenant_id: UUID, device_id: UUID, *, asset_id: UUID | None,
        metadata: dict[str, Any], capabilities: list[dict[str, Any]],
    ) -> None:
        await self.execute(
            self.sql["upsert_profile"], tenant_id, device_id, asset_id, metadata, capabilities
        )
