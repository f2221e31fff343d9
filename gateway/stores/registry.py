"""Device Registry adapter (PostgreSQL): devices, tenants, API keys."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import StoreUnavailable
from gateway.stores.base import PgStore, align
from gateway.stores.key_cache import BadKeys, VerifiedKeys
from gateway.stores.pages import CREATED_ASC, Order, Page, PageSql, SortKey, Window, relay_page
from gateway.stores.predicates import Field, Params, Pred, compile_pred
from gateway.stores.revoked_tokens import RevokedTokens, TokenRevocation

__all__ = ["DEVICE_COLUMNS", "DEVICE_ROW_COLUMNS", "DEVICE_SORT_KEYS", "DeviceCounts",
           "DeviceQuery", "RegistryStore", "VerifiedKeys", "like_pattern"]


@dataclass(frozen=True)
class DeviceQuery:
    """A page request over devices: window, order and filter (asset-side conditions
    already resolved to ``InIds``). Hashable, so equal requests share a dataloader."""

    window: Window = Window()
    order: Order = CREATED_ASC
    where: Pred | None = None


@dataclass
class DeviceCounts:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    by_root: dict[UUID, int] = field(default_factory=dict)


# What a device filter and order may name (gateway.stores.predicates/pages compile these).
DEVICE_COLUMNS: dict[str, Field] = {
    "status": Field("{t}.status", "text"),
    "type": Field("{t}.type", "text"),
    "labels": Field("{t}.labels", "text"),
    "name": Field("{t}.name", "text"),
    "name_lower": Field("lower({t}.name)", "text"),
    "serial": Field("{t}.serial", "text"),
    "created_at": Field("{t}.created_at", "timestamptz"),
    "last_seen_at": Field("{t}.last_seen_at", "timestamptz"),
}
DEVICE_SORT_KEYS: dict[str, SortKey] = {
    "created_at": SortKey("{t}.created_at", "timestamptz", "created_at"),
    "name": SortKey("{t}.name", "text", "name"),
    "status": SortKey("{t}.status", "text", "status"),
    "type": SortKey("{t}.type", "text", "type"),
    # Never seen sorts as the earliest time (first ascending, last descending); the index
    # devices_order_last_seen is on the same expression.
    "last_seen_at": SortKey("coalesce({t}.last_seen_at, '-infinity'::timestamptz)",
                            "timestamptz", "last_seen_at",
                            "coalesce({v}, '-infinity'::timestamptz)"),
}


# A device row's columns, in the table's order; a page of some of them (page_devices)
# always has these.
DEVICE_ROW_COLUMNS = ("tenant_id", "id", "serial", "name", "type", "status",
                      "firmware_version", "labels", "created_at", "updated_at", "last_seen_at")
_ALWAYS = ("id", "status")


def _row_columns(columns: Collection[str] | None, order_column: str) -> str:
    if columns is None:
        return "d.*"
    wanted = {*columns, *_ALWAYS, order_column}
    unknown = wanted.difference(DEVICE_ROW_COLUMNS)
    if unknown:
        raise ValueError(f"not device columns: {sorted(unknown)}")  # a programming error
    return ", ".join(f"d.{c}" for c in DEVICE_ROW_COLUMNS if c in wanted)


def like_pattern(text: str) -> str:
    """A case-insensitive substring pattern with LIKE's wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class RegistryStore(PgStore):
    name = "registry"

    def __init__(self, dsn: str, *, outage_grace: float = 60.0, key_cache_ttl: float = 0.0,
                 **options: Any) -> None:
        super().__init__(dsn, **options)
        self.verified_keys = VerifiedKeys(outage_grace, key_cache_ttl)
        self.bad_keys = BadKeys(key_cache_ttl)
        self.revoked_tokens = RevokedTokens()
        # JWT subjects (tenant, device) the registry said are live, until when
        # (gateway.auth.jwt_bearer.JwtVerifier.check_subject).
        self.jwt_subjects: dict[tuple[UUID, UUID | None], float] = {}

    async def devices_by_ids(
        self, tenant_id: UUID, ids: Sequence[UUID]
    ) -> list[asyncpg.Record | None]:
        rows = await self.fetch(self.sql["devices_by_ids"], tenant_id, list(ids))
        return align(list(ids), rows, "id")

    async def page_devices(self, tenant_id: UUID, q: DeviceQuery,
                           columns: Collection[str] | None = None) -> Page:
        """One page in the query's order and window, its pageInfo flags and the filtered
        total, in one round trip. ``columns`` (of ``DEVICE_ROW_COLUMNS``) limits the rows
        to what the caller reads, besides the id, the status and the order's key; all of
        them by default."""
        params = Params([tenant_id])
        where = compile_pred(q.where, DEVICE_COLUMNS, "d", params)
        page = PageSql(DEVICE_SORT_KEYS, q.order, q.window, params, "d")
        beyond = page.beyond()
        sql = self.sql["page_devices"].format(
            columns=_row_columns(columns, DEVICE_SORT_KEYS[q.order.key].column),
            where=where, bounds=page.bounds(), order=page.order_by(), limit=page.limit(),
            beyond=(f"EXISTS (SELECT 1 FROM devices d WHERE d.tenant_id = $1 AND {where} "
                    f"AND {beyond})") if beyond else "false",
        )
        rows = await self.fetch_may_lag(sql, *params.values)
        total, past = (rows[0]["total_count"], rows[0]["beyond"]) if rows else (0, False)
        fetched = [r for r in rows if r["id"] is not None]
        return relay_page(fetched, total, past, q.window)

    async def count_devices(
        self, tenant_id: UUID, where: Pred | None, pairs: Sequence[tuple[UUID, UUID]]
    ) -> DeviceCounts:
        """The devices matching ``where`` counted in total, by status, by type and per root
        of ``pairs`` (root, device), in one round trip."""
        params = Params([tenant_id, [p[0] for p in pairs], [p[1] for p in pairs]])
        sql = self.sql["count_devices"].format(
            where=compile_pred(where, DEVICE_COLUMNS, "d", params))
        counts = DeviceCounts()
        for row in await self.fetch_may_lag(sql, *params.values):
            if row["dim"] == "total":
                counts.total = row["n"]
            elif row["dim"] == "status":
                counts.by_status[row["key"]] = row["n"]
            elif row["dim"] == "type":
                counts.by_type[row["key"]] = row["n"]
            else:
                counts.by_root[UUID(row["key"])] = row["n"]
        return counts

    async def insert_device(
        self, tenant_id: UUID, *, serial: str, name: str, type: str, status: str = "PROVISIONED",
        firmware_version: str | None = None, labels: Sequence[str] = (),
    ) -> asyncpg.Record:
        row = await self.fetchrow(
            self.sql["insert_device"], tenant_id, serial, name, type, status, firmware_version,
            list(labels),
        )
        assert row is not None
        return row

    async def register_device(
        self, tenant_id: UUID, device_id: UUID, *, serial: str, name: str, type: str,
        firmware_version: str | None, labels: Sequence[str], credential_id: UUID,
        secret_hash: str,
    ) -> asyncpg.Record:
        """Inserts the device and its credential atomically; a duplicate serial raises
        ``asyncpg.UniqueViolationError``."""
        row = await self.fetchrow(
            self.sql["register_device"], tenant_id, device_id, serial, name, type,
            firmware_version, list(labels), credential_id, secret_hash,
        )
        assert row is not None
        return row

    async def update_device(
        self, tenant_id: UUID, device_id: UUID, *, name: str | None, type: str | None,
        labels: Sequence[str] | None, firmware_version: str | None,
    ) -> asyncpg.Record | None:
        return await self.fetchrow(
            self.sql["update_device"], tenant_id, device_id, name, type,
            list(labels) if labels is not None else None, firmware_version,
        )

    async def update_device_with_profile(
        self, tenant_id: UUID, device_id: UUID, *, name: str | None, type: str | None,
        labels: Sequence[str] | None, firmware_version: str | None,
        metadata_patch: dict[str, Any] | None, capabilities: list[dict[str, Any]] | None,
    ) -> asyncpg.Record | None:
        """``update_device`` that also records the profile part as the device's next
        profile intent, atomically; the row's ``profile_seq`` is the intent's number."""
        return await self.fetchrow(
            self.sql["update_device_with_profile"], tenant_id, device_id, name, type,
            list(labels) if labels is not None else None, firmware_version,
            metadata_patch, capabilities,
        )

    async def profile_intents_of(self, device_id: UUID) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["profile_intents_of"], device_id)

    async def forget_profile_intents(self, device_id: UUID, through_seq: int) -> None:
        await self.execute(self.sql["forget_profile_intents"], device_id, through_seq)

    async def devices_with_profile_intents(
        self, after: UUID, limit: int, older_than: datetime
    ) -> list[UUID]:
        """Devices with a profile intent recorded before ``older_than``, in id order after
        ``after``: the reconciler's scan."""
        rows = await self.fetch(self.sql["devices_with_profile_intents"], after, limit,
                                older_than)
        return [row["device_id"] for row in rows]

    async def set_status(
        self, tenant_id: UUID, device_id: UUID, status: str, allowed_from: Sequence[str]
    ) -> asyncpg.Record | None:
        return await self.fetchrow(
            self.sql["set_status"], tenant_id, device_id, status, list(allowed_from)
        )

    async def decommission(self, tenant_id: UUID, device_id: UUID) -> asyncpg.Record | None:
        row = await self.fetchrow(self.sql["decommission"], tenant_id, device_id)
        self.forget_device(tenant_id, device_id)
        return row

    def forget_device(self, tenant_id: UUID, device_id: UUID) -> None:
        """A decommissioned device: its cached keys and its tokens' subject go at once."""
        self.verified_keys.forget_device(device_id)
        self.jwt_subjects.pop((tenant_id, device_id), None)

    async def touch_last_seen(
        self, tenant_id: UUID, seen: dict[UUID, datetime]
    ) -> int:
        """Moves lastSeenAt forward; returns how many devices it moved."""
        status = await self.execute(
            self.sql["touch_last_seen"], tenant_id, list(seen), list(seen.values())
        )
        return int(status.rsplit(" ", 1)[1])

    async def decommissioned_ids(
        self, after: UUID, limit: int
    ) -> list[asyncpg.Record]:
        """(tenant_id, id) of decommissioned devices in id order: the reconciler's scan."""
        return await self.fetch(self.sql["decommissioned_ids"], after, limit)

    async def existing_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` name a registered device, in any tenant: the reconciler's check."""
        return {row["id"] for row in await self.fetch(self.sql["existing_ids"], list(ids))}

    async def credentials_of(self, tenant_id: UUID, device_id: UUID) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["credentials_of"], tenant_id, device_id)

    async def live_device_ids(self, tenant_id: UUID) -> list[UUID]:
        """Every device of the tenant that is not decommissioned (whole-tenant snapshots)."""
        return [r["id"] for r in await self.fetch(self.sql["live_device_ids"], tenant_id)]

    async def page_devices_grouped(
        self, tenant_id: UUID, pairs: Sequence[tuple[UUID, UUID]], q: DeviceQuery
    ) -> dict[UUID, Page]:
        """``page_devices`` for many parents in one round trip: ``pairs`` link each parent
        to its candidate devices. Parents without a match are absent."""
        params = Params([tenant_id, [p[0] for p in pairs], [p[1] for p in pairs]])
        where = compile_pred(q.where, DEVICE_COLUMNS, "d", params)
        page = PageSql(DEVICE_SORT_KEYS, q.order, q.window, params, "d")
        beyond = page.beyond()
        sql = self.sql["page_devices_grouped"].format(
            where=where, bounds=page.bounds(), order=page.order_by(), limit=page.limit(),
            beyond=f"coalesce(bool_or({beyond}), false)" if beyond else "false",
        )
        rows = await self.fetch_may_lag(sql, *params.values)
        grouped: dict[UUID, tuple[list[asyncpg.Record], int, bool]] = {}
        for row in rows:
            fetched, _, _ = grouped.setdefault(
                row["page_root"], ([], row["page_total"], row["page_beyond"]))
            if row["id"] is not None:
                fetched.append(row)
        return {root: relay_page(fetched, total, past, q.window)
                for root, (fetched, total, past) in grouped.items()}

    async def device_credentials_for_auth(self, device_id: UUID) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["device_credentials_for_auth"], device_id)

    async def api_key(self, key_hash: bytes) -> asyncpg.Record | None:
        """The key's row, None for an unknown or revoked key. Answered from memory when the
        registry answered for this key within ``key_cache_ttl`` seconds (see
        ``gateway.stores.key_cache``: revocations drop it at once); while the registry is
        unreachable, a key it verified within the last ``outage_grace`` seconds is accepted
        too, so reads of the other stores keep working through a short registry outage."""
        fresh = self.verified_keys.fresh(key_hash)
        if fresh is not None:
            return fresh
        if key_hash in self.bad_keys:
            return None
        try:
            row = await self.fetchrow(self.sql["api_key_by_hash"], key_hash)
        except StoreUnavailable:
            remembered = self.verified_keys.recent(key_hash)
            if remembered is None:
                raise
            return remembered
        if row is None:
            self.verified_keys.forget(key_hash)
            self.bad_keys.add(key_hash)
        else:
            self.verified_keys.remember(key_hash, row)
        return row

    async def create_tenant(self, name: str) -> asyncpg.Record:
        row = await self.fetchrow(self.sql["insert_tenant"], name)
        assert row is not None
        return row

    async def tenant_by_name(self, name: str) -> asyncpg.Record | None:
        return await self.fetchrow(self.sql["tenant_by_name"], name)

    async def tenants(self) -> list[asyncpg.Record]:
        return await self.fetch(self.sql["list_tenants"])

    async def create_api_key(
        self, tenant_id: UUID, name: str, key_hash: bytes, role: str,
        device_id: UUID | None = None,
    ) -> asyncpg.Record | None:
        """The new key's row; None when ``device_id`` names no live device of the tenant."""
        self.bad_keys.discard(key_hash)
        return await self.fetchrow(
            self.sql["insert_api_key"], tenant_id, name, key_hash, role, device_id
        )

    async def page_api_keys(
        self, tenant_id: UUID, *, first: int, after: tuple[datetime, UUID] | None,
        include_revoked: bool,
    ) -> tuple[list[asyncpg.Record], int]:
        """Up to ``first + 1`` keys after the cursor (one extra tells hasNextPage), and the
        total."""
        after_time, after_id = after if after else (None, None)
        rows = await self.fetch(self.sql["page_api_keys"], tenant_id, include_revoked,
                                after_time, after_id, first + 1)
        total = rows[0]["total_count"] if rows else 0
        return [r for r in rows if r["id"] is not None], total

    async def revoke_api_key(self, tenant_id: UUID, key_id: UUID) -> asyncpg.Record | None:
        """Revokes a key unless it is the tenant's last active admin key (the row then says
        ``refused``); None when the tenant has no such key."""
        async with self.transaction() as tx:
            await tx.fetchrow(self.sql["lock_tenant"], tenant_id)
            row = await tx.fetchrow(self.sql["revoke_api_key"], tenant_id, key_id)
        # This replica forgets it before answering; the others when it is announced.
        self.verified_keys.forget_ids([key_id])
        return row

    async def revoke_token(
        self, tenant_id: UUID, *, jti: str | None, subject: str | None,
        issued_before: datetime | None, expires_at: datetime | None,
    ) -> asyncpg.Record:
        row = await self.fetchrow(self.sql["revoke_token"], tenant_id, jti, subject,
                                  issued_before, expires_at)
        assert row is not None
        # This replica refuses the token before answering; the others when announced.
        self.revoked_tokens.add(TokenRevocation.from_row(row))
        return row

    async def token_revoked(self, tenant_id: UUID, jti: str | None, subject: str | None,
                            issued_at: float | None) -> bool:
        """Whether a verified token is revoked: answered from this process's copy of the
        live revocations, re-read every 30 s (``gateway.stores.revoked_tokens``). While the
        registry cannot be read, the last copy serves; before any copy, the registry's
        outage is the caller's (STORE_UNAVAILABLE)."""
        copy = self.revoked_tokens
        if copy.due():
            copy.reading()
            try:
                rows = await self.fetch(self.sql["live_revoked_tokens"])
            except StoreUnavailable:
                if not copy.loaded:
                    raise
                copy.read_failed()
            else:
                copy.replace(TokenRevocation.from_row(r) for r in rows)
        return copy.revoked(tenant_id, jti, subject, issued_at)

    async def jwt_subject(self, tenant_id: UUID, device_id: UUID | None) -> asyncpg.Record:
        """Whether a token's tenant exists, and its device's status there (None: none)."""
        row = await self.fetchrow(self.sql["jwt_subject"], tenant_id, device_id)
        assert row is not None
        return row
