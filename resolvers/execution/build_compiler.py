"""Builds of flat selections, generated once per plan: a selection of plain leaves and
``__typename`` only (a telemetry point, a reading, a series' stats, a shadow) gets a build
function, which makes an object's dict in one call with no position, or raises. A plain
field holding such an object, or a list of them, is built optimistically: anything the
build does not take as it is (a null, an exception, a value its test refuses) raises, and
the field is then done again by the general path from the start, which reports exactly what
it always did. That redo reads the attribute a second time, which is why only plain fields
(dataclass attributes and memoising descriptors, pure reads) are built this way. A
dashboard's points were about a third of its planned execution, through a fill call and a
lazy position per point.

A source can go further for a plain list of flat objects: its class's
``plain_columns(name)`` may answer the list's items as columns (``{attribute: values}``,
item i's attribute being ``values[i]``) without making the items, and the list is then
built from the columns in one loop (a gap-filled series' points: a point object and a build
call less per point). None there, or a refusal, falls back to the list itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resolvers.execution.leaf_code import (
    define,
    leaf_expression,
    leaf_lines,
    leaf_list_lines,
    read_lines,
)
from resolvers.execution.plan import LEAF, LIST, OBJECT, PLAIN, TYPENAME, FieldPlan, Selection

Build = Callable[[Any], dict[str, Any]]  # a flat selection's object, or raises


def build_of(selection: Selection) -> Build | None:
    """The build function of a flat selection, generated on first use; None for any other
    (objects or lists below, a resolved field, a custom ``is_type_of``)."""
    build = selection.build
    if build is None:
        build = selection.build = _compile_build(selection) or False
    return build or None


def _compile_build(selection: Selection) -> Build | None:
    if selection.deep:
        return None
    env: dict[str, Any] = {}
    lines = ["def build(source):",
             "    if source is None or source is _Undefined or isinstance(source, Exception):",
             "        raise _Slow"]
    is_type_of = selection.type.is_type_of
    if is_type_of is not None:
        env["ISTYPE"] = is_type_of  # Strawberry's own (plan.py admits no other)
        lines += ["    if not ISTYPE(source, None):", "        raise _Slow"]
    lines.append("    obj = {}")
    for index, plan in enumerate(selection.fields):
        key = repr(plan.key)
        if plan.kind == TYPENAME:
            lines.append(f"    obj[{key}] = {selection.type.name!r}")
            continue
        shape = plan.shape
        if plan.kind != PLAIN or shape is None:
            return None
        if shape.kind == LIST:
            leaves = leaf_list_lines(index, plan, key, env)
            if not leaves:
                return None  # a list of other leaves: left to the fill
            lines += ["    " + line for line in [*read_lines(index, plan, env), *leaves]]
            continue
        env[f"C{index}"] = shape.coerce
        fallback = f"obj[{key}] = _coerced(C{index}, v)"
        lines += ["    " + line for line in read_lines(index, plan, env)]
        if plan.nullable:
            lines += ["    if v is None:", f"        obj[{key}] = None", "    else:"]
            indent = "        "
        else:
            indent = "    "
        lines += [indent + line for line in leaf_lines(index, plan, key, fallback, env)]
    lines.append("    return obj")
    return define(lines, env, f"<build {selection.type.name}>", "build")  # type: ignore[no-any-return]


def columns_build_of(selection: Selection) -> Callable[[Any], list[Any]] | None:
    """The columns build of a flat selection (see the module's docstring), generated on
    first use; None where the selection has no build or reads no attribute."""
    made = selection.columns_build
    if made is None:
        made = selection.columns_build = _compile_columns_build(selection) or False
    return made or None


def _compile_columns_build(selection: Selection) -> Callable[[Any], list[Any]] | None:
    if build_of(selection) is None:
        return None
    plains = [(index, plan) for index, plan in enumerate(selection.fields)
              if plan.kind == PLAIN]
    if not plains or any(plan.shape is None or plan.shape.kind != LEAF for _, plan in plains):
        return None
    # Column by column, one comprehension each, then one dict display per object: about
    # half the bytecode of filling each object field by field. A column that is the same
    # tuple as at the last call (a series' bucket starts, shared by every device of a
    # request) reuses that call's output: a tuple of leaf values (immutable) gives the same.
    env: dict[str, Any] = {}
    lines = ["def columns_build(columns):"]
    for index, plan in plains:
        env[f"M{index}"] = [None, None]  # the last tuple column and its output
        each = f"[{leaf_expression(index, plan, env)} for v in c{index}]"
        lines += [f"    c{index} = columns[{plan.attribute!r}]",
                  f"    if c{index} is M{index}[0]:", f"        k{index} = M{index}[1]",
                  "    else:", f"        k{index} = {each}",
                  f"        if c{index}.__class__ is tuple:",
                  f"            M{index}[0], M{index}[1] = c{index}, k{index}"]
    items = ", ".join(f"{plan.key!r}: " + (repr(selection.type.name) if plan.kind == TYPENAME
                                            else f"a{index}")
                      for index, plan in enumerate(selection.fields))
    items_of = ", ".join(f"a{index}" for index, _ in plains)
    columns = ", ".join(f"k{index}" for index, _ in plains)
    source = f"zip({columns}, strict=True)" if len(plains) > 1 else columns
    lines.append(f"    return [{{{items}}} for {items_of} in {source}]")
    return define(lines, env, f"<columns {selection.type.name}>",  # type: ignore[no-any-return]
                  "columns_build")


def plain_columns(source: Any, name: str) -> Any:
    """What ``source``'s class offers as the columns of its plain list ``name``, if
    anything (see the module's docstring)."""
    offer = getattr(source.__class__, "plain_columns", None)
    return None if offer is None else offer(source, name)


def columns_name(index: int, plan: FieldPlan, env: dict[str, Any]) -> str | None:
    """The name of the columns build for a plain list of flat objects, if it has one."""
    shape = plan.shape
    item = shape.item if shape is not None and shape.kind == LIST else None
    if item is None or item.kind != OBJECT or item.selection is None \
            or shape is None or shape.item_nullable:
        return None
    columns_build = columns_build_of(item.selection)
    if columns_build is None:
        return None
    env[f"K{index}"] = columns_build
    return f"K{index}"


def built_lines(index: int, plan: FieldPlan, key: str, env: dict[str, Any]) -> list[str]:
    """Statements storing ``obj[key]`` from ``v``, a plain field's flat object or list of
    flat objects (through the object type's build) or list of built-in leaves; none for
    any other shape."""
    shape = plan.shape
    if shape is None:
        return []
    if shape.kind == LIST and shape.item is not None and shape.item.kind == LEAF:
        return leaf_list_lines(index, plan, key, env)
    if shape.kind == OBJECT and shape.selection is not None:
        build = build_of(shape.selection)
        if build is None:
            return []
        env[f"B{index}"] = build
        if plan.nullable:
            return [f"obj[{key}] = None if v is None else B{index}(v)"]
        return [f"obj[{key}] = B{index}(v)"]
    item = shape.item
    if shape.kind != LIST or item is None or item.kind != OBJECT or item.selection is None:
        return []
    build = build_of(item.selection)
    if build is None:
        return []
    env[f"B{index}"] = build
    lines = []
    if plan.nullable:
        lines += ["if v is None:", f"    obj[{key}] = None", "else:"]
    indent = "    " if plan.nullable else ""
    lines += [indent + "if v.__class__ is not list:", indent + "    raise _Slow"]
    if shape.item_nullable:
        lines.append(indent + f"obj[{key}] = [None if i is None else B{index}(i) for i in v]")
    else:
        lines.append(indent + f"obj[{key}] = list(map(B{index}, v))")
    return lines
