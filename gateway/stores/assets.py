"""Asset DB adapter (PostgreSQL + JSONB): the asset tree and per-device profiles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from gateway.errors import BadUserInput, NotFound
from gateway.stores.base import PgStore, align, group
from gateway.stores.metadata_indexes import RangePath, compiled_paths, ensure_indexes
from gateway.stores.pages import CREATED_ASC, Order, Page, PageSql, SortKey, Window, relay_page
from gateway.stores.predicates import Field, Params, Pred, compile_pred
from gateway.writes.merge_patch import merge_patch

IntentOutcome = Literal["applied", "done", "blocked", "missing"]


@dataclass(frozen=True)
class AssetQuery:
    """A page request over assets: window, order and filter (hashable)."""

    window: Window = Window()
    order: Order = CREATED_ASC
    where: Pred | None = None


ASSET_COLUMNS: dict[str, Field] = {
    "kind": Field("{t}.kind", "text"),
    "parent_id": Field("{t}.parent_id", "uuid"),
    "name": Field("{t}.name", "text"),
    "name_lower": Field("lower({t}.name)", "text"),
    "attributes": Field("{t}.attributes", "jsonb"),
    "created_at": Field("{t}.created_at", "timestamptz"),
}
ASSET_SORT_KEYS: dict[str, SortKey] = {
    "created_at": SortKey("{t}.created_at", "timestamptz", "created_at"),
    "name": SortKey("{t}.name", "text", "name"),
    "kind": SortKey("{t}.kind", "text", "kind"),
}


def asset_row(doc: dict[str, Any]) -> dict[str, Any]:
    """An asset row from its ``to_jsonb`` form (ids and times back to their types)."""
    return {
        **doc, "id": UUID(doc["id"]), "tenant_id": UUID(doc["tenant_id"]),
        "parent_id": UUID(doc["parent_id"]) if doc["parent_id"] else None,
        "path": [UUID(p) for p in doc["path"]],
        "created_at": datetime.fromisoformat(doc["created_at"]),
        "updated_at": datetime.fromisoformat(doc["updated_at"]),
    }


class AssetStore(PgStore):
    """``range_paths``: the declared metadata paths whose ranges an index serves
    (gateway/stores/metadata_indexes.py); their indexes are created after migrating."""

    name = "assets"

    def __init__(self, dsn: str, *, range_paths: Sequence[RangePath] = (),
                 **pool: Any) -> None:
        super().__init__(dsn, **pool)
        self.range_paths = tuple(range_paths)
        self.profile_columns: dict[str, Field] = {"metadata": Field(
            "{t}.metadata", "jsonb", indexed=compiled_paths(self.range_paths))}

    async def migrated(self, conn: asyncpg.Connection) -> None:
        await ensure_indexes(conn, self.range_paths)

    async def assets_by_ids(
        self, tenant_id: UUID, ids: Sequence[UUID]
    ) -> list[asyncpg.Record | None]:
        rows = await self.fetch(self.sql["assets_by_ids"], tenant_id, list(ids))
        return align(list(ids), rows, "id")

    async def children_of(
        self, tenant_id: UUID, parent_ids: Sequence[UUID]
    ) -> list[list[asyncpg.Record]]:
        rows = await self.fetch_may_lag(self.sql["children_of"], tenant_id, list(parent_ids))
        return group(list(parent_ids), rows, "parent_id")

    async def profiles_by_device(
        self, tenant_id: UUID, device_ids: Sequence[UUID], *, parents: bool = False
    ) -> list[asyncpg.Record | None]:
        """Each device's profile, its installed asset in ``a_*`` columns and, with
        ``parents``, that asset's parent in ``pa_*`` columns (each asset once, on one of
        its rows; sql/assets/queries.sql)."""
        name = "profiles_by_device_with_parents" if parents else "profiles_by_device"
        rows = await self.fetch(self.sql[name], tenant_id, list(device_ids))
        return align(list(device_ids), rows, "device_id")

    async def device_ids_matching(
        self, tenant_id: UUID, *, asset_id: UUID | None, metadata: dict[str, Any] | None
    ) -> list[UUID]:
        rows = await self.fetch(self.sql["device_ids_matching"], tenant_id, asset_id, metadata)
        return [row["device_id"] for row in rows]

    async def device_ids_for(
        self, tenant_id: UUID, roots: Sequence[UUID], conditions: Sequence[Pred]
    ) -> tuple[list[tuple[UUID, UUID]], list[set[UUID]]]:
        """In one round trip: (root, device) pairs for every device installed on or below
        each root, and the devices matching each asset-side condition (in order)."""
        params = Params([tenant_id])
        parts = []
        if roots:
            parts.append(self.sql["devices_under_roots"].format(
                roots=params.add(list(roots), "uuid[]")))
        _, pairs, matched = await self._subtrees(params, parts, conditions)
        return pairs, matched

    async def overview(
        self, tenant_id: UUID, parent_id: UUID | None, conditions: Sequence[Pred]
    ) -> tuple[list[dict[str, Any]], list[tuple[UUID, UUID]], list[set[UUID]]]:
        """In one round trip: the children of ``parent_id`` (the roots when None) as asset
        rows, (child, device) pairs for every device on or below each, and the devices
        matching each asset-side condition."""
        params = Params([tenant_id])
        parts = [self.sql["children_with_devices"].format(
            parent=params.add(parent_id, "uuid"))]
        return await self._subtrees(params, parts, conditions)

    async def _subtrees(
        self, params: Params, parts: list[str], conditions: Sequence[Pred]
    ) -> tuple[list[dict[str, Any]], list[tuple[UUID, UUID]], list[set[UUID]]]:
        for n, condition in enumerate(conditions):
            parts.append(self.sql["devices_matching_condition"].format(
                leaf=n, where=compile_pred(condition, self.profile_columns, "p", params)))
        if not parts:
            return [], [], []
        rows = await self.fetch_may_lag(" UNION ALL ".join(f"({part})" for part in parts),
                                *params.values)
        assets = [asset_row(r["asset"]) for r in rows if r["leaf"] == -2]
        pairs = [(r["root"], r["device_id"]) for r in rows if r["leaf"] == -1]
        matched: list[set[UUID]] = [set() for _ in conditions]
        for row in rows:
            if row["leaf"] >= 0:
                matched[row["leaf"]].add(row["device_id"])
        return assets, pairs, matched

    async def device_ids_under_many(
        self, tenant_id: UUID, asset_ids: Sequence[UUID], metadata: dict[str, Any] | None
    ) -> list[tuple[UUID, UUID]]:
        """(asset, device) pairs: every device installed on each asset or below it."""
        rows = await self.fetch_may_lag(
            self.sql["device_ids_under_many"], tenant_id, list(asset_ids), metadata
        )
        return [(row["root"], row["device_id"]) for row in rows]

    async def page_assets(self, tenant_id: UUID, q: AssetQuery) -> Page:
        """As RegistryStore.page_devices, over assets."""
        params = Params([tenant_id])
        where = compile_pred(q.where, ASSET_COLUMNS, "a", params)
        page = PageSql(ASSET_SORT_KEYS, q.order, q.window, params, "a")
        beyond = page.beyond()
        sql = self.sql["page_assets"].format(
            where=where, bounds=page.bounds(), order=page.order_by(), limit=page.limit(),
            beyond=(f"EXISTS (SELECT 1 FROM assets a WHERE a.tenant_id = $1 AND {where} "
                    f"AND {beyond})") if beyond else "false",
        )
        rows = await self.fetch_may_lag(sql, *params.values)
        total, past = (rows[0]["total_count"], rows[0]["beyond"]) if rows else (0, False)
        return relay_page([r for r in rows if r["id"] is not None], total, past, q.window)

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

    async def update_asset(
        self, tenant_id: UUID, asset_id: UUID, *, name: str | None, kind: str | None,
        attributes_patch: dict[str, Any] | None, new_parent: UUID | None,
        to_root: bool = False, check: Callable[[dict[str, Any]], object] | None = None,
    ) -> asyncpg.Record:
        """Renames, re-kinds, patches attributes and moves (with its subtree) under
        ``new_parent``, or to the root with ``to_root``, in one transaction. A move under its
        own subtree is refused. ``check`` sees the merged attributes before anything is
        written and may raise to write nothing."""
        async with self.transaction() as tx:
            if new_parent is not None or to_root:
                await tx.execute(self.sql["lock_tree"], str(tenant_id))
            current = await tx.fetchrow(self.sql["lock_asset"], tenant_id, asset_id)
            if current is None:
                raise NotFound(f"No asset {asset_id}", argument="id")
            attributes = current["attributes"]
            if attributes_patch is not None:
                attributes = merge_patch(attributes, attributes_patch)
            if check is not None:
                check(attributes)
            if new_parent is not None and new_parent != current["parent_id"]:
                parent = await tx.fetchrow(self.sql["lock_asset"], tenant_id, new_parent)
                if parent is None:
                    raise NotFound(f"No asset {new_parent}", argument="input.parentId")
                if asset_id in parent["path"]:
                    raise BadUserInput(
                        f"Cannot move asset {asset_id} under {new_parent}: that is inside its "
                        "own subtree", argument="input.parentId",
                    )
                await tx.execute(
                    self.sql["move_subtree"], tenant_id, asset_id,
                    [*parent["path"], asset_id], len(current["path"]), new_parent,
                )
            elif to_root and current["parent_id"] is not None:
                await tx.execute(self.sql["move_subtree"], tenant_id, asset_id, [asset_id],
                                 len(current["path"]), None)
            row = await tx.fetchrow(
                self.sql["update_asset"], tenant_id, asset_id, name or current["name"],
                kind or current["kind"], attributes,
            )
        assert row is not None
        return row

    async def children_names(
        self, tenant_id: UUID, asset_id: UUID, limit: int
    ) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["children_names"], tenant_id, asset_id, limit)

    async def installed_devices(self, tenant_id: UUID, asset_id: UUID) -> list[UUID]:
        rows = await self.fetch(self.sql["installed_devices"], tenant_id, asset_id)
        return [row["device_id"] for row in rows]

    async def delete_asset(
        self, tenant_id: UUID, asset_id: UUID, *, orphan_profiles: Sequence[UUID],
        older_than: datetime,
    ) -> bool:
        """Deletes the asset and the given orphan profiles pointing at it (profiles whose
        device never made it into the registry) when untouched since ``older_than``, so a
        registration in flight keeps its profile. Raises ``ForeignKeyViolationError`` when a
        child or device remains."""
        async with self.transaction() as tx:
            if orphan_profiles:
                await tx.execute(
                    self.sql["delete_stale_profiles"], tenant_id, list(orphan_profiles),
                    older_than,
                )
            status = await tx.execute(self.sql["delete_asset"], tenant_id, asset_id)
        return status == "DELETE 1"

    async def delete_profiles(self, tenant_id: UUID, device_ids: Sequence[UUID]) -> None:
        await self.execute(self.sql["delete_profiles"], tenant_id, list(device_ids))

    async def apply_profile_intent(
        self, tenant_id: UUID, device_id: UUID, seq: int, *,
        metadata_patch: dict[str, Any] | None, capabilities: list[dict[str, Any]] | None,
    ) -> IntentOutcome:
        """Applies the registry's profile intent number ``seq`` (a metadata merge patch
        and/or new capabilities) if it is the next one for this profile. ``done``: it (or a
        later one) was applied before; ``blocked``: an earlier one is still missing;
        ``missing``: the device has no profile."""
        async with self.transaction() as tx:
            before = await tx.fetchrow(self.sql["lock_profile"], tenant_id, device_id)
            if before is None:
                return "missing"
            if before["applied_seq"] >= seq:
                return "done"
            if before["applied_seq"] < seq - 1:
                return "blocked"
            metadata = before["metadata"]
            if metadata_patch is not None:
                metadata = merge_patch(metadata, metadata_patch)
            caps = before["capabilities"] if capabilities is None else capabilities
            await tx.execute(self.sql["apply_profile_intent"], tenant_id, device_id, seq,
                             metadata, caps)
        return "applied"

    async def set_device_asset(
        self, tenant_id: UUID, device_id: UUID, asset_id: UUID | None
    ) -> None:
        await self.execute(self.sql["set_device_asset"], tenant_id, device_id, asset_id)

    async def profiles_older_than(
        self, after: UUID, limit: int, older_than: datetime
    ) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["profiles_older_than"], after, limit, older_than)

    async def delete_orphan_profiles(
        self, device_ids: Sequence[UUID], older_than: datetime
    ) -> None:
        await self.execute(self.sql["delete_orphan_profiles"], list(device_ids), older_than)
