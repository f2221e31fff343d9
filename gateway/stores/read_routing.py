"""Which reads of the current request may be served by a read replica.

By default none: background jobs (the reconciler, retention), authentication, ingest and
WebSocket operations read only from the primary, since each of them acts on what was just
written (a subscription event follows a write it was told about). A GraphQL query over
HTTP opts in for its duration with ``lagging_reads()``; from then on the store methods that tolerate
lag (``PgStore.fetch_may_lag``) may go to a replica, until the request writes: a mutation
(``pin_to_primary``, called before it runs) or any statement through ``PgStore.execute``
or ``PgStore.transaction``. After that every read of the request, including those of
later operations in the same batch, goes to the primary and sees the request's own write.

The state is one mutable object per request behind a context variable, like the store
call counter: tasks the request spawns (dataloader batches) copy the context, and so
share the object, so a pin made anywhere holds for the whole request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class _Routing:
    __slots__ = ("pinned",)

    def __init__(self) -> None:
        self.pinned = False


_routing: ContextVar[_Routing | None] = ContextVar("read_routing", default=None)


@contextmanager
def lagging_reads() -> Iterator[None]:
    """Within the block, the current request may read lag-tolerant data from a replica
    (until it writes). Reset on leaving, so nothing run later in the same task inherits it."""
    token = _routing.set(_Routing())
    try:
        yield
    finally:
        _routing.reset(token)


def pin_to_primary() -> None:
    """Every further read of the current request goes to the primary."""
    routing = _routing.get()
    if routing is not None:
        routing.pinned = True


def lagging_reads_allowed() -> bool:
    routing = _routing.get()
    return routing is not None and not routing.pinned
