"""What orderBy arguments share: the direction enum."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="Sort direction; the id breaks ties in the same direction.")
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"
