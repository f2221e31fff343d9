"""The device lifecycle enum (its own module: filters and types both name it)."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum
class DeviceStatus(Enum):
    PROVISIONED = "PROVISIONED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DECOMMISSIONED = "DECOMMISSIONED"
