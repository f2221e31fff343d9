"""Fields resolved for a whole level at once: one call with every parent object of the
level instead of one resolver call (and one task) per object.

A batch resolver takes the parents, the Strawberry ``Info`` and the field's converted
arguments, and answers one value per parent, in order: the field's value, or the
exception that fails that parent's field. The field's own resolver calls the same
function with one parent (``one``), so each rule is written once and both executors run
it. A level's keys go to its loader at once (``load_settled``: the request's loaders take
them with no future per key), never through ``load_many``'s extra ``gather``, so a batch
takes exactly the loop iterations one parent's resolver takes, and the loaders batch the
same way on both paths.

    @batched("Device", "metadata")
    async def device_metadata(devices, info) -> list[Any]: ...

The planned executor (``resolvers.execution.plan_run``) checks the field's ``allow(...)``
rule once per level, with the same caller and arguments the per-object check would see.
"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiodataloader import DataLoader

from gateway.loaders.batch_loader import BatchLoader

BatchResolver = Callable[..., Awaitable[list[Any]]]

BATCHES: dict[tuple[str, str], BatchResolver] = {}


def batched(type_name: str, field_name: str) -> Callable[[BatchResolver], BatchResolver]:
    """Declares ``function`` the batch resolver of ``type_name.field_name`` (GraphQL
    names)."""
    def register(function: BatchResolver) -> BatchResolver:
        BATCHES[(type_name, field_name)] = function
        return function
    return register


async def settled(futures: Iterable[Future[Any]]) -> list[Any]:
    """Each future's value, or its exception in its place. Loader futures, they are
    awaited in turn: a batch resolves them together, so only the first await waits, and
    the others' outcomes are read as they are (awaiting a done future took a coroutine
    step and a StopIteration each)."""
    values: list[Any] = []
    append = values.append
    for future in futures:
        try:
            append(future.result() if future.done() else await future)
        except Exception as error:  # noqa: BLE001 - the item's own failure
            append(error)
    return values


async def load_settled(loader: DataLoader, keys: Iterable[Any]) -> list[Any]:
    """Each key's value, or its exception in its place: ``settled([loader.load(key) for
    key in keys])``, through the same cache and batches. The request's loaders
    (gateway.loaders.batch_loader) do it without a future per key, a level's 100 keys at once."""
    if isinstance(loader, BatchLoader):
        return await loader.load_settled(keys)
    return await settled([loader.load(key) for key in keys])



def one(values: list[Any]) -> Any:
    """The single parent's value, for a field's own resolver: its exception is raised."""
    [value] = values
    if isinstance(value, Exception):
        raise value
    return value
