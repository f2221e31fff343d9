"""Where a value sits in a planned execution's response (``resolvers.execution.plan_run``):
the container and key holding it, whether it may be null, and the position holding that
container. A run nulls a position when a field error propagates to it (``dead``); its
GraphQL path is made only when an error needs one.

Objects with leaves only below (a telemetry point) get a lazy position instead: the
list ``[prev, key, container, nullable, typename, None]``, made a Position by ``real``
on first need, since most never need one.
"""

from __future__ import annotations

from typing import Any

from graphql.pyutils import Path


class Position:
    """Where a value sits in the response: ``container[key]``, inside ``prev``."""

    __slots__ = ("container", "dead", "key", "nullable", "prev", "typename", "_path")

    def __init__(self, prev: Position | None, key: str | int, container: Any,
                 nullable: bool, typename: str | None) -> None:
        self.prev = prev
        self.key = key
        self.container = container
        self.nullable = nullable
        self.typename = typename
        self.dead = False
        self._path: Path | None = None

    def path(self) -> Path:
        if self._path is None:
            prev = self.prev.path() if self.prev is not None else None
            self._path = Path(prev, self.key, self.typename)
        return self._path


def real(position: Any) -> Position | None:
    """The Position of a flat object, made from its lazy form on first need."""
    if type(position) is not list:
        return position  # type: ignore[no-any-return]
    made = position[5]
    if made is None:
        made = position[5] = Position(*position[:5])
    return made  # type: ignore[no-any-return]
