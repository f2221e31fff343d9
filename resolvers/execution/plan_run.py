"""Runs a plan (``resolvers.execution.plan``) level by level.

Plain fields are read and completed straight into the response dicts as the objects that
hold them are built, with no resolver call, resolve info or awaitable per field, by each
selection set's generated fill (``resolvers.execution.fill_compiler``). Resolved
fields are called for every object of a level as the level is built, so each per-request
dataloader sees the whole level at once and makes one batched store call per (store,
query shape); each value is completed into the dict it belongs to as soon as it is
ready, which builds (and calls) the next level.

Errors follow graphql-core's rules (spec, "Handling Field Errors"): an error is located
at the position that failed (field or list item) with the field's nodes; a null at a
non-null position moves up to the nearest nullable one, which becomes null and holds the
error; errors below a position already nulled are dropped (graphql-core's
``CollectedErrors``), as is the work still scheduled under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from graphql import GraphQLError, Undefined, located_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, inspect, is_iterable
from strawberry.types.arguments import convert_arguments

from resolvers.execution.build_compiler import build_of
from resolvers.execution.fill_compiler import fill_of
from resolvers.execution.leaf_coercion import unchanged
from resolvers.execution.plan import (
    LEAF,
    LIST,
    OBJECT,
    FieldPlan,
    Selection,
    Shape,
)
from resolvers.execution.positions import Position, real


def _field_path(prev: Position | None, key: str | int, typename: str | None) -> Path:
    return Path(prev.path() if prev is not None else None, key, typename)


# A resolver's pending value, and what completes it.
_Call = tuple[Callable[[Any], None], Awaitable[Any]]
# An object waiting for a batched field: its source, its dict, the position of the dict.
_Parent = tuple[Any, dict[str, Any], "Position | None"]


class PlanRun:
    """One execution of a plan. ``executor`` is the graphql-core executor of the request
    (its variables, context, resolve infos); its errors are collected here."""

    def __init__(self, executor: Any, selection: Selection) -> None:
        self.executor = executor
        self.selection = selection
        self.errors: list[GraphQLError] = []
        self.root_nulled = False
        self.any_nulled = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._spawned: list[_Call] = []
        self._groups: dict[FieldPlan, list[_Parent]] = {}
        self._batch_inputs: dict[int, Any] = {}
        self._settled: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._args: dict[int, Any] = {}

    async def run(self, root_value: Any) -> dict[str, Any] | None:
        self._loop = asyncio.get_running_loop()
        data: dict[str, Any] = {}
        fill_of(self.selection)(self, root_value, data, None)
        self._flush()
        spawned, self._spawned = self._spawned, []
        if len(spawned) == 1:
            await self._drive(*spawned[0])
        else:
            for item in spawned:
                self._start(item)
        if self._tasks:
            self._settled = self._loop.create_future()
            try:
                await self._settled
            except BaseException:
                for task in self._tasks:
                    task.cancel()  # a timeout cancels the store work still under way
                raise
        return None if self.root_nulled else data

    def _start(self, item: _Call) -> None:
        task = asyncio.ensure_future(self._drive(*item), loop=self._loop)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _drive(self, complete: Callable[[Any], None],
                     awaitable: Awaitable[Any]) -> None:
        """Awaits a resolver and completes its value in the same step, like graphql-core:
        the next level's resolvers are called at once, so their loads join the batches
        of the loop iteration that produced the value. One new resolver is awaited right
        here (graphql-core awaits an object's only pending field inline); several run as
        tasks of their own."""
        while True:
            try:
                value = await awaitable
            except Exception as raw:  # noqa: BLE001 - a field error like any other
                value = raw
            complete(value)
            self._flush()
            spawned, self._spawned = self._spawned, []
            if len(spawned) != 1:
                for item in spawned:
                    self._start(item)
                return
            complete, awaitable = spawned[0]

    def _complete_field(self, plan: FieldPlan, obj: dict[str, Any], prev: Position | None,
                        value: Any) -> None:
        if not (self.any_nulled and self._nulled(prev)):
            assert plan.shape is not None
            self._complete(plan, plan.shape, plan.nullable, value, obj, plan.key, prev)

    def _complete_batch(self, plan: FieldPlan, parents: list[_Parent], values: Any) -> None:
        """Completes a batch resolver's values, one per parent; an exception in place of
        the list fails every parent's field with it."""
        if isinstance(values, Exception) or len(values) != len(parents):
            failure = values if isinstance(values, Exception) else RuntimeError(
                f"{plan.parent_type.name}.{plan.name}: the batch resolver answered "
                f"{len(values)} values for {len(parents)} objects")
            values = [failure] * len(parents)
        # _complete_field inlined: one call less per object of the level; a level of objects
        # is built (leaves only below: shadows, parents) or filled (assets, series) here, as
        # _complete would, without its call and dispatch per object (13.2 -> 12.5 M
        # instructions a subset request, 39.3 -> 38.0 M a dashboard's); what they do not
        # take goes to _complete.
        complete, shape, nullable, key = self._complete, plan.shape, plan.nullable, plan.key
        assert shape is not None
        selection = shape.selection
        pairs = zip(parents, values, strict=True)
        build = build_of(selection) if selection is not None else None
        if build is not None:
            for (_, obj, prev), value in pairs:
                if not (self.any_nulled and self._nulled(prev)):
                    try:
                        obj[key] = build(value)
                    except Exception:  # noqa: BLE001 - _complete reports it
                        complete(plan, shape, nullable, value, obj, key, prev)
            return
        if selection is None and shape.coerce is unchanged:
            # A JSON leaf (Device.metadata): a dict or list is sent as it is, as _complete
            # would send it, without its call per object; anything else goes to _complete.
            for (_, obj, prev), value in pairs:
                if not (self.any_nulled and self._nulled(prev)):
                    if value.__class__ is dict or value.__class__ is list:
                        obj[key] = value
                    else:
                        complete(plan, shape, nullable, value, obj, key, prev)
            return
        if selection is None or not selection.deep:
            for (_, obj, prev), value in pairs:
                if not (self.any_nulled and self._nulled(prev)):
                    complete(plan, shape, nullable, value, obj, key, prev)
            return
        fill, typename = fill_of(selection), plan.parent_type.name
        is_type_of = selection.type.is_type_of
        for (_, obj, prev), value in pairs:
            if self.any_nulled and self._nulled(prev):
                continue
            if value is None or value is Undefined or isinstance(value, Exception) or (
                    is_type_of is not None and not is_type_of(value, None)):  # type: ignore[arg-type]
                complete(plan, shape, nullable, value, obj, key, prev)
                continue
            made: dict[str, Any] = {}
            obj[key] = made
            fill(self, value, made, Position(prev, key, obj, nullable, typename))

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        settled = self._settled
        if settled is None or settled.done():
            return
        if not task.cancelled() and task.exception() is not None:
            settled.set_exception(task.exception())  # type: ignore[arg-type]
        elif not self._tasks:
            settled.set_result(None)

    # -- building objects -------------------------------------------------------------

    def _call(self, plan: FieldPlan, source: Any, obj: dict[str, Any],
              prev: Position | None) -> None:
        if self.any_nulled and self._nulled(prev):
            return  # graphql-core cancels work under a nulled position; never start it
        executor = self.executor
        path = _field_path(prev, plan.key, plan.parent_type.name)
        assert plan.field_def is not None and plan.shape is not None
        try:
            args = self._arguments(plan)
            info = executor.build_resolve_info(
                plan.field_def, [d.node for d in plan.details], plan.parent_type, path)
            result = plan.field_def.resolve(source, info, **args)  # type: ignore[misc]
        except Exception as raw:  # noqa: BLE001 - a field error like any other
            result = raw
        if isinstance(result, Awaitable):
            self._spawned.append((partial(self._complete_field, plan, obj, prev), result))
        else:
            self._complete(plan, plan.shape, plan.nullable, result, obj, plan.key, prev)

    def _flush(self) -> None:
        """Calls each batched field once for the objects that gathered for it while the
        current step built its values."""
        while self._groups:
            groups, self._groups = self._groups, {}
            for plan, parents in groups.items():
                complete = partial(self._complete_batch, plan, parents)
                try:
                    info, kwargs = self._batch_input(plan, parents[0][2])
                    assert plan.batch is not None
                    awaitable = plan.batch([p[0] for p in parents], info, **kwargs)
                except Exception as raw:  # noqa: BLE001 - fails the field on every object
                    complete(raw)
                    continue
                self._spawned.append((complete, awaitable))

    def _batch_input(self, plan: FieldPlan, prev: Position | None) -> tuple[Any, Any]:
        """The Strawberry Info and converted arguments of a batched field, once per run,
        with its allow(...) rules checked for them; what raises fails the field on every
        object asking for it (one error per object, as per-object checks would give)."""
        found = self._batch_inputs.get(id(plan))
        if found is None:
            try:
                found = self._prepare(plan, prev)
            except Exception as raw:  # noqa: BLE001
                found = raw
            self._batch_inputs[id(plan)] = found
        if isinstance(found, Exception):
            raise found
        return found  # type: ignore[no-any-return]

    def _prepare(self, plan: FieldPlan, prev: Position | None) -> tuple[Any, Any]:
        executor = self.executor
        assert plan.field_def is not None
        strawberry_schema = executor.schema._strawberry_schema
        raw_info = executor.build_resolve_info(
            plan.field_def, [d.node for d in plan.details], plan.parent_type,
            _field_path(prev, plan.key, plan.parent_type.name))
        definition = plan.definition
        info = strawberry_schema.config.info_class(_raw_info=raw_info, _field=definition)
        kwargs = convert_arguments(
            self._arguments(plan), definition.arguments,
            scalar_registry=strawberry_schema.schema_converter.scalar_registry,
            config=strawberry_schema.config, info=info)
        for extension in definition.extensions:
            kwargs = extension.map_arguments(kwargs)
        for rule in plan.rules:
            rule.check(executor.context_value.caller, kwargs, plan.name)
        return info, kwargs


    def _arguments(self, plan: FieldPlan) -> dict[str, Any]:
        """The field's arguments, coerced once per run (they depend only on the document
        and the variables); a coercion error fails the field wherever it is asked for."""
        if not plan.has_args:
            return {}
        found = self._args.get(id(plan))
        if found is None:
            executor = self.executor
            detail = plan.details[0]
            try:
                found = get_argument_values(
                    plan.field_def, detail.node, executor.variable_values,  # type: ignore[arg-type]
                    detail.fragment_variable_values, executor.hide_suggestions)
            except Exception as raw:  # noqa: BLE001
                found = raw
            self._args[id(plan)] = found
        if isinstance(found, Exception):
            raise found
        return found  # type: ignore[no-any-return]

    # -- completing values ------------------------------------------------------------

    def _complete(self, plan: FieldPlan, shape: Shape, nullable: bool, value: Any,
                  container: Any, key: str | int, prev: Position | None) -> None:
        """Completes ``value`` into ``container[key]`` (graphql-core's completeValue)."""
        if isinstance(value, Exception):
            self._fail(plan, value, container, key, nullable, prev)
            return
        if value is None or value is Undefined:
            if nullable:
                container[key] = None
            else:
                self._fail(plan, TypeError(
                    "Cannot return null for non-nullable field"
                    f" {plan.parent_type.name}.{plan.name}."), container, key, nullable, prev)
            return
        kind = shape.kind
        if kind == LEAF:
            assert shape.coerce is not None
            try:
                coerced = shape.coerce(value)
                if coerced is None or coerced is Undefined:
                    raise TypeError(  # noqa: TRY301 - graphql-core's wording
                        f"Expected `{inspect(shape.leaf)}.coerce_output_value("
                        f"{inspect(value)})` to return non-nullable value, returned:"
                        f" {inspect(coerced)}")
            except Exception as raw:  # noqa: BLE001
                self._fail(plan, raw, container, key, nullable, prev)
                return
            container[key] = coerced
            return
        if kind == LIST:
            if value.__class__ is not list and not is_iterable(value):
                self._fail(plan, GraphQLError(
                    "Expected Iterable, but did not find one for field"
                    f" '{plan.parent_type.name}.{plan.name}'."), container, key, nullable, prev)
                return
            item_shape = shape.item
            item_nullable = shape.item_nullable
            assert item_shape is not None
            selection = item_shape.selection
            build = build_of(selection) if selection is not None else None
            if build is not None and value.__class__ is list:
                try:  # flat objects, built; what a build refuses is done below
                    container[key] = [None if item is None else build(item) for item in value] \
                        if item_nullable else list(map(build, value))
                except Exception:  # noqa: BLE001, S110 - redone by the general path
                    pass
                else:
                    return
            items: list[Any] = []
            container[key] = items
            prev = real(prev)
            position = Position(prev, key, container, nullable,
                                plan.parent_type.name if isinstance(key, str) else None)
            if selection is not None:
                self._complete_objects(plan, item_shape, item_nullable, value, items, position)
                return
            if item_shape.kind == LEAF:
                self._complete_leaves(plan, item_shape, item_nullable, value, items, position)
                return
            for index, item in enumerate(value):
                items.append(None)
                self._complete(plan, item_shape, item_nullable, item, items, index, position)
                if self.any_nulled and self._nulled(position):
                    return  # the list (or an ancestor) was nulled: the rest is dropped
            return
        assert kind == OBJECT and shape.selection is not None
        is_type_of = shape.selection.type.is_type_of
        if is_type_of is not None and not is_type_of(value, None):  # type: ignore[arg-type]
            self._fail(plan, GraphQLError(
                f"Expected value of type '{shape.selection.type.name}' but got:"
                f" {inspect(value)}.", [d.node for d in plan.details]),
                container, key, nullable, prev)
            return
        typename = plan.parent_type.name if isinstance(key, str) else None
        if shape.selection.deep:
            obj: dict[str, Any] = {}
            container[key] = obj
            fill_of(shape.selection)(
                self, value, obj, Position(prev, key, container, nullable, typename))
            return
        build = build_of(shape.selection)
        if build is not None:
            try:  # leaves only below (a shadow): built; what the build refuses is filled
                container[key] = build(value)
            except Exception:  # noqa: BLE001, S110 - filled below, which reports it
                pass
            else:
                return
        obj = {}
        container[key] = obj
        # Leaves only below: its position is made only if an error needs it, once, shared
        # by every field of the object.
        fill_of(shape.selection)(self, value, obj, [prev, key, container, nullable, typename,
                                                    None])

    def _complete_objects(self, plan: FieldPlan, shape: Shape, nullable: bool, value: Any,
                          items: list[Any], position: Position) -> None:
        """A list of objects (edges, nodes; points and readings a build refused): each item
        filled as ``_complete`` would, without its call and dispatch per item, with a
        position of its own, or a lazy one where only leaves are below (a dashboard has ~13
        points a device at 1 hour, 288 at 24). Null, failed and foreign items take
        ``_complete``."""
        selection = shape.selection
        assert selection is not None
        fill = fill_of(selection)
        is_type_of = selection.type.is_type_of
        deep = selection.deep
        complete = self._complete
        append = items.append
        for index, item in enumerate(value):
            if item is None or item is Undefined or isinstance(item, Exception) or (
                    is_type_of is not None and not is_type_of(item, None)):  # type: ignore[arg-type]
                append(None)
                complete(plan, shape, nullable, item, items, index, position)
            else:
                obj: dict[str, Any] = {}
                append(obj)
                fill(self, item, obj, Position(position, index, items, nullable, None) if deep
                     else [position, index, items, nullable, None, None])
            if self.any_nulled and self._nulled(position):
                return  # the list (or an ancestor) was nulled: the rest is dropped

    def _complete_leaves(self, plan: FieldPlan, shape: Shape, nullable: bool, value: Any,
                         items: list[Any], position: Position) -> None:
        """A list of leaves (labels): each item's coercion called here, as ``_complete``
        would; what it cannot store as is (a null, an exception, a coercion that fails or
        answers null) takes ``_complete``."""
        coerce = shape.coerce
        assert coerce is not None
        complete = self._complete
        append = items.append
        for index, item in enumerate(value):
            coerced = None
            if item is not None and item is not Undefined and not isinstance(item, Exception):
                try:
                    coerced = coerce(item)
                except Exception:  # noqa: BLE001 - _complete below reports it
                    coerced = None
            if coerced is None or coerced is Undefined:
                append(None)
                complete(plan, shape, nullable, item, items, index, position)
                if self.any_nulled and self._nulled(position):
                    return  # the list (or an ancestor) was nulled: the rest is dropped
            else:
                append(coerced)

    def _fail(self, plan: FieldPlan, raw: Exception, container: Any, key: str | int,
              nullable: bool, prev: Position | None) -> None:
        """A field error at ``container[key]``: located there, held by the nearest
        nullable position (``key`` itself, or an ancestor), which becomes null."""
        prev = real(prev)
        typename = plan.parent_type.name if isinstance(key, str) else None
        path = _field_path(prev, key, typename)
        error = located_error(raw, [d.node for d in plan.details], path.as_list())
        if nullable:
            holder: Position | None = Position(prev, key, container, True, typename)
        else:
            holder = prev
            while holder is not None and not holder.nullable:
                holder = holder.prev
        if self._nulled(holder):
            return
        self.any_nulled = True
        self.errors.append(error)
        if holder is None:
            self.root_nulled = True
            return
        holder.container[holder.key] = None
        holder.dead = True

    def _nulled(self, position: Position | None) -> bool:
        if self.root_nulled:
            return True
        while position is not None:
            if position.dead:
                return True
            position = position.prev
        return False
