"""Tenant onboarding: the operator's `iotsphere tenant` commands and the embedded demo
tenant whose admin key GraphiQL is prefilled with."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from gateway.auth.callers import create_tenant_with_admin_key, hash_key, new_api_key
from gateway.settings import Settings
from gateway.stores.registry import RegistryStore

DEMO_TENANT = "demo"


async def _registry(settings: Settings) -> RegistryStore:
    assert settings.registry_dsn
    store = RegistryStore(settings.registry_dsn, min_size=1, max_size=2)
    await store.connect()
    return store


class TenantNameError(ValueError):
    """A tenant name that is malformed or taken; the message says which."""


def _tenant_name(raw: str) -> str:
    name = raw.strip()
    if not 1 <= len(name) <= 100 or any(unicodedata.category(c).startswith("C") for c in name):
        raise TenantNameError("a tenant name has 1 to 100 characters, none of them control "
                              "characters")
    return name


async def create_tenant(settings: Settings, name: str) -> tuple[UUID, str]:
    """A new tenant and its first admin key (returned once: only its hash is stored)."""
    name = _tenant_name(name)
    registry = await _registry(settings)
    try:
        if await registry.tenant_by_name(name) is not None:
            raise TenantNameError(f"a tenant named {name!r} exists already")
        try:
            return await create_tenant_with_admin_key(registry, name)
        except asyncpg.UniqueViolationError:  # created by someone else meanwhile
            raise TenantNameError(f"a tenant named {name!r} exists already") from None
    finally:
        await registry.aclose()


async def list_tenants(settings: Settings) -> list[Any]:
    registry = await _registry(settings)
    try:
        return await registry.tenants()
    finally:
        await registry.aclose()


async def ensure_demo_tenant(settings: Settings, known_key: str | None) -> str:
    """The demo tenant's admin key: ``known_key`` while it still verifies, else a new
    tenant (or a new key for the existing one)."""
    registry = await _registry(settings)
    try:
        if known_key and await registry.api_key(hash_key(known_key)) is not None:
            return known_key
        tenant = await registry.tenant_by_name(DEMO_TENANT)
        if tenant is None:
            _, key = await create_tenant_with_admin_key(registry, DEMO_TENANT)
            return key
        key = new_api_key()
        await registry.create_api_key(tenant["id"], "embedded admin key", hash_key(key), "admin")
        return key
    finally:
        await registry.aclose()


def read_key_file(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def write_key_file(path: Path, key: str) -> None:
    """Writes the key readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
