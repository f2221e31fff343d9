"""Keyset pages in any whitelisted order, both ways, with the Relay spec's pageInfo.

A page request names an order (one sort key of the table plus the id as the unique
tiebreak, both ascending or both descending, so one btree index on
``(tenant_id, key, id)`` serves either direction), a window (``first``/``after`` forward,
``last``/``before`` backward) and a filter. ``PageSql`` turns that into SQL fragments for
the statement templates in ``sql/<store>/queries.sql``; the fragments come only from the
whitelists here and in ``gateway.stores.predicates``, and every value is a parameter.

Forward pages fetch ``first + 1`` rows after the cursor in the order (the extra row says
hasNextPage); backward pages fetch ``last + 1`` rows before the cursor in the reverse
order and are turned around. The other direction's flag comes from one EXISTS on the
index in the same statement: rows at or before ``after`` (forward), at or after
``before`` (backward), which is the spec's "if the server can efficiently determine".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from gateway.stores.predicates import Params


@dataclass(frozen=True)
class SortKey:
    """An orderable column: SQL with ``{t}`` for the alias (and ``{v}`` for the cursor
    value where NULLs need a stand-in), the parameter type, the row column read into
    cursors."""

    sql: str
    pgtype: str
    column: str
    value_sql: str = "{v}"


@dataclass(frozen=True)
class Order:
    key: str
    descending: bool = False


CREATED_ASC = Order("created_at")

# Cursor position: the sort key's value in the row (None for a NULL) and the row's id.
Position = tuple[Any, UUID]


@dataclass(frozen=True)
class Window:
    """Relay arguments after validation: at least one of ``first``/``last`` is set."""

    first: int | None = 50
    last: int | None = None
    after: Position | None = None
    before: Position | None = None

    @property
    def backward(self) -> bool:
        """Rows are taken from the end of the range: ``last`` without ``first``."""
        return self.first is None and self.last is not None

    @property
    def fetch(self) -> int:
        """Rows the statement returns: one more than the page, to see past it."""
        size = self.last if self.backward else self.first
        assert size is not None
        return size + 1


@dataclass
class Page:
    rows: list[Any]
    total: int
    has_next: bool
    has_previous: bool


class PageSql:
    """The fragments of one page statement over a table aliased ``alias``."""

    def __init__(self, keys: Mapping[str, SortKey], order: Order, window: Window,
                 params: Params, alias: str) -> None:
        self.key = keys[order.key]  # KeyError: a programming error, never client text
        self.order = order
        self.window = window
        self._params = params
        self._alias = alias
        # The direction rows are fetched in: the order's, reversed for a backward page.
        self._ascending = order.descending == window.backward

    def _key_sql(self) -> str:
        return self.key.sql.format(t=self._alias)

    def _compare(self, position: Position, op: str) -> str:
        value = self.key.value_sql.format(v=self._params.add(position[0], self.key.pgtype))
        row_id = self._params.add(position[1], "uuid")
        return f"({self._key_sql()}, {self._alias}.id) {op} ({value}, {row_id})"

    def _op(self, later: bool, inclusive: bool) -> str:
        """The comparison meaning "later in the order" (or earlier), strict or not."""
        ascending_order = not self.order.descending
        op = ">" if later == ascending_order else "<"
        return op + ("=" if inclusive else "")

    def bounds(self) -> str:
        """Rows strictly between the cursors."""
        parts = []
        if self.window.after is not None:
            parts.append(self._compare(self.window.after, self._op(later=True, inclusive=False)))
        if self.window.before is not None:
            parts.append(self._compare(self.window.before, self._op(later=False, inclusive=False)))
        return " AND ".join(parts) or "true"

    def beyond(self) -> str | None:
        """A condition for rows past the cursor on the side the page does not fetch
        toward, or None when there is no such cursor (the flag is then false)."""
        if self.window.backward and self.window.before is not None:
            return self._compare(self.window.before, self._op(later=True, inclusive=True))
        if not self.window.backward and self.window.after is not None:
            return self._compare(self.window.after, self._op(later=False, inclusive=True))
        return None

    def order_by(self, alias: str | None = None) -> str:
        direction = "ASC" if self._ascending else "DESC"
        t = alias or self._alias
        return f"{self.key.sql.format(t=t)} {direction}, {t}.id {direction}"

    def limit(self) -> str:
        return self._params.add(self.window.fetch, "int")

    def position(self, row: Mapping[str, Any]) -> Position:
        return row[self.key.column], row["id"]


def relay_page(fetched: Sequence[Any], total: int, beyond: bool, window: Window) -> Page:
    """The page and its flags from the rows a statement fetched (in fetch order, one more
    than the page at most), per the Relay connection spec."""
    if window.backward:
        assert window.last is not None
        rows = list(reversed(fetched[: window.last]))
        return Page(rows, total, has_next=beyond, has_previous=len(fetched) > window.last)
    assert window.first is not None
    rows = list(fetched[: window.first])
    has_next = len(fetched) > window.first
    has_previous = beyond
    if window.last is not None:
        # first and last together (the spec discourages it): last of the first.
        has_previous = has_previous or len(rows) > window.last
        rows = rows[max(0, len(rows) - window.last):] if window.last else []
    return Page(rows, total, has_next=has_next, has_previous=has_previous)
