"""Relay cursor pagination: cursors, page windows and pageInfo.

A cursor is the keyset position of its row in the connection's order. For the default
order (createdAt ascending) it keeps its original form, ``base64("<created_at>|<id>")``,
so cursors clients already hold stay valid; any other order's cursor is
``base64(["<key>", "asc"|"desc", <value>, "<id>"])``, and a cursor made for one order is
refused for another (it would silently skip or repeat rows).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry

from gateway.errors import BadUserInput, LimitExceeded
from gateway.stores.pages import CREATED_ASC, Order, Page, Position, SortKey, Window

DEFAULT_PAGE = 50

FirstArg = Annotated[int | None, strawberry.argument(
    description="Page forward: this many edges after `after` (50 when neither first nor "
    "last is given).")]
LastArg = Annotated[int | None, strawberry.argument(
    description="Page backward: this many edges before `before`, in the same order.")]


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, argument: str = "after"
) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    try:
        created, _, row_id = _unbase64(cursor).partition("|")
        return datetime.fromisoformat(created), UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        raise BadUserInput(f"Malformed cursor {cursor!r}", argument=argument) from None


def _unbase64(cursor: str) -> str:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


def encode_position(order: Order, key: SortKey, position: Position) -> str:
    """The cursor of a row at ``position`` in ``order``."""
    value, row_id = position
    if order == CREATED_ASC:
        return encode_cursor(value, row_id)
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([order.key, "desc" if order.descending else "asc", value, str(row_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_position(
    cursor: str | None, order: Order, key: SortKey, argument: str
) -> Position | None:
    """The keyset position in a cursor made for ``order``; BAD_USER_INPUT otherwise."""
    if cursor is None:
        return None
    try:
        text = _unbase64(cursor)
    except (ValueError, UnicodeDecodeError):
        raise BadUserInput(f"Malformed cursor {cursor!r}", argument=argument) from None
    if not text.startswith("["):
        if order != CREATED_ASC:
            raise _other_order(argument)
        return decode_cursor(cursor, argument)
    try:
        key_name, direction, value, row_id = json.loads(text)
        if (key_name, direction) != (order.key, "desc" if order.descending else "asc"):
            raise _other_order(argument)
        return _value(value, key), UUID(row_id)
    except (ValueError, TypeError):
        raise BadUserInput(f"Malformed cursor {cursor!r}", argument=argument) from None


def _value(value: Any, key: SortKey) -> Any:
    if value is None:
        return None
    if key.pgtype == "timestamptz":
        return datetime.fromisoformat(value)
    if not isinstance(value, str):
        raise ValueError("a text key needs a string")
    return value


def _other_order(argument: str) -> BadUserInput:
    return BadUserInput(
        f"The {argument} cursor was made for another orderBy: page with the orderBy that "
        "produced it", argument=argument,
    )


def page_window(
    first: int | None, after: str | None, last: int | None, before: str | None,
    order: Order, key: SortKey, maximum: int,
) -> Window:
    """The Relay arguments as a window: ``first`` defaults to 50 when neither ``first``
    nor ``last`` is given; sizes are checked against ``maximum`` (maxPageSize)."""
    if first is None and last is None:
        first = DEFAULT_PAGE
    return Window(
        first=check_page_size(first, maximum) if first is not None else None,
        last=check_page_size(last, maximum, "last") if last is not None else None,
        after=decode_position(after, order, key, "after"),
        before=decode_position(before, order, key, "before"),
    )


def row_cursor(order: Order, key: SortKey, row: Any) -> str:
    """The cursor of a page's row in ``order``."""
    return encode_position(order, key, (row[key.column], row["id"]))


def page_info_of(page: Page, order: Order, key: SortKey) -> PageInfo:
    """pageInfo of ``page``: only its first and last rows' cursors are encoded."""
    rows = page.rows
    return PageInfo(
        has_next_page=page.has_next, has_previous_page=page.has_previous,
        start_cursor=row_cursor(order, key, rows[0]) if rows else None,
        end_cursor=row_cursor(order, key, rows[-1]) if rows else None,
    )


class RowCursor:
    """An edge's ``cursor`` encoded from its row on first read, for edge classes made by
    a page (``edge.row``, ``edge.order``, ``edge.key``): most queries select no cursor,
    and encoding one per edge was ~5% of the subset query's CPU (bench/queries.py,
    100 edges). A non-data descriptor: the text, once made, sits in the instance."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, edge: Any, owner: type | None = None) -> Any:
        if edge is None:
            return self
        text = edge.__dict__[self._name] = row_cursor(edge.order, edge.key, edge.row)
        return text


def check_page_size(first: int | None, maximum: int, argument: str = "first") -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0:
        raise BadUserInput(f"{argument} must not be negative", argument=argument)
    if first > maximum:
        raise LimitExceeded(
            f"{argument}={first} exceeds the maximum page size of {maximum}",
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
