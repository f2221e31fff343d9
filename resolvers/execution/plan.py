"""A plan per (document, operation, @skip/@include outcome): what every selection set
of the operation reads, decided once instead of once per object.

For each selection set the plan lists its fields in response order (aliases, named and
inline fragments and the directives already applied by graphql-core's own field
collection, so merging follows the spec exactly) and, per field, how its value is
obtained and completed:

- ``__typename``: the object type's name, a constant;
- a plain attribute (a Strawberry field without a resolver): read off the object;
- a resolved field: its resolver, called with arguments coerced once per run;
- a batched field (``resolvers.execution.batch_fields``): one call for every object of
  the level, its ``allow(...)`` rule checked once;

and the shape of its type: nullability at every list level, the leaf's output coercion,
or the nested selection plan of an object type.

``build`` answers None for what the planner leaves to graphql-core: abstract types,
introspection, @defer/@stream, fragment arguments, types checked with ``is_type_of``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetails
from strawberry.permission import PermissionExtension
from strawberry.schema.schema_converter import GraphQLCoreConverter

from resolvers.execution.batch_fields import BATCHES, BatchResolver
from resolvers.execution.leaf_coercion import fast_coercion
from resolvers.permissions import Rule

LEAF, LIST, OBJECT = 0, 1, 2
TYPENAME, PLAIN, RESOLVED, BATCHED = 0, 1, 2, 3

# Collects the selection set of ``type`` for a field group: graphql-core's own
# ``Executor.collect_subfields`` (grouped fields, new defer usages, forbidden directives).
Collect = Callable[[GraphQLObjectType, list[FieldDetails]], Any]


class Unplannable(Exception):
    """The operation holds a shape the planner leaves to graphql-core."""


@dataclass(eq=False)
class Shape:
    """How a value of one (nullable-stripped) output type is completed."""

    kind: int
    leaf: GraphQLLeafType | None = None
    coerce: Callable[[Any], Any] | None = None
    item: Shape | None = None
    item_nullable: bool = True
    selection: Selection | None = None


@dataclass(eq=False)
class FieldPlan:
    key: str  # the response key (alias or name)
    kind: int  # TYPENAME, PLAIN or RESOLVED
    parent_type: GraphQLObjectType
    details: list[FieldDetails]
    field_def: GraphQLField | None = None  # None for __typename
    nullable: bool = True
    shape: Shape | None = None
    attribute: str = ""  # PLAIN: the Python attribute
    has_args: bool = False
    batch: BatchResolver | None = None  # BATCHED
    rules: tuple[Rule, ...] = ()  # BATCHED: the field's allow(...) rules
    definition: Any = None  # BATCHED: the Strawberry field (arguments, Info)

    @property
    def name(self) -> str:
        return self.details[0].node.name.value


@dataclass(eq=False)
class Selection:
    type: GraphQLObjectType
    fields: list[FieldPlan] = field(default_factory=list)
    # Any resolved field or object below: objects of this selection need a position of
    # their own while they execute (flat ones get one only when an error needs it).
    deep: bool = False
    fill: Any = None  # its generated fill (resolvers.execution.fill_compiler), made on first use
    build: Any = None  # its build (build_compiler; False where there is none), made on first use
    columns_build: Any = None  # the same from columns (False where there is none)


def build(root_type: GraphQLObjectType, grouped: dict[str, list[FieldDetails]],
          collect: Collect) -> Selection:
    """The plan of an operation whose root fields graphql-core collected as ``grouped``;
    raises Unplannable."""
    return _selection(root_type, grouped, collect)


def _selection(type_: GraphQLObjectType, grouped: dict[str, list[FieldDetails]],
               collect: Collect) -> Selection:
    if type_.is_type_of is not None and getattr(type_.is_type_of, "__name__", "") != "is_type_of":
        # Strawberry's own check (types implementing an interface) ignores its info and is
        # called per object by the run; any other may need the resolve info.
        raise Unplannable(f"{type_.name} is checked with a custom is_type_of")
    selection = Selection(type_)
    for key, details in grouped.items():
        plan = _field(type_, key, details, collect)
        if plan is None:
            continue  # an unknown field: graphql-core skips it too (validation refuses it)
        selection.fields.append(plan)
        if plan.kind >= RESOLVED or (plan.shape is not None and _has_object(plan.shape)):
            selection.deep = True
    return selection


def _field(type_: GraphQLObjectType, key: str, details: list[FieldDetails],
           collect: Collect) -> FieldPlan | None:
    for detail in details:
        if detail.defer_usage is not None or detail.fragment_variable_values is not None:
            raise Unplannable("@defer or fragment arguments")
        if any(d.name.value == "stream" for d in detail.node.directives or ()):
            raise Unplannable("@stream")
    name = details[0].node.name.value
    if name == "__typename":
        return FieldPlan(key, TYPENAME, type_, details, nullable=False)
    if name.startswith("__"):
        raise Unplannable("introspection")
    field_def = type_.fields.get(name)
    if field_def is None:
        return None
    nullable = not is_non_null_type(field_def.type)
    plan = FieldPlan(key, RESOLVED, type_, details, field_def, nullable,
                     _shape(_nullable(field_def.type), details, collect),
                     has_args=bool(field_def.args or details[0].node.arguments))
    resolve = field_def.resolve
    if resolve is not None and getattr(resolve, "_is_default", False):
        # A Strawberry field without a resolver reads the attribute (config default:
        # getattr) and takes no arguments.
        definition = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is not None and not plan.has_args:
            plan.kind = PLAIN
            plan.attribute = definition.python_name
    elif resolve is None:
        raise Unplannable(f"{type_.name}.{name} has no resolver of Strawberry's")
    else:
        _batch(plan, BATCHES.get((type_.name, name)))
    return plan


def _batch(plan: FieldPlan, batch: BatchResolver | None) -> None:
    """Makes ``plan`` BATCHED when the field has a batch resolver and no field extension
    but ``allow(...)`` (whose rules the run checks once per level)."""
    assert plan.field_def is not None
    definition = (plan.field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if batch is None or definition is None:
        return
    rules: list[Rule] = []
    for extension in definition.extensions:
        if not isinstance(extension, PermissionExtension) or extension.fail_silently:
            return
        for permission in extension.permissions:
            if type(permission) is not Rule:
                return
            rules.append(permission)
    plan.kind = BATCHED
    plan.batch = batch
    plan.rules = tuple(rules)
    plan.definition = definition


def _nullable(type_: GraphQLOutputType) -> GraphQLOutputType:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _shape(type_: GraphQLOutputType, details: list[FieldDetails], collect: Collect) -> Shape:
    if is_leaf_type(type_):
        return Shape(LEAF, leaf=type_, coerce=fast_coercion(type_))  # type: ignore[arg-type]
    if is_list_type(type_):
        assert isinstance(type_, GraphQLList)
        item = type_.of_type
        return Shape(LIST, item=_shape(_nullable(item), details, collect),
                     item_nullable=not is_non_null_type(item))
    if is_object_type(type_):
        assert isinstance(type_, GraphQLObjectType)
        grouped, defers, *_ = collect(type_, details)
        if defers:
            raise Unplannable("@defer")
        return Shape(OBJECT, selection=_selection(type_, grouped, collect))
    raise Unplannable(f"abstract type {type_}")


def _has_object(shape: Shape) -> bool:
    while shape.kind == LIST:
        assert shape.item is not None
        shape = shape.item
    return shape.kind == OBJECT


def walk_fields(selection: Selection) -> Sequence[FieldPlan]:
    """Every field of the plan, depth first (tests and diagnostics)."""
    out: list[FieldPlan] = []
    for plan in selection.fields:
        out.append(plan)
        shape = plan.shape
        while shape is not None and shape.kind == LIST:
            shape = shape.item
        if shape is not None and shape.selection is not None:
            out.extend(walk_fields(shape.selection))
    return out
