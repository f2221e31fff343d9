"""Relay cursor pagination over (created_at, id) keysets."""

from __future__ import annotations

import base64
from datetime import datetime
from uuid import UUID

import strawberry

from gateway.errors import BadUserInput, LimitExceeded


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, row_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return datetime.fromisoformat(created), UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        raise BadUserInput(f"Malformed cursor {cursor!r}", argument="after") from None


def check_page_size(first: int | None, maximum: int) -> int:
    if first is None:
        return 50
    if first < 0:
        raise BadUserInput("first must not be negative", argument="first")
    if first > maximum:
        raise LimitExceeded(
            f"first={first} exceeds the maximum page size of {maximum}",
            limit="maxPageSize", maximum=maximum,
        )
    return first


def page_info(cursors: list[str], has_next: bool, after: str | None) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        # With forward pagination, edges before `after` exist whenever a cursor was given.
        has_previous_page=after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )
